"""Which input position each window entry reads, one spatial axis at a time.

Every windowed layer (convolution, transposed convolution, pooling, interpolating upsampling)
is a set of *pairs* (output position, kernel tap, input position), optionally with a scale.
In-bounds-ness is separable across axes, so an N-d pair table is the Cartesian product of
per-axis pair lists: counts are products of per-axis counts, and nothing N-d is ever tested
entry by entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np


def padded_geometry(padding: str, in_size: int, kernel: int, stride: int, dilation: int):
    """Output size and padding before the first input position, as TensorFlow defines them.

    ``same``: ``out = ceil(in / stride)``, ``pad_total = max(0, (out - 1) * stride +
    (kernel - 1) * dilation + 1 - in)``, ``pad_before = pad_total // 2`` (the odd extra row
    goes at the end; TensorFlow's rule, which Keras 3 follows on every backend).
    ``causal``: all ``(kernel - 1) * dilation`` padding goes before.
    """
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        return max(0, (in_size - effective) // stride + 1), 0
    if padding == "same":
        out = math.ceil(in_size / stride)
        pad_total = max(0, (out - 1) * stride + effective - in_size)
        return out, pad_total // 2
    if padding == "causal":
        return math.ceil(in_size / stride), effective - 1
    raise ValueError(f"unknown padding {padding!r}")


@dataclass(frozen=True)
class AxisPairs:
    """In-bounds (out, tap, inp) triples of one axis, sorted by (out, tap); optional scale."""

    out: np.ndarray
    tap: np.ndarray
    inp: np.ndarray
    scale: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.out.shape[0])


def window_axis(in_size, out_size, kernel, stride, dilation, pad_before) -> AxisPairs:
    """Forward windows: output ``o`` tap ``t`` reads input ``o*stride - pad_before + t*dilation``."""
    o = np.arange(out_size, dtype=np.int64)[:, None]
    t = np.arange(kernel, dtype=np.int64)[None, :]
    i = o * stride - pad_before + t * dilation
    ok = (i >= 0) & (i < in_size)
    return AxisPairs(np.broadcast_to(o, ok.shape)[ok], np.broadcast_to(t, ok.shape)[ok], i[ok])


def transposed_axis(in_size, out_size, kernel, stride, dilation, pad_before) -> AxisPairs:
    """Transposed windows: input ``i`` tap ``t`` writes output ``i*stride - pad_before + t*dilation``."""
    i = np.arange(in_size, dtype=np.int64)[:, None]
    t = np.arange(kernel, dtype=np.int64)[None, :]
    o = i * stride - pad_before + t * dilation
    ok = (o >= 0) & (o < out_size)
    o, t, i = o[ok], np.broadcast_to(t, ok.shape)[ok], np.broadcast_to(i, ok.shape)[ok]
    order = np.lexsort((t, o))
    return AxisPairs(o[order], t[order], i[order])


def average_axis(pairs: AxisPairs, out_size: int) -> AxisPairs:
    """Scale each pair by 1 / (in-bounds entries of its output's window) on this axis.

    Keras leaves padding out of the average's divisor; the divisor of an N-d window is the
    product of the per-axis counts, so per-axis scales multiply to the right weight.
    """
    counts = np.bincount(pairs.out, minlength=out_size)
    return AxisPairs(pairs.out, pairs.tap, pairs.inp, 1.0 / counts[pairs.out])


def matrix_axis(matrix: np.ndarray) -> AxisPairs:
    """Pairs of a dense (out, in) interpolation matrix: its nonzero entries, scale = entry."""
    o, i = np.nonzero(matrix)
    return AxisPairs(o.astype(np.int64), np.zeros_like(o, dtype=np.int64), i.astype(np.int64),
                     matrix[o, i].astype(np.float64))


def whole_axis(in_size: int) -> AxisPairs:
    """Global pooling: the single output position reads every input position."""
    i = np.arange(in_size, dtype=np.int64)
    return AxisPairs(np.zeros_like(i), i, i)


class PairTable:
    """N-d pairs (out_pos, tap, in_pos[, scale]) as the product of per-axis pairs.

    Positions and taps are flat C-order indices over the spatial output, spatial input and
    kernel shapes.
    """

    def __init__(self, axes: list[AxisPairs], out_spatial, in_spatial, kernel_spatial):
        self.axes = axes
        self.out_spatial = tuple(int(s) for s in out_spatial)
        self.in_spatial = tuple(int(s) for s in in_spatial)
        self.kernel_spatial = tuple(int(s) for s in kernel_spatial)
        self.has_scale = any(a.scale is not None for a in axes)

    def __len__(self) -> int:
        return math.prod(len(a) for a in self.axes)

    @property
    def n_taps(self) -> int:
        return math.prod(self.kernel_spatial)

    def _combine(self, axes: list[AxisPairs]):
        out = np.zeros(1, dtype=np.int64)
        tap = np.zeros(1, dtype=np.int64)
        inp = np.zeros(1, dtype=np.int64)
        scale = np.ones(1) if self.has_scale else None
        for a, o_n, i_n, k_n in zip(axes, self.out_spatial, self.in_spatial, self.kernel_spatial):
            out = (out[:, None] * o_n + a.out[None, :]).reshape(-1)
            tap = (tap[:, None] * k_n + a.tap[None, :]).reshape(-1)
            inp = (inp[:, None] * i_n + a.inp[None, :]).reshape(-1)
            if scale is not None:
                s = a.scale if a.scale is not None else np.ones(len(a))
                scale = (scale[:, None] * s[None, :]).reshape(-1)
        return out, tap, inp, scale

    def iter_chunks(self, max_pairs: int) -> Iterator[tuple]:
        """Yield (out_pos, tap, in_pos, scale) arrays of at most ~max_pairs pairs each,
        in (out_pos, tap) order along the first axis."""
        if not self.axes:  # rank 0: a single pair (Dense on a vector)
            yield (np.zeros(1, np.int64),) * 3 + (np.ones(1) if self.has_scale else None,)
            return
        first, rest = self.axes[0], self.axes[1:]
        per_first = math.prod(len(a) for a in rest)
        step = max(1, max_pairs // max(1, per_first))
        for start in range(0, len(first), step):
            sl = slice(start, start + step)
            head = AxisPairs(first.out[sl], first.tap[sl], first.inp[sl],
                             None if first.scale is None else first.scale[sl])
            yield self._combine([head] + rest)
