"""``Connection`` (wsfast/connection.py), server and client side, with and
without permessage-deflate (wsfast/deflate.py), differential: one Connection
on the Cython codec (the compiled build of Connection, wsfast._connection)
and one on the Python twin (the pure-Python build, wsfast/_connection_py.py)
get the same calls and must return the same events, bytes, states and errors.

The input is a little program. Its steps feed raw bytes (``receive_data``,
or ``read_window``/``receive_window`` as the asyncio adapter reads), feed
what a well-behaved peer ``Connection`` sends (single-frame and fragmented
messages, compressed or not, split anywhere), send from the local side
(``send_*``, ``send_fragment``, ``fail``), switch receiving to ``Fragment``
events (``streaming``, ``stream_next``), cut TCP (``receive_eof``) or take the queued replies.

Documented outcomes: ``receive_data``/``receive_window`` never raise (a
violation fails the connection: ``failed``, a close frame queued); ``send_*``
raise ``ConnectionClosed`` once closed and ``ValueError`` for a close code or
control payload that may not be sent. Oracle: while the conversation is
clean (only the peer's own frames so far), every message the peer sends
within ``max_message_size`` arrives whole.

    python fuzz/connection_differential.py [libFuzzer flags] [corpus dirs]
"""

from _common import Reader, CY, PY, Disagreement, agree, described, main

from wsfast import connection as _connection
from wsfast.connection import Close, Connection, Ping, Pong, Side, State, get_connection_class

Fragment = getattr(_connection, "Fragment", None)  # trees before streaming receive lack it
from wsfast.deflate import PerMessageDeflate
from wsfast.exceptions import ConnectionClosed

SIZES = [0, 1, 125, 126, 200, 1000, 65536, 16 * 2**20]
FRAGMENTS = [None, None, 1, 2, 3, 100]
CLOSE_CODES = [1000, 1001, 1002, 1005, 1006, 1008, 1009, 1011, 1015, 2999, 3000, 4999, 5000, 0]
POOL = bytes(range(256)) * 16  # the masking keys of both twins: equal bytes out
POOL_SIZE = len(POOL)


def events_of(events):
    out = []
    for e in events:
        t = type(e)
        if t is str or t is bytes:
            out.append((t.__name__, e))
        elif t is Ping or t is Pong:
            out.append((t.__name__, bytes(e.data)))
        elif t is Close:
            out.append(("Close", e.code, e.reason))
        elif t is Fragment:
            out.append(("Fragment", e.data, e.fin))
        else:
            raise Disagreement(f"unknown event type {t!r}: {e!r}")
    return out


def state_of(c):
    return (
        c.state.name,
        c.close_code,
        c.close_reason,
        None if c.close_sent is None else (c.close_sent.code, c.close_sent.reason),
        None if c.close_received is None else (c.close_received.code, c.close_received.reason),
        None if c.failed is None else described(c.failed),
        c.close_pending,
    )


def fix_masks(c):
    # Client frames are masked with keys from os.urandom(): give both twins
    # the same keys for this step.
    if hasattr(c, "_mask_pool"):
        c._mask_pool = POOL
        c._mask_pos = 0


def send(fn, *args):
    # ValueError: a close code or control payload that may not be sent;
    # RuntimeError: a whole message while send_fragment's is unfinished;
    # TypeError: a send_fragment piece of the other type.
    try:
        return ("ok", bytes(fn(*args)))
    except (ConnectionClosed, ValueError, RuntimeError, TypeError) as exc:
        return described(exc)


class Peer:
    """The other endpoint, well-behaved: builds the frames the twins receive."""

    def __init__(self, side, deflate):
        self.conn = Connection(side, codec=PY, extensions=[PerMessageDeflate(**deflate)] if deflate else ())
        self.ext = self.conn.extensions[0] if deflate else None
        self.mask = side is Side.CLIENT

    def frame(self, opcode, payload, fin=True, rsv1=False):
        return PY.build_frame(opcode, payload, fin=fin, rsv1=rsv1,
                              mask_key=b"\x37\xfa\x21\x3d" if self.mask else None)

    def message(self, opcode, payload, compress):
        fix_masks(self.conn)
        if opcode == 1:
            return self.conn.send_text(payload.decode("utf-8"), compress)
        return self.conn.send_binary(payload, compress)

    def fragments(self, opcode, payload, cuts, compress):
        pieces, last = [], 0
        for cut in sorted(c % (len(payload) + 1) for c in cuts):
            pieces.append(payload[last:cut])
            last = cut
        pieces.append(payload[last:])
        wire = []
        for i, piece in enumerate(pieces):
            frame = PY.Frame(opcode if i == 0 else 0, piece, fin=i == len(pieces) - 1)
            if self.ext is not None:
                frame = self.ext.encode(frame, compress)
            wire.append(self.frame(frame.opcode, frame.payload, frame.fin, frame.rsv1))
        return wire




