"""Build wsfast, with its optional Cython extensions:

* ``wsfast._frame``, the frame codec, from ``wsfast/_frame.pyx`` (its twin is
  ``wsfast/_frame_py.py``);
* ``wsfast._connection``, the sans-IO ``Connection``, compiled from the
  pure-Python source ``wsfast/_connection_py.py`` itself (Cython's pure-Python
  mode, declarations in ``wsfast/_connection.pxd``): one source, two builds.
  Another module can join the same way: add it to ``COMPILED_PYTHON``.

The extensions are optional: without Cython or a C compiler the install still
succeeds, with the pure-Python twins, and says so once per extension.
Set ``WSFAST_REQUIRE_EXTENSIONS=1`` to make a failed build an error instead,
or ``WSFAST_NO_EXTENSIONS=1`` to skip building it.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


REQUIRE = _flag("WSFAST_REQUIRE_EXTENSIONS")
FALLBACK_NOTE = (
    "wsfast: the Cython extension {name} was not built ({why}); "
    "installing its pure-Python twin instead (same behaviour, slower)."
)
# Pure-Python modules compiled as they are, under another name:
# (extension name, source). The source stays importable as the twin; the
# extension's declarations are in the .pxd named after the extension.
COMPILED_PYTHON = [
    ("wsfast._connection", os.path.join("wsfast", "_connection_py.py")),
]


class optional_build_ext(build_ext):
    """Build the extension if we can; otherwise warn once and go on."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            for ext in self.extensions:
                self._fallback(ext, exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(ext, exc)

    def _fallback(self, ext, exc):
        if REQUIRE:
            raise
        if ext.name in _noted:
            return
        _noted.add(ext.name)
        print(FALLBACK_NOTE.format(name=ext.name, why=exc), file=sys.stderr)


_noted = set()  # extensions whose fallback note was printed


def extensions():
    names = ["wsfast._frame"] + [name for name, _ in COMPILED_PYTHON]
    if _flag("WSFAST_NO_EXTENSIONS"):
        for name in names:
            print(FALLBACK_NOTE.format(name=name, why="WSFAST_NO_EXTENSIONS is set"), file=sys.stderr)
        return []
    here = os.path.dirname(os.path.abspath(__file__))
    # (name, Cython source, its generated C file, extra options)
    sources = [("wsfast._frame", os.path.join("wsfast", "_frame.pyx"),
                dict(include_dirs=["wsfast"], depends=[os.path.join("wsfast", "_wsfast_simd.h")]))]
    for name, source in COMPILED_PYTHON:
        pxd = os.path.join(*name.split(".")) + ".pxd"
        sources.append((name, source, dict(depends=[pxd])))
    try:
        from Cython.Build import cythonize
    except ImportError:
        cythonize = None
    exts = []
    for name, source, options in sources:
        if cythonize is None:
            c_file = os.path.splitext(source)[0] + ".c"
            if not os.path.exists(os.path.join(here, c_file)):  # not an sdist with generated C
                if REQUIRE:
                    raise ImportError("Cython is not installed")
                print(FALLBACK_NOTE.format(name=name, why="Cython is not installed"), file=sys.stderr)
                continue
            source = c_file
        exts.append(Extension(
            name,
            sources=[source],
            extra_compile_args=["-O3"] if os.name != "nt" else [],
            **options,
        ))
    if cythonize is None:
        return exts
    # The codec is Cython code written for C speed; the compiled Python
    # modules keep Python's semantics (negative indexes, bounds checks,
    # Python division), and their annotations stay annotations (Cython 3
    # would otherwise turn `x: int` into a type check the twin does not
    # make): their C declarations are in their .pxd files only.
    return cythonize(
        [ext for ext in exts if ext.name == "wsfast._frame"],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        quiet=True,
    ) + cythonize(
        [ext for ext in exts if ext.name != "wsfast._frame"],
        compiler_directives={"language_level": "3", "annotation_typing": False},
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})
