"""Types of the compiled frame codec ``wsfast._frame`` (``_frame.pyx``).

The same names and signatures as its pure-Python twin ``wsfast._frame_py``;
tests/test_typing.py checks that the two agree.
"""

from typing import Optional, Tuple, Union

from typing_extensions import Buffer, Literal, final

from .exceptions import ProtocolError

__all__ = [
    "OP_CONT",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "Frame",
    "FrameParser",
    "Utf8Validator",
    "apply_mask",
    "apply_mask_inplace",
    "build_frame",
    "validate_utf8",
]

OP_CONT: Literal[0]
OP_TEXT: Literal[1]
OP_BINARY: Literal[2]
OP_CLOSE: Literal[8]
OP_PING: Literal[9]
OP_PONG: Literal[10]
DEFAULT_MAX_FRAME_SIZE: int

def apply_mask(data: Buffer, mask: Buffer) -> bytes:
    """``data`` XOR the 4-byte ``mask`` repeated: a new bytes object."""

def apply_mask_inplace(buf: Buffer, mask: Buffer) -> None:
    """XOR the writable buffer ``buf`` with the 4-byte ``mask``, in place."""

@final
class Frame:
    """One WebSocket frame, payload unmasked. Attributes are read-only."""

    @property
    def opcode(self) -> int: ...
    @property
    def fin(self) -> bool: ...
    @property
    def rsv1(self) -> bool: ...
    @property
    def payload(self) -> bytes: ...
    def __init__(self, opcode: int, payload: Buffer, fin: bool = True, rsv1: bool = False) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...

def build_frame(
    opcode: int, payload: Union[Buffer, str], *, fin: bool = True, rsv1: bool = False, mask_key: Optional[Buffer] = None
) -> bytes:
    """The bytes of one frame (a ``str`` payload as UTF-8); masked with
    ``mask_key`` (4 bytes) if given."""

@final
class FrameParser:
    """Incremental frame parser: ``feed()`` bytes in any chunking, get the
    completed frames back."""

    @property
    def mask_required(self) -> bool: ...
    allow_rsv1: bool
    @property
    def error(self) -> Optional[ProtocolError]: ...
    max_frame_size: int
    max_rsv1_frame_size: Optional[int]
    reuse_buffer: bool
    def __init__(
        self,
        *,
        mask_required: bool,
        max_frame_size: int = ...,
        allow_rsv1: bool = False,
        max_rsv1_frame_size: Optional[int] = None,
        reuse_buffer: bool = False,
    ) -> None: ...
    def feed(self, data: Buffer) -> list[Frame]:
        """The frames ``data`` completed; a violation raises ``ProtocolError``."""
    def feed_messages(self, data: Buffer) -> list[Union[Frame, bytes, str]]:
        """Like :meth:`feed`, with complete unfragmented data frames as
        their message (``bytes`` or ``str``)."""
    def window(self, minimum: int = 1) -> Optional[memoryview]:
        """Where the rest of the unfinished frame's payload goes (or None)."""
    def commit(self, nbytes: int) -> list[Frame]:
        """Take ``nbytes`` written at the start of :meth:`window`."""
    @property
    def buffered(self) -> int: ...
    @property
    def partial_opcode(self) -> int: ...
    def partial(self, start: int = 0) -> Optional[Tuple[int, bytes]]:
        """``(opcode, payload so far from start)`` of the unfinished frame."""

@final
class Utf8Validator:
    """Incremental UTF-8 validation of one message, piece by piece."""

    def __init__(self) -> None: ...
    def reset(self) -> None: ...
    def feed(self, data: Buffer, final: bool = False) -> None:
        """Raise ``InvalidUTF8`` as soon as the message so far cannot be UTF-8."""

def validate_utf8(data: Buffer) -> bool: ...
def _simd_level() -> int: ...
def _set_simd_level(level: int) -> int: ...
