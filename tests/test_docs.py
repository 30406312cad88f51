"""The examples in the public modules' docstrings run and print what they show; the docs'
rule table is made from the rule table module; the API page lists every public name."""

import doctest
import importlib.util
import os
import re

import pytest

import fastoptim
from fastoptim import checkpoint, clip, functional, optimizers, reference, rules, schedules

MODULES = [fastoptim, functional, optimizers, clip, schedules, fastoptim.accumulate]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0


def test_there_are_examples():
    attempted = sum(doctest.testmod(m, verbose=False).attempted for m in MODULES)
    assert attempted >= 30


# ---------------------------------------------------------------------------------------
# The Sphinx site in docs/ (built in CI with warnings as errors: .ci/run)
# ---------------------------------------------------------------------------------------

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def _rule_table_extension():
    path = os.path.join(DOCS, "_ext", "rule_table.py")
    spec = importlib.util.spec_from_file_location("_fastoptim_docs_rule_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_rule_table_is_the_rule_table():
    text = _rule_table_extension().render()
    rows = text.split("\n   * - ")[2:]  # after the header row
    assert len(rows) == len(rules.RULES)
    for row, rule in zip(rows, rules.RULES):
        assert row.startswith(f":class:`~fastoptim.{rule.class_name}`"), row
        assert f"``{rule.formula}``" in row
        for h in rule.hyper:
            assert f"``{h.name}=" in row and h.range_text() in row, (rule.name, h.name)
        for buffer in rule.state:
            assert f"``{buffer}``" in row


@pytest.mark.parametrize("value, text", [(1e-3, "1e-3"), (1e-10, "1e-10"), (0.0, "0.0"),
                                         (1.0, "1.0"), (0.99, "0.99"),
                                         ((0.9, 0.999), "(0.9, 0.999)")])
def test_docs_rule_table_defaults_read_as_written(value, text):
    fmt = _rule_table_extension().fmt
    assert fmt(value) == text and eval(fmt(value)) == value


def test_docs_rules_page_uses_the_generated_table():
    with open(os.path.join(DOCS, "rules.rst"), encoding="utf-8") as f:
        assert ".. fastoptim-rule-table::" in f.read()


def test_api_page_lists_every_public_name():
    with open(os.path.join(DOCS, "api.rst"), encoding="utf-8") as f:
        text = f.read()
    listed = set(re.findall(r"^   ([A-Za-z_][\w.]*)$", text, re.M))  # autosummary entries

    def documented(name):
        return (name in listed or f"``{name}``" in text or f"``fastoptim.{name}``" in text
                or f".. automodule:: fastoptim.{name}\n" in text
                or any(n.startswith(name + ".") for n in listed))

    # nn (and datasets) are documented through docs/_generated/demo_api.inc, which
    # conf.py writes for whichever of fastoptim.demo.nn / fastoptim.nn exists
    names = [n for n in fastoptim.__all__ if n not in ("nn", "datasets")]
    for module in (functional, reference, schedules, clip, checkpoint, rules):
        short = module.__name__.split(".", 1)[1]
        names += [f"{short}.{n}" for n in module.__all__]
    missing = [n for n in names if not documented(n) and not documented(n.split(".")[-1])]
    assert not missing, f"docs/api.rst does not document: {missing}"
    assert "_generated/demo_api.inc" in text
