"""Pure-Python twin of the Cython frame codec ``wsfast/_frame.pyx``.

Same names, same behaviour, same exceptions (type, close code and reason) as
the extension; used when no compiler was available at install time, or with
``WSFAST_NO_EXTENSIONS=1``. The contract both follow is in docs/DESIGN.md
("Frame codec"); ``tests/test_frame.py`` runs every test on both, and a
hypothesis test feeds them the same random frames.

No loop here runs once per payload byte: masking uses big-integer XOR (small
payloads) or ``bytes.translate`` on the four strided lanes (large payloads),
UTF-8 checks use CPython's own decoder. When numpy is importable (and
``WSFAST_NO_NUMPY`` is not set) it masks payloads from 2 KiB on instead: the
twin's large messages then cost what a C unmask costs, still without a
compiler at install time.
"""

import codecs
import os
import threading
from struct import Struct
from types import ModuleType
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union, cast

from .exceptions import InvalidUTF8, PayloadTooBig, ProtocolError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # (collections.abc.Buffer from Python 3.12)

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

OP_CONT = 0
OP_TEXT = 1
OP_BINARY = 2
OP_CLOSE = 8
OP_PING = 9
OP_PONG = 10

DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024

_U16 = Struct("!H")
_U64 = Struct("!Q")
_HDR16 = Struct("!BBH")
_HDR64 = Struct("!BBQ")
_utf8_decode = codecs.utf_8_decode


# -- masking (RFC 6455 §5.3) -------------------------------------------------

# Measured (timeit, this project's 2-vCPU CI VM, Python 3.11): big-int XOR
# wins below ~1 KiB, four strided bytes.translate passes win above (1.6 vs
# 1.8 us at 512 B, 10.3 vs 15.5 us at 8 KiB, 1.7 vs 3.4 ms at 1 MiB).
_TRANSLATE_THRESHOLD = 1024
_tables: Dict[int, bytes] = {}


def _table(key: int) -> bytes:
    table = _tables.get(key)
    if table is None:
        table = _tables[key] = bytes(b ^ key for b in range(256))
    return table


def _as_bytes_like(data: "Buffer") -> Union[bytes, bytearray, memoryview]:
    if type(data) is bytes or type(data) is bytearray:
        return data
    return memoryview(data).cast("B")  # TypeError for str, non-contiguous


def _mask_key(mask: "Buffer") -> bytes:
    mask = bytes(_as_bytes_like(mask))
    if len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    return mask


# numpy, when importable, from this size on. Measured (timeit, this VM):
# 8 KiB 3.1 vs 15 us, 100 KB 6.7 vs 107 us, 1 MiB 50 vs 2,100 us; even at 1 KiB.
_NUMPY_THRESHOLD = 2048
_SCRATCH_MAX = 4 * 2**20  # the largest result buffer kept per thread
_WINDOW_MAX = 2**20  # the per-thread buffer window() lends
_np: Optional[ModuleType] = None
_np_tried = False
_local = threading.local()


def load_numpy() -> Optional[ModuleType]:
    """Import numpy for masking unless ``WSFAST_NO_NUMPY`` is set; returns
    the module or None. Called by the first FrameParser (and by wsfast.codec
    when this twin is the default), so that a server pays the import at start
    or at its first connection, not in the middle of a message."""
    global _np, _np_tried
    if not _np_tried:
        _np_tried = True
        if os.environ.get("WSFAST_NO_NUMPY", "").strip().lower() in ("", "0", "false", "no"):
            try:
                import numpy
            except ImportError:
                pass
            else:
                _np = numpy
    return _np


def _mask_numpy(np: Any, data: Union[bytes, bytearray, memoryview], mask: bytes, n: int) -> bytes:
    # XOR 8 bytes at a time into a per-thread result buffer (a fresh large
    # buffer per call costs its page faults: ~1 ms per MiB here), then copy
    # it out as bytes.
    scratch = getattr(_local, "scratch", None)
    if scratch is None or len(scratch) < n:
        scratch = np.empty(n, dtype=np.uint8)
        if n <= _SCRATCH_MAX:
            _local.scratch = scratch
    out = scratch[:n]
    src = np.frombuffer(data, dtype=np.uint8)
    words = n & ~7
    key = mask * 2
    np.bitwise_xor(src[:words].view(np.uint64), np.frombuffer(key, dtype=np.uint64),
                   out=out[:words].view(np.uint64))
    if words < n:
        np.bitwise_xor(src[words:], np.frombuffer(key, dtype=np.uint8)[: n - words],
                       out=out[words:])
    result: bytes = out.tobytes()
    return result


def apply_mask(data: "Buffer", mask: "Buffer") -> bytes:
    """Return ``data`` XOR-ed with the 4-byte masking key ``mask``, as bytes."""
    src = _as_bytes_like(data)
    key = _mask_key(mask)
    n = len(src)
    if n >= _NUMPY_THRESHOLD:
        np = load_numpy()
        if np is not None:
            return _mask_numpy(np, src, key, n)
    if n < _TRANSLATE_THRESHOLD:
        if n == 0:
            return b""
        repeated = (key * ((n >> 2) + 1))[:n]
        return (int.from_bytes(src, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
            n, "little"
        )
    out = bytearray(src)
    for i in range(4):
        out[i::4] = out[i::4].translate(_table(key[i]))
    return bytes(out)


def apply_mask_inplace(buf: "Buffer", mask: "Buffer") -> None:
    """XOR the writable buffer ``buf`` with the 4-byte key ``mask`` in place."""
    view = memoryview(buf)
    if view.readonly:
        raise TypeError("apply_mask_inplace needs a writable buffer")
    view = view.cast("B")
    view[:] = apply_mask(view, mask)


# -- frames (RFC 6455 §5.2) --------------------------------------------------


class Frame:
    """One WebSocket frame, payload unmasked. Attributes are read-only."""

    __slots__ = ("_opcode", "_fin", "_rsv1", "_payload")

    def __init__(self, opcode: int, payload: "Buffer", fin: bool = True, rsv1: bool = False) -> None:
        self._opcode = int(opcode)
        self._payload = bytes(payload)
        self._fin = bool(fin)
        self._rsv1 = bool(rsv1)

    @property
    def opcode(self) -> int:
        return self._opcode

    @property
    def fin(self) -> bool:
        return self._fin

    @property
    def rsv1(self) -> bool:
        return self._rsv1

    @property
    def payload(self) -> bytes:
        return self._payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self._opcode == other._opcode
            and self._fin == other._fin
            and self._rsv1 == other._rsv1
            and self._payload == other._payload
        )

    __hash__ = None  # type: ignore[assignment]  # unhashable, as the extension's Frame

    def __repr__(self) -> str:
        payload = self._payload
        shown = repr(payload[:32]) + ("..." if len(payload) > 32 else "")
        return (
            f"Frame(opcode={self._opcode}, fin={self._fin}, rsv1={self._rsv1}, "
            f"payload={shown})"
        )


def _new_frame(opcode: int, fin: bool, rsv1: bool, payload: bytes) -> Frame:
    frame = Frame.__new__(Frame)
    frame._opcode = opcode
    frame._fin = fin
    frame._rsv1 = rsv1
    frame._payload = payload
    return frame


def build_frame(opcode: int, payload: Union["Buffer", str], *, fin: bool = True, rsv1: bool = False,
                mask_key: Optional["Buffer"] = None) -> bytes:
    """Return one frame, header and payload in one buffer; masked when a
    4-byte ``mask_key`` is given (client to server, RFC 6455 §5.3)."""
    data: Union[bytes, bytearray, memoryview]
    if type(payload) is str:  # (a str subclass is refused, as by the extension)
        data = payload.encode("utf-8")
    else:
        data = _as_bytes_like(cast("Buffer", payload))  # TypeError for a str subclass
    if not 0 <= opcode <= 15:
        raise ValueError(f"opcode must be in range(0, 16), not {opcode}")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(data)
    mask_bit = 0 if mask_key is None else 0x80
    if n < 126:
        header = bytes((b0, mask_bit | n))
    elif n < 65536:
        header = _HDR16.pack(b0, mask_bit | 126, n)
    else:
        header = _HDR64.pack(b0, mask_bit | 127, n)
    if mask_key is None:
        return header + data
    key = _mask_key(mask_key)
    return header + key + apply_mask(data, key)


def _release(view: memoryview) -> None:
    try:
        view.release()
    except BufferError:  # something still holds a buffer of it: a misuse
        pass


class FrameParser:
    """Incremental frame parser: ``feed()`` bytes in any chunking, get the
    completed frames back. Only an unfinished frame is copied into the
    parser's own storage, so the caller may reuse the buffer it fed.

    ``mask_required`` is True on a server (client frames must be masked) and
    False on a client (server frames must not be), RFC 6455 §5.1.
    ``max_rsv1_frame_size``: the limit for frames with RSV1 set (an
    extension's encoded frames, e.g. compressed ones, which may be longer
    than the message they carry); None: ``max_frame_size`` applies to them.
    """

    def __init__(self, *, mask_required: bool, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 allow_rsv1: bool = False, max_rsv1_frame_size: Optional[int] = None,
                 reuse_buffer: bool = False) -> None:
        self.mask_required = bool(mask_required)
        # The extension reuses a large payload's storage once it is free;
        # here it is only recorded (payloads are copied out of _buf anyway).
        self.reuse_buffer = bool(reuse_buffer)
        self.max_frame_size = max_frame_size
        self.max_rsv1_frame_size = max_rsv1_frame_size
        self.allow_rsv1 = allow_rsv1
        self.error: Optional[ProtocolError] = None
        self._buf = bytearray()
        self._win: Optional[memoryview] = None  # the view window() handed out, released by the next call
        if not _np_tried:  # import the masking accelerator with the first parser, not mid-message
            load_numpy()

    def feed(self, data: "Buffer") -> List[Frame]:
        """Parse ``data``; return the list of frames it completed.

        On a violation, the frames completed before it in this call are
        returned and the ``ProtocolError`` is raised by the next call (so
        ``feed(b"")`` flushes it); with no frame before it, it is raised now.
        """
        try:
            return self._feed(data, False)  # type: ignore[return-value]  # frames only, without convert
        except ProtocolError:
            data = b""  # the traceback keeps this frame: hold no caller buffer
            raise

    def feed_messages(self, data: "Buffer") -> List[Union[Frame, bytes, str]]:
        """Like :meth:`feed`, but until the first ``Frame`` it returns, a
        complete unfragmented frame (FIN set, RSV1 clear) comes as its
        message: a binary one as its payload (``bytes``), a text one that
        began in this call as its payload decoded (``str``; invalid UTF-8
        is a violation, ``InvalidUTF8``, raised as the others). A text frame
        that began in an earlier call stays a ``Frame`` (its caller may have
        checked part of it, see :meth:`partial`)."""
        try:
            return self._feed(data, True)
        except ProtocolError:
            data = b""  # the traceback keeps this frame: hold no caller buffer
            raise

    def window(self, minimum: int = 1) -> Optional[memoryview]:
        """Where the rest of the unfinished frame's payload goes, for a
        caller that reads the socket straight into it: a writable memoryview,
        or None while no frame payload is in progress, when fewer than
        ``minimum`` of its bytes are missing, or when the frame now breaks a
        setting (the error is stored and the next call raises it, as with
        :meth:`feed`).

        Write the next bytes of the stream at the start of the view, then
        call :meth:`commit` with their count. The view ends at the frame's
        end (or earlier) and is released by the next call on a parser of
        this thread. (Here it is a per-thread scratch buffer that
        :meth:`commit` appends to the frame: one copy, as with :meth:`feed`;
        the extension gives the frame's own storage.)
        """
        self._drop_window()
        header = self._unfinished_header()
        if header is None:
            return None
        missing = header[0] + header[1] - len(self._buf)
        if missing < minimum:
            return None
        try:
            self._feed(b"", False)  # checks the frame again with the settings of now
        except ProtocolError:
            return None
        scratch = getattr(_local, "window", None)
        if scratch is None:
            scratch = _local.window = bytearray(_WINDOW_MAX)
        else:
            _release(_local.lent)  # another parser's window: its view dies now
        win = self._win = _local.lent = memoryview(scratch)[: min(missing, _WINDOW_MAX)]
        return win

    def commit(self, nbytes: int) -> List[Frame]:
        """Take the ``nbytes`` written at the start of the last
        :meth:`window`; return the frames they completed, as :meth:`feed`
        does (here at most one)."""
        win = self._win
        if win is None:
            raise ValueError("commit() without a window")
        if not 0 <= nbytes <= len(win):
            self._drop_window()
            raise ValueError(f"commit({nbytes}) outside the window")
        self._buf += win[:nbytes]
        self._drop_window()
        return self._feed(b"", False)  # type: ignore[return-value]  # frames only, without convert

    def _drop_window(self) -> None:
        win = self._win
        if win is not None:
            self._win = None
            _release(win)

    def _feed(self, data: "Buffer", convert: bool) -> List[Union[Frame, bytes, str]]:
        if self._win is not None:
            self._drop_window()
        if self.error is not None:
            data = b""  # the traceback keeps this frame: hold no caller buffer
            raise self.error
        buf = self._buf
        src: Any  # (set to None below: the stored error's traceback keeps this frame)
        if buf:
            buf += data
            src = buf
            began = 1  # the first frame began in an earlier call
        else:
            src = _as_bytes_like(data)
            began = 0
        frames: List[Union[Frame, bytes, str]] = []
        pos = 0
        end = len(src)
        try:
            while end - pos >= 2:
                b0 = src[pos]
                b1 = src[pos + 1]
                opcode = b0 & 0x0F
                self._check_header(b0, b1, opcode)
                length = b1 & 0x7F
                hlen = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = _U16.unpack_from(src, pos + 2)[0]
                    hlen = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = _U64.unpack_from(src, pos + 2)[0]
                    if length >> 63:
                        raise ProtocolError(1002, "frame length has the most significant bit set")
                    hlen = 10
                limit = self.max_frame_size
                if b0 & 0x40 and self.max_rsv1_frame_size is not None:
                    limit = self.max_rsv1_frame_size
                if length > limit:
                    raise PayloadTooBig(f"frame of {length} bytes exceeds the limit of {limit} bytes")
                if b1 & 0x80:
                    hlen += 4
                stop = pos + hlen + length
                if stop > end:
                    break
                if src is buf:  # slice a view of the parser's own buffer, not a copy of it
                    with memoryview(buf) as view:
                        if b1 & 0x80:
                            payload = apply_mask(view[pos + hlen : stop], view[pos + hlen - 4 : pos + hlen])
                        else:
                            payload = bytes(view[pos + hlen : stop])
                elif b1 & 0x80:
                    payload = apply_mask(src[pos + hlen : stop], src[pos + hlen - 4 : pos + hlen])
                else:
                    payload = bytes(src[pos + hlen : stop])
                if convert and b0 & 0xC0 == 0x80 and (opcode == 2 or opcode == 1 and pos >= began):
                    if opcode == 2:
                        frames.append(payload)
                    else:
                        try:
                            frames.append(payload.decode("utf-8"))
                        except UnicodeDecodeError as exc:
                            raise InvalidUTF8(f"invalid UTF-8 at byte {exc.start}") from None
                else:
                    convert = False
                    frames.append(_new_frame(opcode, bool(b0 & 0x80), bool(b0 & 0x40), payload))
                pos = stop
        except ProtocolError as exc:
            self.error = exc
            self._buf = bytearray()
            if frames:
                return frames
            if type(src) is memoryview:
                src.release()
            data = b""  # the traceback keeps this frame: hold no caller buffer
            src = None
            raise
        else:
            if src is buf:
                del buf[:pos]
            elif pos < end:
                self._buf = bytearray(src[pos:])
            return frames
        finally:
            # The stored error's traceback keeps this frame alive: release the
            # view made here, so the caller's buffer is not held (it may be
            # resized or reused, as the contract promises).
            if type(src) is memoryview:
                src.release()

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished frame (0 when none): a cheap test of
        whether :meth:`partial` can have anything to say."""
        return len(self._buf)

    @property
    def partial_opcode(self) -> int:
        """The opcode of the unfinished frame once its header is complete,
        else -1: lets a caller skip :meth:`partial` (a copy) for frames it
        does not check, such as binary ones."""
        return -1 if self._unfinished_header() is None else self._buf[0] & 0x0F

    def partial(self, start: int = 0) -> Optional[Tuple[int, bytes]]:
        """The unfinished frame, for checks that cannot wait for its end
        (RFC 6455 §8.1: fail fast on invalid UTF-8 inside one long frame).

        Returns None while no frame header is complete, else ``(opcode, data)``
        where ``data`` is the unmasked payload received so far, from payload
        offset ``start`` on (``b""`` if nothing new).
        """
        header = self._unfinished_header()
        if header is None:
            return None
        buf = self._buf
        hlen = header[0]
        opcode = buf[0] & 0x0F
        if start >= len(buf) - hlen:
            return opcode, b""
        rest = buf[hlen + start :]
        if buf[1] & 0x80:
            key = buf[hlen - 4 : hlen]
            shift = start & 3
            return opcode, apply_mask(rest, key[shift:] + key[:shift])
        return opcode, bytes(rest)

    def _unfinished_header(self) -> Optional[Tuple[int, int]]:
        """``(header length, payload length)`` of the unfinished frame once
        its header is complete; None before that, and after an error."""
        buf = self._buf
        if self.error is not None or len(buf) < 2:
            return None
        b1 = buf[1]
        length = b1 & 0x7F
        hlen = (2 if length < 126 else 4 if length == 126 else 10) + (4 if b1 & 0x80 else 0)
        if len(buf) < hlen:
            return None
        if length == 126:
            length = _U16.unpack_from(buf, 2)[0]
        elif length == 127:
            length = _U64.unpack_from(buf, 2)[0]
        return hlen, length

    def _check_header(self, b0: int, b1: int, opcode: int) -> None:
        # The checks of docs/DESIGN.md, in that order, from the first two bytes.
        if 2 < opcode < 8 or opcode > 10:
            raise ProtocolError(1002, f"reserved opcode {opcode}")  # RFC 6455 §5.2
        if b0 & 0x30:
            raise ProtocolError(1002, "reserved bits RSV2/RSV3 must be 0")
        if b0 & 0x40:
            if not self.allow_rsv1:
                raise ProtocolError(1002, "reserved bit RSV1 set without a negotiated extension")
            if opcode >= 8:  # RFC 7692 §6.1: RSV1 only on a message's first frame
                raise ProtocolError(1002, "RSV1 set on a control frame")
            if opcode == OP_CONT:
                raise ProtocolError(1002, "RSV1 set on a continuation frame")
        if opcode >= 8:  # RFC 6455 §5.5
            if not b0 & 0x80:
                raise ProtocolError(1002, "fragmented control frame")
            if (b1 & 0x7F) > 125:
                raise ProtocolError(1002, "control frame payload longer than 125 bytes")
        if b1 & 0x80:
            if not self.mask_required:
                raise ProtocolError(1002, "server frame is masked")
        elif self.mask_required:
            raise ProtocolError(1002, "client frame is not masked")


# -- UTF-8 (RFC 3629; RFC 6455 §5.6, §8.1) -----------------------------------


def _tail_error(tail: bytes) -> int:
    """Index of the first bad byte in an incomplete trailing sequence (at most
    3 bytes) that CPython's incremental decoder has not judged yet, or -1.

    CPython checks the second byte of E0/F0/F4 leads early but leaves ED A0..BF
    (a surrogate) until the third byte; RFC 6455 §8.1 wants the failure at the
    byte that proves it.
    """
    if len(tail) >= 2 and tail[0] == 0xED and tail[1] >= 0xA0:
        return 1
    return -1


class Utf8Validator:
    """Incremental, fail-fast UTF-8 check: ``feed()`` raises ``InvalidUTF8``
    at the first byte that can no longer be part of valid UTF-8."""

    __slots__ = ("_pending", "_error")

    def __init__(self) -> None:
        self._pending = b""
        self._error: Optional[InvalidUTF8] = None

    def reset(self) -> None:
        """Start over, for the next message."""
        self._pending = b""
        self._error = None

    def feed(self, data: "Buffer", final: bool = False) -> None:
        """Check the next piece of a message; ``final=True`` on its last piece
        also rejects a sequence truncated at the end."""
        if self._error is not None:
            data = b""  # the traceback keeps this frame: hold no caller buffer
            raise self._error
        pending = self._pending
        src: Any = _as_bytes_like(data)  # (set to None below, as data is deleted)
        if pending:
            src = pending + bytes(src)
        offset = len(pending)
        try:
            consumed = _utf8_decode(src, "strict", False)[1]
            tail = bytes(src[consumed:])
        except UnicodeDecodeError as exc:
            at = exc.start if exc.reason == "invalid start byte" else exc.end
            self._error = InvalidUTF8(f"invalid UTF-8 at byte {at - offset}")
            if type(src) is memoryview:
                src.release()
            data = b""  # the traceback keeps this frame: hold no caller buffer
            src = None
            raise self._error from None
        finally:
            if type(src) is memoryview:  # hold no view of the caller's buffer
                src.release()
        bad = _tail_error(tail)
        if bad >= 0:
            self._error = InvalidUTF8(f"invalid UTF-8 at byte {consumed + bad - offset}")
        elif final and tail:
            self._error = InvalidUTF8("truncated UTF-8 sequence at end of message")
        else:
            self._pending = tail
            return
        data = b""  # the traceback keeps this frame: hold no caller buffer
        src = None
        raise self._error


def validate_utf8(data: "Buffer") -> bool:
    """Return True when ``data`` is entirely valid UTF-8."""
    try:
        _utf8_decode(_as_bytes_like(data), "strict", True)
    except UnicodeDecodeError:
        return False
    return True
