"""Layers where output neuron ``i`` reads position ``i`` of each input (after broadcasting).

One family for single-input affine layers (BatchNormalization, Rescaling, Normalization,
activation layers, arithmetic with a constant) and for merges (Add, Subtract, Average,
Maximum, Minimum, Multiply).
"""

from __future__ import annotations

import numpy as np

from .base import NeuronOp, Unsupported, keep
from .tensors import TensorIds, broadcast_ids, broadcast_take


class ElementwiseOp(NeuronOp):
    def __init__(self, *, inputs: list[TensorIds], weights: list, out_shape, offset: int,
                 op: str = "sum", bias=None, activation="linear", params: dict | None = None,
                 parametric: bool = False, channels_first: bool = False):
        """
        Parameters
        ----------
        inputs : tensors broadcast to ``out_shape``.
        weights : per input, a scalar or an array broadcastable to ``out_shape``.
        activation : a name, or an array of names broadcastable to ``out_shape`` (PReLU).
        parametric : the weights are the layer's own parameters (BatchNormalization's
            ``gamma / sqrt(var + eps)``, Normalization's ``1 / sqrt(var)``), not constants of
            its kind (Add's 1.0, Average's 1/n): the channel graph gives them as ``kernel``.
        """
        super().__init__(out_shape, offset, bias=bias,
                         activation=activation if isinstance(activation, str) else "linear",
                         channels_first=channels_first)
        self.op = op
        self.inputs = list(inputs)
        self.weights = [np.asarray(w, dtype=np.float32) for w in weights]
        self._activation_array = None if isinstance(activation, str) else np.asarray(
            activation, dtype=object)
        self.params = params or {}
        self.parametric = parametric
        self._zero_any = None
        if op in ("product", "min") and any(t.has_zeros for t in self.inputs):
            raise Unsupported(f"{op} over constant zero padding cannot be expressed")

    def describe(self) -> dict:
        return dict(self.params)

    def count_edges(self) -> int:
        n = self.n_neurons
        total = 0
        for t in self.inputs:
            if not t.has_zeros:
                total += n
            else:
                for a in range(0, n, 1 << 22):
                    flat = np.arange(a, min(n, a + (1 << 22)), dtype=np.int64)
                    total += int((broadcast_ids(t, self.out_shape, flat) >= 0).sum())
        return total

    def iter_edges(self, batch_size, needed=None, reuse_buffers=False):
        n = self.n_neurons
        k = len(self.inputs)
        step = max(1, batch_size // k)
        targets = np.flatnonzero(needed) if needed is not None else None
        total = n if targets is None else len(targets)
        for a in range(0, total, step):
            if targets is None:
                flat = np.arange(a, min(n, a + step), dtype=np.int64)
            else:
                flat = targets[a:a + step]
            src = np.concatenate([broadcast_ids(t, self.out_shape, flat) for t in self.inputs])
            dst = np.tile(flat + self.offset, k)
            w = np.concatenate([broadcast_take(wt, self.out_shape, flat) for wt in self.weights])
            w = w.astype(np.float32, copy=False)
            mask = src >= 0
            if not mask.all():
                src, dst, w = keep((src, dst, w), mask)
            if len(src):
                yield src, dst, w

    def activation(self, flat):
        if self._activation_array is not None:
            return broadcast_take(self._activation_array, self.out_shape, flat)
        if self.op == "max" and any(t.has_zeros for t in self.inputs):
            # max(x, 0) == relu(max(x)): the padding zero is not an edge (see WindowedOp).
            zero = np.zeros(len(flat), dtype=bool)
            for t in self.inputs:
                zero |= broadcast_ids(t, self.out_shape, flat) < 0
            if self._activation != "linear":
                raise Unsupported("Maximum with an activation over explicit zero padding")
            return np.where(zero, "relu", "linear").astype(object)
        return self._activation
