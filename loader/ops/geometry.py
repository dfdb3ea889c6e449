"""Which input position each window entry reads, one spatial axis at a time.

Every windowed layer (convolution, transposed convolution, pooling, interpolating upsampling)
is a set of *pairs* (output position, kernel tap, input position), optionally with a scale.
In-bounds-ness is separable across axes, so an N-d pair table is the Cartesian product of
per-axis pair lists: counts are products of per-axis counts, and nothing N-d is ever tested
entry by entry.
"""

from __future__ import annotations

import functools
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


@dataclass(frozen=True)
class PairRun:
    """Blocks of pairs that all have one layout: a template, shifted.

    Block ``b`` is the template's first ``size[b]`` pairs with ``out_shift[b]`` added to their
    output positions, ``in_shift[b]`` to their input positions and ``tap_shift[b]`` to their
    taps. An enumerator that has written a block's ids can therefore reach the next block by
    adding two constants in place, and keep the weights as they are while the taps (and the
    scale factor) stay the same.
    """

    out: np.ndarray
    tap: np.ndarray
    inp: np.ndarray
    out_shift: np.ndarray
    tap_shift: np.ndarray
    in_shift: np.ndarray
    size: np.ndarray
    factor: np.ndarray | None = None  # per block: product of the outer axes' scales
    scale_parts: tuple = ()  # per-axis scales of the template, chunk axis first

    def __len__(self) -> int:
        return int(self.out.shape[0])

    def block_scale(self, b: int) -> np.ndarray | None:
        """Scales of the template's pairs in block ``b`` (its first ``size[b]`` are the
        block's), multiplied axis by axis in the order of :meth:`PairTable.iter_chunks`, so
        the float64 products are the same bits."""
        if self.factor is None:
            return None
        s = self.factor[b:b + 1]
        for part in self.scale_parts:
            s = (s[:, None] * part[None, :]).reshape(-1)
        return s


def _tap_major(a: AxisPairs) -> AxisPairs:
    order = np.lexsort((a.out, a.tap))
    return AxisPairs(a.out[order], a.tap[order], a.inp[order],
                     None if a.scale is None else a.scale[order])


