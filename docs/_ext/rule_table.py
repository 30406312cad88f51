"""``.. fastoptim-rule-table::``: the table of rules, made from ``fastoptim.rules.RULES``.

One row per rule: its class, its update in the rule table's notation, its
hyper-parameters with defaults and valid ranges, and its state buffers. Nothing in it is
written by hand, so a rule added to the table appears here at the next docs build.
``render()`` returns the reStructuredText (the tests call it too).
"""

from __future__ import annotations

import math


def fmt(value):
    """A default as the docs write it: ``1e-3`` rather than ``0.001``."""
    if isinstance(value, tuple):
        return "(" + ", ".join(fmt(v) for v in value) + ")"
    if isinstance(value, float) and value != 0 and not value.is_integer():
        exp = math.floor(math.log10(abs(value)))
        if abs(value) < 0.05 and value == 10.0 ** exp:
            return f"1e{exp}"
    return repr(value)


def render(rules=None):
    if rules is None:
        from fastoptim.rules import RULES as rules
    out = [".. list-table::", "   :header-rows: 1", "   :widths: 12 40 34 14", "",
           "   * - class", "     - update", "     - hyper-parameters (defaults; valid range)",
           "     - state buffers"]
    for r in rules:
        hyper = "; ".join(f"``{h.name}={fmt(h.default)}`` ({h.range_text()})"
                          for h in r.hyper)
        state = ", ".join(f"``{s}``" for s in r.state) or "--"
        out += [f"   * - :class:`~fastoptim.{r.class_name}`",
                f"     - ``{r.formula}``",
                f"     - {hyper}",
                f"     - {state}"]
    return "\n".join(out) + "\n"


def setup(app):
    # sphinx and docutils are imported here only: render() works without them
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class RuleTable(SphinxDirective):
        has_content = False

        def run(self):
            node = nodes.section()
            node.document = self.state.document
            self.state.nested_parse(StringList(render().splitlines(), "fastoptim.rules"),
                                    self.content_offset, node)
            return node.children

    app.add_directive("fastoptim-rule-table", RuleTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
