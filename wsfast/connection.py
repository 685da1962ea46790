"""The sans-IO WebSocket state machine (RFC 6455 §5-§7), after the handshake.

Theory of operation
-------------------

A :class:`Connection` is one endpoint of an open WebSocket. It does no I/O:

* bytes read from the network go into :meth:`Connection.receive_data`, which
  returns the events they completed, in order: ``str`` (a text message),
  ``bytes`` (a binary message), :class:`Ping`, :class:`Pong`, :class:`Close`,
  and :class:`Fragment` (a piece of a message received as a stream, when
  asked for: :attr:`Connection.streaming`, :meth:`Connection.stream_next`);
* replies the protocol makes by itself (a pong for each ping, the reply to a
  close, the close frame that fails the connection) are queued and fetched
  with :meth:`Connection.data_to_send`; call it after every ``receive_data``;
* messages the application sends go through ``send_text`` / ``send_binary`` /
  ``send_fragment`` (a message in pieces) /
  ``send_ping`` / ``send_pong`` / ``send_close`` / ``fail``, which return the
  bytes to write (preceded by any queued reply, so that writing what each call
  returns, in call order, keeps the wire order right).

States (``Connection.state``)::

    OPEN ──(close sent or received)──> CLOSING ──(both)──────────────> CLOSED
      └───────────(protocol error, fail(), or receive_eof())─────────────┘

Receiving a close goes straight to CLOSED; its reply (like the close frame
that fails the connection) is held until ``data_to_send()``, so the messages
completed by the same read can still be answered before it (RFC 6455 §5.5.1
lets an endpoint finish its current message before sending its close). After a close is received nothing more is processed (RFC 6455
§5.5.1); after a close is sent no data frame may be sent (``ConnectionClosed``),
while pings are still answered and control frames may still be sent.
A protocol error (``ProtocolError`` from the frame codec or from the rules
here) *fails* the connection (RFC 6455 §7.1.7): the events before it are still
returned, a close frame with the error's code is queued, ``failed`` records the
error, the state is CLOSED and further input is ignored. The I/O adapter closes
TCP once ``state is State.CLOSED`` and ``data_to_send()`` is empty.

Hot path: ``receive_data`` hands the bytes to the codec's ``FrameParser`` and
turns each complete single-frame text/binary message into its ``str``/``bytes``
event inline; everything else (control frames, fragments, extensions, a
message limit below 125 bytes) goes through ``_handle_frame``.

Two builds of one source
------------------------

:class:`Connection` is written once, in ``wsfast/_connection_py.py``, and
exists twice: as that pure-Python module, and compiled by Cython from the
same file into the extension ``wsfast._connection`` (declarations in
``wsfast/_connection.pxd``). This module picks one, as :mod:`wsfast.codec`
picks the frame codec: the compiled one when it is importable, unless
``WSFAST_NO_EXTENSIONS=1``; ``WSFAST_REQUIRE_EXTENSIONS=1`` makes a missing
one an ``ImportError``. :func:`get_connection_class` gives the build that
goes with a codec (the pure-Python codec gets the pure-Python Connection:
``codec="python"`` runs the whole sans-IO layer as Python), which is what the
I/O adapters use and what the tests run both of. The events (``Ping``, ...)
are the same classes for both builds.
"""

import inspect
from types import ModuleType
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

from . import _connection_py, _frame_py
from . import codec as _codec_module
from ._events import Close, Fragment, Ping, Pong, Side, State

__all__ = [
    "Side", "State", "Ping", "Pong", "Close", "Fragment", "Connection",
    "IMPLEMENTATION", "AVAILABLE", "get_connection_class",
]


_flag = _codec_module._flag
_compiled, _import_error = _codec_module._import_extension("_connection")

#: The importable builds of :class:`Connection`, by name ("cython", "python").
AVAILABLE: "Dict[str, type[Connection]]" = {"python": _connection_py.Connection}

if _compiled is not None:

    class _CompiledConnection(_compiled.Connection):  # type: ignore[name-defined, misc]  # (as above)
        # A Python class over the extension type: like the pure-Python
        # class, it can be patched and subclassed as any class (methods
        # set on it, super() from an override). Its slots are the
        # attributes the adapter reads from Python on every message
        # (wsfast/_connection.pxd says why they are not C fields).
        __slots__ = _connection_py.ADAPTER_SLOTS
        __doc__ = _connection_py.Connection.__doc__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

        # An extension type's __init__ shows no signature (help(), the docs).
        __init__.__signature__ = inspect.signature(_connection_py.Connection.__init__)  # type: ignore[attr-defined]

    _CompiledConnection.__name__ = _CompiledConnection.__qualname__ = "Connection"
    AVAILABLE["cython"] = _CompiledConnection

#: "cython" or "python": the build :class:`Connection` names.
IMPLEMENTATION: str
if "cython" in AVAILABLE and not _flag("WSFAST_NO_EXTENSIONS"):
    IMPLEMENTATION = "cython"
else:
    IMPLEMENTATION = "python"
if TYPE_CHECKING:  # both builds have the source's API: type checkers read it there
    from ._connection_py import Connection
else:
    #: One open WebSocket endpoint, sans I/O: the build :data:`IMPLEMENTATION` names.
    Connection = AVAILABLE[IMPLEMENTATION]


def check_max_fragments(value: Optional[int]) -> None:
    """Raise ``ValueError`` unless ``value`` is None or an int >= 1: a
    ``max_fragments`` as ``Connection`` takes it, checked by the settings
    that pass it on (``Options``, ``wsfast.sync.connect``) when they are
    given rather than at a connection's first message."""
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"max_fragments must be None or an int >= 1, not {value!r}")


def get_connection_class(codec: Union[str, ModuleType, None] = None) -> "type[Connection]":
    """The :class:`Connection` build that goes with a frame codec (a module
    or its name, as ``Connection(codec=...)`` takes): the pure-Python one
    for the pure-Python codec, :class:`Connection` otherwise. Raises
    ``ValueError`` for an unknown or unavailable codec name."""
    if _codec_module.get_codec(codec) is _frame_py:
        return AVAILABLE["python"]
    return Connection
