"""ChannelGraph: the network one level up, a node per (layer, channel).

A neuron's channel is the channel axis of its own layer's output (the last for Keras, the
first for ONNX's NCHW tensors: :attr:`~loader.ops.base.NeuronOp.channels_first`; a Dense unit
is its own channel). Channel ``(a, i)`` has an edge to ``(b, j)`` exactly when some neuron edge
goes from a neuron of ``(a, i)`` to a neuron of ``(b, j)``; the edge carries ``edges`` (how many
neuron edges), ``total`` (the sum of their weights), ``kernel`` (the layer's parameters between
the two channels, Keras's order) and ``weight`` (the L1 norm of ``kernel``, 1.0 without one).

Nothing here enumerates neuron edges. A windowed layer (convolution, Dense, pooling,
upsampling) is its pair table times a channel block (see :mod:`loader.ops.windowed`): every
neuron edge is one (output position, tap, input position) pair and one (input channel, output
channel) of a group. So with ``count[t, p]`` / ``scale[t, p]`` (how often tap ``t`` reads input
position ``p``, :meth:`WindowedOp.tap_reach`) and ``chan[p, c]`` (the channel node holding input
value ``(p, c)``)::

    A[s, (t, c)] = sum over p with chan[p, c] == s of scale[t, p]      (likewise N with count)
    total[s, j]  = sum over (t, c) in group(j) of A[s, (t, c)] * kernel[t, c, j]
    edges[s, j]  = sum over (t, c) in group(j) of N[s, (t, c)]

``A`` has one entry per (tap, input channel) when every real input position holds the same
channels (the usual case: a layer's own output, a concatenation, zero padding), so VGG16 at
224x224 (14,975,945,472 neuron edges) becomes 14,891 nodes and 24,606,336 channel edges in
seconds. Elementwise layers (BatchNormalization, activations, merges) connect channel to
channel position by position: per input, the channel each output channel reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from . import costs
from ..errors import SelectionError
from ..ops.base import by_channel
from ..ops.elementwise import ElementwiseOp
from ..ops.tensors import TensorIds, broadcast_ids, broadcast_take
from ..ops.windowed import WindowedOp
from .neuron_graph import NeuronGraph
from .plan import LayerSpec, Plan
from .selection import IdSpace, SelectableGraph

DEFAULT_BATCH = 1 << 20  # values per batch (edges x kernel length): flat memory


@dataclass(frozen=True)
class ChannelNodeBatch:
    """Channel nodes of one layer.

    ``bias`` is NaN and ``activation`` None where the channel's neurons differ (the contract
    leaves the attribute out there).
    """

    id: np.ndarray
    layer: str
    layer_index: int
    channel: np.ndarray
    op: str
    activation: np.ndarray  # object: str or None
    bias: np.ndarray  # float64, NaN: differs
    neurons: np.ndarray

    def __len__(self) -> int:
        return int(self.id.shape[0])


@dataclass(frozen=True)
class ChannelEdgeBatch:
    """Channel edges entering one layer, all with kernels of one length.

    Attributes
    ----------
    src, dst : int64 channel ids.
    edges : int64, how many neuron edges each stands for.
    total : float64, the sum of their weights.
    weight : float64, L1 norm of ``kernel`` (1.0 without).
    kernel : float32 (n, k), Keras's order; None for parameter-free layers.
    layer_index : the layer the edges enter.
    """

    src: np.ndarray
    dst: np.ndarray
    edges: np.ndarray
    total: np.ndarray
    weight: np.ndarray
    kernel: np.ndarray | None
    layer_index: int

    def __len__(self) -> int:
        return int(self.src.shape[0])


def _kernel_weight(kernel: np.ndarray | None, n: int) -> np.ndarray:
    if kernel is None:
        return np.ones(n)
    return np.abs(kernel.astype(np.float64)).sum(axis=1)


class _Windowed:
    """The channel view of one :class:`WindowedOp`: the sparse ``A`` and ``N`` above."""

    def __init__(self, op: WindowedOp, chan: np.ndarray):
        self.op = op
        taps, cin = op.pairs.n_taps, op.cin
        self.taps = taps
        chan = np.ascontiguousarray(op.in_view(chan))
        self.sources = np.unique(chan[chan >= 0])  # channel ids, local index = position here
        local = np.where(chan >= 0, np.searchsorted(self.sources, np.maximum(chan, 0)), -1)
        n_u = len(self.sources)
        tap, pos, count, scale = op.tap_reach()
        real_rows = (local >= 0).any(axis=1)
        pattern = local[np.argmax(real_rows)] if real_rows.any() else np.full(cin, -1)
        uniform = bool((local[real_rows] == pattern).all())
        if uniform:
            # Every real input position holds the same channels: sum the reach per tap.
            keep = real_rows[pos]
            per_tap = [np.bincount(tap[keep], weights=v[keep], minlength=taps)
                       for v in (scale, count)]
            c = np.flatnonzero(pattern >= 0)
            rows = np.tile(pattern[c], taps)
            cols = (np.arange(taps)[:, None] * cin + c[None, :]).reshape(-1)
            A, N = (sp.csr_matrix((np.repeat(v, len(c)), (rows, cols)), shape=(n_u, taps * cin))
                    for v in per_tap)
            pairs = np.unique(pattern[c] * cin + c)
        else:
            A = N = sp.csr_matrix((n_u, taps * cin))
            step = max(1, (1 << 22) // cin)
            for a in range(0, len(tap), step):
                sl = slice(a, a + step)
                ch = local[pos[sl]]  # (entries, cin)
                ok = ch >= 0
                e, c = np.nonzero(ok)
                rows, cols = ch[e, c], tap[sl][e] * cin + c
                A = A + sp.csr_matrix((scale[sl][e], (rows, cols)), shape=A.shape)
                N = N + sp.csr_matrix((count[sl][e], (rows, cols)), shape=N.shape)
            real = local >= 0
            pairs = np.unique((local * cin + np.arange(cin)[None, :])[real])
        # (source, input channel) pairs, sorted by (source, group, channel): the kernel rows.
        self.pair_src, self.pair_ci = pairs // cin, pairs % cin
        g = op.groups
        group_of_col = (np.arange(taps * cin) % cin) // op.cin_g
        G = sp.csr_matrix((np.ones(taps * cin), (np.arange(taps * cin), group_of_col)),
                          shape=(taps * cin, g))
        self.R = np.asarray((N @ G).todense())   # neuron edges per (source, group)
        self.RA = np.asarray((A @ G).todense())  # scale sums per (source, group)
        self.A = A.tocsr()
        self._mixing = None

    # ---------------------------------------------------------------- sizes
    def count(self, dst_mask: np.ndarray | None) -> int:
        op = self.op
        per_group = (self.R > 0).sum(axis=0)  # sources reaching each group
        groups_of_dst = np.arange(op.cout) // op.cout_g
        if dst_mask is not None:
            groups_of_dst = groups_of_dst[dst_mask]
        return int(per_group[groups_of_dst].sum())

    def sources_of(self, dst_local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (source local, dst local) of the edges entering channels ``dst_local``."""
        g_of = dst_local // self.op.cout_g
        hit = self.R[:, g_of] > 0  # (sources, dsts)
        s, j = np.nonzero(hit)
        return s, dst_local[j]

    # ---------------------------------------------------------------- edges
    def _mixing_matrix(self):
        """The kernel as a (taps * cin, cout) matrix, block diagonal over groups."""
        if self._mixing is None:
            op = self.op
            k = op.kernel  # (taps, groups, cin_g, cout_g)
            if op.groups == 1:
                self._mixing = k.reshape(self.taps * op.cin, op.cout)
            else:
                t, g, c, o = np.meshgrid(*(np.arange(n) for n in k.shape), indexing="ij")
                rows = (t * op.cin + g * op.cin_g + c).reshape(-1)
                cols = (g * op.cout_g + o).reshape(-1)
                self._mixing = sp.csc_matrix((k.reshape(-1).astype(np.float64), (rows, cols)),
                                             shape=(self.taps * op.cin, op.cout))
        return self._mixing

    def iter_edges(self, dst_ids: np.ndarray, layer_index: int, offset: int,
                   batch_size: int) -> Iterator[ChannelEdgeBatch]:
        """Edges entering output channels ``dst_ids`` (local), in bounded batches."""
        op = self.op
        n_u = max(1, len(self.sources))
        pair_key = self.pair_src * op.groups + self.pair_ci // op.cin_g
        per_key = np.bincount(pair_key, minlength=len(self.sources) * op.groups)
        m_max = max(1, int(per_key.max()) if len(per_key) else 1)
        width = self.taps * m_max if op.kernel is not None else 1
        step = max(1, batch_size // (n_u * width))
        for a in range(0, len(dst_ids), step):
            cols = dst_ids[a:a + step]
            groups = cols // op.cout_g
            j, s = np.nonzero(self.R[:, groups].T > 0)  # ordered by destination
            if not len(s):
                continue
            dst_local = cols[j]
            edges = self.R[s, groups[j]].astype(np.int64)
            if op.kernel is None:
                total = self.RA[s, groups[j]]
                yield ChannelEdgeBatch(self.sources[s], dst_local + offset, edges, total,
                                       np.ones(len(s)), None, layer_index)
                continue
            T = self.A @ self._mixing_matrix()[:, cols]
            T = T.toarray() if sp.issparse(T) else np.asarray(T)
            total = T[s, j]
            key = s * op.groups + groups[j]
            start = np.searchsorted(pair_key, key)
            m = per_key[key]
            for width_m in np.unique(m):
                e = np.flatnonzero(m == width_m)
                ci = self.pair_ci[start[e][:, None] + np.arange(width_m)[None, :]]
                g = groups[j][e]
                kern = op.kernel[:, g[:, None], ci - (g * op.cin_g)[:, None],
                                 (dst_local[e] - g * op.cout_g)[:, None]]  # (taps, n, m)
                kern = np.ascontiguousarray(kern.transpose(1, 0, 2)).reshape(len(e), -1)
                yield ChannelEdgeBatch(self.sources[s[e]], dst_local[e] + offset, edges[e],
                                       total[e], _kernel_weight(kern, len(e)), kern,
                                       layer_index)


class _Elementwise:
    """The channel view of one :class:`ElementwiseOp`, as explicit per-layer edge arrays
    (at most channels x inputs x the few channels one output channel reads)."""

    def __init__(self, op: ElementwiseOp, chans: list[np.ndarray]):
        self.op = op
        cout = op.n_channels
        parts = []
        for t, chan, w in zip(op.inputs, chans, op.weights):
            parts.extend(self._input(op, t, chan, w, cout))
        # rows: src, dst(local), edges, total, kernel-or-None
        self.rows = parts
        self.cout = cout

    @staticmethod
    def _input(op, t: TensorIds, chan: np.ndarray, w: np.ndarray, cout: int):
        out_shape = op.out_shape
        rank = len(out_shape)
        n_pos = op.n_neurons // cout
        wr = w.reshape((1,) * (rank - w.ndim) + w.shape) if w.ndim <= rank else w
        rows2d = (by_channel(chan, cout, op.channels_first) if t.shape == out_shape
                  else chan.reshape(1, -1))
        other_axes = wr.shape[1:] if op.channels_first else wr.shape[:-1]
        if (t.shape == out_shape and (rows2d >= 0).all()
                and (rows2d == rows2d[0]).all() and other_axes == (1,) * (rank - 1)):
            # Position-invariant (a layer's own output, per-channel weights): closed form.
            w_c = np.broadcast_to(wr.reshape(-1), (cout,)).astype(np.float64)
            kernel = w_c.astype(np.float32)[:, None] if op.parametric else None
            yield (rows2d[0].astype(np.int64), np.arange(cout), np.full(cout, n_pos),
                   w_c * n_pos, kernel)
            return
        # General: broadcasting, padding zeros, per-position weights. One pass over the
        # layer's neurons (as many as its edges from this input), keyed by channel pair.
        full = np.ravel(chan)
        windex = np.arange(wr.size).reshape(wr.shape)
        acc: dict = {}
        for a in range(0, op.n_neurons, 1 << 20):
            flat = np.arange(a, min(op.n_neurons, a + (1 << 20)), dtype=np.int64)
            pos = broadcast_ids(TensorIds(t.shape, offset=0), out_shape, flat)
            src = full[pos]
            ok = src >= 0
            dst = op.channel_of(flat[ok])
            src = src[ok]
            wi = broadcast_take(windex, out_shape, flat)[ok]
            key = np.stack([src, dst, wi if op.parametric else np.zeros_like(wi)], axis=1)
            uniq, inv = np.unique(key, axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            n = np.bincount(inv, minlength=len(uniq))
            tot = np.bincount(inv, weights=wr.reshape(-1)[wi].astype(np.float64),
                              minlength=len(uniq))
            for k, cnt, s in zip(map(tuple, uniq.tolist()), n.tolist(), tot.tolist()):
                c0, t0 = acc.get(k, (0, 0.0))
                acc[k] = (c0 + cnt, t0 + s)
        by_pair: dict = {}
        for (s, d, wi), (cnt, tot) in sorted(acc.items()):
            entry = by_pair.setdefault((s, d), [0, 0.0, []])
            entry[0] += cnt
            entry[1] += tot
            entry[2].append(wi)
        flat_w = wr.reshape(-1).astype(np.float32)
        for length in sorted({len(v[2]) for v in by_pair.values()}):
            keys = [k for k, v in by_pair.items() if len(v[2]) == length]
            vals = [by_pair[k] for k in keys]
            kernel = (np.array([flat_w[v[2]] for v in vals], dtype=np.float32)
                      if op.parametric else None)
            yield (np.array([k[0] for k in keys], dtype=np.int64),
                   np.array([k[1] for k in keys], dtype=np.int64),
                   np.array([v[0] for v in vals], dtype=np.int64),
                   np.array([v[1] for v in vals]), kernel)

    def count(self, dst_mask):
        return sum(int(len(d) if dst_mask is None else dst_mask[d].sum())
                   for _, d, _, _, _ in self.rows)

    def sources_of(self, dst_local):
        want = np.zeros(self.cout, bool)
        want[dst_local] = True
        pairs = [(s[want[d]], d[want[d]]) for s, d, _, _, _ in self.rows]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])

    def iter_edges(self, dst_ids, layer_index, offset, batch_size):
        want = np.zeros(self.cout, bool)
        want[dst_ids] = True
        for s, d, n, tot, kern in self.rows:
            k = want[d]
            for a in range(0, int(k.sum()), batch_size):
                idx = np.flatnonzero(k)[a:a + batch_size]
                kk = None if kern is None else kern[idx]
                yield ChannelEdgeBatch(s[idx], d[idx] + offset, n[idx], tot[idx],
                                       _kernel_weight(kk, len(idx)), kk, layer_index)