def test_one_input(data):
    if CY is None:
        raise RuntimeError("the Cython extension is not built: no differential")
    r = Reader(data)
    side = Side.SERVER if r.bool() else Side.CLIENT
    max_size = r.pick(SIZES)
    deflate = None
    if r.bool():
        local_bits, remote_bits = r.int(8, 15), r.int(9, 15)
        local_reset, remote_reset = r.bool(), r.bool()
        deflate = dict(local_max_window_bits=local_bits, remote_max_window_bits=remote_bits,
                       local_no_context_takeover=local_reset,
                       remote_no_context_takeover=remote_reset,
                       threshold=r.pick([0, 10, 128]))
        peer_deflate = dict(local_max_window_bits=remote_bits, remote_max_window_bits=max(local_bits, 9),
                            local_no_context_takeover=remote_reset,
                            remote_no_context_takeover=local_reset,
                            threshold=r.pick([0, 10, 128]))
    limits = {}
    fragments = r.pick(FRAGMENTS)
    if fragments is not None:
        limits["max_fragments"] = fragments
    twins = [
        get_connection_class(impl)(side, max_message_size=max_size, codec=impl,
                                   extensions=[PerMessageDeflate(**deflate)] if deflate else (), **limits)
        for impl in (PY, CY)
    ]
    max_fragments = getattr(twins[0], "max_fragments", 1 << 62)
    peer = Peer(Side.CLIENT if side is Side.SERVER else Side.SERVER, peer_deflate if deflate else None)
    clean = True  # only the peer's own, valid frames so far
    streamed = False  # Fragment events asked for: messages arrive in pieces
    pieces = []  # what send_fragment sent of the message in progress

    def receive(chunks, expect=None):
        got = []
        for c in twins:
            fix_masks(c)
            events = []
            for chunk in chunks:
                events += events_of(c.receive_data(chunk))
            got.append((events, bytes(c.data_to_send()), state_of(c)))
        agree("receive_data", got[0], got[1], f"{len(chunks)} chunk(s)")
        if expect is not None and got[0][0][-1:] != [expect]:
            raise Disagreement(f"peer message lost: expected {expect!r}, got {got[0]!r}")

    step = 0
    while not r.exhausted and step < 48:
        step += 1
        op = r.int(0, 13)
        if op <= 1:  # raw bytes, as a hostile peer sends them
            clean = False
            receive([r.blob(300)])
        elif op == 2:  # raw bytes through read_window/receive_window
            clean = False
            chunk = r.blob(300)
            minimum = r.int(0, 64)
            got = []
            for c in twins:
                fix_masks(c)
                win = c.read_window(minimum)
                if win is None:
                    events = events_of(c.receive_data(chunk))
                    got.append((None, events, bytes(c.data_to_send()), state_of(c)))
                    continue
                n = min(len(win), len(chunk))
                win[:n] = chunk[:n]
                events = events_of(c.receive_window(n)) + events_of(c.receive_data(chunk[n:]))
                got.append((n, events, bytes(c.data_to_send()), state_of(c)))
            agree("read_window", got[0], got[1])
        elif op <= 5:  # a message from the peer, whole or fragmented, split anywhere
            opcode = 1 if r.bool() else 2
            payload = r.blob(300)
            repeat = r.pick([1, 1, 1, 2, 100, 1000])
            payload *= repeat  # long messages, cheaply: 300 KB at most
            if opcode == 1:
                payload = payload.decode("utf-8", "replace").encode("utf-8")
            compress = r.bool()
            if op == 3:
                wire = [peer.message(opcode, payload, compress)]
            else:
                cuts = [r.int(0, 1 << 20) for _ in range(r.int(0, 5))]
                wire = peer.fragments(opcode, payload, cuts, compress)
            stream = b"".join(wire)
            cuts = sorted({r.int(0, len(stream)) for _ in range(r.int(0, 4))})
            chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
            intact = (clean and not streamed and twins[0].state is State.OPEN
                      and len(payload) <= max_size and len(wire) <= max_fragments)
            expect = None
            if intact:
                expect = (("str", payload.decode("utf-8")) if opcode == 1 else ("bytes", payload))
            receive(chunks, expect)
        elif op == 6:  # a control frame from the peer
            opcode = r.pick([8, 9, 10])
            payload = r.blob(125)
            if opcode == 8 and r.bool():
                payload = r.pick(CLOSE_CODES).to_bytes(2, "big") + r.text(20).encode("utf-8")[:123]
            receive([peer.frame(opcode, payload)])
        elif op <= 8:  # the local application sends
            what = r.int(0, 5)
            got = []
            text = r.text(300)
            code = r.pick(CLOSE_CODES)
            compress = r.bool()
            for c in twins:
                fix_masks(c)
                if what == 0:
                    res = send(c.send_text, text, compress)
                elif what == 1:
                    res = send(c.send_binary, text.encode("utf-8"), compress)
                elif what == 2:
                    res = send(c.send_ping, text.encode("utf-8"))
                elif what == 3:
                    res = send(c.send_pong, text.encode("utf-8"))
                elif what == 4:
                    res = send(c.send_close, code, text)
                else:
                    res = send(c.fail, code if code > 1000 else 1002, text[:60])
                got.append((res, state_of(c)))
            agree("send", got[0], got[1], f"send op {what}")
            if what in (0, 1) and got[0][0][0] == "ok" and peer.conn.state is State.OPEN and clean:
                # The peer must read what we sent.
                events = events_of(peer.conn.receive_data(got[0][0][1]))
                if peer.conn.failed is not None:
                    raise Disagreement(f"peer failed on our frame: {peer.conn.failed!r}")
                sent = ("str", text) if what == 0 else ("bytes", text.encode("utf-8"))
                if events[-1:] != [sent]:
                    raise Disagreement(f"peer got {events!r} for {sent!r}")
                peer.conn.data_to_send()
        elif op == 12 and hasattr(twins[0], "stream_next"):  # receive in Fragment events
            streamed = True
            how = r.int(0, 2)
            for c in twins:
                if how == 2:
                    c.stream_next()
                else:
                    c.streaming = bool(how)
            agree("streaming", state_of(twins[0]), state_of(twins[1]))
        elif op == 13 and hasattr(twins[0], "send_fragment"):  # the local side sends in pieces
            text = r.bool()
            piece = r.text(200)
            fin = r.bool()
            compress = r.bool()
            data = piece if text else piece.encode("utf-8")
            got = []
            for c in twins:
                fix_masks(c)
                got.append((send(c.send_fragment, data, fin, compress), state_of(c)))
            agree("send_fragment", got[0], got[1])
            result = got[0][0]
            if result[0] == "ok":  # (an error leaves the message as it was)
                if peer.conn.state is State.OPEN and clean:
                    events = events_of(peer.conn.receive_data(result[1]))
                    peer.conn.data_to_send()
                    if peer.conn.failed is not None:
                        raise Disagreement(f"peer failed on our fragment: {peer.conn.failed!r}")
                    pieces.append(data)
                    if fin:
                        whole = ("str", "".join(pieces)) if text else ("bytes", b"".join(pieces))
                        if events[-1:] != [whole]:
                            raise Disagreement(f"peer got {events!r} for the pieces {whole!r}")
                if fin:
                    pieces = []
        elif op == 9:
            clean = False
            for c in twins:
                c.receive_eof()
            agree("receive_eof", state_of(twins[0]), state_of(twins[1]))
        elif op == 10:
            hold = r.bool()
            got = [(bytes(c.data_to_send(hold)), state_of(c)) for c in twins]
            agree("data_to_send", got[0], got[1])
        else:
            receive([b""])
    tail = r.rest()
    if tail:
        receive([tail])


if __name__ == "__main__":
    main(test_one_input)
