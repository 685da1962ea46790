"""Build wsfast, with the optional Cython extension ``wsfast._frame``.

The extension is optional: without Cython or a C compiler the install still
succeeds, with the pure-Python twin ``wsfast._frame_py``, and says so once.
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
    "wsfast: the Cython extension wsfast._frame was not built ({why}); "
    "installing the pure-Python codec instead (same behaviour, slower)."
)


class optional_build_ext(build_ext):
    """Build the extension if we can; otherwise warn once and go on."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._fallback(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc):
        if REQUIRE:
            raise
        print(FALLBACK_NOTE.format(why=exc), file=sys.stderr)


def extensions():
    if _flag("WSFAST_NO_EXTENSIONS"):
        print(FALLBACK_NOTE.format(why="WSFAST_NO_EXTENSIONS is set"), file=sys.stderr)
        return []
    here = os.path.dirname(os.path.abspath(__file__))
    pyx = os.path.join("wsfast", "_frame.pyx")
    c_file = os.path.join("wsfast", "_frame.c")
    try:
        from Cython.Build import cythonize
    except ImportError:
        if os.path.exists(os.path.join(here, c_file)):  # sdist with generated C
            sources = [c_file]
            cythonize = None
        else:
            if REQUIRE:
                raise
            print(FALLBACK_NOTE.format(why="Cython is not installed"), file=sys.stderr)
            return []
    else:
        sources = [pyx]
    ext = Extension(
        "wsfast._frame",
        sources=sources,
        include_dirs=["wsfast"],
        extra_compile_args=["-O3"] if os.name != "nt" else [],
        depends=[os.path.join("wsfast", "_wsfast_simd.h")],
    )
    if cythonize is None:
        return [ext]
    return cythonize(
        [ext],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})
