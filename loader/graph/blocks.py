"""One layer of the graph run forward and backward for one input, over its edges in blocks.

A trace (:mod:`loader.graph.trace`) needs every neuron's pre-activation (forward) and every
neuron's gradient (backward), for models with 15 billion edges. Both passes go over the
layer's edges exactly as the graph defines them, grouped the way the enumerator groups them
(:mod:`loader.ops.windowed`): a windowed layer's edges are its (output position, tap, input
position) pairs times a block of channels, so the pairs of one tap become a sparse 0/1 (or
scale) matrix between positions and the channel block is that tap's kernel slab. The forward
pass is then ``sum over taps of (S_t @ X) @ K_t`` and the backward pass ``sum over taps of
S_t.T @ (G @ K_t.T)``: each edge's weight is used once per pass, and no path is ever followed.
Max and min neurons take the first extreme entry in window order (taps in C order over the
window, the order TensorFlow's max-pooling gradient scans), remembered as the neuron's
*chosen* source; the backward pass sends their gradient to that source only.

:class:`EdgePass` does the same from the enumerated ``(src, dst, weight)`` edges, one batch at a
time (slow, and the reference the block passes are tested against).

Arrays: ``values`` and ``grad`` are float64 over all neuron ids plus one last slot that stands
for the constant zero of padding (id ``-1`` indexes it), so a padded id map needs no masking
in sums; the slot's gradient is ignored.
"""

from __future__ import annotations

import weakref

import numpy as np
from scipy import sparse

from ..ops.elementwise import ElementwiseOp
from ..ops.tensors import broadcast_ids, broadcast_take
from ..ops.windowed import WindowedOp

# Kernel slabs up to this many weights are kept as float64; bigger ones (VGG16's fc1: 103M)
# are widened a slice of rows at a time, so a pass never holds a second copy of them.
_KERNEL64_LIMIT = 1 << 22
_ROWS_PER_SLICE = 2048

_cache: "weakref.WeakKeyDictionary[object, object]" = weakref.WeakKeyDictionary()


def layer_pass(op, *, method: str = "blocks"):
    """The pass object of a neuron op (cached per op for ``blocks``)."""
    if method == "edges":
        return EdgePass(op)
    if method != "blocks":
        raise ValueError(f"method must be 'blocks' or 'edges', got {method!r}")
    p = _cache.get(op)
    if p is None:
        if isinstance(op, WindowedOp) and (op.op == "sum" or (op.cin_g == 1 and op.cout_g == 1)):
            p = WindowedPass(op)
        elif isinstance(op, ElementwiseOp):
            p = ElementwisePass(op)
        else:
            p = EdgePass(op)
        _cache[op] = p
    return p


def _extreme(op: str):
    """(reduction, fill for padding) of a max or min neuron."""
    return (np.maximum, -np.inf) if op == "max" else (np.minimum, np.inf)


