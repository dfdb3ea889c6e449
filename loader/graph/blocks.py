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

Every pass also runs a batch of inputs (``forward_many`` / ``backward_many``, for
:mod:`loader.graph.trace_set`): the arrays gain a last axis of B inputs and a layer's tensor
becomes (positions, B * channels), so one gather per tap moves all B inputs; a convolution's
taps are then laid side by side (im2col, in bounded blocks of rows) for one GEMM per block with
K = taps x channels, accumulated in place by BLAS. The single-input methods are separate and
unchanged.

Arrays: ``values`` and ``grad`` are float64 over all neuron ids plus one last slot that stands
for the constant zero of padding (id ``-1`` indexes it), so a padded id map needs no masking
in sums; the slot's gradient is ignored.
"""

from __future__ import annotations

import weakref

import numpy as np
from scipy import sparse
from scipy.linalg import blas

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

    # ------------------------------------------------------------------ many inputs
    # The same passes for a batch of B inputs (loader.graph.trace_set): every per-id array
    # gets a last axis of inputs, ``values`` (neurons + 1, B), ``pre`` and ``gpre`` (layer
    # neurons, B). Inside, a tensor is (positions, B * channels): one gather per tap moves all
    # B inputs, and the kernel slab multiplies (positions * B, channels) rows in one GEMM that
    # accumulates in place (BLAS dgemm, beta = 1). Buffers come from ``work`` (a dict the
    # caller keeps for a whole run), so a run allocates its big arrays once. The methods above
    # are left as they are: a single trace keeps its arithmetic and its speed.
    def _tap_maps(self):
        """Per tap of a convolution-like layer: the input position each output position reads
        (``n_in``: none) and the output position each input position feeds (``n_out``:
        none), with the pairs' scales; None when a tap's pairs are not one-to-one (pooling,
        interpolation: the sparse tap matrices serve them) or the kernel is grouped."""
        maps = getattr(self, "_maps_many", False)
        if maps is not False:
            return maps
        maps = [] if self.op.op == "sum" and self.g == 1 else None
        for t, s, _ in self.taps if maps is not None else ():
            per_row = np.diff(s.indptr)
            if t is None or (per_row > 1).any() or len(np.unique(s.indices)) != s.nnz:
                maps = None
                break
            rows, cols = np.flatnonzero(per_row), s.indices
            fwd = np.full(self.n_out, self.n_in, dtype=np.int64)
            bwd = np.full(self.n_in, self.n_out, dtype=np.int64)
            fwd[rows], bwd[cols] = cols, rows
            scale_f = scale_b = None
            if (s.data != 1).any():
                scale_f, scale_b = np.zeros(self.n_out), np.zeros(self.n_in)
                scale_f[rows], scale_b[cols] = s.data, s.data
            maps.append((t, fwd, bwd, scale_f, scale_b))
        self._maps_many = maps
        return maps

    def _gather_many(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(input positions, B, cin) of a (neurons + 1, B) array, into ``out`` (any array of
        that size) or a new one; padding reads the zero slot."""
        b = values.shape[1]
        x = self._input_view_many(values) if self.in_ids is None else values[self.in_ids]
        if out is None:
            return np.ascontiguousarray(x.transpose(0, 2, 1))
        out = out.reshape(self.n_in, b, self.cin)
        np.copyto(out, x.transpose(0, 2, 1))
        return out

    def _scatter_many(self, grad: np.ndarray, g_in: np.ndarray) -> None:
        """Add (input positions, B, cin) gradients to the input neurons' rows of ``grad``."""
        per_id = g_in.transpose(0, 2, 1)
        if self.in_ids is None:  # distinct ids: the view is a one-to-one window on grad
            view = self._input_view_many(grad)
            view += per_id
        else:  # real ids are distinct; padding all lands in the (ignored) zero slot
            grad[self.in_ids.reshape(-1)] += per_id.reshape(-1, g_in.shape[1])

    def _per_neuron(self, a: np.ndarray, work: dict, name: str = "pre",
                    dtype=np.float64) -> np.ndarray:
        """(output positions, B, cout) -> (layer neurons, B), in the buffer ``name``."""
        out = _buffer(work, name, (a.shape[0] * a.shape[2], a.shape[1]), dtype)
        if self.op.channels_first:  # id = channel * positions + position
            np.copyto(out.reshape(a.shape[2], a.shape[0], a.shape[1]), a.transpose(2, 0, 1))
        else:  # id = position * channels + channel
            np.copyto(out.reshape(a.shape[0], a.shape[2], a.shape[1]), a.transpose(0, 2, 1))
        return out

    def _input_view_many(self, arr: np.ndarray) -> np.ndarray:
        """:meth:`_input_view` of a (neurons + 1, B) array: (input positions, cin, B)."""
        off, ps, cs = self.in_affine
        row, col = arr.strides
        return np.lib.stride_tricks.as_strided(arr[off:], shape=(self.n_in, self.cin,
                                                                  arr.shape[1]),
                                               strides=(ps * row, cs * row, col))

    def _by_position_many(self, per_neuron: np.ndarray) -> np.ndarray:
        """(layer neurons, B) -> (output positions, B, cout), a view."""
        b = per_neuron.shape[1]
        if self.op.channels_first:
            return per_neuron.reshape(self.cout, self.n_out, b).transpose(1, 2, 0)
        return per_neuron.reshape(self.n_out, self.cout, b).transpose(0, 2, 1)

    def prepare_many(self) -> None:
        """Build the batched passes' tables now (the tap maps, the stacked kernels), before
        batches run in threads."""
        if self._tap_maps() is not None:
            self._stacked_kernels()

    def _stacked_kernels(self):
        """The taps' float64 slabs stacked for one GEMM over all taps: ``(taps * cin, cout)``
        (forward) and ``(taps * cout, cin)`` (backward, each slab transposed), in the order
        of :meth:`_tap_maps`; None when a slab is too big to widen whole."""
        stacked = getattr(self, "_stacked_many", False)
        if stacked is False:
            slabs = [self._slab(m[0]) for m in self._tap_maps()]
            stacked = None if any(k is None for k in slabs) else (
                np.concatenate([k[0] for k in slabs]),
                np.concatenate([k[0].T for k in slabs]))
            self._stacked_many = stacked
        return stacked

    def _columns_times(self, out: np.ndarray, pad: np.ndarray, maps: list, scales: list,
                       stacked: np.ndarray, width: int, b: int, work: dict) -> None:
        """``out = sum over taps of (pad[map_t] * scale_t) @ K_t`` as one GEMM per block of
        rows, the taps side by side (im2col: K = taps * width instead of width, which small
        layers like VGG16's 64-channel first block need to run at BLAS speed).

        ``pad`` is (positions read + 1, B * width) with a zero last row (the maps' "none"),
        ``out`` (positions written * B, channels), ``stacked`` (taps * width, channels)."""
        n_rows, taps = len(maps[0]), len(maps)
        # Blocks of ~64 MB of columns: bounded whatever the layer, and rows enough that
        # BLAS runs at its speed (16 MB blocks cost VGG16's 512-channel layers 20%).
        step = max(1, (8 << 20) // max(1, b * taps * width))
        pad3 = pad.reshape(len(pad), b, width)
        for a in range(0, n_rows, step):
            z = min(n_rows, a + step)
            cols = _buffer(work, "columns", (z - a, b, taps, width))
            for k, (m, scale) in enumerate(zip(maps, scales)):
                cols[:, :, k, :] = pad3[m[a:z]]
                if scale is not None:
                    cols[:, :, k, :] *= scale[a:z, None, None]
            # numpy's matmul (BLAS dgemm) releases the GIL: batches may run in threads.
            np.matmul(cols.reshape((z - a) * b, -1), stacked, out=out[a * b:z * b])

    def _gemm_add(self, acc: np.ndarray, y: np.ndarray, t: int, transpose: bool,
                  work: dict) -> None:
        """``acc += y @ K_t`` (or ``y @ K_t.T``) in place, for an ungrouped kernel."""
        k = self._slab(t)
        if k is not None:
            _dgemm_add(acc, y, k[0], transpose)
            return
        # Too big to widen whole (VGG16's fc1: 103M weights): a slice of rows at a time,
        # widened into one kept buffer.
        slab = self.op.kernel[t][0]
        for r in range(0, self.cin, _ROWS_PER_SLICE):
            part = slab[r:r + _ROWS_PER_SLICE]
            wide = _buffer(work, "slab", part.shape)
            np.copyto(wide, part)
            if transpose:  # acc[:, rows] += y @ part.T
                _dgemm_add(acc[:, r:r + _ROWS_PER_SLICE], y, wide, True)
            else:  # acc += y[:, rows] @ part
                _dgemm_add(acc, y[:, r:r + _ROWS_PER_SLICE], wide, False)

    def forward_many(self, values: np.ndarray, work: dict | None = None):
        """:meth:`forward` for a batch: ((neurons, B) pre-activations, (neurons, B) chosen
        source ids or None)."""
        b = values.shape[1]
        work = {} if work is None else work
        if self.op.op == "sum":
            maps = self._tap_maps()
            if maps is not None:
                width = b * self.cin
                xpad = _buffer(work, "x", (self.n_in + 1, width))
                self._gather_many(values, xpad[:self.n_in])
                xpad[self.n_in] = 0.0
                acc = _buffer(work, "acc", (self.n_out * b, self.cout))
                stacked = self._stacked_kernels()
                if stacked is not None:
                    self._columns_times(acc, xpad, [m[1] for m in maps],
                                        [m[3] for m in maps], stacked[0], self.cin, b, work)
                else:
                    y = _buffer(work, "y", (self.n_out, width))
                    acc.fill(0.0)
                    for t, fwd, _, scale, _ in maps:
                        np.take(xpad, fwd, axis=0, out=y)
                        if scale is not None:
                            y *= scale[:, None]
                        self._gemm_add(acc, y.reshape(-1, self.cin), t, False, work)
            else:
                xs = self._gather_many(values).reshape(self.n_in, b * self.cin)
                acc = np.zeros((self.n_out * b, self.cout))
                for t, s, _ in self.taps:
                    y = (s @ xs).reshape(-1, self.cin)
                    acc += self._no_kernel(y) if t is None else self._times_kernel(y, t)
            return self._per_neuron(acc.reshape(self.n_out, b, self.cout), work), None
        x = self._gather_many(values, _buffer(work, "x", (self.n_in, b, self.cin)))
        pre = np.full((self.n_out, b, self.cout), _extreme(self.op.op)[1])
        chosen = np.full((self.n_out, b, self.cout), -1, dtype=np.int64)
        # A block of inputs at a time: the window arrays are (pairs, inputs, channels).
        step = max(1, (1 << 22) // max(1, len(self.pair_in) * self.cin))
        for a in range(0, b, step):
            pre[self.seg_out, a:a + step], chosen[self.seg_out, a:a + step] = \
                self._extreme_many(x[:, a:a + step])
        # The choices outlive the layer (the backward pass reads them): a buffer per layer.
        return (self._per_neuron(pre, work),
                self._per_neuron(chosen, work, ("chosen", id(self)), np.int64))

    def _extreme_many(self, x: np.ndarray):
        """Each window's first extreme entry, as :meth:`forward` finds it: (segments, B, cin)
        extreme values and source ids (-1 where only padding is left)."""
        reduce, fill = _extreme(self.op.op)
        v = x[self.pair_in]
        if self.in_ids is not None:  # padding zeros are no edges: they never win
            v = np.where((self.in_ids[self.pair_in] < 0)[:, None, :], fill, v)
        k = int(self.counts[0]) if len(self.counts) else 0
        if k and (self.counts == k).all():  # equal windows: the first extreme by arg-reduce
            w = v.reshape((len(self.starts), k) + v.shape[1:])
            at = (np.argmax if self.op.op == "max" else np.argmin)(w, axis=1)
            best = np.take_along_axis(w, at[:, None], axis=1)[:, 0]
            first = self.starts[:, None, None] + at
        else:
            best = reduce.reduceat(v, self.starts, axis=0)
            rows = np.arange(len(v))[:, None, None]
            first = np.minimum.reduceat(np.where(v == np.repeat(best, self.counts, axis=0),
                                                 rows, len(v)), self.starts, axis=0)
        pos = self.pair_in[first]
        chans = np.arange(self.cin)[None, None, :]
        src = self.op.input_ids(pos, chans)
        return best, np.where(np.isinf(best), -1, src)

    def backward_many(self, gpre: np.ndarray, values: np.ndarray, chosen,
                      grad: np.ndarray, work: dict | None = None) -> None:
        """:meth:`backward` for a batch: ``gpre`` (neurons, B), ``grad`` (neurons + 1, B)."""
        if self.op.op != "sum":
            _add_chosen_many(grad, chosen, gpre)
            return
        b = gpre.shape[1]
        work = {} if work is None else work
        per_pos = self._by_position_many(gpre)
        maps = self._tap_maps()
        if maps is not None:
            gpad = _buffer(work, "g", (self.n_out + 1, b * self.cout))
            np.copyto(gpad[:self.n_out].reshape(self.n_out, b, self.cout), per_pos)
            gpad[self.n_out] = 0.0
            g_in = _buffer(work, "g_in", (self.n_in * b, self.cin))
            stacked = self._stacked_kernels()
            if stacked is not None:
                self._columns_times(g_in, gpad, [m[2] for m in maps], [m[4] for m in maps],
                                    stacked[1], self.cout, b, work)
            else:
                h = _buffer(work, "h", (self.n_in, b * self.cout))
                g_in.fill(0.0)
                for t, _, bwd, _, scale in maps:
                    np.take(gpad, bwd, axis=0, out=h)
                    if scale is not None:
                        h *= scale[:, None]
                    self._gemm_add(g_in, h.reshape(-1, self.cout), t, True, work)
            self._scatter_many(grad, g_in.reshape(self.n_in, b, self.cin))
            return
        gr = np.ascontiguousarray(per_pos).reshape(-1, self.cout)
        g_in = np.zeros((self.n_in, b * self.cin))
        for t, _, st in self.taps:
            h = self._no_kernel_t(gr) if t is None else self._times_kernel_t(gr, t)
            g_in += st @ h.reshape(self.n_out, b * self.cin)
        self._scatter_many(grad, g_in.reshape(self.n_in, b, self.cin))


def _dgemm_add(acc: np.ndarray, y: np.ndarray, k: np.ndarray, transpose: bool) -> None:
    """``acc += y @ k`` (``y @ k.T`` with ``transpose``) in place. Row-major arrays are BLAS's
    column-major transposes: ``acc.T += k.T @ y.T`` with beta = 1, no temporary."""
    r = blas.dgemm(1.0, k.T, y.T, 1.0, acc.T, trans_a=int(transpose), overwrite_c=1)
    if not np.shares_memory(r, acc):  # BLAS worked on a copy (acc not contiguous): add it
        acc[...] = r.T


def _buffer(work: dict, name, shape: tuple, dtype=np.float64) -> np.ndarray:
    """An array of ``shape`` from the run's buffers (grown as needed, never zeroed): on this
    project's VM a fresh 0.5 GB array costs 0.3-7 s of page faults (huge pages compacted on
    demand) where refilling a kept one costs 0.1 s, and a batch of VGG16 at 224x224 would
    otherwise make tens of them."""
    size = int(np.prod(shape))
    buf = work.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = work[name] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


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

    # ------------------------------------------------------------------ many inputs
    def forward_many(self, values: np.ndarray, work: dict | None = None):
        """:meth:`forward` for a batch: ``values`` (neurons + 1, B)."""
        v = values[self.ids]  # (inputs, neurons, B)
        op = self.op.op
        if op == "sum":
            return (self.w[:, :, None] * v).sum(axis=0), None
        if op == "product":
            return np.prod(v, axis=0), None
        reduce, fill = _extreme(op)
        v = np.where((self.ids < 0)[:, :, None], fill, v)
        k = (np.argmax if op == "max" else np.argmin)(v, axis=0)  # the first extreme input
        pre = np.take_along_axis(v, k[None], axis=0)[0]
        chosen = np.where(np.isinf(pre), -1, self.ids[k, np.arange(v.shape[1])[:, None]])
        return pre, chosen

    def backward_many(self, gpre: np.ndarray, values: np.ndarray, chosen,
                      grad: np.ndarray, work: dict | None = None) -> None:
        """:meth:`backward` for a batch (``_add`` indexes rows, so it takes (n, B) too)."""
        op = self.op.op
        if op in ("max", "min"):
            _add_chosen_many(grad, chosen, gpre)
            return
        if op == "sum":
            for k in range(len(self.ids)):
                self._add(grad, k, gpre * self.w[k][:, None])
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

    # ------------------------------------------------------------------ many inputs
    def forward_many(self, values: np.ndarray, work: dict | None = None):
        """:meth:`forward` for a batch: ``values`` (neurons + 1, B)."""
        op, n, off = self.op, self.op.n_neurons, self.op.offset
        b = values.shape[1]
        if op.op == "sum":
            acc = np.zeros((n, b))
            for src, dst, w in op.iter_edges(self.batch_size):
                contrib = values[src] * w[:, None]
                for j in range(b):
                    acc[:, j] += np.bincount(dst - off, weights=contrib[:, j], minlength=n)
            return acc, None
        if op.op == "product":
            acc = np.ones((n, b))
            for src, dst, _ in op.iter_edges(self.batch_size):
                np.multiply.at(acc, dst - off, values[src])
            return acc, None
        reduce, fill = _extreme(op.op)
        best = np.full((n, b), fill)
        for src, dst, _ in op.iter_edges(self.batch_size):
            reduce.at(best, dst - off, values[src])
        none = np.iinfo(np.int64).max
        least = np.full((n, b), none)
        for src, dst, _ in op.iter_edges(self.batch_size):
            e, j = np.nonzero(values[src] == best[dst - off])
            np.minimum.at(least, (dst[e] - off, j), src[e])
        return best, np.where(least == none, -1, least)

    def backward_many(self, gpre: np.ndarray, values: np.ndarray, chosen,
                      grad: np.ndarray, work: dict | None = None) -> None:
        """:meth:`backward` for a batch: ``gpre`` (neurons, B), ``grad`` (neurons + 1, B)."""
        op, off = self.op, self.op.offset
        if op.op in ("max", "min"):
            _add_chosen_many(grad, chosen, gpre)
            return
        if op.op == "product":
            n, b = gpre.shape
            nonzero, zeros = np.ones((n, b)), np.zeros((n, b))
            for src, dst, _ in op.iter_edges(self.batch_size):
                v = values[src]
                np.multiply.at(nonzero, dst - off, np.where(v == 0, 1.0, v))
                np.add.at(zeros, dst - off, v == 0)
        for src, dst, w in op.iter_edges(self.batch_size):
            g = gpre[dst - off]
            if op.op == "sum":
                contrib = g * w[:, None]
            else:
                v, d = values[src], dst - off
                others_zero = zeros[d] - (v == 0)
                contrib = np.where(others_zero > 0, 0.0,
                                   g * nonzero[d] / np.where(v == 0, 1.0, v))
            np.add.at(grad, src, contrib)


def _add_chosen_many(grad: np.ndarray, chosen: np.ndarray, gpre: np.ndarray) -> None:
    """A batch's max/min backward: each input's gradient goes to its own chosen source."""
    ok = chosen >= 0
    cols = np.broadcast_to(np.arange(chosen.shape[1]), chosen.shape)
    np.add.at(grad, (chosen[ok], cols[ok]), gpre[ok])