class ChannelGraph(SelectableGraph):
    """The channel-level graph of a Keras model: a node per (layer, channel).

    Node ids are global and deterministic: the layer's channel offset plus the channel (layers
    in topological order, as neuron ids are). Built from a :class:`NeuronGraph`'s layer
    entries (their pair tables, kernels and id maps); selections: ``layers="FIRST:LAST"`` (the
    channels feeding FIRST come along as sources) and ``cone="LAYER:CHANNEL[:DEPTH]"``.

    Examples
    --------
    >>> g = ChannelGraph.from_model("vgg16", weights=None)
    >>> g.n_nodes, g.n_edges
    (14891, 24606336)
    >>> for batch in g.iter_edge_batches(): ...   # ChannelEdgeBatch: src, dst, edges, total, ...
    """

    granularity = "channel"

    def __init__(self, neurons: NeuronGraph, *, layers: str | None = None,
                 cone: str | None = None, name: str | None = None):
        if neurons.selection != "all":
            raise SelectionError("build a ChannelGraph from a whole NeuronGraph; select "
                                 "channels with layers= or cone=")
        self.neurons = neurons
        self.source = neurons.source
        self.entries = neurons.entries
        self.name = name or neurons.name
        self._neuron_entries = neurons._neuron_entries
        self._neuron_offsets = neurons._offsets
        self._channels = np.array([self._n_channels(self.entries[i])
                                   for i in self._neuron_entries], dtype=np.int64)
        self._chan_offsets = np.concatenate([[0], np.cumsum(self._channels)[:-1]]).astype(np.int64)
        # Per slot, the neurons per channel of a channels-first layer (its channel is
        # local // that), 0 for a channels-last one (local % channels).
        self._chan_stride = np.array(
            [self.entries[i].op.n_neurons // c if self.entries[i].op.channels_first else 0
             for i, c in zip(self._neuron_entries, self._channels)], dtype=np.int64)
        self._slot = {int(i): k for k, i in enumerate(self._neuron_entries)}
        self.total_channels = int(self._channels.sum())
        self._views: dict[int, object] = {}
        self._full_edges: dict[int, int] = {}
        self._id_space = IdSpace(self._neuron_entries, self._chan_offsets, self._channels)
        self._select(layers, cone)

    @classmethod
    def from_model(cls, model, *, layers: str | None = None, cone: str | None = None,
                   name: str | None = None, **options) -> "ChannelGraph":
        """Read a model through its front end; see :meth:`NeuronGraph.from_model`."""
        return cls(NeuronGraph.from_model(model, name=name, **options), layers=layers, cone=cone)

    @staticmethod
    def _n_channels(entry) -> int:
        return int(entry.op.n_channels)

    # ------------------------------------------------------------------ ids
    def channel_offset(self, i: int) -> int:
        """The id of channel 0 of entry ``i``."""
        return int(self._chan_offsets[self._slot[i]])

    def n_channels(self, i: int) -> int:
        return int(self._channels[self._slot[i]])

    def channel_ids(self, neuron_ids: np.ndarray) -> np.ndarray:
        """The channel node of each neuron id (-1 stays -1: a padding zero)."""
        ids = np.asarray(neuron_ids, dtype=np.int64)
        real = ids >= 0
        slot = np.searchsorted(self._neuron_offsets, np.maximum(ids, 0), side="right") - 1
        local = ids - self._neuron_offsets[slot]
        stride = self._chan_stride[slot]
        chan = np.where(stride > 0, local // np.maximum(stride, 1), local % self._channels[slot])
        chan = chan + self._chan_offsets[slot]
        return np.where(real, chan, -1)

    def _view(self, i: int):
        if i not in self._views:
            op = self.entries[i].op
            if isinstance(op, WindowedOp):
                self._views[i] = _Windowed(op, self.channel_ids(op.inputs[0].array()))
            elif isinstance(op, ElementwiseOp):
                self._views[i] = _Elementwise(
                    op, [self.channel_ids(t.array()) for t in op.inputs])
            else:
                raise TypeError(f"no channel view of {type(op).__name__}")
        return self._views[i]

    # ------------------------------------------------------------------ sizes
    def full_edge_count(self, i: int) -> int:
        if i not in self._full_edges:
            kind = self.entries[i].kind
            self._full_edges[i] = self._view(i).count(None) if kind == "neurons" else 0
        return self._full_edges[i]

    @property
    def n_nodes(self) -> int:
        return sum(self.n_channels(i) if m is None else int(m.sum())
                   for i, m in self.node_masks.items())

    @property
    def n_edges(self) -> int:
        return sum(self.selected_edge_count(i) for i in self.edge_masks)

    def selected_edge_count(self, i: int) -> int:
        mask = self.edge_masks.get(i)
        if i not in self.edge_masks:
            return 0
        if mask is None:
            return self.full_edge_count(i)
        return self._view(i).count(mask)

    def layer_specs(self) -> list[LayerSpec]:
        specs = []
        for spec in self.neurons.layer_specs():
            op = self.entries[spec.index].op
            spec = spec.model_copy(update={
                "edges": self.full_edge_count(spec.index) if op is not None else 0,
                "channels": None if op is None else self.n_channels(spec.index),
                "offset": None if op is None else self.channel_offset(spec.index)})
            specs.append(spec)
        return specs

    def plan(self) -> Plan:
        specs = self.layer_specs()
        sel_nodes, sel_edges = self.n_nodes, self.n_edges
        inputs = [list(e.output.shape) for e in self.entries if e.kind == "input"]
        return Plan(model=self.name, input_shape=inputs[0] if inputs else [], layers=specs,
                    selection=self.selection, granularity="channel",
                    neurons=self.neurons.total_neurons, nodes=self.total_channels,
                    edges=sum(s.edges for s in specs), selected_neurons=None,
                    selected_nodes=sel_nodes, selected_edges=sel_edges,
                    estimates=costs.estimates(sel_nodes, sel_edges))

    def graph_data(self) -> dict:
        """Graph-level data: ``name``, ``granularity`` and the ``layers`` list (per layer,
        ``channels`` and ``offset``, the id of its channel 0)."""
        layers = []
        for s in self.layer_specs():
            layers.append({"name": s.name, "index": s.index, "class_name": s.class_name,
                           "kind": s.kind, "op": s.op, "output_shape": s.output_shape,
                           "neurons": s.neurons, "channels": s.channels, "edges": s.edges,
                           "offset": s.offset})
        return {"name": self.name, "granularity": "channel", "selection": self.selection,
                "layers": layers}

    # ------------------------------------------------------------------ streams
    def iter_node_batches(self, batch_size: int = DEFAULT_BATCH) -> Iterator[ChannelNodeBatch]:
        """Selected channels with their attributes, one layer per batch, layers in order."""
        for i in sorted(self.node_masks):
            e, mask = self.entries[i], self.node_masks[i]
            c = self.n_channels(i)
            chans = np.arange(c, dtype=np.int64) if mask is None else np.flatnonzero(mask)
            bias, activation = _channel_attributes(e.op, c)
            for a in range(0, len(chans), batch_size):
                idx = chans[a:a + batch_size]
                yield ChannelNodeBatch(
                    id=idx + self.channel_offset(i), layer=e.name, layer_index=i, channel=idx,
                    op=e.op.op, activation=activation[idx], bias=bias[idx],
                    neurons=np.full(len(idx), e.op.n_neurons // c, dtype=np.int64))

    def iter_edge_batches(self, batch_size: int = DEFAULT_BATCH, *,
                          layers: list[int] | None = None, **_) -> Iterator[ChannelEdgeBatch]:
        """Selected channel edges, bounded batches, grouped by the layer they enter."""
        for i in sorted(self.edge_masks) if layers is None else layers:
            if i not in self.edge_masks:
                continue
            mask = self.edge_masks[i]
            dst = (np.arange(self.n_channels(i), dtype=np.int64) if mask is None
                   else np.flatnonzero(mask))
            yield from self._view(i).iter_edges(dst, i, self.channel_offset(i), batch_size)

    # ------------------------------------------------------------------ selections
    def _layer_index(self, name: str) -> int:
        return self.neurons.index_of(name)

    def _cone_top(self, name: str, channel: int) -> int:
        i0 = self.neurons.index_of(name)
        if self.entries[i0].op is None:
            raise SelectionError(f"layer {name!r} makes no neurons (a shape-only layer): "
                                 "choose the layer that produced its values")
        if channel >= self.n_channels(i0):
            raise SelectionError(f"layer {name!r} has {self.n_channels(i0)} channels; "
                                 f"channel {channel} is out of range")
        return self.channel_offset(i0) + channel

    def _sources(self, i: int, depth: np.ndarray | None = None,
                 expand: np.ndarray | None = None, below: int | None = None):
        """The channels feeding entry ``i``'s channels ``expand`` (None: all), as chunks of
        (ids, depths); see :class:`~loader.graph.selection.SelectableGraph`."""
        if self.entries[i].kind != "neurons":
            return None
        view = self._view(i)
        src, dst = view.sources_of(np.arange(self.n_channels(i)) if expand is None
                                   else np.flatnonzero(expand))
        ids = view.sources[src] if isinstance(view, _Windowed) else src
        return [(ids, None if depth is None else depth[dst] + 1)]


def _channel_attributes(op, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: the bias its neurons share (NaN where they differ) and the activation
    they share (None where they differ)."""
    shape = op.out_shape
    n = op.n_neurons
    raw = op._bias
    if raw is None:
        bias = np.zeros(c)
    else:
        b = np.asarray(raw, dtype=np.float64)
        b = b.reshape((1,) * (len(shape) - b.ndim) + b.shape) if b.ndim < len(shape) else b
        if (b.shape[1:] if op.channels_first else b.shape[:-1]) == (1,) * (len(shape) - 1):
            bias = np.broadcast_to(b.reshape(-1), (c,)).copy()
        else:
            per = op.by_channel(np.broadcast_to(b, shape).reshape(-1))
            bias = np.where((per == per[0]).all(axis=0), per[0], np.nan)
    act = op.activation(np.arange(n, dtype=np.int64))
    if isinstance(act, str):
        activation = np.full(c, act, dtype=object)
    else:
        per = op.by_channel(np.asarray(act, dtype=object))
        same = (per == per[0]).all(axis=0)
        activation = np.where(same, per[0], None).astype(object)
    return bias, activation
