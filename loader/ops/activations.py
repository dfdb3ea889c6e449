"""Activation names of the graph contract, and their numpy definitions.

Names follow ``keras.activations``; parameterised ones carry their parameters after colons:
``leaky_relu:<slope>``, ``elu:<alpha>``, ``relu:<max_value>:<negative_slope>:<threshold>``
(Keras's ReLU layer in full generality; ``inf`` for no maximum), and from ONNX
``clip:<min>:<max>``, ``hard_sigmoid:<alpha>:<beta>`` (``max(0, min(1, alpha * x + beta))``)
and ``selu:<alpha>:<gamma>``. The numpy definitions follow Keras 3's formulas (and ONNX's
operator definitions for the ONNX names), so an executed graph reproduces the framework to
float rounding. Which framework function maps to which name is each front end's business.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ..errors import WeightgraphError


def fmt(x: float) -> str:
    return repr(float(x))


def relu_name(max_value=None, negative_slope=0.0, threshold=0.0) -> str:
    """The contract name of ``keras.activations.relu`` with these parameters."""
    max_value = None if max_value is None else float(max_value)
    negative_slope, threshold = float(negative_slope), float(threshold)
    if threshold == 0.0 and negative_slope == 0.0:
        if max_value is None:
            return "relu"
        if max_value == 6.0:
            return "relu6"
    if threshold == 0.0 and max_value is None:
        return f"leaky_relu:{fmt(negative_slope)}"
    mv = "inf" if max_value is None else fmt(max_value)
    return f"relu:{mv}:{fmt(negative_slope)}:{fmt(threshold)}"


def num(x: float) -> str:
    """A parameter in a name, short: ``0``, ``6``, ``0.2`` (repr, without a trailing ``.0``)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _relu_general(x, max_value, slope, threshold):
    below = slope * (x - threshold)
    y = np.where(x >= threshold, x, below)
    if max_value is not None:
        y = np.where(x >= max_value, max_value, y)
    return y


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _hard_sigmoid(x):
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


def _softplus(x):
    return np.logaddexp(0.0, x)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

_SIMPLE = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "sigmoid": special.expit,
    "tanh": np.tanh,
    "silu": lambda x: x * special.expit(x),
    "gelu": lambda x: 0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0))),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "exponential": np.exp,
    "mish": lambda x: x * np.tanh(_softplus(x)),
}


def _clip(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def apply(name: str, x: np.ndarray) -> np.ndarray:
    """Apply a contract activation elementwise (softmax: over the last axis of ``x``)."""
    if name in _SIMPLE:
        return _SIMPLE[name](x)
    if name == "softmax":
        return _softmax(x)
    if name == "log_softmax":
        return np.log(_softmax(x))
    head, _, rest = name.partition(":")
    args = rest.split(":") if rest else []
    if head == "leaky_relu" and len(args) == 1:
        return _relu_general(x, None, float(args[0]), 0.0)
    if head == "elu" and len(args) == 1:
        a = float(args[0])
        return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))
    if head == "relu" and len(args) == 3:
        mv = None if args[0] == "inf" else float(args[0])
        return _relu_general(x, mv, float(args[1]), float(args[2]))
    if head == "clip" and len(args) == 2:
        return _clip(x, float(args[0]), float(args[1]))
    if head == "hard_sigmoid" and len(args) == 2:
        return _clip(float(args[0]) * x + float(args[1]), 0.0, 1.0)
    if head == "selu" and len(args) == 2:
        a, g = float(args[0]), float(args[1])
        return g * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
    raise WeightgraphError(f"unknown activation {name!r}")


# ----------------------------------------------------------------------------- derivatives
def _relu_general_slope(x, max_value, slope, threshold):
    """d/dx of :func:`_relu_general`, with TensorFlow's choices at the kinks (Keras builds
    this ReLU from ``relu``, ``greater`` and ``clip``): 0 at the threshold itself, 0 from the
    cap up."""
    d = np.where(x > threshold, 1.0, np.where(x < threshold, slope, 0.0))
    if max_value is not None:
        d = np.where(x >= max_value, 0.0, d)
    return d


