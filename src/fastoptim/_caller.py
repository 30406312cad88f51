"""Warnings that point at the user's line: :func:`warn_external`. Imports nothing from
fastoptim, so that modules imported while ``fastoptim/__init__`` runs (``_dispatch``)
can use it."""

import os
import sys
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))


def _inside_package(frame):
    d = os.path.dirname(os.path.abspath(frame.f_code.co_filename))
    return d == _HERE or d.startswith(_HERE + os.sep)


def _importlib_frame(frame):
    # the frames warnings.warn itself skips when it counts ``stacklevel``
    # (``<frozen importlib._bootstrap>``, ``<frozen importlib._bootstrap_external>``)
    name = frame.f_code.co_filename
    return "importlib" in name and "_bootstrap" in name


def warn_external(message, category):
    """warnings.warn at the first frame outside the fastoptim package and outside
    importlib's machinery: the caller's line, however deep inside fastoptim the warning
    is raised, and the importer's line (``import fastoptim``) for a warning raised while
    fastoptim is being imported."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and (_inside_package(frame) or _importlib_frame(frame)):
        if not _importlib_frame(frame):  # warnings.warn does not count these
            level += 1
        frame = frame.f_back
    warnings.warn(message, category, stacklevel=level)
