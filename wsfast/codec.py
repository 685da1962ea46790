"""Pick the frame codec: the Cython extension ``wsfast._frame`` or its
pure-Python twin ``wsfast._frame_py`` (same names, same behaviour).

* ``WSFAST_NO_EXTENSIONS=1`` forces the Python twin.
* ``WSFAST_REQUIRE_EXTENSIONS=1`` turns a missing or broken extension into an
  ``ImportError`` (CI sets it, so a broken build cannot pass on the fallback).

Everything above the codec takes a ``codec=`` module argument; ``get_codec()``
returns one by name, and the tests run every codec test on ``AVAILABLE``.
"""

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, Dict, Optional, Protocol, Tuple, Union

from . import _frame_py

if TYPE_CHECKING:
    from typing_extensions import Buffer  # (collections.abc.Buffer from Python 3.12)

__all__ = ["IMPLEMENTATION", "AVAILABLE", "get_codec", "default", "Frame"]


class Frame(Protocol):
    """What a codec's ``Frame`` is (``wsfast._frame.Frame`` and
    ``wsfast._frame_py.Frame``), for code that takes either: one frame,
    payload unmasked, attributes read-only."""

    def __init__(self, opcode: int, payload: "Buffer", fin: bool = True,
                 rsv1: bool = False) -> None:

        ...

    @property
    def opcode(self) -> int: ...
    @property
    def fin(self) -> bool: ...
    @property
    def rsv1(self) -> bool: ...
    @property
    def payload(self) -> bytes: ...



def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _import_extension(name: str) -> Tuple[Optional[ModuleType], Optional[ImportError]]:
    """The Cython extension ``wsfast.<name>`` and None, or None and why it
    cannot be imported (no compiler at install time, or a broken build);
    with ``WSFAST_REQUIRE_EXTENSIONS`` set, that is an ImportError. The
    codec's (``_frame``) and the Connection's (``_connection``, see
    :mod:`wsfast.connection`)."""
    try:
        return importlib.import_module(f"{__package__}.{name}"), None
    except ImportError as exc:
        if _flag("WSFAST_REQUIRE_EXTENSIONS"):
            raise ImportError(
                f"WSFAST_REQUIRE_EXTENSIONS is set but the Cython extension wsfast.{name} "
                f"cannot be imported: {exc}"
            ) from exc
        return None, exc


_cython, _import_error = _import_extension("_frame")

#: The importable codecs, by name.
AVAILABLE: Dict[str, ModuleType] = {"python": _frame_py}
if _cython is not None:
    AVAILABLE["cython"] = _cython

default: ModuleType
#: "cython" or "python": the codec used unless a ``codec=`` argument says otherwise.
IMPLEMENTATION: str
if _cython is not None and not _flag("WSFAST_NO_EXTENSIONS"):
    default = _cython
    IMPLEMENTATION = "cython"
else:
    default = _frame_py
    IMPLEMENTATION = "python"
    _frame_py.load_numpy()  # its masking accelerator, if installed: imported now, not mid-loop


def get_codec(name: Union[str, ModuleType, None] = None) -> ModuleType:
    """Return the codec module called ``name`` ("cython" or "python"), or the
    default one when ``name`` is None. Raises ``ValueError`` for an unknown or
    unavailable name."""
    if name is None:
        return default
    if not isinstance(name, str):
        if hasattr(name, "FrameParser"):  # already a codec module
            return name
        raise ValueError(f"{name!r} is not a frame codec (it has no FrameParser)")
    try:
        return AVAILABLE[name]
    except KeyError:
        raise ValueError(
            f"codec {name!r} is not available (available: {sorted(AVAILABLE)})"
        ) from _import_error
