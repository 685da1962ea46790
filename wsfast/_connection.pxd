# Declarations for the compiled build of wsfast/_connection_py.py (Cython's
# pure-Python mode: setup.py compiles that file into wsfast._connection, and
# Cython reads this file, named after the module, beside it).
#
# Connection becomes an extension type: its attributes are C struct fields
# instead of slots found through the type. All are ``public object``, so
# that Python code reads and writes them as on the twin and stores exactly
# what it is given (a typed field would convert or reject values the twin
# keeps as they are: no behaviour may differ between the builds).
#
# Except the attributes the I/O adapter (protocol.py, Python) reads on every
# message: state, in_frame, _out, _pending_close, _can_send. Read from
# Python, a field of an extension type is a getset property (~50-60 ns on
# CPython 3.11), a __slots__ member is specialised by the interpreter
# (~12-17 ns); so they are __slots__ of the public Python subclass in
# wsfast/connection.py, and the compiled code reaches them through the
# instance (bench/results/hotpath.md, round 5: 64 B request/response,
# callgrind 14,205 -> 13,052 instructions per message).

cdef class Connection:
    cdef public object side, codec, max_message_size, extensions
    cdef public object close_sent, close_received, failed
    cdef public object _max_frame_size, _parser, _build_frame, _utf8
    cdef public object _partial_checked, _input_closed
    cdef public object _client, _mask_pool, _mask_pos, _frag_opcode, _frag_buf, _frag_size
    cdef public object max_fragments, _frag_count, _frag_wire, _encoded_bound
    cdef public object _fast_base, _fast, defer_pongs, _deferred_pong
    cdef public object _sending, _stream, _streaming, _stream_decoder

    # Called per message by a client's send_text/send_binary: a C call in
    # this build (the twin pays a method call).
    cdef inline bytes _mask_key(self)
