"""One enumerator for every layer that is "pairs of positions x a block of channels".

Convolution (any rank, strides, dilation, padding, groups), depthwise and transposed
convolution, Dense (a single position pair per leading index), max/average/global pooling and
interpolating upsampling are all the same shape of work: for each (output position, tap,
input position) pair of a :class:`PairTable`, group ``g`` connects input channels
``g*cin_g .. (g+1)*cin_g - 1`` to output channels ``g*cout_g .. (g+1)*cout_g - 1`` with the
weights of the tap's kernel slab (or 1.0 / the pair's scale when there is no kernel).

Speed: a batch is a 4-d block (pairs, groups, cin_g, cout_g) in preallocated buffers, so numpy's
inner loops run over the contiguous channel axis and Python is touched once per batch. The
pairs come from :meth:`PairTable.iter_runs`, in *runs* of blocks that share one layout (one
tap, consecutive positions): within a run the next block's ids are the last block's plus a
constant, so src and dst move by one in-place ``np.add`` of a scalar each (about 0.1 ns per
edge; writing them by broadcasting costs about 0.4), and the weights, one kernel slab
repeated, are not written at all until the tap changes (9 times per 3x3 conv layer).
Measured on one core of this project's 2-core AMD EPYC (bench/bench_enumerate.py, same run):
all 14,975,945,472 edges of VGG16 at 224x224 in 9.9 s, 1,519 M edges/s including the
consumer's checksum over src, dst and weight (106x a plain Python-loop enumerator at 14.3 M
edges/s; the previous broadcast-every-batch version did 826 M edges/s). Producing is now about
0.17 ns per edge and the checksum about 0.48, so batch size hardly matters from 128k to 1M
edges; peak RSS stays at the model's 1.76 GiB (the buffers are 20 bytes per batch edge).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .base import Edges, NeuronOp, by_channel, keep
from .geometry import PairTable
from .tensors import TensorIds


class WindowedOp(NeuronOp):
    def __init__(self, *, inp: TensorIds, out_shape, offset: int, pairs: PairTable,
                 groups: int, kernel: np.ndarray | None, op: str = "sum", bias=None,
                 activation: str = "linear", params: dict | None = None,
                 channels_first: bool = False):
        """
        Parameters
        ----------
        inp : ids of the input tensor, viewed as (input positions, cin).
        out_shape : output shape, viewed as (output positions, cout).
        kernel : (taps, cin_g, cout) weights, or None for weight 1.0 (times the pair scale).
        groups : channel groups; pooling and depthwise use groups == cin.
        channels_first : the input and the output hold their channels on the first axis
            (ONNX's NCHW) instead of the last; positions are the other axes, C order.
        """
        super().__init__(out_shape, offset, bias=bias, activation=activation,
                         channels_first=channels_first)
        self.op = op
        self.inputs = [inp]
        self.pairs = pairs
        self.cin = int(inp.shape[0 if self.channels_first else -1]) if len(inp.shape) else 1
        self.cout = self.n_channels
        self.groups = int(groups)
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError("channels must divide into groups")
        self.cin_g, self.cout_g = self.cin // self.groups, self.cout // self.groups
        self.params = params or {}
        # Ids in the (position, channel) views: an output neuron is offset + pos * out_step[0]
        # + chan * out_step[1]; an input value is the same affine map of its (pos, chan) when
        # the input's id map is one (a layer's own output in either layout, or a transpose
        # of one: ONNX exports of Keras models transpose NHWC to NCHW), else an explicit
        # (positions, cin) id array.
        n_out_pos = self.n_neurons // max(1, self.cout)
        self.out_step = (1, n_out_pos) if self.channels_first else (self.cout, 1)
        self.in_affine = _affine_ids(inp, self.cin, self.channels_first)
        self._ids2d = (None if self.in_affine is not None else
                       np.ascontiguousarray(self.in_view(inp.array())))
        # Padding zeros are never sources. Where they fill whole positions in a product of
        # per-axis ranges (ZeroPadding), the pairs that read them are dropped here, so no edge
        # has to be filtered out afterwards (that filter cost ResNet50's conv1 half its time).
        self._edge_pairs, self._filter_zero = pairs, False
        if self._ids2d is not None:
            zero = self._ids2d < 0
            if zero.any():
                real = ~zero.all(axis=1)
                restricted = None
                if not (zero.any(axis=1) & real).any():
                    restricted = pairs.restricted_to(real)
                if restricted is not None:
                    self._edge_pairs = restricted
                else:
                    self._filter_zero = True
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

    # ------------------------------------------------------------------ layout
    def in_view(self, arr: np.ndarray) -> np.ndarray:
        """A flat array over the input tensor viewed as (input positions, cin)."""
        return by_channel(arr, self.cin, self.channels_first)

    def out_flat(self, arr2d: np.ndarray) -> np.ndarray:
        """(output positions, cout) -> the flat per-neuron array in id order."""
        return (arr2d.T if self.channels_first else arr2d).reshape(-1)

    def input_ids(self, pos: np.ndarray, chan: np.ndarray) -> np.ndarray:
        """Ids of the input values at (position, channel) (broadcast; -1: a padding zero)."""
        if self.in_affine is None:
            return self._ids2d[pos, chan]
        off, ps, cs = self.in_affine
        return off + pos * ps + chan * cs

    def input_ids2d(self) -> np.ndarray:
        """The whole (input positions, cin) id map."""
        if self._ids2d is not None:
            return self._ids2d
        n_pos = self.inputs[0].size // max(1, self.cin)
        return self.input_ids(np.arange(n_pos, dtype=np.int64)[:, None],
                              np.arange(self.cin, dtype=np.int64)[None, :])

    def describe(self) -> dict:
        return dict(self.params)

    # ------------------------------------------------------------------ counting
    def count_edges(self) -> int:
        if not self._filter_zero:
            return len(self._edge_pairs) * self.per_pair
        # Sources that are padding zeros have no edge: count the real ones per position/group.
        valid = (self._ids2d >= 0).reshape(-1, self.groups, self.cin_g).sum(axis=2)
        total = 0
        for _, _, in_pos, _ in self.pairs.iter_chunks(1 << 20):
            total += int(valid[in_pos].sum()) * self.cout_g
        return total

    def sources_of(self, depth: np.ndarray, expand: np.ndarray):
        """The neurons feeding the ``expand`` neurons, without enumerating edges.

        Works per (pair, group) instead of per edge (cin_g * cout_g times fewer steps): every
        input channel of a group feeds every output channel of it, so a source's depth is
        one more than the least depth among the expanded neurons of the positions it feeds.

        Returns (source ids, their depths, number of edges entering the expanded neurons).
        """
        unlimited = np.iinfo(np.int32).max
        g, cin_g, cout_g = self.groups, self.cin_g, self.cout_g
        d = self.by_channel(np.where(expand, depth, unlimited)).reshape(-1, g, cout_g).min(
            axis=2)
        n_expanded = self.by_channel(expand).reshape(-1, g, cout_g).sum(axis=2)
        wanted_pos = n_expanded.any(axis=1)
        if self._ids2d is None:
            real = np.full((1, g), cin_g)
        else:
            real = (self._ids2d >= 0).reshape(-1, g, cin_g).sum(axis=2)
        src_depth = np.full((self.inputs[0].size // self.cin, g), unlimited, np.int64)
        edges = 0
        for out_pos, _, in_pos, _ in self.pairs.iter_chunks(1 << 20):
            keep_pairs = wanted_pos[out_pos]
            if not keep_pairs.any():
                continue
            o, i = out_pos[keep_pairs], in_pos[keep_pairs]
            np.minimum.at(src_depth, i, d[o])
            counts = real[i] if self._ids2d is not None else real
            edges += int((n_expanded[o] * counts).sum())
        pos, grp = np.nonzero(src_depth < unlimited)
        chans = grp[:, None] * cin_g + np.arange(cin_g)[None, :]
        ids = self.input_ids(pos[:, None], chans).reshape(-1)
        dep = np.repeat(src_depth[pos, grp] + 1, cin_g)
        real_ids = ids >= 0
        return ids[real_ids], dep[real_ids].astype(np.int32), edges

    # ------------------------------------------------------------------ channel view
    def tap_reach(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """How often each (kernel tap, input position) is used, without enumerating edges.

        Returns ``(tap, in_pos, count, scale)``: the distinct (tap, input position) pairs of
        the layer's pair table, how many output positions read that input through that tap,
        and the sum of their scales (= count without a scale; average pooling and
        interpolation carry one). Every neuron edge is one pair times one (input channel,
        output channel) of its group, so these per-pair sums are what channel-level
        aggregates need (:mod:`loader.graph.channels`). Cost: one pass over the pairs,
        ``cin_g * cout_g`` times fewer steps than the edges.
        """
        n_in = max(1, self.inputs[0].size // max(1, self.cin))
        keys, counts, scales = [], [], []
        for _, tap, in_pos, scale in self._edge_pairs.iter_chunks(1 << 20):
            key = tap * n_in + in_pos
            uniq, inverse = np.unique(key, return_inverse=True)
            keys.append(uniq)
            counts.append(np.bincount(inverse, minlength=len(uniq)).astype(np.float64))
            scales.append(counts[-1] if scale is None else
                          np.bincount(inverse, weights=scale, minlength=len(uniq)))
        if not keys:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0), np.zeros(0)
        key = np.concatenate(keys)
        uniq, inverse = np.unique(key, return_inverse=True)
        count = np.bincount(inverse, weights=np.concatenate(counts), minlength=len(uniq))
        scale = np.bincount(inverse, weights=np.concatenate(scales), minlength=len(uniq))
        return uniq // n_in, uniq % n_in, count, scale

    # ------------------------------------------------------------------ enumeration
    def iter_edges(self, batch_size: int, needed: np.ndarray | None = None,
                   reuse_buffers: bool = False) -> Iterator[Edges]:
        needed_pos = None
        if needed is not None:
            rows = self.by_channel(needed)
            needed_pos = rows.any(axis=1)
            if np.array_equal(needed_pos, rows.all(axis=1)):
                # Positions are needed whole or not at all (as cones need them): dropping
                # pairs is enough, without a lookup per edge (which doubled fc2:5's cone).
                needed = None
                if needed_pos.all():
                    needed_pos = None
        for src, dst, w in self._iter_blocks(batch_size, needed_pos, reuse_buffers):
            mask = None
            if self._filter_zero:
                mask = src >= 0
            if needed is not None:
                need = needed[dst - self.offset]
                mask = need if mask is None else mask & need
            if mask is not None and not mask.all():
                src, dst, w = keep((src, dst, w), mask)
            if len(src):
                yield src, dst, w

    def _iter_blocks(self, batch_size, needed_pos, reuse_buffers):
        g, cin_g, cout_g = self.groups, self.cin_g, self.cout_g
        # Dense over a big flattened input has more edges in one pair than a batch holds:
        # then a block is one pair and a slice of its input channels.
        ci_step = cin_g
        if g == 1 and cin_g * cout_g > batch_size:
            ci_step = max(1, batch_size // cout_g)
        m_max = max(1, batch_size // (g * ci_step * cout_g))
        buf = _BlockBuffers(self, m_max, ci_step)
        for run in self._edge_pairs.iter_runs(m_max):
            buf.start_run(run)
            for b, (o_sh, t_sh, i_sh, size) in enumerate(zip(
                    run.out_shift.tolist(), run.tap_shift.tolist(), run.in_shift.tolist(),
                    run.size.tolist())):
                if needed_pos is not None:
                    need = needed_pos[run.out[:size] + o_sh]
                    if not need.all():
                        if need.any():
                            yield from buf.pairs(run.out[:size][need] + o_sh,
                                                 run.tap[:size][need] + t_sh,
                                                 run.inp[:size][need] + i_sh,
                                                 _masked(run.block_scale(b), size, need),
                                                 reuse_buffers)
                        continue
                for c0 in range(0, cin_g, ci_step):
                    cn = min(ci_step, cin_g - c0)
                    yield buf.block(b, o_sh, t_sh, i_sh, size, c0, cn, reuse_buffers)

    def iter_edges_by_weight(self, batch_size: int, tile_edges: int,
                             tiles: range | None = None,
                             reuse_buffers: bool = False) -> Iterator[Edges]:
        """Every edge of the layer, *weight-major* within tiles of output positions.

        The output positions are cut into tiles of about ``tile_edges`` edges (never less than
        one position); within a tile the edges go tap by tap, then channel pair by channel
        pair (group, input channel, output channel), then position by position. So one weight
        (one kernel entry) covers a run of consecutive edges as long as the tile's positions
        for that tap, and along the run ``dst`` steps by ``cout`` and ``src`` by ``cin`` times
        the stride: the regularity that run-length, dictionary and delta encodings keep
        (``loader.sinks.parquet``). A tile's edges enter only the tile's neurons, so a reader
        filtering on ``dst`` skips the other tiles' row groups.

        Returns the same edges as :meth:`iter_edges` (same weights, bit for bit), in another
        order; batches hold at most ``batch_size`` edges, except that one channel pair over a
        tile's positions for one tap is never split. ``tiles`` restricts the stream to those
        tile numbers (``range(n_tiles(tile_edges))`` is all): the shards of a distributed
        enumeration, whose output does not depend on how they are spread over tasks.
        ``reuse_buffers``: every batch is written into the same arrays (valid until the next
        one is asked for), which spares the allocation and page faults of fresh ones.
        """
        pairs = [np.concatenate(parts) if len(parts) > 1 else parts[0]
                 for parts in zip(*((o, t, i, np.ones(0) if s is None else s)
                                    for o, t, i, s in self._edge_pairs.iter_chunks(1 << 20)))]
        out, tap, inp, scale = pairs
        scale = scale if self._edge_pairs.has_scale else None
        if not len(out):
            return
        by_out = np.argsort(out, kind="stable")
        out, tap, inp = out[by_out], tap[by_out], inp[by_out]
        scale = None if scale is None else scale[by_out].astype(np.float32)
        n_pos, tile = self._tiling(out, tile_edges)
        combos = self.per_pair
        kernel = None if self.kernel is None else self.kernel.reshape(len(self.kernel), combos)
        buffers = None
        for t in tiles if tiles is not None else range(-(-n_pos // tile)):
            p0 = t * tile
            lo, hi = np.searchsorted(out, [p0, p0 + tile])
            if lo == hi:
                continue
            sl = slice(lo, hi)
            order = lo + np.argsort(tap[sl], kind="stable")  # (tap, out): positions ascending
            t_out, t_tap, t_inp = out[order], tap[order], inp[order]
            t_scale = None if scale is None else scale[order]
            bounds = np.flatnonzero(np.diff(t_tap)) + 1
            for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(t_tap)]):
                a, b = int(a), int(b)
                dst_base = self.offset + t_out[a:b] * self.out_step[0]
                n = b - a
                k_max = max(1, batch_size // n)
                for q0 in range(0, combos, k_max):
                    q = np.arange(q0, min(combos, q0 + k_max), dtype=np.int64)
                    grp, rest = np.divmod(q, self.cin_g * self.cout_g)
                    c, o = np.divmod(rest, self.cout_g)
                    src_chan = grp * self.cin_g + c
                    shape = (len(q), n)
                    if reuse_buffers:
                        size = shape[0] * shape[1]
                        if buffers is None or len(buffers[0]) < size:
                            buffers = (np.empty(size, np.int64), np.empty(size, np.int64),
                                       np.empty(size, np.float32))
                        src, dst, w = (x[:size].reshape(shape) for x in buffers)
                    else:
                        src, dst, w = (np.empty(shape, np.int64), np.empty(shape, np.int64),
                                       np.empty(shape, np.float32))
                    np.add(dst_base[None, :], ((grp * self.cout_g + o) * self.out_step[1])[:, None],
                           out=dst)
                    src[...] = self.input_ids(t_inp[a:b][None, :], src_chan[:, None])
                    if kernel is not None:
                        w[...] = kernel[int(t_tap[a]), q0:q0 + len(q)][:, None]
                        if t_scale is not None:
                            w *= t_scale[a:b][None, :]
                    elif t_scale is not None:
                        w[...] = t_scale[a:b][None, :]
                    else:
                        w.fill(1.0)
                    src, dst, w = src.reshape(-1), dst.reshape(-1), w.reshape(-1)
                    if self._filter_zero:
                        real = src >= 0
                        if not real.all():
                            src, dst, w = keep((src, dst, w), real)
                    if len(src):
                        yield src, dst, w

    def _tiling(self, out: np.ndarray, tile_edges: int) -> tuple[int, int]:
        """(output positions, positions per tile) of the weight-major order."""
        n_pos = int(self.n_neurons // max(1, self.cout))
        per_pos = max(1, len(out) * self.per_pair // max(1, len(np.unique(out))))
        return n_pos, max(1, tile_edges // per_pos)

    def n_tiles(self, tile_edges: int) -> int:
        """How many tiles :meth:`iter_edges_by_weight` cuts the layer into."""
        out = np.concatenate([o for o, _, _, _ in self._edge_pairs.iter_chunks(1 << 20)])
        if not len(out):
            return 0
        n_pos, tile = self._tiling(out, tile_edges)
        return -(-n_pos // tile)

    # ------------------------------------------------------------------ attributes
    def zero_in_window(self) -> np.ndarray | None:
        """Per neuron: does its window hold a constant zero from explicit padding?

        A ``max`` neuron over such a window equals ``relu(max(real inputs))``: the zero takes
        part in Keras's maximum but is never an edge, so the activation restores it exactly.
        """
        if self._zero_inputs_max is None:
            zero = np.zeros(self.n_neurons, dtype=bool)
            if self._ids2d is not None and (self._ids2d < 0).any():
                zero2d = self.by_channel(zero)
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


def _masked(scale, size, mask):
    return None if scale is None else scale[:size][mask]


def _add_in_place(a: np.ndarray, step: int):
    if step:
        np.add(a, step, out=a)


class _BlockBuffers:
    """The (pairs, groups, cin slice, cout_g) buffers of one enumeration, and what they hold.

    ``src`` and ``dst`` hold the current run's template at some shift; moving to another block
    of the run adds the difference of the shifts in place (or nothing, when it is 0). ``w``
    holds the template's weights for one (tap shift, scale factor, channel slice) and is left
    untouched while that stays the same, which for a conv is every block of a run with the
    same outer tap.
    """

    def __init__(self, op: WindowedOp, m_max: int, ci_step: int):
        self.op = op
        g, cog = op.groups, op.cout_g
        shape = (m_max, g, ci_step, cog)
        self.src4 = np.empty(shape, np.int64)
        self.dst4 = np.empty(shape, np.int64)
        self.w4 = np.empty(shape, np.float32)
        self.src, self.dst, self.w = (a.reshape(-1) for a in (self.src4, self.dst4, self.w4))
        self.ci_step = ci_step
        # src[j, g, c, o] - src of the pair = g * cin_g + c; dst[j, g, c, o] - dst of it = g *
        # cout_g + o.
        # In id units: a channel step is in_affine's / out_step's channel stride.
        in_cs = op.in_affine[2] if op.in_affine is not None else 1
        self.in_chan = in_cs * (np.arange(g, dtype=np.int64)[:, None] * op.cin_g +
                                np.arange(ci_step, dtype=np.int64)[None, :]).reshape(
                                    1, g, ci_step, 1)
        self.out_chan = op.out_step[1] * np.arange(op.cout, dtype=np.int64).reshape(1, g, 1, cog)
        self.run = None

    def start_run(self, run):
        self.run = run
        self.at = None  # (out shift, in shift, c0) of the template in src/dst, None: not written
        self.w_key = None  # (tap shift, block scale factor, c0) of the weights in w

    def _write_dst(self, out):
        op = self.op
        base = (op.offset + out * op.out_step[0])[:, None, None, None]
        np.add(base, self.out_chan, out=self.dst4[:len(out)])

    def _write_src(self, inp, c0, cn):
        """src of pairs reading input positions ``inp``, input channels c0 .. c0 + cn - 1."""
        op, m = self.op, len(inp)
        if op.in_affine is not None:
            off, ps, cs = op.in_affine
            base = (off + inp * ps + c0 * cs)[:, None, None, None]
            np.add(base, self.in_chan, out=self.src4[:m])
        else:
            ids = op._ids2d[inp].reshape(m, op.groups, op.cin_g)[:, :, c0:c0 + cn, None]
            np.copyto(self.src4[:m, :, :cn], ids)

    def _write_weights(self, tap, scale, c0, cn):
        op, m = self.op, len(tap)
        w = self.w4[:m, :, :cn]
        if op.kernel is not None:
            np.copyto(w, op.kernel[:, :, c0:c0 + cn][tap])
            if scale is not None:
                w *= scale.astype(np.float32)[:, None, None, None]
        elif scale is not None:
            np.copyto(w, scale.astype(np.float32)[:, None, None, None])
        else:
            w.fill(1.0)

    def _views(self, n, reuse):
        if not reuse:
            return self.src[:n].copy(), self.dst[:n].copy(), self.w[:n].copy()
        views = self.src[:n], self.dst[:n], self.w[:n]
        for v in views:  # the next blocks read these buffers: a consumer must not write them
            v.flags.writeable = False
        return views

    def block(self, b, o_sh, t_sh, i_sh, size, c0, cn, reuse):
        """Block ``b`` of the run, for input channels c0 .. c0 + cn - 1."""
        op, run = self.op, self.run
        m = len(run)
        contiguous = op.in_affine is not None
        if self.at is None:
            self._write_dst(run.out + o_sh)
            if contiguous:
                self._write_src(run.inp + i_sh, c0, cn)
        else:
            at_o, at_i, at_c = self.at
            _add_in_place(self.dst4[:m], (o_sh - at_o) * op.out_step[0])
            if contiguous:
                _, ps, cs = op.in_affine
                _add_in_place(self.src4[:m], (i_sh - at_i) * ps + (c0 - at_c) * cs)
        if not contiguous:  # an explicit id map (Concatenate, ZeroPadding): gather each block
            self._write_src(run.inp[:size] + i_sh, c0, cn)
        self.at = (o_sh, i_sh, c0)
        factor = None if run.factor is None else float(run.factor[b])
        if self.w_key != (t_sh, factor, c0):
            scale = None if factor is None else run.block_scale(b)
            self._write_weights(run.tap + t_sh, scale, c0, cn)
            self.w_key = (t_sh, factor, c0)
        return self._views(size * op.groups * cn * op.cout_g, reuse)

    def pairs(self, out, tap, inp, scale, reuse):
        """Arbitrary pairs (a block thinned by ``needed``), all channels; leaves the run."""
        op = self.op
        self.at = self.w_key = None
        m_max = self.src4.shape[0]
        for start in range(0, len(out), m_max):
            sl = slice(start, start + m_max)
            for c0 in range(0, op.cin_g, self.ci_step):
                cn = min(self.ci_step, op.cin_g - c0)
                self._write_dst(out[sl])
                self._write_src(inp[sl], c0, cn)
                self._write_weights(tap[sl], None if scale is None else scale[sl], c0, cn)
                n = len(out[sl]) * op.groups * cn * op.cout_g
                yield self._views(n, reuse)


def _affine_ids(t: TensorIds, cin: int, channels_first: bool):
    """(offset, position step, channel step) when the tensor's ids in the (position, channel)
    view are ``offset + pos * ps + chan * cs`` (no padding zero, no repeat), else None."""
    if not len(t.shape):
        return None
    n_pos = t.size // max(1, cin)
    if t.contiguous:
        return (t.offset, 1, n_pos) if channels_first else (t.offset, cin, 1)
    ids = by_channel(t.ids, cin, channels_first)
    if not ids.size:
        return None
    off = int(ids[0, 0])
    ps = int(ids[1, 0]) - off if n_pos > 1 else 0
    cs = int(ids[0, 1]) - off if cin > 1 else 0
    if off < 0 or (n_pos > 1 and ps == 0) or (cin > 1 and cs == 0):
        return None
    expect = off + np.arange(n_pos, dtype=np.int64)[:, None] * ps + \
        np.arange(cin, dtype=np.int64)[None, :] * cs
    return (off, ps, cs) if np.array_equal(ids, expect) else None
