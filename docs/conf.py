"""Sphinx configuration of fastoptim's documentation.

Build it (the ``docs`` extra: ``pip install ".[docs]"``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

The API pages are generated from the docstrings (autodoc + autosummary, numpydoc
format); the rule table in ``rules.rst`` is generated from ``fastoptim.rules.RULES`` by
the small extension in ``_ext/rule_table.py``.
"""

import doctest
import os
import sys

import fastoptim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

project = "fastoptim"
author = "the fastoptim developers"
copyright = "the fastoptim developers"
release = fastoptim.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
    "rule_table",
]

exclude_patterns = ["_build", "_generated"]
templates_path = []

# -- API reference ----------------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"           # the numpydoc "Parameters" sections say the types
numpydoc_show_class_members = False  # autosummary/autodoc list the members themselves
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()   # the docstrings are checked by tests, not here

# -- doctest: the pages' ``.. doctest::`` / ``.. testcode::`` blocks -------------------
# Only explicit doctest directives run here; the ``>>>`` examples inside docstrings are
# run by tests/test_docs.py (doctest.testmod, with their modules' globals).
doctest_test_doctest_blocks = ""
# messages are compared too (Sphinx's default flags ignore exception details)
doctest_default_flags = doctest.ELLIPSIS | doctest.DONT_ACCEPT_TRUE_FOR_1
doctest_global_setup = """
import numpy as np
import fastoptim as fo
"""

# -- HTML -------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"fastoptim {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []


# -- the training toolkit's modules -----------------------------------------------------
# fastoptim.demo.nn and fastoptim.demo.datasets (the old paths fastoptim.nn and
# fastoptim.datasets stay, with a DeprecationWarning), and fastoptim.demo.plain (the
# demo's baseline: every rule as a plain NumPy optimizer)
def _demo_api():
    base = "fastoptim.demo"
    text = "".join(
        f"``{base}.{name}``\n" + "~" * (len(base) + len(name) + 5) + "\n\n"
        f".. automodule:: {base}.{name}\n   :members:\n\n"
        for name in ("nn", "datasets", "plain"))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_generated")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "demo_api.inc")
    # written only when it changes, so that Sphinx does not rebuild api.rst every time
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
    if old != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


_demo_api()
