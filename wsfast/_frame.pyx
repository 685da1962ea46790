# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The frame codec, compiled: masking, frame building and parsing, UTF-8 checks.

Same names and behaviour as the pure-Python twin ``wsfast/_frame_py.py``; the
contract both follow is in docs/DESIGN.md ("Frame codec"). The byte loops
(masking, ASCII runs, the UTF-8 automaton) are C in ``_wsfast_simd.h``, with
SSE2 / AVX2 versions picked at import time.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from libc.string cimport memcpy

from wsfast.exceptions import InvalidUTF8, PayloadTooBig, ProtocolError

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


cdef extern from "_wsfast_simd.h" nogil:
    void wsf_init()
    void wsf_utf8_init()
    int wsf_set_level(int level)
    int wsf_level
    int wsf_max_level
    void wsf_mask(unsigned char *dst, const unsigned char *src, size_t n,
                  const unsigned char *key, size_t phase)
    size_t wsf_utf8_check(const unsigned char *p, size_t n, unsigned char *state)
    unsigned char WSF_UTF8_ACCEPT
    unsigned char WSF_UTF8_REJECT


cdef extern from "Python.h":
    # Not in Cython's declarations with a PyObject** we can use directly: grows
    # (or shrinks) a bytes object we own alone; on failure *pv becomes NULL.
    int _PyBytes_Resize(PyObject **pv, Py_ssize_t newsize) except -1
    bint PyBytes_CheckExact(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    bint PyByteArray_CheckExact(object o)
    char *PyByteArray_AS_STRING(object o)
    Py_ssize_t PyByteArray_GET_SIZE(object o)
    char *_bytes_ptr "PyBytes_AS_STRING" (PyObject *o)
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE" (PyObject *o)
    int PyBUF_WRITE


cdef extern from *:
    """
    /* A bytes object reused for another payload (FrameParser.reuse_buffer)
       must not keep the hash of its old content. */
    static void wsf_bytes_forget_hash(PyObject *o) {
        /* ob_shash is deprecated (3.11+) but still the cache to clear. */
        _Py_COMP_DIAG_PUSH
        _Py_COMP_DIAG_IGNORE_DEPR_DECLS
        ((PyBytesObject *)o)->ob_shash = -1;
        _Py_COMP_DIAG_POP
    }
    """
    void wsf_bytes_forget_hash(PyObject *o)
    Py_ssize_t Py_REFCNT(object o)


wsf_init()
wsf_utf8_init()

cdef enum:
    # Masking at least this long releases the GIL (5 µs of work and more).
    NOGIL_FROM = 262144
    # A partial frame up to this size gets its whole payload allocated at once;
    # larger ones grow geometrically as their bytes arrive, so a header alone
    # cannot make the parser reserve 16 MiB.
    PREALLOC_MAX = 1048576


# -- buffers -------------------------------------------------------------------

cdef int _get_buffer(object obj, Py_buffer *view) except -1:
    """A flat, C-contiguous byte view of ``obj`` (release with PyBuffer_Release).

    PyBUF_SIMPLE accepts bytes, bytearray, memoryview slices at any offset and
    any contiguous exporter whatever its item format. When the exporter refuses
    (e.g. a non-contiguous memoryview), fall back to what the Python twin does,
    ``memoryview(obj).cast("B")``, so both raise the same TypeError.
    """
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    except BufferError:
        PyObject_GetBuffer(memoryview(obj).cast("B"), view, PyBUF_SIMPLE)
    return 0


cdef int _read_key(object mask, unsigned char *key) except -1:
    """Copy a 4-byte masking key into ``key``; ValueError for any other length."""
    cdef Py_buffer view
    if PyBytes_CheckExact(mask):
        if PyBytes_GET_SIZE(mask) != 4:
            raise ValueError("mask must be 4 bytes")
        memcpy(key, PyBytes_AS_STRING(mask), 4)
        return 0
    _get_buffer(mask, &view)
    try:
        if view.len != 4:
            raise ValueError("mask must be 4 bytes")
        memcpy(key, view.buf, 4)
    finally:
        PyBuffer_Release(&view)
    return 0


cdef inline void _mask_into(unsigned char *dst, const unsigned char *src, Py_ssize_t n,
                            const unsigned char *key, Py_ssize_t phase) noexcept:
    if n >= NOGIL_FROM:
        with nogil:
            wsf_mask(dst, src, <size_t>n, key, <size_t>phase)
    else:
        wsf_mask(dst, src, <size_t>n, key, <size_t>phase)


# -- masking (RFC 6455 §5.3) ---------------------------------------------------

def apply_mask(data, mask):
    """Return ``data`` XOR-ed with the 4-byte masking key ``mask``, as bytes."""
    cdef Py_buffer view
    cdef unsigned char key[4]
    cdef bytes out
    if PyBytes_CheckExact(data):  # no buffer to acquire: bytes cannot change
        _read_key(mask, key)
        return _masked_copy(<const unsigned char *>PyBytes_AS_STRING(data),
                            PyBytes_GET_SIZE(data), key)
    _get_buffer(data, &view)
    try:
        _read_key(mask, key)
        out = _masked_copy(<const unsigned char *>view.buf, view.len, key)
    finally:
        PyBuffer_Release(&view)
    return out


cdef inline bytes _masked_copy(const unsigned char *src, Py_ssize_t n, const unsigned char *key):
    # Allocate the result uninitialised and XOR straight into it: one pass.
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    _mask_into(<unsigned char *>PyBytes_AS_STRING(out), src, n, key, 0)
    return out


def apply_mask_inplace(buf, mask):
    """XOR the writable buffer ``buf`` with the 4-byte key ``mask`` in place."""
    cdef Py_buffer view
    cdef unsigned char key[4]
    cdef Py_ssize_t n
    if PyByteArray_CheckExact(buf) and PyByteArray_GET_SIZE(buf) < NOGIL_FROM:
        # No buffer export: fine while we hold the GIL and run no Python code
        # between taking the pointer and the last write (the key comes first,
        # since reading it could run code that resizes ``buf``).
        _read_key(mask, key)
        n = PyByteArray_GET_SIZE(buf)
        wsf_mask(<unsigned char *>PyByteArray_AS_STRING(buf),
                 <const unsigned char *>PyByteArray_AS_STRING(buf), n, key, 0)
        return
    _get_buffer(buf, &view)
    try:
        if view.readonly:
            raise TypeError("apply_mask_inplace needs a writable buffer")
        _read_key(mask, key)
        # The export keeps ``buf`` from being resized while the GIL is released.
        _mask_into(<unsigned char *>view.buf, <const unsigned char *>view.buf,
                   view.len, key, 0)
    finally:
        PyBuffer_Release(&view)


# -- frames (RFC 6455 §5.2) ----------------------------------------------------

@cython.final
@cython.freelist(256)
cdef class Frame:
    """One WebSocket frame, payload unmasked. Attributes are read-only."""

    cdef readonly int opcode
    cdef readonly bint fin
    cdef readonly bint rsv1
    cdef readonly bytes payload

    def __init__(self, opcode, payload, fin=True, rsv1=False):
        self.opcode = int(opcode)
        self.payload = bytes(payload)
        self.fin = bool(fin)
        self.rsv1 = bool(rsv1)

    def __eq__(self, other):
        if not isinstance(other, Frame):
            return NotImplemented
        cdef Frame o = <Frame>other
        return (self.opcode == o.opcode and self.fin == o.fin
                and self.rsv1 == o.rsv1 and self.payload == o.payload)

    def __ne__(self, other):
        result = self.__eq__(other)
        if result is NotImplemented:
            return result
        return not result

    __hash__ = None

    def __repr__(self):
        payload = self.payload
        shown = repr(payload[:32]) + ("..." if len(payload) > 32 else "")
        return (
            f"Frame(opcode={self.opcode}, fin={self.fin}, rsv1={self.rsv1}, "
            f"payload={shown})"
        )


cdef inline Frame _new_frame(int opcode, bint fin, bint rsv1, bytes payload):
    # Frame.__new__ calls tp_new directly (from the freelist): no __init__.
    cdef Frame frame = Frame.__new__(Frame)
    frame.opcode = opcode
    frame.fin = fin
    frame.rsv1 = rsv1
    frame.payload = payload
    return frame


def build_frame(opcode, payload, *, fin=True, rsv1=False, mask_key=None):
    """Return one frame, header and payload in one buffer; masked when a
    4-byte ``mask_key`` is given (client to server, RFC 6455 §5.3)."""
    cdef Py_buffer view
    cdef unsigned char key[4]
    cdef const unsigned char *k = NULL
    cdef long b0
    cdef bytes out
    if type(payload) is str:
        payload = (<str>payload).encode("utf-8")
    if PyBytes_CheckExact(payload):
        b0 = _first_byte(opcode, fin, rsv1)
        if mask_key is not None:
            _read_key(mask_key, key)
            k = key
        return _build(<unsigned char>b0, <const unsigned char *>PyBytes_AS_STRING(payload),
                      PyBytes_GET_SIZE(payload), k)
    _get_buffer(payload, &view)
    try:
        b0 = _first_byte(opcode, fin, rsv1)
        if mask_key is not None:
            _read_key(mask_key, key)
            k = key
        out = _build(<unsigned char>b0, <const unsigned char *>view.buf, view.len, k)
    finally:
        PyBuffer_Release(&view)
    return out


cdef inline long _first_byte(object opcode, object fin, object rsv1) except -1:
    cdef long op = opcode
    if op < 0 or op > 15:
        raise ValueError(f"opcode must be in range(0, 16), not {op}")
    return (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op


cdef bytes _build(unsigned char b0, const unsigned char *src, Py_ssize_t n,
                  const unsigned char *key):
    """Header (minimal length encoding, RFC 6455 §5.2), then the key and the
    masked payload when ``key`` is not NULL, else the payload."""
    cdef Py_ssize_t hlen = (2 if n < 126 else 4 if n < 65536 else 10)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, hlen + (4 if key != NULL else 0) + n)
    cdef unsigned char *o = <unsigned char *>PyBytes_AS_STRING(out)
    cdef int i
    o[0] = b0
    if n < 126:
        o[1] = <unsigned char>n
    elif n < 65536:
        o[1] = 126
        o[2] = <unsigned char>(n >> 8)
        o[3] = <unsigned char>n
    else:
        o[1] = 127
        for i in range(8):
            o[2 + i] = <unsigned char>((<unsigned long long>n) >> (56 - 8 * i))
    if key != NULL:
        o[1] |= 0x80
        memcpy(o + hlen, key, 4)
        _mask_into(o + hlen + 4, src, n, key, 0)
    elif n:
        memcpy(o + hlen, src, n)
    return out


cdef inline long long _c_limit(value) except? -2:
    # A frame length is below 2**63 once check 8 passed, so clamping a
    # larger limit changes nothing; reason strings show the value given.
    if value >= 0x7FFFFFFFFFFFFFFF:
        return 0x7FFFFFFFFFFFFFFF
    if value < -1:
        return -1
    return value


@cython.final
cdef class FrameParser:
    """Incremental frame parser: ``feed()`` bytes in any chunking, get the
    completed frames back. Only an unfinished frame is copied into the
    parser's own storage, so the caller may reuse the buffer it fed.

    ``mask_required`` is True on a server (client frames must be masked) and
    False on a client (server frames must not be), RFC 6455 §5.1.
    ``max_rsv1_frame_size``: the limit for frames with RSV1 set (an
    extension's encoded frames, e.g. compressed ones, which may be longer
    than the message they carry); None: ``max_frame_size`` applies to them.

    Theory of operation: between frames the parser reads headers and whole
    payloads straight from the fed buffer, unmasking each payload into a new
    bytes object (one copy). A frame cut off by the end of the buffer leaves
    either a partial header (``_hdr``, at most 14 bytes) or a partial payload
    (``_part``, a bytes object only the parser holds, unmasked as it fills);
    the next ``feed()`` completes it first.
    """

    cdef readonly bint mask_required
    cdef public bint allow_rsv1
    cdef bint _reuse                # reuse_buffer
    cdef object _spare              # the last large payload handed out, for reuse
    cdef readonly object error
    cdef object _max_obj            # max_frame_size as given
    cdef long long _max             # ... as a C number (clamped to 2**63 - 1)
    # the header being read
    cdef unsigned char _hdr[14]
    cdef Py_ssize_t _hdr_len        # bytes of it in _hdr while incomplete
    cdef Py_ssize_t _hlen           # its length once complete (kept in _hdr)
    # the frame whose header is complete
    cdef int _opcode
    cdef bint _fin
    cdef bint _rsv1
    cdef bint _masked
    cdef unsigned char _key[4]
    cdef Py_ssize_t _size           # payload length
    # its partial payload: an owned bytes object, _cap bytes allocated, _filled used
    cdef PyObject *_part
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _filled
    # the memoryview window() handed out, released by the next call
    cdef object _win
    cdef object _rsv1_max_obj       # max_rsv1_frame_size as given (None: _max applies)
    cdef long long _rsv1_max        # ... as a C number, _max's value when None
    cdef long long _min_max         # min(_max, _rsv1_max): one comparison per frame

    def __cinit__(self):
        self._part = NULL
        self._hdr_len = 0
        self._win = None

    def __dealloc__(self):
        self._drop_window()
        Py_XDECREF(self._part)
        self._part = NULL

    def __init__(self, *, mask_required, max_frame_size=DEFAULT_MAX_FRAME_SIZE,
                 allow_rsv1=False, max_rsv1_frame_size=None, reuse_buffer=False):
        self.mask_required = bool(mask_required)
        self.reuse_buffer = reuse_buffer
        self._rsv1_max_obj = None
        self.max_frame_size = max_frame_size
        self.max_rsv1_frame_size = max_rsv1_frame_size
        self.allow_rsv1 = allow_rsv1
        self.error = None

    @property
    def max_frame_size(self):
        return self._max_obj

    @max_frame_size.setter
    def max_frame_size(self, value):
        self._max = _c_limit(value)
        self._max_obj = value
        if self._rsv1_max_obj is None:
            self._rsv1_max = self._max
        self._min_max = min(self._max, self._rsv1_max)

    @property
    def reuse_buffer(self):
        """Reuse the storage of the last large payload (1 MiB and more) for
        the next large frame when nothing else references it any more (its
        ``bytes`` was dropped, or the memoryview over it released): no fresh
        allocation, no page faults, per large message. The parser then
        keeps that storage between messages (memory per connection: its
        largest message). Off by default. (The twin ignores it.)"""
        return self._reuse

    @reuse_buffer.setter
    def reuse_buffer(self, value):
        self._reuse = bool(value)
        if not value:
            self._spare = None

    @property
    def max_rsv1_frame_size(self):
        return self._rsv1_max_obj

    @max_rsv1_frame_size.setter
    def max_rsv1_frame_size(self, value):
        self._rsv1_max = self._max if value is None else _c_limit(value)
        self._rsv1_max_obj = value
        self._min_max = min(self._max, self._rsv1_max)

    def feed(self, data):
        """Parse ``data``; return the list of frames it completed.

        On a violation, the frames completed before it in this call are
        returned and the ``ProtocolError`` is raised by the next call (so
        ``feed(b"")`` flushes it); with no frame before it, it is raised now.
        """
        return self._feed(data, False)

    def feed_messages(self, data):
        """Like :meth:`feed`, but until the first ``Frame`` it returns, a
        complete unfragmented frame (FIN set, RSV1 clear) comes as its
        message: a binary one as its payload (``bytes``), a text one that
        began in this call as its payload decoded (``str``; invalid UTF-8
        is a violation, ``InvalidUTF8``, raised as the others). A text frame
        that began in an earlier call stays a ``Frame`` (its caller may have
        checked part of it, see :meth:`partial`)."""
        return self._feed(data, True)

    cdef list _feed(self, data, bint convert):
        cdef Py_buffer view
        cdef list frames = []
        if self._win is not None:
            self._drop_window()
        if self.error is not None:
            raise self.error
        if PyBytes_CheckExact(data):
            self._parse(<const unsigned char *>PyBytes_AS_STRING(data),
                        PyBytes_GET_SIZE(data), frames, convert)
        else:
            _get_buffer(data, &view)
            try:
                self._parse(<const unsigned char *>view.buf, view.len, frames, convert)
            finally:
                PyBuffer_Release(&view)
        if self.error is not None and not frames:
            raise self.error
        return frames

    @property
    def buffered(self):
        """Bytes held for an unfinished frame (0 when none): a cheap test of
        whether :meth:`partial` can have anything to say."""
        if self._part != NULL:
            return self._hlen + self._filled
        return self._hdr_len

    @property
    def partial_opcode(self):
        """The opcode of the unfinished frame once its header is complete,
        else -1: lets a caller skip :meth:`partial` (a copy) for frames it
        does not check, such as binary ones."""
        if self.error is not None or self._part == NULL:
            return -1
        return self._opcode

    def partial(self, Py_ssize_t start=0):
        """The unfinished frame, for checks that cannot wait for its end
        (RFC 6455 §8.1: fail fast on invalid UTF-8 inside one long frame).

        Returns None while no frame header is complete, else ``(opcode, data)``
        where ``data`` is the unmasked payload received so far, from payload
        offset ``start`` on (``b""`` if nothing new).
        """
        if self.error is not None or self._part == NULL:
            return None
        if start < 0:
            start = 0
        if start >= self._filled:
            return (self._opcode, b"")
        # _part is unmasked as it fills: copy out the new part.
        return (self._opcode, PyBytes_FromStringAndSize(
            <char *>_bytes_ptr(self._part) + start, self._filled - start))

    def window(self, Py_ssize_t minimum=1):
        """Where the rest of the unfinished frame's payload goes, for a
        caller that reads the socket straight into it (one copy less than
        :meth:`feed`): a writable memoryview, or None while no frame payload
        is in progress, when fewer than ``minimum`` of its bytes are missing,
        or when the frame now breaks a setting (the error is stored and the
        next call raises it, as with :meth:`feed`).

        Write the next bytes of the stream at the start of the view, then
        call :meth:`commit` with their count. The view ends at the frame's
        end (or at the memory taken so far: as with :meth:`feed`, a long
        frame's storage grows as its bytes arrive) and is released by the
        next call on this parser.
        """
        cdef Py_ssize_t cap
        if self._win is not None:
            self._drop_window()
        if self.error is not None or self._part == NULL:
            return None
        if self._size - self._filled < minimum:
            return None
        # Checked again with the settings of now, as feed() would.
        if self._header(self._hdr, self._hlen) < 0:
            return None
        if self._filled == self._cap:
            cap = min(2 * self._cap, self._size)
            _PyBytes_Resize(&self._part, cap)  # we hold the only reference
            self._cap = cap
        self._win = PyMemoryView_FromMemory(
            _bytes_ptr(self._part) + self._filled, self._cap - self._filled, PyBUF_WRITE)
        return self._win

    def commit(self, Py_ssize_t nbytes):
        """Take the ``nbytes`` written at the start of the last
        :meth:`window` (unmasked here, in place); return the frames they
        completed, as :meth:`feed` does (here at most one)."""
        cdef unsigned char *dst
        cdef list frames = []
        if self._win is None:
            raise ValueError("commit() without a window")
        self._drop_window()
        if nbytes < 0 or nbytes > self._cap - self._filled:
            raise ValueError(f"commit({nbytes}) outside the window")
        dst = <unsigned char *>_bytes_ptr(self._part) + self._filled
        if self._masked:
            _mask_into(dst, dst, nbytes, self._key, self._filled & 3)
        self._filled += nbytes
        if self._filled == self._size:
            frames.append(_new_frame(self._opcode, self._fin, self._rsv1, self._take_part()))
        return frames

    cdef void _drop_window(self) noexcept:
        # A view kept past its call must not reach memory the parser has
        # moved, handed over or freed: release it (unless something still
        # holds a buffer of it, which only a misuse can do).
        win = self._win
        if win is not None:
            self._win = None
            try:
                win.release()
            except BufferError:
                pass

    cdef int _fail(self, exc) except -1:
        self.error = exc
        self._hdr_len = 0
        self._spare = None
        Py_XDECREF(self._part)
        self._part = NULL
        return 0

    cdef Py_ssize_t _header(self, const unsigned char *p, Py_ssize_t avail) except -2:
        """Check the header at ``p`` (``avail`` bytes there) and, once it is
        complete, record it. Returns its length, 0 while bytes are missing, or
        -1 after storing a violation in ``self.error``.

        The checks of docs/DESIGN.md, in that order. Like the twin, they start
        once the first two bytes are there; the MSB check wants all 8 length
        bytes; the size check comes before the masking key arrives.
        """
        cdef unsigned char b0, b1
        cdef int opcode, length7
        cdef Py_ssize_t hlen
        cdef unsigned long long length
        cdef int i
        if avail < 2:
            return 0
        b0 = p[0]
        b1 = p[1]
        opcode = b0 & 0x0F
        length7 = b1 & 0x7F
        if (opcode > 2 and opcode < 8) or opcode > 10:  # RFC 6455 §5.2
            self._fail(ProtocolError(1002, f"reserved opcode {opcode}"))
            return -1
        if b0 & 0x30:
            self._fail(ProtocolError(1002, "reserved bits RSV2/RSV3 must be 0"))
            return -1
        if b0 & 0x40:
            if not self.allow_rsv1:
                self._fail(ProtocolError(
                    1002, "reserved bit RSV1 set without a negotiated extension"))
                return -1
            if opcode >= 8:  # RFC 7692 §6.1: RSV1 only on a message's first frame
                self._fail(ProtocolError(1002, "RSV1 set on a control frame"))
                return -1
            if opcode == 0:
                self._fail(ProtocolError(1002, "RSV1 set on a continuation frame"))
                return -1
        if opcode >= 8:  # RFC 6455 §5.5
            if not b0 & 0x80:
                self._fail(ProtocolError(1002, "fragmented control frame"))
                return -1
            if length7 > 125:
                self._fail(ProtocolError(1002, "control frame payload longer than 125 bytes"))
                return -1
        if b1 & 0x80:
            if not self.mask_required:
                self._fail(ProtocolError(1002, "server frame is masked"))
                return -1
        elif self.mask_required:
            self._fail(ProtocolError(1002, "client frame is not masked"))
            return -1
        if length7 == 126:
            if avail < 4:
                return 0
            length = (<unsigned long long>p[2] << 8) | p[3]
            hlen = 4
        elif length7 == 127:
            if avail < 10:
                return 0
            length = 0
            for i in range(2, 10):
                length = (length << 8) | p[i]
            if length >> 63:
                self._fail(ProtocolError(1002, "frame length has the most significant bit set"))
                return -1
            hlen = 10
        else:
            length = length7
            hlen = 2
        if <long long>length > self._min_max and (
                <long long>length > (self._rsv1_max if b0 & 0x40 else self._max)):
            self._fail(PayloadTooBig(
                f"frame of {length} bytes exceeds the limit of "
                f"{self._rsv1_max_obj if b0 & 0x40 and self._rsv1_max_obj is not None else self._max_obj} bytes"))
            return -1
        if b1 & 0x80:
            if avail < hlen + 4:
                return 0
            memcpy(self._key, p + hlen, 4)
            hlen += 4
        self._opcode = opcode
        self._fin = (b0 & 0x80) != 0
        self._rsv1 = (b0 & 0x40) != 0
        self._masked = (b1 & 0x80) != 0
        self._size = <Py_ssize_t>length
        return hlen

    cdef inline bytes _payload_from(self, const unsigned char *src):
        """The whole payload of the current frame, unmasked, from ``src``."""
        cdef Py_ssize_t n = self._size
        cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
        if self._masked:
            _mask_into(<unsigned char *>PyBytes_AS_STRING(out), src, n, self._key, 0)
        else:
            memcpy(PyBytes_AS_STRING(out), src, n)
        return out

    cdef int _fill(self, const unsigned char *src, Py_ssize_t take) except -1:
        """Append ``take`` payload bytes to the partial payload, unmasked."""
        cdef Py_ssize_t need = self._filled + take, cap
        cdef unsigned char *dst
        cdef object first
        if self._part == NULL:
            cap = self._size if self._size <= PREALLOC_MAX else max(need, PREALLOC_MAX)
            first = self._spare
            if first is not None:
                self._spare = None
                # Reuse it only if this local is its last reference (the
                # application dropped the bytes, released the view).
                if Py_REFCNT(first) != 1 or self._size < PREALLOC_MAX:
                    first = None
                else:
                    cap = max(need, min(PyBytes_GET_SIZE(first), self._size))
            if first is None:
                first = PyBytes_FromStringAndSize(NULL, cap)
            Py_INCREF(first)  # the parser's own reference, released in _take_part
            self._part = <PyObject *>first
            first = None  # _part holds the only reference now (for _PyBytes_Resize)
            if _bytes_size(self._part) != cap:
                _PyBytes_Resize(&self._part, cap)
            wsf_bytes_forget_hash(self._part)
            self._cap = cap
        elif need > self._cap:
            cap = max(need, min(2 * self._cap, self._size))
            _PyBytes_Resize(&self._part, cap)  # we hold the only reference
            self._cap = cap
        dst = <unsigned char *>_bytes_ptr(self._part) + self._filled
        if self._masked:
            _mask_into(dst, src, take, self._key, self._filled & 3)
        else:
            memcpy(dst, src, take)
        self._filled = need
        return 0

    cdef inline bytes _take_part(self):
        """Hand over the completed partial payload."""
        cdef bytes payload = <bytes>self._part
        Py_DECREF(payload)  # the parser's reference; ``payload`` keeps one
        self._part = NULL
        if self._reuse and self._size >= PREALLOC_MAX:
            self._spare = payload
        return payload

    cdef int _parse(self, const unsigned char *p, Py_ssize_t n, list frames,
                    bint convert) except -1:
        # ``convert``: feed_messages() (see there) until a Frame is appended.
        cdef Py_ssize_t i = 0, h, take, old
        cdef bint in_hdr
        cdef bytes payload
        if self._part != NULL:
            # Like the twin, which re-reads the frame it buffered, check the
            # header of the frame in progress again with the settings of now
            # (Connection lowers max_frame_size between fragments).
            if self._header(self._hdr, self._hlen) < 0:
                return 0
        while True:
            if self._part != NULL:
                # Continue a partial payload.
                take = self._size - self._filled
                if take > n - i:
                    take = n - i
                self._fill(p + i, take)
                i += take
                if self._filled < self._size:
                    return 0
                payload = self._take_part()
                if convert and self._opcode == 2 and self._fin and not self._rsv1:
                    frames.append(payload)
                else:  # text that began earlier stays a Frame, as in the twin
                    convert = False
                    frames.append(_new_frame(self._opcode, self._fin, self._rsv1, payload))
                continue
            if self._hdr_len:
                # Continue a partial header: add what can belong to it (a
                # header is at most 14 bytes) and try again.
                old = self._hdr_len
                take = 14 - old
                if take > n - i:
                    take = n - i
                memcpy(self._hdr + old, p + i, take)
                h = self._header(self._hdr, old + take)
                if h < 0:
                    return 0
                if h == 0:  # then take == n - i: everything is in _hdr
                    self._hdr_len = old + take
                    return 0
                self._hdr_len = 0
                in_hdr = True
                i += h - old
            else:
                if i >= n:
                    return 0
                h = self._header(p + i, n - i)
                if h < 0:
                    return 0
                if h == 0:
                    memcpy(self._hdr, p + i, n - i)
                    self._hdr_len = n - i
                    return 0
                in_hdr = False
                i += h
            # A header is complete: take the payload from the buffer if it
            # is all there (the common case, one copy), else start a partial.
            if n - i >= self._size:
                payload = self._payload_from(p + i)
                i += self._size
                if (convert and self._fin and not self._rsv1
                        and (self._opcode == 2 or self._opcode == 1 and not in_hdr)):
                    if self._opcode == 2:
                        frames.append(payload)
                    else:
                        try:
                            frames.append(payload.decode("utf-8"))
                        except UnicodeDecodeError as exc:
                            self._fail(InvalidUTF8(f"invalid UTF-8 at byte {exc.start}"))
                            return 0
                else:
                    convert = False
                    frames.append(_new_frame(self._opcode, self._fin, self._rsv1, payload))
            else:
                if not in_hdr:  # keep the header, for the checks of the next feed()
                    memcpy(self._hdr, p + i - h, h)
                self._hlen = h
                self._filled = 0
                self._fill(p + i, n - i)
                return 0




# -- UTF-8 (RFC 3629; RFC 6455 §5.6, §8.1) -------------------------------------

@cython.final
cdef class Utf8Validator:
    """Incremental, fail-fast UTF-8 check: ``feed()`` raises ``InvalidUTF8``
    at the first byte that can no longer be part of valid UTF-8."""

    cdef unsigned char _state   # automaton state between calls (_wsfast_simd.h)
    cdef object _error

    def __cinit__(self):
        self._state = WSF_UTF8_ACCEPT
        self._error = None

    def reset(self):
        """Start over, for the next message."""
        self._state = WSF_UTF8_ACCEPT
        self._error = None

    def feed(self, data, final=False):
        """Check the next piece of a message; ``final=True`` on its last piece
        also rejects a sequence truncated at the end."""
        cdef Py_buffer view
        cdef size_t at
        if self._error is not None:
            raise self._error
        if PyBytes_CheckExact(data):
            at = wsf_utf8_check(<const unsigned char *>PyBytes_AS_STRING(data),
                                <size_t>PyBytes_GET_SIZE(data), &self._state)
        else:
            _get_buffer(data, &view)
            try:
                at = wsf_utf8_check(<const unsigned char *>view.buf, <size_t>view.len,
                                    &self._state)
            finally:
                PyBuffer_Release(&view)
        if self._state == WSF_UTF8_REJECT:
            self._error = InvalidUTF8(f"invalid UTF-8 at byte {at}")
            raise self._error
        if final and self._state != WSF_UTF8_ACCEPT:
            self._error = InvalidUTF8("truncated UTF-8 sequence at end of message")
            raise self._error


def validate_utf8(data):
    """Return True when ``data`` is entirely valid UTF-8."""
    cdef Py_buffer view
    cdef unsigned char state = WSF_UTF8_ACCEPT
    if PyBytes_CheckExact(data):
        wsf_utf8_check(<const unsigned char *>PyBytes_AS_STRING(data),
                       <size_t>PyBytes_GET_SIZE(data), &state)
        return state == WSF_UTF8_ACCEPT
    _get_buffer(data, &view)
    try:
        wsf_utf8_check(<const unsigned char *>view.buf, <size_t>view.len, &state)
    finally:
        PyBuffer_Release(&view)
    return state == WSF_UTF8_ACCEPT


# -- for tests and benchmarks ------------------------------------------------------

def _simd_level():
    """The vector level in use: 0 = uint64 words, 1 = SSE2, 2 = AVX2."""
    return wsf_level


def _set_simd_level(level):
    """Use at most ``level`` (see _simd_level); returns the level now in use.
    ``_set_simd_level(2)`` goes back to the best the CPU has."""
    return wsf_set_level(level)
