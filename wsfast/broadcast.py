"""Fan-out: one message to many server-side WebSocket connections.

::

    result = wsfast.broadcast(room, "hello")          # room: WebSocketHandler objects
    result = wsfast.broadcast(room, payload, slow="close")
    result.sent, result.skipped, result.closed, result.queued

Theory of operation: a server's frames are not masked (RFC 6455 §5.1), so
the frame for a message is the same bytes on every connection. It is built
once; then, for each open connection, ``Connection.send_prepared()`` checks
that a data frame may still be sent (the state rules stay in the sans-IO
layer) and the very same bytes object goes to the transport: no copy, no
per-connection encoding. A connection that negotiated permessage-deflate gets
the uncompressed frame (RSV1 clear is always allowed, RFC 7692 §6), so its
compression state is untouched and later compressed messages still decode.

A connection whose transport is paused for writing (its write buffer is
above ``write_buffer_high``: the client reads slower than we send) is a
*slow consumer*; ``slow`` says what to do with it:

* ``"skip"`` (default): do not send; counted in ``skipped``. It gets the
  next broadcast once its buffer has drained below ``write_buffer_low``.
* ``"close"``: start the closing handshake with 1008 "slow consumer"
  (the close timeout then drops it if it never reads); counted in ``closed``
  (and in the server's ``stats["slow_consumers"]``).
* ``"queue"``: write anyway, counted in ``queued``; up to the connection's
  hard cap (``max_write_buffer``, see :class:`~wsfast.protocol.Options`):
  a connection holding more than that unsent is closed as with ``"close"``
  and counted in ``closed``, as any write past the cap does.

Connections that are not open (not yet upgraded, closing, closed) are left
out and counted nowhere, so ``sent + skipped + closed + queued`` can be less
than the number given. A handler's own ``write_message`` override is not
called. Called from a handler's ``on_message``, the frame to that handler's
own connection keeps its place after the replies already written in the
same read.

Writes are corked: a frame up to 16 KiB joins a per-connection batch that
is written at the end of the event loop's turn (or with the connection's
next read, or after 32 entries), so several broadcasts in one turn cost one
syscall per connection instead of one per message. Whatever else is sent
meanwhile joins the same batch: the order on the wire is the call order.
The slow-consumer check sees the state of the last write, so within one
turn a connection may take up to 32 frames past its high-water mark.
"""

import json
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, NamedTuple, Optional, Union

from . import codec as _codec
from .exceptions import WebSocketError
from .connection import Connection as _Connection
from .protocol import _WS, WebSocketProtocol

if TYPE_CHECKING:
    from .web import WebSocketHandler

__all__ = ["BroadcastResult", "broadcast", "encode"]


class BroadcastResult(NamedTuple):
    """What :func:`broadcast` did: ``sent`` (written to
    connections below their high-water mark), ``skipped`` and ``closed`` (slow
    consumers, by policy), ``queued`` (slow consumers written to anyway)."""

    sent: int
    skipped: int
    closed: int
    queued: int


#: What :func:`broadcast` and :func:`encode` take: text, bytes-like, or JSON.
Message = Union[str, bytes, bytearray, memoryview, Dict[str, Any], List[Any]]

_POLICIES = ("skip", "close", "queue")
_CORK_FRAME_MAX = 16 * 1024  # frames up to this size wait for the end of the loop turn
_CORK_ENTRIES = 32  # ... at most this many per connection (the slow-consumer check needs writes)


def encode(message: Message, binary: Optional[bool] = None) -> bytes:
    """The unmasked frame :func:`broadcast` sends for ``message``: ``str``
    as text (UTF-8 binary if ``binary``), bytes-like as binary (as text if
    ``binary is False``: it must then be UTF-8, else ``ValueError``),
    ``dict``/``list`` as JSON text."""
    build = _codec.default.build_frame
    frame: bytes
    kind = type(message)
    if kind is str:
        frame = build(2 if binary else 1, message)
    elif kind is dict or kind is list:
        frame = build(2 if binary else 1, json.dumps(message))
    elif binary is False:  # pre-encoded text, e.g. from a pub/sub backend
        if not _codec.default.validate_utf8(message):
            raise ValueError("a text message must be UTF-8 (RFC 6455 §5.6)")
        frame = build(1, message)
    else:
        frame = build(2, message)
    return frame


