from driftctl.transport.base import (
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
