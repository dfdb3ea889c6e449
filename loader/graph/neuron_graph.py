"""NeuronGraph: ids, plan, and bounded streams of node and edge batches for any sink.

Selections (``layers=`` ranges and ``cone=``) are resolved here, at enumeration time, by
restricting each layer's enumerator to the neurons needed; the whole graph is never built.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from . import costs
from .batches import EdgeBatch, NodeBatch
from .entries import Entry, ModelEntries
from ..errors import SelectionError
from .frontends import read_model
from .plan import LayerSpec, Plan
from .selection import parse_cone, parse_layer_range

DEFAULT_BATCH = 1 << 20  # ~1M edges: 20 MB of arrays, flat memory whatever the model


class NeuronGraph:
    """The neuron-level graph of a model (or a selected part of it), from its layer entries.

    Parameters
    ----------
    entries : the layers in topological order (:class:`~loader.graph.entries.Entry`), as a
        front end makes them; :meth:`from_model` reads a model through its front end.
    name : the model's name.
    layers, cone : a selection (``"FIRST:LAST"``, ``"LAYER:INDEX[:DEPTH]"``).
    source : the framework's model object the entries came from (opaque to the graph).
    format : ``keras``, ``onnx``, ... (the front end's name).

    Examples
    --------
    >>> g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3))
    >>> g = NeuronGraph.from_model("resnet18.onnx")        # no TensorFlow imported
    >>> g.plan().selected_edges
    >>> for batch in g.iter_edge_batches(): ...
    """

    granularity = "neuron"

    def __init__(self, entries: list[Entry], *, name: str = "model",
                 layers: str | None = None, cone: str | None = None, source=None,
                 format: str | None = None):
        self.source = source
        self.format = format
        self.entries = entries
        self.name = name
        self._by_name = {e.name: i for i, e in enumerate(entries)}
        neuron_idx = [i for i, e in enumerate(entries) if e.op is not None]
        self._neuron_entries = np.array(neuron_idx, dtype=np.int64)
        self._offsets = np.array([entries[i].op.offset for i in neuron_idx], dtype=np.int64)
        self.total_neurons = sum(entries[i].op.n_neurons for i in neuron_idx)
        self._full_edges: dict[int, int] = {}
        # Selection: per entry index, None = everything, or a bool mask over its neurons.
        self.node_masks: dict[int, np.ndarray | None] = {i: None for i in neuron_idx}
        self.edge_masks: dict[int, np.ndarray | None] = {
            i: None for i in neuron_idx if entries[i].kind == "neurons"}
        self._selected_edges: dict[int, int] = {}
        self.selection = "all"
        if layers and cone:
            raise SelectionError("choose either a layer range or a cone, not both")
        if layers:
            self._select_layers(layers)
        elif cone:
            self._select_cone(cone)

    @classmethod
    def from_model(cls, model, *, layers: str | None = None, cone: str | None = None,
                   name: str | None = None, **options) -> "NeuronGraph":
        """Read a model through its front end (:mod:`loader.graph.frontends`) and build its
        graph.

        Parameters
        ----------
        model : a ``.onnx`` file or ``onnx.ModelProto`` (:mod:`loader.onnx`); a ``.keras`` /
            ``.h5`` file, a ``keras.Model`` or a ``keras.applications`` name
            (:mod:`loader.keras`).
        layers, cone, name : see the class.
        **options : the front end's: ``weights``, ``include_top`` (Keras), ``input_shape``
            (both: Keras ``(H, W, C)``; ONNX the input's own layout without the batch axis,
            e.g. ``(C, H, W)``, fixing its dynamic dimensions).
        """
        return cls.from_entries(read_model(model, **options), name=name, layers=layers,
                                cone=cone)

    @classmethod
    def from_entries(cls, model: ModelEntries, *, name: str | None = None,
                     layers: str | None = None, cone: str | None = None) -> "NeuronGraph":
        """The graph of a front end's :class:`~loader.graph.entries.ModelEntries`."""
        return cls(model.entries, name=name or model.name, layers=layers, cone=cone,
                   source=model.source, format=model.format)

    def same_model(self, **selection) -> "NeuronGraph":
        """This model's graph again (entries shared), with another selection (``layers=``,
        ``cone=``, or none: the whole graph)."""
        return NeuronGraph(self.entries, name=self.name, source=self.source, format=self.format,
                           **selection)

    # ------------------------------------------------------------------ lookups
    def entry(self, name: str) -> Entry:
        try:
            return self.entries[self._by_name[name]]
        except KeyError:
            raise SelectionError(f"no layer named {name!r} in {self.name}") from None

    def neuron_id(self, name: str, index: int) -> int:
        """Global id of position ``index`` of layer ``name``'s output (a shape-only layer's
        position names the neuron it shows); a padding zero or a bad index is an error."""
        e = self.entry(name)
        if index >= e.output.size:
            raise SelectionError(f"layer {name!r} has {e.output.size} values; index {index} "
                                 "is out of range")
        nid = int(e.output.take(np.array([index]))[0])
        if nid < 0:
            raise SelectionError(f"{name}:{index} is a padding zero, not a neuron")
        return nid

    def index_of(self, name: str) -> int:
        self.entry(name)
        return self._by_name[name]

    def layer_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """Entry index of the layer owning each global neuron id."""
        pos = np.searchsorted(self._offsets, ids, side="right") - 1
        return self._neuron_entries[pos]

    def full_edge_count(self, i: int) -> int:
        if i not in self._full_edges:
            op = self.entries[i].op
            self._full_edges[i] = 0 if op is None else op.count_edges()
        return self._full_edges[i]

    # ------------------------------------------------------------------ sizes
    @property
    def n_nodes(self) -> int:
        return sum(self.entries[i].op.n_neurons if m is None else int(m.sum())
                   for i, m in self.node_masks.items())

    @property
    def n_edges(self) -> int:
        return sum(self.selected_edge_count(i) for i in self.edge_masks)

    def selected_edge_count(self, i: int) -> int:
        if self.edge_masks.get(i, False) is None:
            return self.full_edge_count(i)
        if i not in self.edge_masks:
            return 0
        if i not in self._selected_edges:
            self._selected_edges[i] = sum(
                len(s) for s, _, _ in self.entries[i].op.iter_edges(DEFAULT_BATCH,
                                                                    self.edge_masks[i]))
        return self._selected_edges[i]

    def layer_specs(self) -> list[LayerSpec]:
        specs = []
        for i, e in enumerate(self.entries):
            op = e.op
            params = dict(e.params)
            if op is not None and hasattr(op, "describe"):
                params.update(op.describe())
            specs.append(LayerSpec(
                name=e.name, index=i, class_name=e.class_name, kind=e.kind,
                op=None if op is None else op.op, inputs=e.inputs,
                output_shape=list(e.output.shape),
                neurons=0 if op is None else op.n_neurons, edges=self.full_edge_count(i),
                offset=None if op is None else op.offset,
                channel_axis=None if op is None else op.channel_axis, params=params))
        return specs

    def plan(self) -> Plan:
        specs = self.layer_specs()
        total_edges = sum(s.edges for s in specs)
        sel_nodes, sel_edges = self.n_nodes, self.n_edges
        inputs = [list(e.output.shape) for e in self.entries if e.kind == "input"]
        return Plan(model=self.name, input_shape=inputs[0] if inputs else [], layers=specs,
                    selection=self.selection, neurons=self.total_neurons,
                    nodes=self.total_neurons, edges=total_edges, selected_neurons=sel_nodes,
                    selected_nodes=sel_nodes, selected_edges=sel_edges,
                    estimates=costs.estimates(sel_nodes, sel_edges))

    def graph_data(self) -> dict:
        """Graph-level data of the contract: the model name and the ``layers`` list."""
        layers = []
        for s in self.layer_specs():
            layer = {"name": s.name, "index": s.index, "class_name": s.class_name,
                     "kind": s.kind, "op": s.op, "output_shape": s.output_shape,
                     "neurons": s.neurons, "edges": s.edges, "offset": s.offset}
            if s.channel_axis == 0 and len(s.output_shape) > 1:
                # channels-first (ONNX NCHW); absent means the last axis
                layer["channel_axis"] = 0
            layers.append(layer)
        data = {"name": self.name, "selection": self.selection, "layers": layers}
        if self.format is not None:
            data["format"] = self.format
        return data

    # ------------------------------------------------------------------ streams
    def iter_node_batches(self, batch_size: int = DEFAULT_BATCH) -> Iterator[NodeBatch]:
        """Selected neurons with their attributes, one layer per batch, layers in order."""
        for i in sorted(self.node_masks):
            e, mask = self.entries[i], self.node_masks[i]
            n = e.op.n_neurons
            idx_all = None if mask is None else np.flatnonzero(mask)
            total = n if idx_all is None else len(idx_all)
            for a in range(0, total, batch_size):
                idx = (np.arange(a, min(n, a + batch_size), dtype=np.int64) if idx_all is None
                       else idx_all[a:a + batch_size])
                yield NodeBatch(id=idx + e.op.offset, layer=e.name, layer_index=i, index=idx,
                                op=e.op.op, bias=e.op.bias(idx), activation=e.op.activation(idx))

    def iter_edge_batches(self, batch_size: int = DEFAULT_BATCH, *, reuse_buffers: bool = False,
                          layers: list[int] | None = None, by_weight: int | None = None
                          ) -> Iterator[EdgeBatch]:
        """Selected edges in bounded batches, grouped by the layer they enter, in order.

        ``by_weight`` (a tile size in edges) asks for the weight-major order of
        :meth:`~loader.ops.windowed.WindowedOp.iter_edges_by_weight` where a layer is taken
        whole (the columnar sinks' order); ``reuse_buffers`` does not apply to it.
        """
        for i in sorted(self.edge_masks) if layers is None else layers:
            if i not in self.edge_masks:
                continue
            op, mask = self.entries[i].op, self.edge_masks[i]
            if by_weight is not None and mask is None:
                edges = op.iter_edges_by_weight(batch_size, by_weight)
            else:
                edges = op.iter_edges(batch_size, mask, reuse_buffers)
            for src, dst, w in edges:
                yield EdgeBatch(src, dst, w, i)

    # ------------------------------------------------------------------ selections
    def _select_layers(self, spec: str):
        first, last = parse_layer_range(spec)
        lo = self.index_of(first) if first else 0
        hi = self.index_of(last) if last else len(self.entries) - 1
        if lo > hi:
            raise SelectionError(f"layer {first!r} comes after {last!r}")
        chosen = [i for i in range(lo, hi + 1) if self.entries[i].op is not None]
        if not chosen:
            raise SelectionError(f"layers {spec!r} hold no neurons (only shape-only layers)")
        self.selection = f"layers {spec}"
        self.node_masks = {i: None for i in chosen}
        self.edge_masks = {i: None for i in chosen if self.entries[i].kind == "neurons"}
        # Neurons that feed the range from outside are included as sources.
        first_id = self.entries[chosen[0]].op.offset
        for i in list(self.edge_masks):
            op = self.entries[i].op
            if not any(_min_id(t) < first_id for t in op.inputs):
                continue
            if hasattr(op, "sources_of"):
                everything = np.ones(op.n_neurons, dtype=bool)
                src = op.sources_of(np.zeros(op.n_neurons, dtype=np.int32), everything)[0]
                self._mark(src[src < first_id])
                continue
            for src, _, _ in op.iter_edges(DEFAULT_BATCH):
                self._mark(src[src < first_id])

    def _mark(self, ids: np.ndarray, depth: np.ndarray | None = None, depths=None):
        """Record neurons ``ids`` as selected: into ``node_masks`` (layer ranges), or, with
        ``depths`` (cones), lowering each neuron's depth to ``depth`` where that is less."""
        if not len(ids):
            return
        owners = self.layer_of_ids(ids)
        for owner in np.unique(owners):
            sel = owners == owner
            op = self.entries[owner].op
            local = ids[sel] - op.offset
            if depths is None:
                mask = self.node_masks.get(owner)
                if owner in self.node_masks and mask is None:
                    continue
                if mask is None:
                    mask = self.node_masks[owner] = np.zeros(op.n_neurons, dtype=bool)
                mask[local] = True
            else:
                arr = depths.setdefault(owner, np.full(op.n_neurons, np.iinfo(np.int32).max,
                                                       dtype=np.int32))
                np.minimum.at(arr, local, depth[sel])

    def _select_cone(self, spec: str):
        name, index, max_depth = parse_cone(spec)
        top = self.neuron_id(name, index)
        unlimited = np.iinfo(np.int32).max
        depths: dict[int, np.ndarray] = {}
        self._mark(np.array([top]), np.array([0], dtype=np.int32), depths)
        self.node_masks, self.edge_masks, self._selected_edges = {}, {}, {}
        for i in range(len(self.entries) - 1, -1, -1):
            if i not in depths:
                continue
            d = depths[i]
            reached = d < unlimited
            self.node_masks[i] = reached
            if self.entries[i].kind != "neurons":
                continue
            expand = reached if max_depth is None else d < max_depth
            if not expand.any():
                continue
            self.edge_masks[i] = expand
            op = self.entries[i].op
            if hasattr(op, "sources_of"):  # windowed layers: per (pair, group), not per edge
                src, src_depth, count = op.sources_of(d, expand)
                self._mark(src, src_depth, depths)
            else:
                count = 0
                for src, dst, _ in op.iter_edges(DEFAULT_BATCH, expand):
                    count += len(src)
                    self._mark(src, d[dst - op.offset] + 1, depths)
            self._selected_edges[i] = count
        self.selection = f"cone {spec}"


def _min_id(t) -> int:
    if t.contiguous:
        return t.offset
    real = t.ids[t.ids >= 0]
    return int(real.min()) if len(real) else 1 << 62
