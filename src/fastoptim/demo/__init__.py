"""fastoptim.demo: the training toolkit and the demos, kept apart from the optimizers.

``import fastoptim`` imports nothing from here; the ``fastoptim demo`` and ``bench --e2e``
commands do, and so can users. Modules:

* :mod:`fastoptim.demo.nn` -- a small NumPy network toolkit (layers, losses, :class:`MLP`);
* :mod:`fastoptim.demo.datasets` -- the demo's data sets (no download, ever).
"""