class WindowedPass:
    """Convolution, Dense, pooling, interpolation: tap matrices times kernel slabs."""

    def __init__(self, op: WindowedOp):
        self.op = op
        t = op.inputs[0]
        self.cin, self.cout, self.g = op.cin, op.cout, op.groups
        self.cin_g, self.cout_g = op.cin_g, op.cout_g
        self.n_in = t.size // max(1, op.cin)
        self.n_out = op.n_neurons // max(1, op.cout)
        self.in_affine = op.in_affine
        self.in_ids = None if op.in_affine is not None else op.input_ids2d()
        chunks = list(op.pairs.iter_chunks(1 << 22))
        out = np.concatenate([c[0] for c in chunks])
        tap = np.concatenate([c[1] for c in chunks])
        inp = np.concatenate([c[2] for c in chunks])
        scale = None if chunks[0][3] is None else np.concatenate([c[3] for c in chunks])
        self._k64: dict[int, np.ndarray] = {}
        if op.op == "sum":
            data = np.ones(len(out)) if scale is None else scale.astype(np.float64)
            if op.kernel is None:  # weight 1 (times the pair's scale) for every tap alike
                groups = [(None, np.arange(len(out)))]
            else:
                order = np.argsort(tap, kind="stable")
                bounds = np.flatnonzero(np.diff(tap[order])) + 1
                groups = [(int(tap[s[0]]), s) for s in np.split(order, bounds) if len(s)]
            shape = (self.n_out, self.n_in)
            self.taps = []
            for t_, sel in groups:
                s = sparse.csr_matrix((data[sel], (out[sel], inp[sel])), shape=shape)
                self.taps.append((t_, s, s.T.tocsr()))
        else:
            # Pairs in (output position, tap) order: each output's window, in window order.
            order = np.lexsort((tap, out))
            self.pair_out, self.pair_in = out[order], inp[order]
            self.starts = np.flatnonzero(np.r_[True, np.diff(self.pair_out) != 0])
            self.counts = np.diff(np.r_[self.starts, len(order)])
            self.seg_out = self.pair_out[self.starts]

    # ------------------------------------------------------------------ helpers
    def _input_view(self, arr: np.ndarray) -> np.ndarray:
        """The input tensor's slots of a per-id array as a (input positions, cin) view (an
        affine id map: a layer's output in either layout, or a transpose of one)."""
        off, ps, cs = self.in_affine
        item = arr.strides[0]
        return np.lib.stride_tricks.as_strided(arr[off:], shape=(self.n_in, self.cin),
                                               strides=(ps * item, cs * item))

    def _gather(self, values: np.ndarray) -> np.ndarray:
        """The input tensor's values as (input positions, cin); padding reads the zero slot."""
        if self.in_ids is None:
            return self._input_view(values)
        return values[self.in_ids]

    def _scatter(self, grad: np.ndarray, g_in: np.ndarray) -> None:
        if self.in_ids is None:  # distinct ids: the view is a one-to-one window on grad
            view = self._input_view(grad)
            view += g_in
        else:  # real ids are distinct (no parallel edges); padding all lands in the slot
            grad[self.in_ids.reshape(-1)] += g_in.reshape(-1)

    def _slab(self, t: int) -> np.ndarray | None:
        """Kernel slab of tap ``t`` as float64 (g, cin_g, cout_g), or None when too big."""
        k = self._k64.get(t)
        if k is None:
            slab = self.op.kernel[t]
            if slab.size > _KERNEL64_LIMIT:
                return None
            k = self._k64[t] = slab.astype(np.float64)
        return k

    def _times_kernel(self, y: np.ndarray, t: int) -> np.ndarray:
        """(P, cin) input sums of tap ``t`` -> (P, cout) contributions through its slab."""
        p = y.shape[0]
        k = self._slab(t)
        if k is None:  # one group (Dense on a big input): widen the slab in row slices
            slab = self.op.kernel[t][0]
            out = np.zeros((p, self.cout))
            for r in range(0, self.cin, _ROWS_PER_SLICE):
                out += y[:, r:r + _ROWS_PER_SLICE] @ slab[r:r + _ROWS_PER_SLICE].astype(
                    np.float64)
            return out
        if self.g == 1:
            return y @ k[0]
        if self.cin_g == 1:  # depthwise: each input channel feeds its own cout_g outputs
            return (y[:, :, None] * k[None, :, 0, :]).reshape(p, self.cout)
        return np.einsum("pgc,gco->pgo", y.reshape(p, self.g, self.cin_g), k).reshape(
            p, self.cout)

    def _times_kernel_t(self, gr: np.ndarray, t: int) -> np.ndarray:
        """(P, cout) output gradients -> (P, cin) through tap ``t``'s slab, transposed."""
        p = gr.shape[0]
        k = self._slab(t)
        if k is None:
            slab = self.op.kernel[t][0]
            out = np.empty((p, self.cin))
            for r in range(0, self.cin, _ROWS_PER_SLICE):
                out[:, r:r + _ROWS_PER_SLICE] = gr @ slab[r:r + _ROWS_PER_SLICE].astype(
                    np.float64).T
            return out
        if self.g == 1:
            return gr @ k[0].T
        if self.cin_g == 1:
            return (gr.reshape(p, self.g, self.cout_g) * k[None, :, 0, :]).sum(axis=2)
        return np.einsum("pgo,gco->pgc", gr.reshape(p, self.g, self.cout_g), k).reshape(
            p, self.cin)

    def _no_kernel(self, y: np.ndarray) -> np.ndarray:
        """Weight 1 between every input and output channel of a group (pooling: identity)."""
        if self.cin_g == 1 and self.cout_g == 1:
            return y
        s = y.reshape(-1, self.g, self.cin_g).sum(axis=2, keepdims=True)
        return np.broadcast_to(s, (y.shape[0], self.g, self.cout_g)).reshape(-1, self.cout)

    def _no_kernel_t(self, gr: np.ndarray) -> np.ndarray:
        if self.cin_g == 1 and self.cout_g == 1:
            return gr
        s = gr.reshape(-1, self.g, self.cout_g).sum(axis=2, keepdims=True)
        return np.broadcast_to(s, (gr.shape[0], self.g, self.cin_g)).reshape(-1, self.cin)

    # ------------------------------------------------------------------ passes
    def forward(self, values: np.ndarray):
        """Pre-activations (without bias) and, for max/min, each neuron's chosen source id."""
        x = self._gather(values)
        if self.op.op == "sum":
            acc = np.zeros((self.n_out, self.cout))
            for t, s, _ in self.taps:
                y = s @ x
                acc += self._no_kernel(y) if t is None else self._times_kernel(y, t)
            return self.op.out_flat(acc), None
        reduce, fill = _extreme(self.op.op)
        v = x[self.pair_in]
        if self.in_ids is not None:  # padding zeros are no edges: they never win
            v = np.where(self.in_ids[self.pair_in] < 0, fill, v)
        best = reduce.reduceat(v, self.starts, axis=0)
        rows = np.arange(len(v))[:, None]
        first = np.minimum.reduceat(np.where(v == np.repeat(best, self.counts, axis=0), rows,
                                             len(v)), self.starts, axis=0)
        pos = self.pair_in[first]
        src = self.op.input_ids(pos, np.arange(self.cin)[None, :])
        src = np.where(np.isinf(best), -1, src)
        pre = np.full((self.n_out, self.cout), fill)
        chosen = np.full((self.n_out, self.cout), -1, dtype=np.int64)
        pre[self.seg_out], chosen[self.seg_out] = best, src
        return self.op.out_flat(pre), self.op.out_flat(chosen)

    def backward(self, gpre: np.ndarray, values: np.ndarray, chosen, grad: np.ndarray) -> None:
        """Add this layer's gradient, d target / d pre-activation ``gpre``, to its inputs."""
        if self.op.op != "sum":
            ok = chosen >= 0
            np.add.at(grad, chosen[ok], gpre[ok])
            return
        gr = self.op.by_channel(gpre)
        g_in = np.zeros((self.n_in, self.cin))
        for t, _, st in self.taps:
            h = self._no_kernel_t(gr) if t is None else self._times_kernel_t(gr, t)
            g_in += st @ h
        self._scatter(grad, g_in)


class ElementwisePass:
    """BatchNormalization, activations, arithmetic and merges: neuron i reads position i."""

    def __init__(self, op: ElementwiseOp):
        self.op = op
        n = op.n_neurons
        flat = np.arange(n, dtype=np.int64)
        self.ids = np.stack([broadcast_ids(t, op.out_shape, flat) for t in op.inputs])
        self.w = np.stack([broadcast_take(w, op.out_shape, flat).astype(np.float64)
                           for w in op.weights]) if op.op == "sum" else None
        real = [row[row >= 0] for row in self.ids]
        self.distinct = [len(np.unique(r)) == len(r) for r in real]

    def _add(self, grad, k, contrib):
        if self.distinct[k]:
            grad[self.ids[k]] += contrib  # padding: the zero slot, ignored
        else:  # a broadcast input (squeeze-and-excite's scale) feeds many neurons
            np.add.at(grad, self.ids[k], contrib)

    def forward(self, values: np.ndarray):
        v = values[self.ids]
        op = self.op.op
        if op == "sum":
            return (self.w * v).sum(axis=0), None
        if op == "product":
            return np.prod(v, axis=0), None
        reduce, fill = _extreme(op)
        v = np.where(self.ids < 0, fill, v)
        k = (np.argmax if op == "max" else np.argmin)(v, axis=0)  # the first extreme input
        cols = np.arange(v.shape[1])
        pre = v[k, cols]
        chosen = np.where(np.isinf(pre), -1, self.ids[k, cols])
        return pre, chosen

    def backward(self, gpre: np.ndarray, values: np.ndarray, chosen, grad: np.ndarray) -> None:
        op = self.op.op
        if op in ("max", "min"):
            ok = chosen >= 0
            np.add.at(grad, chosen[ok], gpre[ok])
            return
        if op == "sum":
            for k in range(len(self.ids)):
                self._add(grad, k, gpre * self.w[k])
            return
        v = values[self.ids]
        for k in range(len(self.ids)):
            others = np.prod(np.delete(v, k, axis=0), axis=0)
            self._add(grad, k, gpre * others)


class EdgePass:
    """The reference: both passes over the enumerated ``(src, dst, weight)`` edges.

    A max (min) neuron chooses, among its maximal (minimal) sources, the one with the least
    id: for windows that read their input in position order (every pooling layer over a
    layer's own output, or over ZeroPadding of it) that is the first in window order.
    """

    def __init__(self, op, batch_size: int = 1 << 20):
        self.op, self.batch_size = op, batch_size

    def forward(self, values: np.ndarray):
        op, n, off = self.op, self.op.n_neurons, self.op.offset
        if op.op == "sum":
            acc = np.zeros(n)
            for src, dst, w in op.iter_edges(self.batch_size):
                acc += np.bincount(dst - off, weights=values[src] * w, minlength=n)
            return acc, None
        if op.op == "product":
            acc = np.ones(n)
            for src, dst, _ in op.iter_edges(self.batch_size):
                np.multiply.at(acc, dst - off, values[src])
            return acc, None
        reduce, fill = _extreme(op.op)
        best = np.full(n, fill)
        for src, dst, _ in op.iter_edges(self.batch_size):
            reduce.at(best, dst - off, values[src])
        least = np.full(n, np.iinfo(np.int64).max)
        for src, dst, _ in op.iter_edges(self.batch_size):
            hit = values[src] == best[dst - off]
            np.minimum.at(least, dst[hit] - off, src[hit])
        chosen = np.where(least == np.iinfo(np.int64).max, -1, least)
        return best, chosen

    def backward(self, gpre: np.ndarray, values: np.ndarray, chosen, grad: np.ndarray) -> None:
        op, off = self.op, self.op.offset
        if op.op in ("max", "min"):
            ok = chosen >= 0
            np.add.at(grad, chosen[ok], gpre[ok])
            return
        if op.op == "product":
            # The product of a neuron's other inputs, zeros included: per neuron the product
            # of its nonzero inputs and how many are zero.
            n = op.n_neurons
            nonzero, zeros = np.ones(n), np.zeros(n)
            for src, dst, _ in op.iter_edges(self.batch_size):
                v = values[src]
                np.multiply.at(nonzero, dst - off, np.where(v == 0, 1.0, v))
                np.add.at(zeros, dst - off, v == 0)
        for src, dst, w in op.iter_edges(self.batch_size):
            g = gpre[dst - off]
            if op.op == "sum":
                contrib = g * w
            else:
                v, d = values[src], dst - off
                others_zero = zeros[d] - (v == 0)
                contrib = np.where(others_zero > 0, 0.0,
                                   g * nonzero[d] / np.where(v == 0, 1.0, v))
            np.add.at(grad, src, contrib)