def broadcast(
    connections: Iterable["WebSocketHandler"],
    message: Message,
    *,
    binary: Optional[bool] = None,
    slow: str = "skip",
) -> BroadcastResult:
    """Send ``message`` to every open connection in ``connections``
    (server-side ``WebSocketHandler`` objects), encoding it once.

    ``message``: ``str`` (text; ``binary=True`` sends it as UTF-8 binary),
    bytes-like (binary; ``binary=False`` sends UTF-8 bytes as text) or
    ``dict``/``list`` (JSON text). ``slow``: ``"skip"``, ``"close"`` or
    ``"queue"``, for connections whose write buffer is over the high-water
    mark (see the module docstring). Returns a :class:`BroadcastResult`.
    Never raises for a connection that is closing or closed: it is left out.
    """
    if slow not in _POLICIES:
        raise ValueError(f"slow must be one of {_POLICIES}, not {slow!r}")
    frame = encode(message, binary)
    # Small frames are corked: several broadcasts in one loop turn cost one
    # write per connection. A large frame is worth its own syscall.
    cork = len(frame) <= _CORK_FRAME_MAX
    skip = slow == "skip"
    skipped = closed = queued = 0
    others = 0  # frames that went elsewhere than into a batch this call opened
    # Corking inline (WebSocketProtocol._cork without a call per connection):
    # the connections of `shared`'s loop whose batch this call opens are
    # appended to `opened` (shared.corked) from index `start` on.
    shared = None
    opened: List[WebSocketProtocol] = []
    start = 0
    for handler in connections:
        protocol = handler.ws_connection
        if protocol is None or protocol._mode != _WS:
            continue
        conn = protocol.connection
        if protocol._write_paused:  # a slow consumer
            if skip:
                skipped += 1
                continue
            if slow == "close" or protocol._write_buffer_full():
                if protocol._close_slow_consumer():
                    closed += 1
                continue
            try:
                data = conn.send_prepared(frame)
            except WebSocketError:  # closing: left out
                continue
            queued += 1
        elif conn._can_send and not conn._out and not conn._client:
            data = frame  # what send_prepared returns then, without a call per connection
        else:
            try:
                data = conn.send_prepared(frame)
            except WebSocketError:
                continue
        batch = protocol._batch
        if batch is not None:  # inside this connection's read, or corked: keep the order
            others += 1
            if not cork:  # a large frame goes now, after the batch, not joined into it
                protocol._send_parts((data,))
                continue
            batch.append(data)
            if len(batch) >= _CORK_ENTRIES:
                protocol._write_batch()
        elif cork:  # written at the end of this loop turn (_LoopShared.flush_corked)
            if protocol._shared is shared:
                protocol._batch = [data]
                opened.append(protocol)
            elif shared is None:
                shared = protocol._shared
                opened = shared.corked
                start = len(opened)
                protocol._batch = [data]
                opened.append(protocol)
                if not shared.flush_pending:
                    shared.flush_pending = True
                    protocol._loop.call_soon(shared.flush_corked)
            else:  # another loop's connection (a broadcast across threads is the caller's bug)
                others += 1
                protocol._cork(data)
        else:
            others += 1
            protocol.transport.write(data)
    # counted here, not per connection (an int above 256 is a new object each time)
    sent = len(opened) - start + others - queued
    return BroadcastResult(sent, skipped, closed, queued)


# The protocol and Connection attributes read above; fail at import, not in
# production, if they are renamed.
assert {"_mode", "_write_paused", "_batch", "connection", "transport", "_loop", "_shared"} <= set(
    WebSocketProtocol.__slots__
)
assert all(hasattr(_Connection, name) for name in ("_can_send", "_out", "_client", "send_prepared"))
assert callable(WebSocketProtocol._write_buffer_full)
assert callable(WebSocketProtocol._close_slow_consumer)
