"""The one source of :class:`wsfast.connection.Connection` (see that module's
docstring for the theory of operation).

It runs as it is (``wsfast._connection_py``, the pure-Python twin) and is
compiled by Cython, from this very file, into ``wsfast._connection``
(setup.py): Cython's pure-Python mode, with the declarations in
``wsfast/_connection.pxd`` (``Connection`` becomes an extension type whose
attributes are C struct fields; the private helpers marked there are C
functions). So there is one source and one behaviour; ``wsfast.connection``
picks the build (as ``wsfast.codec`` picks the frame codec) and the tests run
both. Annotations here are for mypy only (setup.py compiles with
``annotation_typing=False``): C declarations go into the .pxd
(docs/DESIGN.md, "Compiled Python").
"""

import codecs
import os
import struct
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Tuple, Union

from . import codec as _codec_module
from ._events import Close, Fragment, Ping, Pong, Side, State, _close_to_send
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidUTF8,
    PayloadTooBig,
    ProtocolError,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer  # (collections.abc.Buffer from Python 3.12)

    from .handshake import Extension

__all__ = ["Connection"]

#: What :meth:`Connection.receive_data` returns, in order.
Event = Union[str, bytes, Ping, Pong, Close, Fragment]

# Attributes the I/O adapter reads on every message: in the compiled build,
# slots of the public subclass (wsfast/connection.py), not C fields
# (wsfast/_connection.pxd says why). Keep the two lists in step.
ADAPTER_SLOTS = ("state", "in_frame", "_out", "_pending_close", "_can_send")

# -- the connection -------------------------------------------------------------