def _sigmoid_slope(x):
    s = special.expit(x)
    return s * (1.0 - s)


def _hard_sigmoid_slope(x):
    return np.where((x > -3.0) & (x < 3.0), 1.0 / 6.0, 0.0)


def _softplus_slope(x):
    return special.expit(x)


def _mish_slope(x):
    t = np.tanh(_softplus(x))
    return t + x * (1.0 - t * t) * special.expit(x)


def _gelu_slope(x):
    return 0.5 * (1.0 + special.erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(
        2.0 * np.pi)


_SLOPES = {
    "linear": lambda x: np.ones_like(x),
    # TensorFlow's ReluGrad passes the gradient where x > 0; Relu6Grad where 0 < x < 6.
    "relu": lambda x: (x > 0.0).astype(np.float64),
    "relu6": lambda x: ((x > 0.0) & (x < 6.0)).astype(np.float64),
    "sigmoid": _sigmoid_slope,
    "tanh": lambda x: 1.0 - np.tanh(x) ** 2,
    "silu": lambda x: special.expit(x) * (1.0 + x * (1.0 - special.expit(x))),
    "gelu": _gelu_slope,
    "elu": lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))),
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, 1.0, _SELU_ALPHA * np.exp(np.minimum(x, 0))),
    "softplus": _softplus_slope,
    "softsign": lambda x: 1.0 / (1.0 + np.abs(x)) ** 2,
    "hard_sigmoid": _hard_sigmoid_slope,
    "hard_silu": lambda x: _hard_sigmoid(x) + x * _hard_sigmoid_slope(x),
    "exponential": np.exp,
    "mish": _mish_slope,
}

#: Activations whose output mixes a whole layer (their derivative is a Jacobian, not a slope).
JACOBIAN = frozenset({"softmax", "log_softmax"})

#: The names without parameters.
PLAIN = frozenset(_SIMPLE) | JACOBIAN


def slope(name: str, x: np.ndarray) -> np.ndarray:
    """The derivative of an elementwise contract activation at pre-activation ``x``.

    Where an activation has a kink, the value is TensorFlow's: a ReLU passes no gradient at
    its threshold or from its cap up, a leaky ReLU passes its slope at 0. A neuron whose slope
    is 0 is *inactive* at this input: its output does not change with its inputs.
    ``softmax`` and ``log_softmax`` have no slope (see :func:`jacobian_vjp`).
    """
    if name in _SLOPES:
        return _SLOPES[name](x)
    if name in JACOBIAN:
        raise WeightgraphError(f"{name} has a Jacobian, not a slope")
    head, _, rest = name.partition(":")
    args = rest.split(":") if rest else []
    if head == "leaky_relu" and len(args) == 1:
        return np.where(x > 0, 1.0, float(args[0]))
    if head == "elu" and len(args) == 1:
        return np.where(x > 0, 1.0, float(args[0]) * np.exp(np.minimum(x, 0.0)))
    if head == "relu" and len(args) == 3:
        mv = None if args[0] == "inf" else float(args[0])
        return _relu_general_slope(x, mv, float(args[1]), float(args[2]))
    if head == "clip" and len(args) == 2:  # the gradient passes strictly inside the bounds
        return ((x > float(args[0])) & (x < float(args[1]))).astype(np.float64)
    if head == "hard_sigmoid" and len(args) == 2:
        a, b = float(args[0]), float(args[1])
        y = a * x + b
        return np.where((y > 0.0) & (y < 1.0), a, 0.0)
    if head == "selu" and len(args) == 2:
        a, g = float(args[0]), float(args[1])
        return g * np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0)))
    raise WeightgraphError(f"unknown activation {name!r}")


def jacobian_vjp(name: str, out: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``grad`` (d target / d output, last axis = the activation's axis) pulled back through
    ``softmax`` or ``log_softmax`` whose output is ``out``: d target / d pre-activation."""
    if name == "softmax":
        return out * (grad - (grad * out).sum(axis=-1, keepdims=True))
    if name == "log_softmax":
        return grad - np.exp(out) * grad.sum(axis=-1, keepdims=True)
    raise WeightgraphError(f"{name} is elementwise")
