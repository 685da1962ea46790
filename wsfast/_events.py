"""The events and close records of :mod:`wsfast.connection` (RFC 6455 §5.5,
§7.4), apart from the :class:`~wsfast.connection.Connection` source so that
both of its builds (the pure-Python ``wsfast._connection_py`` and the compiled
``wsfast._connection``) create the same classes: an I/O adapter compares
event types with ``is``. Import them from :mod:`wsfast.connection`."""

from enum import Enum
from typing import Tuple, Type, TypeVar, Union

from .exceptions import InvalidUTF8, ProtocolError

_C = TypeVar("_C", bound="Close")

__all__ = ["Side", "State", "Ping", "Pong", "Close", "Fragment"]


class Side(Enum):
    """Which end of the connection this is (decides masking, RFC 6455 §5.3)."""

    SERVER = "server"
    CLIENT = "client"


class State(Enum):
    """Connection states; CONNECTING lives in the handshake layer."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# -- events -------------------------------------------------------------------


class Ping:
    """A ping arrived (the pong is queued already). ``data``: its payload."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.data == other.data

    __hash__ = None  # type: ignore[assignment]  # unhashable: compared by value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class Pong(Ping):
    """A pong arrived (solicited or not). ``data``: its payload."""

    __slots__ = ()


class Fragment:
    """A piece of a message delivered as it arrives (``Connection.streaming``,
    ``Connection.stream_next()``): ``data`` is a ``str`` for a text message
    (the pieces decoded in turn: a character is never split), ``bytes`` for
    a binary one; ``fin`` is True on the last piece."""

    __slots__ = ("data", "fin")

    def __init__(self, data: Union[str, bytes], fin: bool = True) -> None:
        self.data = data
        self.fin = fin

    def __eq__(self, other: object) -> bool:
        if type(other) is not Fragment:
            return NotImplemented
        return self.data == other.data and self.fin == other.fin

    __hash__ = None  # type: ignore[assignment]  # unhashable: compared by value

    def __repr__(self) -> str:
        return f"Fragment({self.data!r}, fin={self.fin})"


# Close codes a close frame may carry (RFC 6455 §7.4.1, §7.4.2).
# 1004, 1005, 1006 and 1015 are reserved and never on the wire; 1016-2999 are
# unassigned and reserved for future RFCs. Decision on 1012-1014: accepted.
# They are registered in the IANA "WebSocket Close Code Number Registry"
# (Service Restart, Try Again Later, Bad Gateway), docs/DESIGN.md lists them
# as the exception to "1012-2999 invalid" (CONFORMANCE.md's one-line summary
# predates that), browsers and websockets/wsproto accept them, and the Autobahn
# testsuite's current case 7.9.x (invalid codes 0, 999, 1004, 1005, 1006, 1016,
# 1100, 2000, 2999) no longer tests them; older suites listed them as invalid.
_VALID_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


def _is_valid_code(code: int) -> bool:
    return code in _VALID_CODES or 3000 <= code <= 4999


def _truncate_reason(reason: str, limit: int = 123) -> bytes:
    """``reason`` as UTF-8, cut to ``limit`` bytes without splitting a
    character (a close payload is at most 125 bytes, RFC 6455 §5.5)."""
    data = reason.encode("utf-8")
    if len(data) > limit:
        # The cut can only split the last character; "ignore" drops its bytes.
        data = data[:limit].decode("utf-8", "ignore").encode("utf-8")
    return data


class Close:
    """A close frame: as an event (received), and as a record (``close_sent``,
    ``close_received``). ``code`` is 1005 (NO_STATUS_RCVD) for a close frame
    without a payload, ``reason`` the decoded reason ("" if none)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        self.code = code
        self.reason = reason

    @classmethod
    def parse(cls: Type[_C], payload: bytes) -> _C:
        """Decode a close frame's payload (RFC 6455 §5.5.1).

        Raises ``ProtocolError(1002)`` for a 1-byte payload or a code that may
        not be on the wire, ``InvalidUTF8`` (1007) for a reason that is not
        UTF-8.
        """
        n = len(payload)
        if n == 0:
            return cls(1005, "")
        if n == 1:
            raise ProtocolError(1002, "close frame payload of 1 byte")
        code = (payload[0] << 8) | payload[1]
        if not _is_valid_code(code):  # RFC 6455 §7.4
            raise ProtocolError(1002, f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")  # RFC 6455 §5.5.1, §8.1
        except UnicodeDecodeError as exc:
            raise InvalidUTF8(f"invalid UTF-8 in close reason at byte {exc.start}") from None
        return cls(code, reason)

    def serialize(self) -> bytes:
        """The close frame's payload: code and reason, the reason truncated to
        123 bytes at a character boundary; ``b""`` for code 1005 (a close
        without a status). Raises ``ValueError`` for a code that may not be
        sent (1004, 1006, 1015, unassigned ones)."""
        code = self.code
        if code == 1005:
            if self.reason:
                raise ValueError("a close without a status code (1005) cannot carry a reason")
            return b""
        if not _is_valid_code(code):
            raise ValueError(f"close code {code} may not be sent (RFC 6455 §7.4)")
        return code.to_bytes(2, "big") + _truncate_reason(self.reason)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Close:
            return NotImplemented
        return self.code == other.code and self.reason == other.reason

    __hash__ = None  # type: ignore[assignment]  # unhashable: compared by value

    def __repr__(self) -> str:
        return f"Close({self.code}, {self.reason!r})"


def _close_to_send(code: int, reason: str) -> Tuple["Close", bytes]:
    """The payload of a close frame to send, and its record as sent (the
    reason as truncated to fit, RFC 6455 §5.5). ValueError for a code that
    may not be sent."""
    close = Close(code, reason)
    payload = close.serialize()
    if len(payload) > 2:
        close.reason = payload[2:].decode("utf-8")
    return close, payload
