"""The frame parser, differential: the Cython ``wsfast._frame`` and the
Python twin ``wsfast._frame_py`` get the same calls and must give the same
results and the same errors (type, close code, reason), call by call.

The input is a little program: each step picks one call (``feed``,
``feed_messages``, ``window``/``commit``, ``partial``, a change of
``max_frame_size``, ``max_rsv1_frame_size`` or ``allow_rsv1`` mid-stream, a misused ``commit``) and
the bytes it takes. Documented outcomes: frames, ``ProtocolError`` (and its
subclasses) from parsing, ``ValueError`` from a misused ``commit``.

    python fuzz/frame_differential.py [libFuzzer flags] [corpus dirs]
"""

from _common import Reader, CY, PY, Disagreement, agree, described, main

from wsfast.exceptions import ProtocolError

SIZES = [0, 1, 2, 125, 126, 127, 65535, 65536, 16 * 2**20]
RSV1_SIZES = [None, None, 0, 126, 200, 65536]


def item(f):
    if type(f) is bytes or type(f) is str:  # feed_messages: a message
        return (type(f).__name__, f)
    return (f.opcode, f.fin, f.rsv1, bytes(f.payload))


def call(fn, *args):
    try:
        result = fn(*args)
    except (ProtocolError, ValueError) as exc:
        return described(exc)
    if type(result) is list:
        return [item(f) for f in result]
    return result


def test_one_input(data):
    if CY is None:
        raise RuntimeError("the Cython extension is not built: no differential")
    r = Reader(data)
    kw = dict(
        mask_required=r.bool(),
        allow_rsv1=r.bool(),
        max_frame_size=r.pick(SIZES),
    )
    rsv1_size = r.pick(RSV1_SIZES)
    if rsv1_size is not None:  # only when set: the parsers of older trees lack it
        kw["max_rsv1_frame_size"] = rsv1_size
    twins = (PY.FrameParser(**kw), CY.FrameParser(**kw))
    step = 0
    while not r.exhausted and step < 64:
        step += 1
        op = r.int(0, 9)
        if op <= 2:  # feed a chunk (the most common step)
            chunk = r.blob(200)
            got = [call(p.feed, chunk) for p in twins]
        elif op == 3:
            chunk = r.blob(200)
            got = [call(p.feed_messages, chunk) for p in twins]
        elif op == 4:  # a socket read into window(), the rest through feed()
            minimum = r.int(0, 300)
            chunk = r.blob(300)
            wins = [p.window(minimum) for p in twins]
            agree("window() given", [w is None for w in wins][0], [w is None for w in wins][1],
                  f"step {step}")
            if wins[0] is None:
                got = [call(p.feed, chunk) for p in twins]
            else:
                n = min(len(wins[0]), len(wins[1]), len(chunk))
                got = []
                for p, w in zip(twins, wins):
                    w[:n] = chunk[:n]
                    got.append((call(p.commit, n), call(p.feed, chunk[n:])))
        elif op == 5:
            start = r.int(0, 300)
            got = [(p.partial(start), p.partial(), p.partial_opcode, p.buffered) for p in twins]
        elif op == 6:  # as Connection does between fragments
            size = r.pick(SIZES)
            for p in twins:
                p.max_frame_size = size
            continue
        elif op == 7:  # allow_rsv1 or max_rsv1_frame_size
            if r.bool():
                flag = r.bool()
                for p in twins:
                    p.allow_rsv1 = flag
            else:
                size = r.pick(RSV1_SIZES)
                for p in twins:
                    p.max_rsv1_frame_size = size
            continue
        elif op == 8:  # misuse: commit without a window, or outside it
            n = r.int(-2, 2)
            got = [call(p.commit, n) for p in twins]
        else:
            got = [call(p.feed, b"") for p in twins]
        agree("outcome", got[0], got[1], f"step {step}, op {op}")
    tail = r.rest()
    got = [call(p.feed, tail) for p in twins]
    agree("outcome of the tail", got[0], got[1])
    err = [None if p.error is None else described(p.error) for p in twins]
    agree("stored error", err[0], err[1])
    for p in twins:
        if p.error is not None and not isinstance(p.error, ProtocolError):
            raise Disagreement(f"stored error is not a ProtocolError: {p.error!r}")


if __name__ == "__main__":
    main(test_one_input)
