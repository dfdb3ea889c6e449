"""NeuronGraph: ids, plan, and bounded streams of node and edge batches for any sink.

Selections (``layers=`` ranges and ``cone=``) are resolved by :mod:`loader.graph.selection`
over this graph's "sources of" (:meth:`NeuronGraph._sources`), and applied at enumeration
time by restricting each layer's enumerator to the neurons needed; the whole graph is never
built.
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
from .selection import IdSpace, SelectableGraph

DEFAULT_BATCH = 1 << 20  # ~1M edges: 20 MB of arrays, flat memory whatever the model


class NeuronGraph(SelectableGraph):
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
        # Selection (node_masks, edge_masks: SelectableGraph): per entry index, None =
        # everything, or a bool mask over its neurons.
        self._selected_edges: dict[int, int] = {}
        self._id_space = IdSpace(neuron_idx, self._offsets,
                                 [entries[i].op.n_neurons for i in neuron_idx])
        self._select(layers, cone)

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

    def _narrow(self, base: "NeuronGraph", keep: np.ndarray | None, note: str) -> None:
        """Take ``base``'s selection (its masks copied) and, with ``keep`` (one bool per
        neuron of the whole graph), keep only the selected neurons it marks and the selected
        edges into them; ``note`` is added to the selection's description. The selected
        edges are counted again on demand (``selected_edge_count``)."""
        self._full_edges = base._full_edges
        self.selection = base.selection
        self.node_masks = {i: None if m is None else m.copy() for i, m in base.node_masks.items()}
        self.edge_masks = {i: None if m is None else m.copy() for i, m in base.edge_masks.items()}
        self._selected_edges = {}
        if keep is None:
            self._selected_edges = dict(base._selected_edges)
            return
        self.selection = f"{base.selection}, {note}"
        for masks in (self.node_masks, self.edge_masks):
            for i, m in masks.items():
                op = self.entries[i].op
                k = keep[op.offset:op.offset + op.n_neurons]
                masks[i] = k.copy() if m is None else m & k

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
        return self._id_space.owners(ids)

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
    def _layer_index(self, name: str) -> int:
        return self.index_of(name)

    def _cone_top(self, name: str, index: int) -> int:
        return self.neuron_id(name, index)

    def _sources(self, i: int, depth: np.ndarray | None = None,
                 expand: np.ndarray | None = None, below: int | None = None):
        """The neurons feeding entry ``i``'s neurons ``expand`` (None: all), as chunks of
        (ids, depths); see :class:`~loader.graph.selection.SelectableGraph`. A cone's
        expansion records the number of edges it selects."""
        e = self.entries[i]
        if e.kind != "neurons":
            return None
        op = e.op
        if below is not None and not any(_min_id(t) < below for t in op.inputs):
            return None
        if hasattr(op, "sources_of"):  # windowed layers: per (pair, group), not per edge
            everything = np.ones(op.n_neurons, dtype=bool)
            src, src_depth, count = op.sources_of(
                np.zeros(op.n_neurons, dtype=np.int32) if depth is None else depth,
                everything if expand is None else expand)
            if expand is not None:
                self._selected_edges[i] = count
            return [(src, src_depth)]
        return self._edge_sources(i, depth, expand)

    def _edge_sources(self, i: int, depth, expand):
        op = self.entries[i].op
        count = 0
        for src, dst, _ in op.iter_edges(DEFAULT_BATCH, expand):
            count += len(src)
            yield src, None if depth is None else depth[dst - op.offset] + 1
        if expand is not None:
            self._selected_edges[i] = count


def _min_id(t) -> int:
    if t.contiguous:
        return t.offset
    real = t.ids[t.ids >= 0]
    return int(real.min()) if len(real) else 1 << 62
