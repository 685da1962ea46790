"""Sphinx configuration of wsfast's documentation site.

    python -m sphinx -W -b html docs docs/_build/html

tests/test_docs.py builds it with warnings as errors and runs every code
example of the guides.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import wsfast  # noqa: E402

project = "wsfast"
author = "the wsfast authors"
copyright = "wsfast authors, MIT licence"
version = release = wsfast.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
# The guides link to files of the repository (bench/, tests/) that are not
# pages of this site: they stay plain links to GitHub-style relative paths.
# A code block in a language Pygments does not know (haproxy, ...) is shown
# as plain text: not worth failing the build.
suppress_warnings = ["myst.xref_missing", "myst.header", "misc.highlighting_failure"]

html_theme = "alabaster"
html_title = f"wsfast {release}"
html_static_path = []
