"""The demos' settings per optimizer: the one module of the demos that names optimizers.

``fastoptim demo`` and ``fastoptim paths`` run every rule of :data:`fastoptim.rules.RULES`.
The hyper-parameters tuned for each of their problems are here, by class name; a rule
with no entry for a problem runs with its defaults (:func:`hyper`), so a new rule needs no
edit to any demo or command module (an entry here is a matter of taste: a learning rate
that makes its curve or path worth looking at).
"""

from .. import rules

#: problem -> class name -> hyper-parameters. Problems: ``demo/<data set>`` (``fastoptim
#: demo --dataset``: the MLP of that data set, every optimizer from the same weights on
#: the same batches) and ``paths/<function>`` (``fastoptim paths``: chosen so that every
#: path is visible in the function's box).
HYPER = {
    "demo/digits": {
        "SGD": dict(lr=0.05), "Momentum": dict(lr=0.02, momentum=0.9),
        "Nesterov": dict(lr=0.02, momentum=0.9), "AdaGrad": dict(lr=0.05),
        "RMSprop": dict(lr=0.001), "AdaDelta": dict(lr=1.0),
        "Adam": dict(lr=0.002), "AdamW": dict(lr=0.002, weight_decay=0.05),
        "Lion": dict(lr=2e-4, weight_decay=0.5), "Adamax": dict(lr=0.004),
        "NAdam": dict(lr=0.002), "RAdam": dict(lr=0.002), "LAMB": dict(lr=0.001)},
    "demo/apartment": {
        "SGD": dict(lr=0.1), "Momentum": dict(lr=0.01, momentum=0.9),
        "Nesterov": dict(lr=0.01, momentum=0.9), "AdaGrad": dict(lr=0.1),
        "RMSprop": dict(lr=0.01), "AdaDelta": dict(lr=1.0),
        "Adam": dict(lr=0.01), "AdamW": dict(lr=0.01, weight_decay=0.01),
        "Lion": dict(lr=0.001), "Adamax": dict(lr=0.02), "NAdam": dict(lr=0.01),
        "RAdam": dict(lr=0.01), "LAMB": dict(lr=0.003)},
    "paths/book": {
        "SGD": dict(lr=0.95), "Momentum": dict(lr=0.1), "Nesterov": dict(lr=0.1),
        "AdaGrad": dict(lr=1.5), "RMSprop": dict(lr=0.3),
        "AdaDelta": dict(lr=1.0, eps=1e-1), "Adam": dict(lr=0.3),
        "AdamW": dict(lr=0.3, weight_decay=0.1), "Lion": dict(lr=0.3),
        "Adamax": dict(lr=0.3), "NAdam": dict(lr=0.3), "RAdam": dict(lr=1.0),
        "ScheduleFreeAdamW": dict(lr=1.0), "LAMB": dict(lr=0.1)},
    "paths/rosenbrock": {
        "SGD": dict(lr=1e-3), "Momentum": dict(lr=1e-3), "Nesterov": dict(lr=1e-3),
        "AdaGrad": dict(lr=1.0), "RMSprop": dict(lr=0.005),
        "AdaDelta": dict(lr=1.0, rho=0.99, eps=1e-5), "Adam": dict(lr=0.05),
        "AdamW": dict(lr=0.05, weight_decay=0.01), "Lion": dict(lr=0.01),
        "Adamax": dict(lr=0.3), "NAdam": dict(lr=0.03), "RAdam": dict(lr=0.005),
        "ScheduleFreeAdamW": dict(lr=0.1), "LAMB": dict(lr=0.01)},
    "paths/beale": {
        "SGD": dict(lr=0.01), "Momentum": dict(lr=0.002), "Nesterov": dict(lr=0.002),
        "AdaGrad": dict(lr=0.5), "RMSprop": dict(lr=0.01),
        "AdaDelta": dict(lr=1.0, rho=0.99, eps=1e-4), "Adam": dict(lr=0.05),
        "AdamW": dict(lr=0.05, weight_decay=0.01), "Lion": dict(lr=0.03),
        "Adamax": dict(lr=0.3), "NAdam": dict(lr=0.05), "RAdam": dict(lr=0.01),
        "ScheduleFreeAdamW": dict(lr=0.1), "LAMB": dict(lr=0.05)},
    "paths/saddle": {
        "SGD": dict(lr=0.05), "Momentum": dict(lr=0.01), "Nesterov": dict(lr=0.01),
        "AdaGrad": dict(lr=0.3), "RMSprop": dict(lr=0.05),
        "AdaDelta": dict(lr=1.0, eps=1e-2), "Adam": dict(lr=0.1),
        "AdamW": dict(lr=0.1, weight_decay=0.01), "Lion": dict(lr=0.03),
        "Adamax": dict(lr=0.1), "NAdam": dict(lr=0.1), "RAdam": dict(lr=0.1),
        "ScheduleFreeAdamW": dict(lr=0.03), "LAMB": dict(lr=0.05)},
}

#: Left out of ``fastoptim paths`` unless asked for (``--optimizers``): the seven rules
#: of the lecture notes are drawn by default.
PATHS_NOT_BY_DEFAULT = ("AdamW", "Lion", "Adamax", "NAdam", "RAdam", "ScheduleFreeAdamW",
                        "LAMB")

#: Line colours by class name (matplotlib's tab10, as before the table existed); a rule
#: without one gets a colour of tab20 by its position in the table (:func:`color`).
COLORS = {"SGD": "#1f77b4", "Momentum": "#ff7f0e", "Nesterov": "#2ca02c",
          "AdaGrad": "#d62728", "RMSprop": "#9467bd", "AdaDelta": "#8c564b",
          "Adam": "#e377c2", "AdamW": "#17becf"}

_TAB20 = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728",
          "#ff9896", "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2",
          "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5")


def names():
    """The class names of every rule, in the table's order."""
    return [r.class_name for r in rules.RULES]


def path_names():
    """The class names ``fastoptim paths`` draws by default."""
    return [n for n in names() if n not in PATHS_NOT_BY_DEFAULT]


def hyper(problem, name):
    """The hyper-parameters (a new dict) of optimizer ``name`` (class or rule name) for
    ``problem`` (a key of :data:`HYPER`): the tuned entry, or the rule's defaults when it
    has none."""
    rule = rules.get(name)
    tuned = HYPER[problem].get(rule.class_name)
    return dict(tuned) if tuned is not None else rule.defaults


def color(name):
    """The line colour of optimizer ``name`` in the demos' figures."""
    rule = rules.get(name)
    return COLORS.get(rule.class_name) or _TAB20[(2 * rule.id + 1) % len(_TAB20)]


def line_style(name):
    """Dashed for a variant of another rule (Nesterov of Momentum, AdamW of Adam), so that
    overlapping lines show; solid otherwise."""
    return "--" if rules.get(name).base else "-"
