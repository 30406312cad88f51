"""fastoptim.demo: the training toolkit and the demos, kept apart from the optimizers.

``import fastoptim`` imports nothing from here; the ``fastoptim demo``, ``paths`` and
``bench --e2e`` commands do, and so can users. Modules:

* :mod:`fastoptim.demo.nn` -- a small NumPy network toolkit (layers, losses, :class:`MLP`);
* :mod:`fastoptim.demo.datasets` -- the demo's data sets (no download, ever);
* :mod:`fastoptim.demo.settings` -- the demos' per-optimizer hyper-parameters, the one
  place that names optimizers (a rule without an entry runs with its defaults);
* :mod:`fastoptim.demo.plain` -- every rule as a plain NumPy optimizer, written the way a
  user writes it (book-style): the baseline ``fastoptim demo`` measures fastoptim against;
* :mod:`fastoptim.demo.loop` -- a training epoch, and the NumPy reference
  (``fastoptim.reference``) as an optimizer, which fastoptim must match bit for bit;
* :mod:`fastoptim.demo.train` -- ``fastoptim demo``: an MLP trained with every optimizer;
* :mod:`fastoptim.demo.paths` -- ``fastoptim paths``: trajectories on 2-D test functions;
* :mod:`fastoptim.demo.e2e` -- ``fastoptim bench --e2e``: epoch times of a training loop.

The demos that draw need the optional ``demo`` extra (matplotlib, scikit-learn, tqdm),
imported only when they run.
"""


class DemoError(Exception):
    """A demo could not finish (e.g. an optimizer diverged); the ``fastoptim`` command
    prints it as ``fastoptim: error: ...`` and exits with status 2."""


def new_figure(**kw):
    """A matplotlib Figure on the Agg canvas, without pyplot (no display needed, pyplot's
    global state never touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig
