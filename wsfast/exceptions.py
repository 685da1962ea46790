"""Exceptions raised by wsfast.

Every error a peer can cause carries what to do next: a :class:`ProtocolError`
carries the close code to send (RFC 6455 §7.4.1) and a readable reason; a
:class:`HandshakeError` carries the HTTP status to answer with.
"""

from typing import Iterable, Optional, Tuple

__all__ = [
    "WebSocketError",
    "ProtocolError",
    "PayloadTooBig",
    "InvalidUTF8",
    "HandshakeError",
    "InvalidRedirect",
    "ProxyError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
]


class WebSocketError(Exception):
    """Base class of every exception wsfast raises on purpose."""


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455: fail the connection with close code ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.reason!r})"


class PayloadTooBig(ProtocolError):
    """A frame or message is over the configured limit (close code 1009)."""

    def __init__(self, reason: str) -> None:
        super().__init__(1009, reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class InvalidUTF8(ProtocolError):
    """A text message or close reason is not valid UTF-8 (close code 1007)."""

    def __init__(self, reason: str) -> None:
        super().__init__(1007, reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class HandshakeError(WebSocketError):
    """The opening handshake failed: answer with HTTP ``status`` (server side),
    or the server's answer was not a valid upgrade (client side)."""

    def __init__(self, status: int, reason: str, headers: Iterable[Tuple[str, str]] = ()) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


class InvalidRedirect(HandshakeError):
    """The client would not follow the server's redirect (``status``): too
    many, no ``Location``, not a ws:// or wss:// target, or from wss:// to
    ws:// (which would drop TLS)."""


class ProxyError(WebSocketError):
    """The proxy refused to open the tunnel: ``status`` is its HTTP status
    (an HTTP proxy's answer to ``CONNECT``, e.g. 407 or 403), None for a
    SOCKS refusal or an invalid answer."""

    def __init__(self, status: Optional[int], reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed; ``code`` and ``reason`` tell why
    (1006 when TCP closed without a closing handshake)."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        if self.reason:
            return f"connection closed: {self.code} {self.reason}"
        return f"connection closed: {self.code}"


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally (1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or without a closing handshake."""
