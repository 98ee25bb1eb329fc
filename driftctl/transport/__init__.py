from driftctl.transport.base import CommandResult, Transport, TransportOptions, get_transport, quote

__all__ = ["CommandResult", "Transport", "TransportOptions", "get_transport", "quote"]
