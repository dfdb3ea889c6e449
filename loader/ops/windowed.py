"""One enumerator for every layer that is "pairs of positions x a block of channels".

Convolution (any rank, strides, dilation, padding, groups), depthwise and transposed
convolution, Dense (a single position pair per leading index), max/average/global pooling and
interpolating upsampling are all the same shape of work: for each (output position, tap,
input position) pair of a :class:`PairTable`, group ``g`` connects input channels
``g*cin_g .. (g+1)*cin_g - 1`` to output channels ``g*cout_g .. (g+1)*cout_g - 1`` with the
weights of the tap's kernel slab (or 1.0 / the pair's scale when there is no kernel).

Speed: a batch is a 4-d block (pairs, groups, cin_g, cout_g) written by three broadcasting
ufunc calls into preallocated buffers (``np.add`` for src and dst, ``np.take`` for the
weights), so numpy's inner loops run over the contiguous channel axis and Python is touched
once per batch, not per edge.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .base import Edges, NeuronOp, keep
from .geometry import PairTable
from .tensors import TensorIds


class WindowedOp(NeuronOp):
    def __init__(self, *, inp: TensorIds, out_shape, offset: int, pairs: PairTable,
                 groups: int, kernel: np.ndarray | None, op: str = "sum", bias=None,
                 activation: str = "linear", params: dict | None = None):
        """
        Parameters
        ----------
        inp : ids of the input tensor, viewed as (input positions, cin).
        out_shape : output shape, viewed as (output positions, cout).
        kernel : (taps, cin_g, cout) weights, or None for weight 1.0 (times the pair scale).
        groups : channel groups; pooling and depthwise use groups == cin.
        """
        super().__init__(out_shape, offset, bias=bias, activation=activation)
        self.op = op
        self.inputs = [inp]
        self.pairs = pairs
        self.cin = int(inp.shape[-1]) if len(inp.shape) else 1
        self.cout = int(self.out_shape[-1]) if self.out_shape else 1
        self.groups = int(groups)
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError("channels must divide into groups")
        self.cin_g, self.cout_g = self.cin // self.groups, self.cout // self.groups
        self.params = params or {}
        self._ids2d = None if inp.contiguous else inp.ids.reshape(-1, self.cin)
        if kernel is not None:
            kernel = np.asarray(kernel, dtype=np.float32)
            if kernel.shape != (pairs.n_taps, self.cin_g, self.cout):
                raise ValueError(f"kernel shape {kernel.shape} does not fit "
                                 f"{(pairs.n_taps, self.cin_g, self.cout)}")
            # (taps, groups, cin_g, cout_g): one contiguous slab per (tap, group) to gather.
            kernel = kernel.reshape(pairs.n_taps, self.cin_g, self.groups, self.cout_g)
            kernel = np.ascontiguousarray(kernel.transpose(0, 2, 1, 3))
        self.kernel = kernel
        self._zero_inputs_max = None

    @property
    def per_pair(self) -> int:
        return self.groups * self.cin_g * self.cout_g

    def describe(self) -> dict:
        return dict(self.params)

    # ------------------------------------------------------------------ counting
    def count_edges(self) -> int:
        if self._ids2d is None or not (self._ids2d < 0).any():
            return len(self.pairs) * self.per_pair
        # Sources that are padding zeros have no edge: count the real ones per position/group.
        valid = (self._ids2d >= 0).reshape(-1, self.groups, self.cin_g).sum(axis=2)
        total = 0
        for _, _, in_pos, _ in self.pairs.iter_chunks(1 << 20):
            total += int(valid[in_pos].sum()) * self.cout_g
        return total

    # ------------------------------------------------------------------ enumeration
    def iter_edges(self, batch_size: int, needed: np.ndarray | None = None,
                   reuse_buffers: bool = False) -> Iterator[Edges]:
        needed_pos = None
        if needed is not None:
            needed_pos = needed.reshape(-1, self.cout).any(axis=1)
        filter_zero = self._ids2d is not None and bool((self._ids2d < 0).any())
        if self.per_pair > batch_size and self.groups == 1:
            source = self._iter_split_channels(batch_size, needed_pos)
        else:
            source = self._iter_pair_blocks(batch_size, needed_pos, reuse_buffers)
        for src, dst, w in source:
            mask = None
            if filter_zero:
                mask = src >= 0
            if needed is not None:
                need = needed[dst - self.offset]
                mask = need if mask is None else mask & need
            if mask is not None and not mask.all():
                src, dst, w = keep((src, dst, w), mask)
            if len(src):
                yield src, dst, w

    def _pair_chunks(self, max_pairs, needed_pos):
        for out_pos, tap, in_pos, scale in self.pairs.iter_chunks(max_pairs):
            if needed_pos is not None:
                m = needed_pos[out_pos]
                if not m.any():
                    continue
                out_pos, tap, in_pos = out_pos[m], tap[m], in_pos[m]
                scale = None if scale is None else scale[m]
            yield out_pos, tap, in_pos, scale

    def _src_base(self, in_pos):
        """(m, groups, cin_g) source ids of the pairs' input positions."""
        g, cg = self.groups, self.cin_g
        if self._ids2d is None:
            base = self.inputs[0].offset + in_pos * self.cin
            return base[:, None, None] + np.arange(self.cin, dtype=np.int64).reshape(1, g, cg)
        return self._ids2d[in_pos].reshape(-1, g, cg)

    def _iter_pair_blocks(self, batch_size, needed_pos, reuse_buffers):
        per_pair = self.per_pair
        m_max = max(1, batch_size // per_pair)
        shape4 = (self.groups, self.cin_g, self.cout_g)
        out_chan = np.arange(self.cout, dtype=np.int64).reshape(1, self.groups, 1, self.cout_g)
        buffers = None
        for out_pos, tap, in_pos, scale in self._pair_chunks(m_max, needed_pos):
            for start in range(0, len(out_pos), m_max):
                sl = slice(start, start + m_max)
                o, t, i = out_pos[sl], tap[sl], in_pos[sl]
                m = len(o)
                if buffers is None or not reuse_buffers:
                    buffers = (np.empty((m_max,) + shape4, np.int64),
                               np.empty((m_max,) + shape4, np.int64),
                               np.empty((m_max,) + shape4, np.float32))
                src, dst, w = (b[:m] for b in buffers)
                if self.contiguous_source_fast_path():
                    # src[j, g, ci, co] = offset + in_pos[j] * cin + g * cin_g + ci
                    base = self.inputs[0].offset + i * self.cin
                    np.add(base[:, None, None, None], self._in_chan4, out=src)
                else:
                    np.copyto(src, self._src_base(i)[..., None])
                np.add((self.offset + o * self.cout)[:, None, None, None], out_chan, out=dst)
                if self.kernel is not None:
                    np.take(self.kernel, t, axis=0, out=w)
                    if scale is not None:
                        w *= scale[sl].astype(np.float32)[:, None, None, None]
                elif scale is not None:
                    np.copyto(w, scale[sl].astype(np.float32)[:, None, None, None])
                else:
                    w.fill(1.0)
                yield src.reshape(-1), dst.reshape(-1), w.reshape(-1)

    def contiguous_source_fast_path(self) -> bool:
        if self._ids2d is not None:
            return False
        if not hasattr(self, "_in_chan4"):
            self._in_chan4 = np.arange(self.cin, dtype=np.int64).reshape(
                1, self.groups, self.cin_g, 1)
        return True

    def _iter_split_channels(self, batch_size, needed_pos):
        """One pair at a time, input channels in chunks (Dense over a huge flattened input)."""
        chunk = max(1, batch_size // self.cout)
        co = np.arange(self.cout, dtype=np.int64)
        for out_pos, tap, in_pos, scale in self._pair_chunks(1, needed_pos):
            for o, t, i, j in zip(out_pos, tap, in_pos, range(len(out_pos))):
                srcs = self._src_base(np.array([i]))[0, 0]
                for c0 in range(0, self.cin, chunk):
                    c1 = min(self.cin, c0 + chunk)
                    src = np.repeat(srcs[c0:c1], self.cout)
                    dst = np.tile(self.offset + o * self.cout + co, c1 - c0)
                    w = self.kernel[t, 0, c0:c1, :].reshape(-1).copy()
                    if scale is not None:
                        w *= np.float32(scale[j])
                    yield src, dst, w

    # ------------------------------------------------------------------ attributes
    def zero_in_window(self) -> np.ndarray | None:
        """Per neuron: does its window hold a constant zero from explicit padding?

        A ``max`` neuron over such a window equals ``relu(max(real inputs))``: the zero takes
        part in Keras's maximum but is never an edge, so the activation restores it exactly.
        """
        if self._zero_inputs_max is None:
            zero = np.zeros(self.n_neurons, dtype=bool)
            if self._ids2d is not None and (self._ids2d < 0).any():
                zero2d = zero.reshape(-1, self.cout)
                is_zero = self._ids2d < 0
                for out_pos, _, in_pos, _ in self.pairs.iter_chunks(1 << 18):
                    hit = is_zero[in_pos]
                    if hit.any():
                        rows = np.nonzero(hit.any(axis=1))[0]
                        np.logical_or.at(zero2d, out_pos[rows], hit[rows])
            self._zero_inputs_max = zero
        return self._zero_inputs_max

    def activation(self, flat):
        if self.op != "max":
            return self._activation
        zero = self.zero_in_window()
        if not zero.any():
            return self._activation
        if self._activation != "linear":
            raise ValueError("max pooling with an activation over explicit zero padding")
        return np.where(zero[flat], "relu", "linear").astype(object)
