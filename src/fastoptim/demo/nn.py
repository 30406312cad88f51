"""fastoptim.demo.nn: a small NumPy network toolkit in the style of "Deep Learning from Scratch".

Layers have ``forward(x, train=False)`` and ``backward(dout)``; the ones with parameters
hold them in ``layer.params`` (a dict of arrays) and put their gradients in
``layer.grads`` (same keys) during ``backward``. A model (:class:`Sequential`, or
:class:`MLP` which builds one) collects every layer's parameters into one dict,
``model.params``, whose arrays *are* the layers' arrays, so an optimizer that updates
``model.params`` in place updates the model::

    net = MLP([64, 100, 10], seed=0)                 # Dense-ReLU-Dense + softmax-CE
    opt = fastoptim.Adam(lr=1e-3)
    for x, t in batches:
        grads = net.gradient(x, t)                   # same keys as net.params
        opt.update(net.params, grads)

Nothing here ever rebinds a parameter (``self.W = ...``): parameters change only in place.

Keys follow the book: ``W1, b1, W2, b2, ...`` for the dense layers in order, ``gamma1,
beta1, ...`` for the batch-norm layers in order.

Everything works in float32 or float64: a model has one dtype (that of its parameters),
inputs are converted to it, and every gradient has its parameter's dtype.

Conventions (where the lecture notes or the book leave a choice):

* He initialisation: normal with std ``sqrt(2 / fan_in)``; Xavier: std ``sqrt(1 / fan_in)``
  (the book's and seed 002's form). Biases start at 0.
* Dropout is "inverted": in training, kept units are scaled by ``1 / (1 - ratio)`` so that
  evaluation is the identity (the book instead multiplies by ``1 - ratio`` at test time;
  the expected outputs are the same).
* BatchNorm normalises with the biased batch variance (seed 002, Def 6.3) and keeps
  running statistics ``running = momentum * running + (1 - momentum) * batch`` with
  ``momentum = 0.9`` (the book's convention; PyTorch's ``momentum=0.1`` is the weight of
  the new batch instead). ``gamma``/``beta`` are parameters; the running statistics are
  not (they are buffers, never given to the optimizer).
* Softmax-with-cross-entropy takes integer labels or one-hot rows and is computed with a
  log-sum-exp, with no ``1e-7`` added inside the log; the loss is the batch mean.
* MSE is the mean of ``(y - t)**2`` over every element (seed 004:
  ``(1/N) * sum_i (y_i - yhat_i)**2`` for one output).
"""

import numbers

import numpy as np

__all__ = ["he_normal", "xavier_normal", "Affine", "Dense", "ReLU", "LeakyReLU", "Sigmoid",
           "Tanh", "Dropout", "BatchNorm", "SoftmaxCrossEntropy", "MSELoss", "Sequential",
           "MLP", "numerical_gradient"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _rng(rng=None, seed=None):
    if rng is not None and seed is not None:
        raise ValueError("pass rng or seed, not both")
    if rng is None:
        return np.random.default_rng(seed)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


# ---------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------

def he_normal(fan_in, fan_out, rng=None, dtype=np.float32):
    """He initialisation for ReLU layers: N(0, 2/fan_in), shape (fan_in, fan_out)."""
    rng = _rng(rng)
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)


def xavier_normal(fan_in, fan_out, rng=None, dtype=np.float32):
    """Xavier initialisation for sigmoid/tanh layers, as the book and seed 002 write it:
    N(0, 1/fan_in), shape (fan_in, fan_out)."""
    rng = _rng(rng)
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(1.0 / fan_in)).astype(dtype)


INITIALIZERS = {"he": he_normal, "xavier": xavier_normal}


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------

