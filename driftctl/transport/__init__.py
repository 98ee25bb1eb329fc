from driftctl.transport import _deferred

_deferred.install()  # before anything imports paramiko: see _deferred.py

from driftctl.transport.base import (  # noqa: E402
    TRANSPORTS,
    CommandResult,
    Feed,
    SSHOptions,
    Transport,
    TransportOptions,
    get_transport,
    quote,
    transport_class,
)

__all__ = ["TRANSPORTS", "CommandResult", "Feed", "SSHOptions", "Transport", "TransportOptions", "get_transport",
           "quote", "transport_class"]