_MASK_POOL_SIZE = 4096  # 1024 masking keys per os.urandom() call
_EMPTY = b""
_NO_OUT = ()  # Connection._out while nothing is queued (falsy, shared)
_HEAD_16 = struct.Struct("!BBH").pack  # a server frame's header, 16-bit length
_HEAD_64 = struct.Struct("!BBQ").pack  # ... 64-bit length (RFC 6455 §5.2)
# The default fragment limit of a message: one frame per 64 bytes of
# max_message_size (a message at the limit in 64-byte fragments passes), and
# never fewer than 1024 (docs/DESIGN.md, "Limits").
_FRAGMENT_AVERAGE = 64
_MIN_FRAGMENTS = 1024
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class Connection:
    """One open WebSocket endpoint, sans I/O (see the module docstring).

    ``side``: :class:`Side`. ``max_message_size``: the largest message (over
    all its fragments, after decompression) accepted; a bigger one fails the
    connection with 1009. ``max_fragments``: the most frames one message may
    come in (default ``max(1024, max_message_size // 64)``: a message at the
    limit in 64-byte fragments passes); frame ``max_fragments + 1`` fails
    the connection with 1009. ``codec``: a frame codec module or its name
    (default: the fastest one importable, ``wsfast.codec.get_codec()``).
    ``extensions``: negotiated extension objects, in the order they were
    negotiated (see :meth:`_decode_extensions` for what they must provide).

    Memory a peer can make a message in progress hold is bounded whatever
    the fragmentation: its fragments go into one ``bytearray`` (no object
    per fragment), a fragment bigger than the room left fails at its header,
    and a compressed (RSV1) frame may exceed the room by the extension's
    worst-case expansion only (``max_encoded_size``); about 2.2 ×
    ``max_message_size`` at worst, when the message is handed over
    (docs/DESIGN.md, "Limits on a message in progress").
    """

    # Many connections: no per-instance dict (memory per idle connection).
    __slots__ = (
        "side", "codec", "max_message_size", "extensions", "state", "close_sent",
        "close_received", "failed", "_max_frame_size", "_parser", "_build_frame", "_utf8",
        "_out", "_pending_close", "_partial_checked", "_input_closed", "_can_send",
        "_client", "_mask_pool", "_mask_pos", "_frag_opcode", "_frag_buf", "_frag_size",
        "max_fragments", "_frag_count", "_frag_wire", "_encoded_bound",
        "_fast_base", "_fast", "in_frame", "defer_pongs", "_deferred_pong",
        "_sending", "_stream", "_streaming", "_stream_decoder",
    )

    def __init__(self, side: Side, *, max_message_size: int = 16 * 2**20,
                 codec: Union[str, ModuleType, None] = None,
                 extensions: Iterable["Extension"] = (),
                 max_fragments: Optional[int] = None) -> None:
        if not isinstance(side, Side):
            raise TypeError(f"side must be a Side, not {side!r}")
        if max_fragments is None:
            max_fragments = max(_MIN_FRAGMENTS, max_message_size // _FRAGMENT_AVERAGE)
        elif type(max_fragments) is not int or max_fragments < 1:
            raise ValueError(f"max_fragments must be None or an int >= 1, not {max_fragments!r}")
        codec = _codec_module.get_codec(codec)
        self.side = side
        self.codec = codec
        self.max_message_size = max_message_size
        self.max_fragments = max_fragments
        self.extensions = list(extensions)
        self.state = State.OPEN
        self.close_sent = None  # type: Optional[Close]
        self.close_received = None  # type: Optional[Close]
        self.failed = None  # type: Optional[ProtocolError]

        # Control frames are at most 125 bytes anyway; a frame bigger than the
        # message limit fails in the parser, before its payload arrives.
        self._max_frame_size = max(max_message_size, 125)
        # A frame an RSV1 extension encoded (a compressed one) may be longer
        # than the message it carries, by the extension's worst case
        # (permessage-deflate: deflate's expansion of incompressible data).
        rsv1 = [ext for ext in self.extensions if getattr(ext, "uses_rsv1", False)]
        self._encoded_bound = getattr(rsv1[0], "max_encoded_size", None) if rsv1 else None
        self._parser = codec.FrameParser(
            mask_required=side is Side.SERVER,
            max_frame_size=self._max_frame_size,
            allow_rsv1=bool(rsv1),
            max_rsv1_frame_size=self._rsv1_limit(),
        )
        self._build_frame = codec.build_frame  # type: Callable[..., bytes]
        self._utf8 = None  # type: Any  # codec.Utf8Validator, created for the first fragmented text
        self._out = _NO_OUT  # type: Any  # queued automatic replies (bytes); a list once there is one
        # The close frame answering a received close, or failing the
        # connection, waits here until data_to_send(): the messages of the
        # same read came first, and their replies may still be sent (RFC 6455
        # §5.5.1: an endpoint "MAY delay sending a Close frame until its
        # current message is sent").
        self._pending_close = None  # type: Optional[bytes]
        # Payload bytes of the unfinished frame already checked as UTF-8.
        self._partial_checked = 0
        self._input_closed = False  # close received, failed, or EOF
        self._can_send = True  # False once a close was sent (or the connection ended)
        self._client = side is Side.CLIENT
        self._mask_pool = _EMPTY
        self._mask_pos = _MASK_POOL_SIZE  # drawn at the first masked frame

        # A fragmented message in progress: its opcode (1 or 2), or 0 if none.
        # Its payload so far goes into one bytearray (no object per
        # fragment: memory is the payload's, however it is cut up), and it
        # may come in at most max_fragments frames (docs/DESIGN.md, "Limits").
        self._frag_opcode = 0
        self._frag_buf = None  # type: Optional[bytearray]  # while a fragmented message arrives
        self._frag_size = 0
        self._frag_count = 0
        # Payload bytes of its frames as received, while it is an encoded
        # (RSV1, compressed) message; -1 for a message sent as is.
        self._frag_wire = -1
        # The inline path in receive_data handles complete text/binary frames
        # when this is True: no fragmented message in progress, no extension,
        # and the parser's frame limit is the message limit.
        self._fast_base = not self.extensions and max_message_size >= 125
        self._fast = self._fast_base
        # True when a read left a frame unfinished, until read_window finds
        # no window to give: the cheap test an I/O adapter makes first.
        self.in_frame = False
        # While True (the adapter's write buffer is full), pings are not
        # answered at once: only the latest one's payload is kept, for
        # deferred_pong() (RFC 6455 §5.5.3 lets a pong answer only the most
        # recent ping), so a peer flooding pings without reading grows nothing.
        self.defer_pongs = False
        self._deferred_pong = None  # type: Optional[bytes]
        # A fragmented message being sent (send_fragment): 1 text, 2 binary, 0 none.
        self._sending = 0
        # Receiving as Fragment events: _streaming for every message (the
        # ``streaming`` property), _stream for the current/next one.
        self._streaming = False
        self._stream = False
        self._stream_decoder = None  # type: Any  # an incremental UTF-8 decoder, streamed text

    # -- receiving -------------------------------------------------------------

    def receive_data(self, data: "Buffer") -> List[Event]:
        """Feed bytes read from the network; return the events they complete.

        Then call :meth:`data_to_send` and write what it returns (pongs, the
        close reply, or the close frame failing the connection). Once
        ``state is State.CLOSED``, input is ignored and ``[]`` returned.
        """
        if self._input_closed:
            return []
        events = None
        try:
            parser = self._parser
            if self._fast:
                # Complete single-frame messages come from the codec as their
                # str/bytes events; from its first Frame on, the rest are
                # Frames (so a last item of another type means none is).
                events = parser.feed_messages(data)
                if events:
                    last = type(events[-1])
                    if last is not bytes and last is not str and self._handle_frames(events):
                        return events  # type: ignore[no-any-return]  # a close arrived: nothing after it counts
            else:
                events = parser.feed(data)
                if events and self._handle_frames(events):
                    return events  # type: ignore[no-any-return]  # (the codec's list, now of events)
            # FrameParser stores a violation found after complete frames of
            # this read; they were processed above, now fail (RFC 6455 §7.1.7).
            if parser.error is not None:
                raise parser.error
            if parser.buffered:
                self.in_frame = True
                self._check_partial_text()
        except ProtocolError as exc:
            self._fail(exc)
        except UnicodeDecodeError as exc:  # a single-frame text message
            self._fail(InvalidUTF8(f"invalid UTF-8 at byte {exc.start}"))
        return [] if events is None else events

    def read_window(self, minimum: int = 1) -> Optional[memoryview]:
        """Where to read the next bytes when they continue an unfinished
        frame with at least ``minimum`` bytes still missing: a writable
        memoryview (the codec's ``FrameParser.window``), then call
        :meth:`receive_window`. A large payload then goes from the socket
        into the frame's storage directly, one copy less than through
        :meth:`receive_data`. None otherwise: read into a buffer of your own
        and call :meth:`receive_data`."""
        if not self._input_closed:
            window: Optional[memoryview] = self._parser.window(minimum)
            if window is not None:
                return window
        self.in_frame = False
        return None

    def receive_window(self, nbytes: int) -> List[Event]:
        """``nbytes`` were read into the buffer :meth:`read_window` returned:
        like :meth:`receive_data` with those bytes."""
        events = None
        try:
            parser = self._parser
            events = parser.commit(nbytes)
            if events and self._handle_frames(events):
                return events  # type: ignore[no-any-return]  # (the codec's list, now of events)
            if parser.buffered:
                self.in_frame = True
                self._check_partial_text()
        except ProtocolError as exc:
            self._fail(exc)
        except UnicodeDecodeError as exc:  # a text message in one frame
            self._fail(InvalidUTF8(f"invalid UTF-8 at byte {exc.start}"))
        return [] if events is None else events

    def _handle_frames(self, events: List[Any]) -> bool:
        """Replace the Frames at the end of ``events`` (from the first one on)
        by the events they complete, in place. True when a close ended the input."""
        k = 0
        for k, item in enumerate(events):
            if type(item) is not bytes and type(item) is not str:
                break
        frames = events[k:]
        del events[k:]
        append = events.append
        # A text frame checked in part as it arrived (the first one) goes
        # through _handle_frame, which checks only the rest.
        fast = self._fast and not self._partial_checked
        for frame in frames:
            if fast and frame.fin:
                op = frame.opcode
                if op == 1:  # TEXT, RFC 6455 §5.6: must be UTF-8
                    append(frame.payload.decode("utf-8"))
                    continue
                if op == 2:  # BINARY
                    append(frame.payload)
                    continue
            if self._handle_frame(frame, append):
                return True  # a close arrived: nothing after it counts
            fast = self._fast
        return False

    def _handle_frame(self, frame: Any, append: Callable[[Any], None]) -> bool:
        """Everything but a complete text/binary frame on the fast path.
        Returns True when a close frame ended the input."""
        op = frame.opcode
        if op >= 8:  # control frames, RFC 6455 §5.5; the parser checked size and FIN
            payload = frame.payload
            if op == 9:  # PING, RFC 6455 §5.5.2: answer as soon as possible
                # "unless it already received a Close frame": having *sent* one
                # does not exempt us (§5.5.1 forbids only data frames after it).
                append(Ping(payload))
                if self.defer_pongs:
                    self._deferred_pong = payload
                else:
                    self._queue(self._frame(10, payload))
                return False
            if op == 10:  # PONG, RFC 6455 §5.5.3: an unsolicited one needs no reply
                append(Pong(payload))
                return False
            # CLOSE, RFC 6455 §5.5.1
            close = Close.parse(payload)
            self._reset_fragments()
            self.close_received = close
            self._input_closed = True
            append(close)
            if self.close_sent is None:
                # Echo the code (1000 for a close without one), RFC 6455 §5.5.1.
                reply = Close(1000 if close.code == 1005 else close.code, "")
                self._pending_close = self._frame(8, reply.serialize())
                self.close_sent = reply
            else:
                self._can_send = False
            self.state = State.CLOSED  # RFC 6455 §7.1.4: the closing handshake is complete
            return True

        # Data frames: fragment sequencing, RFC 6455 §5.4.
        frag_opcode = self._frag_opcode
        if op == 0:
            if not frag_opcode:
                raise ProtocolError(1002, "continuation frame without a message in progress")
            count = self._frag_count + 1
            if count > self.max_fragments and not self._stream:
                self._reset_fragments()
                raise PayloadTooBig(f"message in more than {self.max_fragments} fragments")
        elif frag_opcode:
            raise ProtocolError(1002, "new data frame inside a fragmented message")
        else:
            count = 1
        if self._stream:
            return self._stream_frame(frame, op, frag_opcode, append)

        wire = -1
        if self.extensions:
            # An encoded message, with a bound from its extension.
            if (frame.rsv1 or self._frag_wire >= 0) and self._encoded_bound is not None:
                wire = len(frame.payload) + (self._frag_wire if op == 0 else 0)
                if wire > self._rsv1_limit(count):  # type: ignore[operator]  # (an RSV1 frame: a bound) a frame of at most 125 bytes
                    self._reset_fragments()
                    raise PayloadTooBig(
                        f"compressed message of at least {wire} bytes in {count} frames exceeds "
                        f"the limit of {self._rsv1_limit(count)} bytes"
                    )
            frame = self._decode_extensions(frame)
        payload = frame.payload
        fin = frame.fin
        size = self._frag_size + len(payload)
        if size > self.max_message_size:
            self._reset_fragments()
            if fin and not frag_opcode:
                raise PayloadTooBig(
                    f"message of {size} bytes exceeds the limit of {self.max_message_size} bytes"
                )
            raise PayloadTooBig(
                f"message of at least {size} bytes exceeds the limit of "
                f"{self.max_message_size} bytes"
            )

        checked = self._partial_checked
        if checked:  # the first part of this frame was checked as it arrived
            self._partial_checked = 0
        if op:  # the first frame of a message
            if fin:
                if op == 1 and checked:
                    self._utf8.feed(memoryview(payload)[checked:], True)
                append(payload.decode("utf-8") if op == 1 else payload)
                return False
            self._frag_opcode = op
            self._frag_buf = bytearray(payload)
            self._frag_size = size
            self._frag_count = 1
            self._frag_wire = wire
            self._fast = False
            if op == 1:  # RFC 6455 §8.1: fail fast, in the fragment with the bad byte
                if checked:
                    self._utf8.feed(memoryview(payload)[checked:])
                else:
                    self._new_utf8().feed(payload)
        else:  # a continuation frame
            if frag_opcode == 1:
                self._utf8.feed(memoryview(payload)[checked:] if checked else payload, fin)
            buf = self._frag_buf
            buf += payload
            self._frag_size = size
            self._frag_count = count
            self._frag_wire = wire
            if fin:
                self._reset_fragments()
                # Validated fragment by fragment already; decode cannot fail.
                append(buf.decode("utf-8") if frag_opcode == 1 else bytes(buf))
                return False
        # A fragment bigger than what is left fails in the parser, before its
        # payload arrives (control frames are 125 bytes at most): the room
        # left in the message, or in the encoded bound of a compressed one.
        if wire >= 0:
            left = self._rsv1_limit(count + 1) - wire  # type: ignore[operator]  # (an RSV1 message: a bound)
        else:
            left = self.max_message_size - size
        self._parser.max_frame_size = max(left, 125)
        return False

    def _stream_frame(self, frame: Any, op: int, frag_opcode: int, append: Callable[[Any], None]) -> bool:
        """A data frame of a streamed message: its payload as a
        :class:`Fragment` event now. The limits apply per frame
        (``max_message_size`` after decompression, ``max_encoded_size`` of
        it for a compressed frame); the message as a whole is not held, so
        it has none. UTF-8 fails fast as for assembled messages."""
        compressed = frame.rsv1 if op else self._frag_wire >= 0
        if self.extensions:
            frame = self._decode_extensions(frame)
        payload = frame.payload
        fin = frame.fin
        held = self._frag_buf  # a part assembled before stream_next()
        if len(payload) + self._frag_size > self.max_message_size:
            self._reset_fragments()
            raise PayloadTooBig(
                f"fragment of {len(payload)} bytes exceeds the limit of "
                f"{self.max_message_size} bytes"
            )
        checked = self._partial_checked
        if checked:
            self._partial_checked = 0
        text = (op or frag_opcode) == 1
        if text:  # RFC 6455 §8.1: fail fast, in the fragment with the bad byte
            utf8 = self._new_utf8() if op and not checked else self._utf8
            utf8.feed(memoryview(payload)[checked:] if checked else payload, fin)
        if held:
            held += payload
            payload = bytes(held)
        if text:
            decoder = self._stream_decoder
            if decoder is None:
                decoder = self._stream_decoder = _utf8_decoder()
            data = decoder.decode(payload, fin)  # validated above: cannot fail
        else:
            data = payload
        append(Fragment(data, fin))
        if fin:
            self._reset_fragments()
            self._stream_decoder = None
            self._stream = self._streaming
            self._fast = self._fast_base
            return False
        if op:
            self._frag_opcode = op
            self._frag_wire = 0 if compressed else -1
            self._fast = False
        self._frag_buf = None
        self._frag_size = 0
        limit = self._rsv1_limit(1) if compressed and self._encoded_bound else self.max_message_size
        self._parser.max_frame_size = max(limit, 125)  # type: ignore[type-var]  # (compressed: a bound)
        return False

    @property
    def streaming(self) -> bool:
        """False (the default): messages come whole, as ``str``/``bytes``
        events. True: every data frame comes as it arrives, as a
        :class:`Fragment` event (``data``: ``str`` for text, decoded
        piece by piece, ``bytes`` for binary; ``fin`` on the last), so a
        message of any length passes through bounded memory: each frame
        must fit ``max_message_size`` (after decompression), the message as
        a whole has no limit. Setting it takes effect from the next frame
        (a message partly assembled comes on as fragments, its first one
        carrying the part received so far)."""
        return self._streaming

    @streaming.setter
    def streaming(self, value: bool) -> None:
        value = bool(value)
        self._streaming = value
        self._fast_base = not self.extensions and self.max_message_size >= 125 and not value
        if value:
            self._stream = True
            self._fast = False
        elif not self._frag_opcode:
            self._stream = False
            self._fast = self._fast_base
        # else: the message in progress goes on as fragments; the next one not.

    @property
    def reuse_buffer(self) -> bool:
        """The codec's ``FrameParser.reuse_buffer``: reuse the storage of the
        last large payload (≥ 1 MiB) for the next one once the application
        has dropped it (the compiled codec; the twin ignores it). The I/O
        adapter turns it on for a handler with ``zero_copy = True``, which
        gets binary messages as memoryviews valid during its call."""
        reuse: bool = self._parser.reuse_buffer
        return reuse

    @reuse_buffer.setter
    def reuse_buffer(self, value: bool) -> None:
        self._parser.reuse_buffer = bool(value)

    def stream_next(self) -> None:
        """Deliver one message as :class:`Fragment` events (see
        :attr:`streaming`): the one arriving now (the part assembled so far
        comes first), or else the next one; then whole messages again.
        What a client's ``recv_streaming()`` uses."""
        self._stream = True
        self._fast = False

    def _rsv1_limit(self, frames: int = 1) -> Optional[int]:
        """The most payload bytes the ``frames`` frames of an encoded (RSV1)
        message may carry on the wire: the extension's bound for a message
        of ``max_message_size`` bytes; None without such an extension."""
        bound = self._encoded_bound
        if bound is None:
            return None
        limit: int = max(bound(self.max_message_size, frames), 125)
        return limit

    def _new_utf8(self) -> Any:
        utf8 = self._utf8
        if utf8 is None:
            utf8 = self._utf8 = self.codec.Utf8Validator()
        else:
            utf8.reset()
        return utf8

    def _check_partial_text(self) -> None:
        """RFC 6455 §8.1, fail fast: check the UTF-8 of a text frame that has
        not finished arriving, so a bad byte fails the connection in the read
        that brings it, not when the (possibly huge) frame ends."""
        if self.extensions:  # compressed payloads are checked once inflated
            return
        # Only text needs it: ask for the opcode first, since partial() copies
        # (copying a big binary frame on every read made 16 MiB echoes quadratic).
        parser = self._parser
        op = parser.partial_opcode
        if op == 1:
            if self._frag_opcode:
                return  # a sequencing error, raised when the frame completes
        elif op != 0 or self._frag_opcode != 1:
            return  # binary, control, no complete header yet
        checked = self._partial_checked
        if op == 1 and not checked:
            self._new_utf8()
        data = parser.partial(checked)[1]
        if data:
            self._utf8.feed(data)
            self._partial_checked = checked + len(data)

    def _reset_fragments(self) -> None:
        if self._frag_opcode:
            self._frag_opcode = 0
            self._frag_buf = None
            self._frag_size = 0
            self._frag_count = 0
            self._frag_wire = -1
            self._fast = self._fast_base
            self._parser.max_frame_size = self._max_frame_size

    def _decode_extensions(self, frame: Any) -> Any:
        """Pass a received data frame through the extensions, last negotiated
        first (RFC 6455 §9.1). An extension provides::

            uses_rsv1: bool                      # it defines RSV1 (permessage-deflate)
            max_encoded_size(size, frames) -> int  # optional, with uses_rsv1: the most
                                                 # payload bytes the frames of an RSV1
                                                 # message of <= size bytes may carry
            decode(frame, *, max_size) -> Frame  # a received data frame (opcode 0-2)
            encode(frame) -> Frame               # a data frame to send
            encode(frame, compress=False)        # ... that the sender asked to leave
                                                 # uncompressed (send_*(compress=False))

        Frames are ``codec.Frame`` objects; ``decode`` sees continuation frames
        too (it tracks its own message state), and must not produce more than
        ``max_size`` payload bytes (raise ``PayloadTooBig``). Control frames
        never go through extensions.
        """
        max_size = self.max_message_size - self._frag_size
        for ext in reversed(self.extensions):
            frame = ext.decode(frame, max_size=max_size)
        return frame

    def receive_eof(self) -> None:
        """The peer closed TCP. The state becomes CLOSED; without a close frame
        received first, ``close_code`` is 1006 (RFC 6455 §7.1.5)."""
        self._input_closed = True
        self._can_send = False
        self._pending_close = None
        self._partial_checked = 0
        self._reset_fragments()
        self.state = State.CLOSED

    # -- the close record --------------------------------------------------------

    @property
    def close_code(self) -> Optional[int]:
        """What the application should see as the close code: the peer's code
        (1005 when its close had none); the code we failed the connection with
        (``failed.code``); 1006 when TCP closed without a close frame; None
        while the connection is not closed."""
        if self.close_received is not None:
            return self.close_received.code
        if self.failed is not None:
            return self.failed.code
        if self.state is State.CLOSED:
            return 1006  # RFC 6455 §7.1.5: abnormal closure
        return None

    @property
    def close_reason(self) -> Optional[str]:
        """The reason going with :attr:`close_code` ("" if none; None while
        the connection is not closed)."""
        if self.close_received is not None:
            return self.close_received.reason
        if self.failed is not None:
            return self.failed.reason
        if self.state is State.CLOSED:
            return ""
        return None

    def _closed_error(self) -> ConnectionClosed:
        code = self.close_code
        reason = self.close_reason
        if code is None or reason is None:  # we sent a close, the peer has not answered yet
            sent = self.close_sent
            assert sent is not None  # (else the connection would be closed: a code)
            code, reason = sent.code, sent.reason
        cls = ConnectionClosedOK if code in (1000, 1001) else ConnectionClosedError
        return cls(code, reason)

    # -- sending -------------------------------------------------------------

    def _mask_key(self) -> bytes:
        # RFC 6455 §5.3: a fresh unpredictable key per frame; one os.urandom()
        # call per 1024 keys instead of one per frame.
        pos = self._mask_pos
        if pos >= _MASK_POOL_SIZE:
            self._mask_pool = os.urandom(_MASK_POOL_SIZE)
            pos = 0
        self._mask_pos = pos + 4
        return self._mask_pool[pos : pos + 4]

    def _frame(self, opcode: int, payload: Any) -> bytes:
        if self._client:
            return self._build_frame(opcode, payload, mask_key=self._mask_key())
        return self._build_frame(opcode, payload)

    def _send_data(self, opcode: int, payload: Any, compress: bool = True) -> bytes:
        # The slow path of send_text/send_binary: extensions.
        frame = self.codec.Frame(opcode, payload)
        if compress:
            for ext in self.extensions:
                frame = ext.encode(frame)
        else:  # only asked of extensions when used, so others need not know it
            for ext in self.extensions:
                frame = ext.encode(frame, compress=False)
        mask_key = self._mask_key() if self._client else None
        return self._build_frame(
            frame.opcode, frame.payload, fin=frame.fin, rsv1=frame.rsv1, mask_key=mask_key
        )

    def _queue(self, data: bytes) -> None:
        out = self._out
        if out:
            out.append(data)
        else:
            self._out = [data]

    def _take_out(self, data: bytes) -> bytes:
        out = self._out
        if out:
            out.append(data)
            data = _EMPTY.join(out)
            self._out = _NO_OUT
        return data

    def send_text(self, text: str, compress: bool = True) -> bytes:
        """Return the bytes of a text message carrying ``text`` (a str).
        ``compress=False`` sends it uncompressed when permessage-deflate is
        on (no effect otherwise). Raises ``ConnectionClosed`` once a close
        was sent or the connection ended (RFC 6455 §5.5.1)."""
        if not self._can_send:
            raise self._send_refused()
        if self.extensions:
            data = self._send_data(1, text.encode("utf-8"), compress)
        elif self._client:
            data = self._build_frame(1, text, mask_key=self._mask_key())
        else:
            data = self._build_frame(1, text)
        if self._out:
            return self._take_out(data)
        return data

    def send_binary(self, data: "Buffer", compress: bool = True) -> bytes:
        """Return the bytes of a binary message carrying ``data`` (bytes-like).
        ``compress=False``: as for :meth:`send_text`. Raises
        ``ConnectionClosed`` once a close was sent or the connection ended."""
        if not self._can_send:
            raise self._send_refused()
        if self.extensions:
            data = self._send_data(2, data, compress)
        elif self._client:
            data = self._build_frame(2, data, mask_key=self._mask_key())
        else:
            data = self._build_frame(2, data)
        if self._out:
            return self._take_out(data)
        return data

    def send_prepared(self, data: bytes) -> bytes:
        """Return ``data``, a complete frame built beforehand (the same bytes
        for many connections: :func:`wsfast.broadcast`), after checking that
        a data frame may be sent now; preceded by any queued reply, as for
        :meth:`send_text`. Server side only (server frames are not masked,
        RFC 6455 §5.1: one frame fits every connection); an unmasked frame
        with RSV1 clear is valid with permessage-deflate too (RFC 7692 §6).
        Raises ``ConnectionClosed`` once a close was sent or the connection
        ended, ``ValueError`` on a client connection."""
        if not self._can_send:
            raise self._send_refused()
        if self._client:
            raise ValueError("a client must mask each frame: send_prepared is for servers")
        if self._out:
            return self._take_out(data)
        return data

    def send_binary_parts(self, data: "Buffer") -> Tuple[bytes, bytes]:
        """Return a binary message carrying ``data`` (``bytes``) as two parts
        to write in this order, ``(head, data)``: ``head`` holds any queued
        reply and the frame header, ``data`` is the payload itself, not
        copied (write both with ``writelines``). For large payloads on a
        server without extensions (a client masks, an extension transforms
        the payload: use :meth:`send_binary` there, which raises
        ``ValueError`` here). Raises ``ConnectionClosed`` as send_binary does."""
        if not self._can_send:
            raise self._send_refused()
        if self._client or self.extensions:
            raise ValueError("send_binary_parts: server side without extensions only")
        if type(data) is not bytes:  # bytes alone cannot change after it is queued
            raise TypeError(f"send_binary_parts takes bytes, not {type(data).__name__}")
        n = len(data)
        if n < 126:
            head = bytes((0x82, n))
        elif n < 65536:
            head = _HEAD_16(0x82, 126, n)
        else:
            head = _HEAD_64(0x82, 127, n)
        if self._out:
            head = self._take_out(head)
        return head, data

    def send_fragment(self, data: Union[str, "Buffer"], fin: bool = False, compress: bool = True) -> bytes:
        """Send a message in pieces (RFC 6455 §5.4): return the bytes of the
        frame carrying ``data``, the next piece of it.

        The first call starts the message: a ``str`` makes it text, a
        bytes-like object binary; the following calls carry the same type
        (``TypeError`` otherwise) and ``fin=True`` on the last piece ends it
        (an empty piece may end it). Until then ``send_text`` /
        ``send_binary`` raise ``RuntimeError`` (two messages cannot be
        interleaved), while ``send_ping`` / ``send_pong`` / ``send_close``
        may go between the pieces (RFC 6455 §5.4, §5.5). ``compress``, read
        at the first piece, holds for the whole message (permessage-deflate
        compresses each piece through one stream, RFC 7692 §7.2.1). Raises
        ``ConnectionClosed`` once a close was sent or the connection ended:
        the message stays unfinished, as the peer sees it.
        """
        sending = self._sending
        if sending:
            if not self._data_allowed():
                raise self._closed_error()
            if (type(data) is str) != (sending == 1):
                raise TypeError(
                    f"a {'text' if sending == 1 else 'binary'} message continues with "
                    f"{'str' if sending == 1 else 'bytes-like'} pieces, not {type(data).__name__}"
                )
            opcode = 0
        else:
            if not self._can_send:
                raise self._send_refused()
            opcode = 1 if type(data) is str else 2
            if opcode == 2:
                memoryview(data)  # type: ignore[arg-type]  # TypeError for what is not bytes-like, before any state changes
        if type(data) is str:
            data = data.encode("utf-8")
        if self.extensions:
            frame = self.codec.Frame(opcode, data, fin=fin)
            for ext in self.extensions:
                frame = ext.encode(frame) if compress or opcode == 0 else ext.encode(frame, compress=False)
            out = self._build_frame(
                frame.opcode, frame.payload, fin=frame.fin, rsv1=frame.rsv1,
                mask_key=self._mask_key() if self._client else None,
            )
        elif self._client:
            out = self._build_frame(opcode, data, fin=fin, mask_key=self._mask_key())
        else:
            out = self._build_frame(opcode, data, fin=fin)
        if fin:
            self._sending = 0
            self._can_send = self._data_allowed()
        elif not sending:
            self._sending = opcode
            self._can_send = False  # send_text/send_binary: _send_refused()
        return self._take_out(out)

    @property
    def sending_fragments(self) -> bool:
        """True while a message started with :meth:`send_fragment` has not
        ended."""
        return self._sending != 0

    def _data_allowed(self) -> bool:
        # What _can_send would be without a fragmented message being sent:
        # no close sent, or one held until data_to_send() (see _fail), and
        # the connection not ended.
        return self._pending_close is not None or (
            self.close_sent is None and self.state is not State.CLOSED
        )

    def _send_refused(self) -> Exception:
        """The exception for a data message that may not be sent now."""
        if self._sending and self._data_allowed():
            return RuntimeError(
                "a fragmented message is being sent: end it with send_fragment(..., fin=True) first"
            )
        return self._closed_error()

    def _send_control(self, opcode: int, data: Union[str, bytes]) -> bytes:
        # Control frames may follow our close frame (RFC 6455 §5.5.1 forbids
        # only data frames), not the end of the connection.
        if self.state is State.CLOSED:
            raise self._closed_error()
        if isinstance(data, str):
            data = data.encode("utf-8")
        if len(data) > 125:  # RFC 6455 §5.5
            raise ValueError("a control frame payload is at most 125 bytes")
        return self._take_out(self._frame(opcode, data))

    def send_ping(self, data: Union[str, bytes] = b"") -> bytes:
        """Return the bytes of a ping carrying ``data`` (≤ 125 bytes); the
        peer's pong arrives as a :class:`Pong` event. Allowed until the
        state is CLOSED (also after our close), then ``ConnectionClosed``."""
        return self._send_control(9, data)

    def send_pong(self, data: Union[str, bytes] = b"") -> bytes:
        """Return the bytes of an unsolicited pong (a heartbeat, RFC 6455
        §5.5.3); pings are answered automatically."""
        return self._send_control(10, data)

    def deferred_pong(self) -> bytes:
        """The pong answering the latest ping received while
        :attr:`defer_pongs` was set (with any queued reply before it), or
        ``b""`` if none is owed; write it once the write buffer has room.
        None is owed once a close was received (RFC 6455 §5.5.2)."""
        payload = self._deferred_pong
        if payload is None:
            return _EMPTY
        self._deferred_pong = None
        if self.close_received is not None or self.state is State.CLOSED:
            return _EMPTY
        return self._take_out(self._frame(10, payload))

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Start (or finish) the closing handshake: return the bytes of a close
        frame with ``code`` and ``reason`` (truncated to 123 UTF-8 bytes;
        code 1005 sends a close without a status). Returns ``b""`` if a close
        was sent already or the connection ended. Then keep calling
        ``receive_data`` until the state is CLOSED (the peer's close), and
        bound the wait (RFC 6455 §7.1.1)."""
        if self.close_sent is not None or self.state is State.CLOSED:
            return self._take_out(_EMPTY)
        close, payload = _close_to_send(code, reason)  # ValueError for a code that may not be sent
        self.close_sent = close
        self._can_send = False
        self.state = State.CLOSING
        return self._take_out(self._frame(8, payload))

    def fail(self, code: int, reason: str) -> bytes:
        """Fail the connection (RFC 6455 §7.1.7): return the bytes of a close
        frame with ``code`` (unless a close was sent already), set ``failed``,
        and go to CLOSED, ignoring further input. Close TCP once written."""
        if self.state is State.CLOSED:
            return self.data_to_send()
        self._fail(ProtocolError(code, reason))
        return self.data_to_send()

    def _fail(self, exc: ProtocolError) -> None:
        # Queue the close frame; the caller returns or flushes the queue.
        if self.close_sent is None:
            close, payload = _close_to_send(exc.code, exc.reason)
            self._pending_close = self._frame(8, payload)
            self.close_sent = close
        else:
            self._can_send = False
        self.failed = exc
        self._input_closed = True
        self._partial_checked = 0
        self._reset_fragments()
        self.state = State.CLOSED

    @property
    def close_pending(self) -> bool:
        """True while a close frame (the reply to the peer's close, or the one
        failing the connection) waits in :meth:`data_to_send`; until it is
        taken, the messages that came before it may still be answered."""
        return self._pending_close is not None

    def data_to_send(self, hold_close: bool = False) -> bytes:
        """Return the queued automatic replies (pongs, the close reply, the
        close frame failing the connection), ``b""`` if none. Write them
        right away. ``hold_close=True`` leaves a pending close frame queued
        (see :attr:`close_pending`), for an application that has not yet
        consumed the messages that arrived before it; take it, bounded in
        time, with a later call."""
        if self._pending_close is not None and not hold_close:
            self._queue(self._pending_close)
            self._pending_close = None
            self._can_send = False  # RFC 6455 §5.5.1: no data frame after a close
        out = self._out
        if not out:
            return _EMPTY
        self._out = _NO_OUT
        return _EMPTY.join(out) if len(out) > 1 else out[0]

    def __repr__(self) -> str:
        return f"<Connection {self.side.name} {self.state.name}>"