class Layer:
    """Base class. ``params``/``grads``: dicts of arrays (empty for layers without
    parameters)."""

    def __init__(self):
        self.params = {}
        self.grads = {}

    def forward(self, x, train=False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Affine(Layer):
    """Fully connected layer ``out = x @ W + b`` over given arrays (the book's signature).

    ``x`` may have more than two dimensions: it is flattened to ``(N, -1)`` and ``dx``
    gets the input's shape back.

    Parameters
    ----------
    W : ndarray, shape (in_features, out_features), float32 or float64
    b : ndarray, shape (out_features,), same dtype
        Used as they are (not copied): they are the parameters.
    """

    def __init__(self, W, b):
        super().__init__()
        if not isinstance(W, np.ndarray) or not isinstance(b, np.ndarray):
            raise TypeError("W and b must be NumPy arrays")
        _float_dtype(W.dtype)
        if W.ndim != 2 or b.shape != (W.shape[1],) or b.dtype != W.dtype:
            raise ValueError(f"W must be 2-D and b 1-D with W.shape[1] elements and W's "
                             f"dtype; got W {W.shape} {W.dtype}, b {b.shape} {b.dtype}")
        self.W, self.b = W, b
        self.params = {"W": W, "b": b}
        self._x = None
        self._shape = None

    def forward(self, x, train=False):
        self._shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self._x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.grads = {"W": self._x.T @ dout, "b": dout.sum(axis=0)}
        return (dout @ self.W.T).reshape(self._shape)

    def __repr__(self):
        return f"{type(self).__name__}({self.W.shape[0]}, {self.W.shape[1]}, dtype={self.W.dtype})"


class Dense(Affine):
    """Fully connected layer with freshly initialised weights.

    Parameters
    ----------
    in_features, out_features : int
    init : {"he", "xavier"} or float, default "he"
        Initialisation of ``W`` (a float is a standard deviation); ``b`` starts at 0.
    rng : numpy.random.Generator, optional
    dtype : float32 or float64, default float32
    """

    def __init__(self, in_features, out_features, *, init="he", rng=None,
                 dtype=np.float32):
        dtype = _float_dtype(dtype)
        rng = _rng(rng)
        if isinstance(init, str):
            if init not in INITIALIZERS:
                raise ValueError(f"Invalid init: {init!r} (must be 'he', 'xavier' or a "
                                 f"standard deviation)")
            W = INITIALIZERS[init](in_features, out_features, rng, dtype)
        elif isinstance(init, numbers.Real) and not isinstance(init, bool) and init >= 0:
            W = (rng.standard_normal((in_features, out_features)) * init).astype(dtype)
        else:
            raise ValueError(f"Invalid init: {init!r} (must be 'he', 'xavier' or a "
                             f"standard deviation >= 0)")
        super().__init__(W, np.zeros(out_features, dtype=dtype))


class ReLU(Layer):
    """``max(0, x)``; the gradient at 0 is taken as 0."""

    def forward(self, x, train=False):
        self._mask = x > 0
        return np.where(self._mask, x, x.dtype.type(0))

    def backward(self, dout):
        return np.where(self._mask, dout, dout.dtype.type(0))


class LeakyReLU(Layer):
    """``x`` for ``x > 0``, ``alpha * x`` otherwise (seed 004: alpha = 0.01 in general)."""

    def __init__(self, alpha=0.01):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or alpha < 0:
            raise ValueError(f"Invalid alpha: {alpha!r} (must be a real number >= 0)")
        self.alpha = float(alpha)

    def forward(self, x, train=False):
        self._mask = x > 0
        return np.where(self._mask, x, x * x.dtype.type(self.alpha))

    def backward(self, dout):
        return np.where(self._mask, dout, dout * dout.dtype.type(self.alpha))

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha})"


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))``, computed without overflow for large ``|x|``."""

    def forward(self, x, train=False):
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        self._y = y
        return y

    def backward(self, dout):
        return dout * self._y * (1 - self._y)


class Tanh(Layer):
    """``tanh(x)``."""

    def forward(self, x, train=False):
        self._y = np.tanh(x)
        return self._y

    def backward(self, dout):
        return dout * (1 - self._y * self._y)


class Dropout(Layer):
    """Inverted dropout: in training, each unit is kept with probability
    ``1 - ratio`` and scaled by ``1 / (1 - ratio)``; in evaluation, the identity.

    Parameters
    ----------
    ratio : float, 0 <= ratio < 1, default 0.5
    rng : numpy.random.Generator, optional
        Draws the masks (seed it for reproducible training).
    """

    def __init__(self, ratio=0.5, rng=None):
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio < 1:
            raise ValueError(f"Invalid ratio: {ratio!r} (must satisfy 0 <= ratio < 1)")
        self.ratio = float(ratio)
        self.rng = _rng(rng)
        self._mask = None

    def forward(self, x, train=False):
        if not train:
            self._mask = None
            return x
        keep = self.rng.random(x.shape) >= self.ratio
        self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.ratio))
        return x * self._mask

    def backward(self, dout):
        return dout if self._mask is None else dout * self._mask

    def __repr__(self):
        return f"Dropout(ratio={self.ratio})"


class BatchNorm(Layer):
    """Batch normalisation over the batch axis of ``(N, features)`` inputs.

    Training: ``xn = (x - mean) / sqrt(var + eps)`` with the batch's mean and (biased)
    variance, ``out = gamma * xn + beta``, and the running statistics move towards the
    batch's: ``running = momentum * running + (1 - momentum) * batch``. Evaluation uses
    the running statistics.

    Parameters
    ----------
    num_features : int
    momentum : float, 0 <= momentum < 1, default 0.9
    eps : float > 0, default 1e-5
    dtype : float32 or float64, default float32

    ``params`` holds ``gamma`` (ones) and ``beta`` (zeros); ``running_mean`` and
    ``running_var`` are attributes, not parameters.
    """

    def __init__(self, num_features, *, momentum=0.9, eps=1e-5, dtype=np.float32):
        super().__init__()
        dtype = _float_dtype(dtype)
        if not 0 <= momentum < 1:
            raise ValueError(f"Invalid momentum: {momentum!r} (must satisfy 0 <= momentum < 1)")
        if not eps > 0:
            raise ValueError(f"Invalid eps: {eps!r} (must be > 0)")
        self.momentum, self.eps = float(momentum), float(eps)
        self.gamma = np.ones(num_features, dtype=dtype)
        self.beta = np.zeros(num_features, dtype=dtype)
        self.params = {"gamma": self.gamma, "beta": self.beta}
        self.running_mean = np.zeros(num_features, dtype=dtype)
        self.running_var = np.ones(num_features, dtype=dtype)

    def forward(self, x, train=False):
        if x.ndim != 2:
            raise ValueError(f"BatchNorm takes (N, features) inputs, got shape {x.shape}")
        eps = x.dtype.type(self.eps)
        if train:
            mu = x.mean(axis=0)
            xc = x - mu
            var = (xc * xc).mean(axis=0)
            std = np.sqrt(var + eps)
            m = x.dtype.type(self.momentum)
            # in place: the running statistics stay the same arrays
            self.running_mean *= m
            self.running_mean += (1 - m) * mu
            self.running_var *= m
            self.running_var += (1 - m) * var
            self._batch = True
        else:
            xc = x - self.running_mean
            std = np.sqrt(self.running_var + eps)
            self._batch = False
        xn = xc / std
        self._xc, self._xn, self._std = xc, xn, std
        return self.gamma * xn + self.beta

    def backward(self, dout):
        xn, std = self._xn, self._std
        self.grads = {"gamma": (xn * dout).sum(axis=0), "beta": dout.sum(axis=0)}
        dxn = self.gamma * dout
        if not self._batch:              # statistics are constants in evaluation mode
            return dxn / std
        # d/dx of (x - mean) / sqrt(var + eps) with batch mean and variance:
        # dx = (dxn - mean(dxn) - xn * mean(dxn * xn)) / std
        return (dxn - dxn.mean(axis=0) - xn * (dxn * xn).mean(axis=0)) / std

    def __repr__(self):
        return (f"BatchNorm({self.gamma.size}, momentum={self.momentum}, eps={self.eps}, "
                f"dtype={self.gamma.dtype})")


# ---------------------------------------------------------------------------------------
# Losses: forward(y, t) -> float, backward(dout=1) -> dL/dy
# ---------------------------------------------------------------------------------------

class SoftmaxCrossEntropy:
    """Softmax then cross-entropy, averaged over the batch.

    ``t``: integer class labels of shape ``(N,)`` or one-hot (or any probability) rows of
    the scores' shape. ``backward()`` returns ``(softmax(y) - t_onehot) / N``.
    """

    def forward(self, y, t):
        shifted = y - y.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_z
        n = y.shape[0]
        if t.ndim == 1:
            if not np.issubdtype(t.dtype, np.integer):
                raise TypeError(f"labels must be integers, got dtype {t.dtype}")
            target = np.zeros_like(y)
            target[np.arange(n), t] = 1
        elif t.shape == y.shape:
            target = t.astype(y.dtype, copy=False)
        else:
            raise ValueError(f"t must be labels of shape ({n},) or rows of shape {y.shape}, "
                             f"got {t.shape}")
        self._p = np.exp(log_p)
        self._target = target
        return float(-(target * log_p).sum() / n)

    def backward(self, dout=1.0):
        n = self._p.shape[0]
        return (self._p - self._target) * self._p.dtype.type(dout / n)

    def __repr__(self):
        return "SoftmaxCrossEntropy()"


class MSELoss:
    """Mean squared error over every element: ``mean((y - t)**2)``."""

    def forward(self, y, t):
        t = t.reshape(y.shape).astype(y.dtype, copy=False)
        self._diff = y - t
        return float((self._diff * self._diff).mean())

    def backward(self, dout=1.0):
        return self._diff * self._diff.dtype.type(2.0 * dout / self._diff.size)

    def __repr__(self):
        return "MSELoss()"


LOSSES = {"softmax": SoftmaxCrossEntropy, "mse": MSELoss}


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------

class Sequential:
    """Layers applied in order, then a loss.

    Parameters
    ----------
    layers : list of Layer
    loss : SoftmaxCrossEntropy or MSELoss (an object with forward(y, t) and backward())

    Attributes
    ----------
    params : dict of ndarray
        Every layer's parameters, keyed ``W1, b1, W2, ..., gamma1, beta1, ...`` (the n-th
        layer holding a parameter named ``W`` gives ``Wn``); the arrays are the layers'
        own arrays.
    """

    def __init__(self, layers, loss):
        self.layers = list(layers)
        self.loss_layer = loss
        self.params = {}
        self._where = {}                         # key -> (layer, name in layer.params)
        counts = {}
        for layer in self.layers:
            for name, arr in layer.params.items():
                counts[name] = counts.get(name, 0) + 1
                key = f"{name}{counts[name]}"
                self.params[key] = arr
                self._where[key] = (layer, name)
        dtypes = {a.dtype for a in self.params.values()}
        if len(dtypes) > 1:
            raise TypeError(f"all parameters must have one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop() if dtypes else None

    def _input(self, x):
        x = np.asarray(x)
        return x.astype(self.dtype or x.dtype, copy=False)

    def predict(self, x, train=False):
        """The network's output (scores before the softmax, or the regression output)."""
        x = self._input(x)
        for layer in self.layers:
            x = layer.forward(x, train=train)
        return x

    def loss(self, x, t, train=False):
        """The loss on ``(x, t)``, as a Python float (evaluation mode by default)."""
        return self.loss_layer.forward(self.predict(x, train=train), np.asarray(t))

    def gradient(self, x, t):
        """Forward in training mode and backpropagate; returns the gradient of the loss
        as a dict with the same keys as ``params`` (new arrays, the parameters' dtype).
        The loss value of this forward pass is kept in ``last_loss``."""
        self.last_loss = self.loss(x, t, train=True)
        dout = self.loss_layer.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return {key: layer.grads[name] for key, (layer, name) in self._where.items()}

    def accuracy(self, x, t):
        """Fraction of rows whose largest output is the label (``t``: labels or one-hot)."""
        t = np.asarray(t)
        if t.ndim != 1:
            t = t.argmax(axis=1)
        return float(np.mean(self.predict(x).argmax(axis=1) == t))

    def load_params(self, params):
        """Copy values into the parameters, in place (the arrays stay the same)."""
        if set(params) != set(self.params):
            raise ValueError(f"params must have exactly the keys {sorted(self.params)}")
        for key, value in params.items():
            dst = self.params[key]
            value = np.asarray(value)
            if value.shape != dst.shape:
                raise ValueError(f"{key!r} has shape {value.shape}, the parameter {dst.shape}")
            dst[...] = value

    def __repr__(self):
        inner = ",\n  ".join(map(repr, self.layers + [self.loss_layer]))
        return f"{type(self).__name__}(\n  {inner}\n)"


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}