def _pieces(a: AxisPairs, per_piece: int) -> list[tuple[int, int]]:
    """Cut a tap-major axis into (start, length) pieces of at most ``per_piece`` pairs.

    A tap's segment is cut into equal pieces (longest first, so later ones are prefixes of
    the first); segments shorter than a piece are packed together whole, so a window of many
    taps with one pair each (global pooling) still fills a batch.
    """
    bounds = [0] + (np.flatnonzero(np.diff(a.tap)) + 1).tolist() + [len(a)]
    pieces: list[tuple[int, int]] = []
    packable = False
    for start, end in zip(bounds[:-1], bounds[1:]):
        n = end - start
        if n <= per_piece:
            if packable and pieces[-1][1] + n <= per_piece:
                pieces[-1] = (pieces[-1][0], pieces[-1][1] + n)
            else:
                pieces.append((start, n))
            packable = True
            continue
        k = -(-n // per_piece)
        base, extra = divmod(n, k)
        for j in range(k):
            length = base + (j < extra)
            pieces.append((start, length))
            start += length
        packable = False
    return pieces


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

    def _product(self, axes: list[AxisPairs], dims=None):
        """Flat (out, tap, inp, scale) of every combination of ``axes`` (C order).

        ``dims`` are the axis numbers of ``axes`` (default: all, from the first); each axis
        contributes its coordinate times its stride in the full spatial shapes.
        """
        dims = range(len(axes)) if dims is None else dims
        out = np.zeros(1, dtype=np.int64)
        tap = np.zeros(1, dtype=np.int64)
        inp = np.zeros(1, dtype=np.int64)
        scale = np.ones(1) if self.has_scale else None
        for a, d in zip(axes, dims):
            o_st = math.prod(self.out_spatial[d + 1:])
            i_st = math.prod(self.in_spatial[d + 1:])
            k_st = math.prod(self.kernel_spatial[d + 1:])
            out = (out[:, None] + a.out[None, :] * o_st).reshape(-1)
            tap = (tap[:, None] + a.tap[None, :] * k_st).reshape(-1)
            inp = (inp[:, None] + a.inp[None, :] * i_st).reshape(-1)
            if scale is not None:
                s = a.scale if a.scale is not None else np.ones(len(a))
                scale = (scale[:, None] * s[None, :]).reshape(-1)
        return out, tap, inp, scale

    def restricted_to(self, real: np.ndarray) -> "PairTable | None":
        """The pairs whose input position is ``real`` (bool per flat input position).

        Only where the real positions are a product of per-axis sets, as ZeroPadding's are
        (the table stays a product of axes); otherwise None.
        """
        if not self.axes:
            return None
        grid = real.reshape(self.in_spatial)
        rank = grid.ndim
        per_axis = [grid.any(axis=tuple(b for b in range(rank) if b != a)) for a in range(rank)]
        spread = [ok.reshape([-1 if b == a else 1 for b in range(rank)])
                  for a, ok in enumerate(per_axis)]
        if not np.array_equal(functools.reduce(np.logical_and, spread), grid):
            return None
        axes = []
        for a, ok in zip(self.axes, per_axis):
            k = ok[a.inp]
            axes.append(AxisPairs(a.out[k], a.tap[k], a.inp[k],
                                  None if a.scale is None else a.scale[k]))
        return PairTable(axes, self.out_spatial, self.in_spatial, self.kernel_spatial)

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
            yield self._product([head] + rest)

    def iter_runs(self, max_pairs: int) -> Iterator[PairRun]:
        """Every pair once, as :class:`PairRun` blocks of at most ``max_pairs`` pairs.

        Each axis is ordered tap first. The *chunk axis* is the outermost one whose inner axes
        fit a block whole; a block is one combination of the outer axes, one piece of the
        chunk axis (see :func:`_pieces`) and all of the inner axes. For a stride-1 3x3 conv on
        224x224 with 64x64 channels and blocks of 64 pairs, the chunk axis is the column axis
        and a run is one column tap: 670 rows x 4 pieces of 56 columns, all the same layout.
        """
        if not self.axes:
            one, zero = np.ones(1, np.int64), np.zeros(1, np.int64)
            yield PairRun(zero, zero, zero, zero, zero, zero, one,
                          np.ones(1) if self.has_scale else None)
            return
        axes = [_tap_major(a) for a in self.axes]
        lens = [len(a) for a in axes]
        if 0 in lens:
            return
        q, inner = len(axes) - 1, 1
        while q > 0 and inner * lens[q] <= max_pairs:
            inner *= lens[q]
            q -= 1
        chunk = axes[q]
        in_out, in_tap, in_inp, _ = self._product(axes[q + 1:], range(q + 1, len(axes)))
        o_out, o_tap, o_inp, o_scale = self._product(axes[:q])
        # Outer combinations ordered by tap: the weights change only when the tap does.
        order = np.argsort(o_tap, kind="stable")
        o_out, o_tap, o_inp = o_out[order], o_tap[order], o_inp[order]
        o_scale = None if o_scale is None else o_scale[order]
        o_st, i_st, k_st = (math.prod(s[q + 1:]) for s in
                            (self.out_spatial, self.in_spatial, self.kernel_spatial))
        inner_scales = tuple(a.scale if a.scale is not None else np.ones(len(a))
                             for a in axes[q + 1:])
        for run in self._group_pieces(chunk, _pieces(chunk, max(1, max_pairs // inner))):
            s0, c = run[0]
            sl = slice(s0, s0 + c)
            out = (chunk.out[sl, None] * o_st + in_out[None, :]).reshape(-1)
            tap = (chunk.tap[sl, None] * k_st + in_tap[None, :]).reshape(-1)
            inp = (chunk.inp[sl, None] * i_st + in_inp[None, :]).reshape(-1)
            starts = np.array([s for s, _ in run], dtype=np.int64)
            d_out = (chunk.out[starts] - chunk.out[s0]) * o_st
            d_inp = (chunk.inp[starts] - chunk.inp[s0]) * i_st
            sizes = np.array([n for _, n in run], dtype=np.int64) * inner
            n_outer, n_run = len(o_out), len(run)
            factor = scale_parts = None
            if self.has_scale:
                factor = np.repeat(o_scale, n_run)
                piece_scale = chunk.scale[sl] if chunk.scale is not None else np.ones(c)
                scale_parts = (piece_scale,) + inner_scales
            yield PairRun(out, tap, inp,
                          out_shift=(o_out[:, None] + d_out[None, :]).reshape(-1),
                          tap_shift=np.repeat(o_tap, n_run),
                          in_shift=(o_inp[:, None] + d_inp[None, :]).reshape(-1),
                          size=np.tile(sizes, n_outer), factor=factor,
                          scale_parts=scale_parts or ())

    @staticmethod
    def _group_pieces(a: AxisPairs, pieces):
        """Runs of consecutive pieces whose pairs are the first piece's, shifted (a prefix)."""
        def layout(start, n):
            sl = slice(start, start + n)
            parts = [a.out[sl] - a.out[start], a.inp[sl] - a.inp[start], a.tap[sl]]
            return parts + ([] if a.scale is None else [a.scale[sl]])

        run, first = [], None
        for start, n in pieces:
            if run and n <= run[0][1] and all(
                    np.array_equal(x, y[:n]) for x, y in zip(layout(start, n), first)):
                run.append((start, n))
                continue
            if run:
                yield run
            run, first = [(start, n)], layout(start, n)
        if run:
            yield run
