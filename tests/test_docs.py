"""The examples in the public modules' docstrings run and print what they show."""

import doctest

import pytest

import fastoptim
from fastoptim import clip, functional, optimizers, schedules

MODULES = [fastoptim, functional, optimizers, clip, schedules]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


def test_there_are_examples():
    attempted = sum(doctest.testmod(m, verbose=False).attempted for m in MODULES)
    assert attempted >= 30