class MLP(Sequential):
    """A multi-layer perceptron: ``sizes = [in, hidden..., out]``.

    Each hidden layer is ``Dense -> [BatchNorm] -> activation -> [Dropout]``; the last is
    a ``Dense`` followed by the loss.

    Parameters
    ----------
    sizes : sequence of int, at least two
    activation : {"relu", "leaky_relu", "sigmoid", "tanh"}, default "relu"
    loss : {"softmax", "mse"}, default "softmax"
    init : {"he", "xavier"} or float, optional
        Default: "he" for ReLU-like activations, "xavier" for sigmoid and tanh.
    dropout : float, default 0 (no Dropout layers)
    batchnorm : bool, default False
    dtype : float32 or float64, default float32
    seed : int, optional, or rng : numpy.random.Generator, optional
        Source of the initial weights and the dropout masks.
    """

    def __init__(self, sizes, *, activation="relu", loss="softmax", init=None, dropout=0.0,
                 batchnorm=False, dtype=np.float32, seed=None, rng=None):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least two positive layer widths, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Invalid activation: {activation!r} (one of {sorted(ACTIVATIONS)})")
        if loss not in LOSSES:
            raise ValueError(f"Invalid loss: {loss!r} (one of {sorted(LOSSES)})")
        if init is None:
            init = "xavier" if activation in ("sigmoid", "tanh") else "he"
        rng = _rng(rng, seed)
        dtype = _float_dtype(dtype)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Dense(n_in, n_out, init=init, rng=rng, dtype=dtype))
            if i < len(sizes) - 2:
                if batchnorm:
                    layers.append(BatchNorm(n_out, dtype=dtype))
                layers.append(ACTIVATIONS[activation]())
                if dropout:
                    layers.append(Dropout(dropout, rng=rng))
        super().__init__(layers, LOSSES[loss]())
        self.sizes = sizes


# ---------------------------------------------------------------------------------------
# Numerical differentiation
# ---------------------------------------------------------------------------------------

def numerical_gradient(f, x, h=1e-6):
    """Central differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every element of
    ``x``, changed in place and restored. ``f`` takes no argument and reads ``x``.
    Use float64 for meaningful results (the error is about ``h**2 + eps / h``)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        f_plus = f()
        x[i] = old - h
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad
