"""wsfast: a fast, conformant WebSocket library for asyncio.

``wsfast.IMPLEMENTATION`` says which frame codec is in use: ``"cython"`` (the
compiled extension) or ``"python"`` (the pure-Python twin).
"""

from .codec import IMPLEMENTATION
from .enums import CloseCode, Opcode
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidRedirect,
    ProxyError,
    InvalidUTF8,
    PayloadTooBig,
    ProtocolError,
    WebSocketError,
)

__version__ = "0.1.0"

from .client import ClientConnection, connect  # noqa: E402 (needs __version__)
from .broadcast import BroadcastResult, broadcast  # noqa: E402  (the function shadows the module)
from .web import (  # noqa: E402
    Application,
    HTTPError,
    RedirectHandler,
    RequestHandler,
    Server,
    StaticFileHandler,
    WebSocketClosedError,
    WebSocketHandler,
    run,
)

__all__ = [
    "IMPLEMENTATION",
    "CloseCode",
    "Opcode",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "InvalidRedirect",
    "ProxyError",
    "InvalidUTF8",
    "PayloadTooBig",
    "ProtocolError",
    "WebSocketError",
    "Application",
    "HTTPError",
    "RedirectHandler",
    "RequestHandler",
    "Server",
    "StaticFileHandler",
    "WebSocketClosedError",
    "WebSocketHandler",
    "run",
    "connect",
    "ClientConnection",
    "broadcast",
    "BroadcastResult",
]
