"""Resolve the graph for one input: neuron values, pooling choices, active neurons, and the
contributions to a target neuron.

The graph keeps every entry of every pooling window as an edge; a *trace* says which one each
max (min) neuron takes for a given input, which neurons fire, and how much each neuron
contributes to a chosen output:

* ``value``: the neuron's output for the input (after its activation), from executing the
  graph layer by layer (:mod:`loader.graph.blocks`; the same arithmetic as
  :func:`loader.graph.forward.execute`, a block of edges at a time);
* ``chosen``: for every max (min) neuron, its chosen source: the first maximal (minimal) entry
  in the window's order, which is where TensorFlow's gradient goes; an edge is chosen when it
  comes from that source;
* ``active``: the neuron's output changes with its inputs at this input: its activation's
  slope is not 0 (a ReLU above its threshold, a ReLU6 below its cap, ...) and it has inputs.
  Input neurons are active;
* ``contribution`` (with a target neuron): value x d(target)/d(value), the gradient from one
  backward pass over the graph's edges, layer by layer, from the target down (never path by
  path); input neurons get gradient x input. Neurons the target does not depend on get 0.

For a network of ReLUs, max pooling and linear layers, the *active subgraph* (active neurons,
the edges between them, and only the chosen edge into each max neuron) executed as a linear
network reproduces every value: it is the linear map this input selects.

>>> t = trace(g, x, target="predictions:386")
>>> t.layer("block5_pool", "contribution")        # shaped like the layer's output
>>> write_graphml(t.subgraph(active_only=True), "active.graphml.gz")
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import SelectionError, WeightgraphError
from ..ops import activations
from .batches import EdgeBatch, NodeBatch
from .coerce import as_graph
from .array_graph import ArrayGraph
from .forward import forward_arrays, forward_pass
from .neuron_graph import DEFAULT_BATCH, NeuronGraph
from ..inputs import InputFileError, fit_array
from .selection import parse_neuron

__all__ = ["Trace", "TracedGraph", "trace", "neuron_id", "as_input"]


@dataclass
class Trace:
    """A graph resolved for one input. Arrays are indexed by global neuron id.

    Attributes
    ----------
    graph : the NeuronGraph (with its selection) the trace was asked for; values cover the
        whole model whatever the selection.
    values : float64, every neuron's output.
    slope : float64, the activation's derivative at the neuron's pre-activation (1 for
        softmax layers, whose derivative is a Jacobian).
    active : bool.
    chosen : layer (entry index) -> chosen source id of each of its neurons (-1: none, e.g. a
        window holding only padding), for every max and min layer.
    target : ``"LAYER:INDEX"`` or None; ``target_id`` its neuron id.
    contribution : float64 or None (no target).
    gradient : float64 or None: d target / d value.
    seconds : time of the forward and the backward pass.
    """

    graph: NeuronGraph
    values: np.ndarray
    slope: np.ndarray
    active: np.ndarray
    chosen: dict
    target: str | None = None
    target_id: int | None = None
    contribution: np.ndarray | None = None
    gradient: np.ndarray | None = None
    seconds: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ per layer
    def _ids(self, name: str) -> np.ndarray:
        e = self.graph.entry(name)
        return e.output.array().reshape(e.output.shape)

    def layer(self, name: str, what: str = "value") -> np.ndarray:
        """``value``, ``contribution``, ``gradient``, ``active`` or ``chosen`` (source ids, -1
        for none) of every position of a layer's output, in the output's shape. Shape-only
        layers read the neurons they alias; a padding zero has value 0, is inactive and
        contributes 0."""
        ids = self._ids(name)
        pad = ids < 0
        safe = np.where(pad, 0, ids)
        if what == "chosen":
            i = self.graph.index_of(name)
            if i not in self.chosen:
                raise SelectionError(f"layer {name!r} has no max or min neurons")
            return self.chosen[i].reshape(ids.shape)
        arrays = {"value": self.values[:-1], "active": self.active,
                  "contribution": self.contribution, "gradient": self.gradient}
        if what not in arrays:
            raise ValueError(f"what must be one of {sorted(arrays) + ['chosen']}")
        arr = arrays[what]
        if arr is None:
            raise WeightgraphError(f"this trace has no {what}: give it a target")
        out = arr[safe]
        return np.where(pad, False if arr.dtype == bool else 0.0, out)

    def value(self, spec: str) -> float:
        """The value of neuron ``"LAYER:INDEX"``."""
        return float(self.values[neuron_id(self.graph, spec)])

    def chosen_source(self, spec: str) -> tuple[str, int] | None:
        """(layer, index) of the neuron a max/min neuron ``"LAYER:INDEX"`` takes, or None."""
        nid = neuron_id(self.graph, spec)
        i = int(self.graph.layer_of_ids(np.array([nid]))[0])
        if i not in self.chosen:
            raise SelectionError(f"{spec} is not a max or min neuron")
        src = int(self.chosen[i][nid - self.graph.entries[i].op.offset])
        if src < 0:
            return None
        j = int(self.graph.layer_of_ids(np.array([src]))[0])
        e = self.graph.entries[j]
        return e.name, src - e.op.offset

    def layer_summary(self) -> list[dict]:
        """Per neuron layer: neurons, active fraction, value and contribution ranges, and for
        windowed max/min layers how the chosen entries spread over the window's positions
        (neurons with a unique extreme) and how many neurons are ties."""
        rows = []
        for i, e in enumerate(self.graph.entries):
            if e.op is None:
                continue
            sl = slice(e.op.offset, e.op.offset + e.op.n_neurons)
            row = {"layer": e.name, "index": i, "op": e.op.op, "neurons": e.op.n_neurons,
                   "active": int(self.active[sl].sum()),
                   "active_fraction": float(self.active[sl].mean()),
                   "value_max": float(np.abs(self.values[sl]).max())}
            if self.contribution is not None:
                c = self.contribution[sl]
                row["contribution_sum"] = float(c.sum())
                row["contribution_max"] = float(np.abs(c).max())
            if i in self.chosen and hasattr(e.op, "pairs"):
                row["chosen_positions"] = self.window_positions(e.name).tolist()
                row["tied"] = self.tied_neurons(e.name)
            rows.append(row)
        return rows

    def window_positions(self, name: str, *, ties: bool = False) -> np.ndarray:
        """For a windowed max/min layer: how many neurons chose each window position (counts
        over the window's shape, C order; positions outside the input count nowhere).

        By default only neurons whose extreme is unique count: a tie (a window of zeros
        after ReLUs, most often) goes to the first entry and says nothing about the input.
        ``ties=True`` counts the tied neurons only; :meth:`tied_neurons` counts them.
        """
        counts, tied = self._window_counts(name)
        return tied if ties else counts

    def tied_neurons(self, name: str) -> int:
        """How many neurons of a windowed max/min layer have more than one extreme entry."""
        return int(self._window_counts(name)[1].sum())

    def _window_counts(self, name: str):
        i = self.graph.index_of(name)
        e = self.graph.entries[i]
        if i not in self.chosen or not hasattr(e.op, "pairs"):
            raise SelectionError(f"layer {name!r} is not a pooling layer with max/min neurons")
        key = ("window", i)
        if key in self._cache:
            return self._cache[key]
        op = e.op
        chosen = op.by_channel(self.chosen[i])
        best = op.by_channel(self.values[op.offset:op.offset + op.n_neurons])
        in_ids = op.input_ids2d()
        in_values = np.where(in_ids >= 0, self.values[np.maximum(in_ids, 0)], np.nan)
        n_max = np.zeros(chosen.shape, dtype=np.int64)
        for out_pos, _, in_pos, _ in op.pairs.iter_chunks(1 << 20):
            np.add.at(n_max, out_pos, in_values[in_pos] == best[out_pos])
        tied = (n_max > 1) & (chosen >= 0)
        counts = np.zeros((2, op.pairs.n_taps), dtype=np.int64)
        for out_pos, tap, in_pos, _ in op.pairs.iter_chunks(1 << 20):
            ch = chosen[out_pos]
            hit = (in_ids[in_pos] == ch) & (ch >= 0)  # (pairs, channels); -1: none chosen
            for k, sel in enumerate((~tied[out_pos], tied[out_pos])):
                counts[k] += np.bincount(tap, weights=(hit & sel).sum(axis=1),
                                         minlength=op.pairs.n_taps).astype(np.int64)
        shape = op.pairs.kernel_spatial
        self._cache[key] = (counts[0].reshape(shape), counts[1].reshape(shape))
        return self._cache[key]

    # ------------------------------------------------------------------ outputs
    def subgraph(self, active_only: bool = False) -> "TracedGraph":
        """The trace's graph selection with the trace's attributes, for any sink
        (``write_graphml``, ``to_networkx``); ``active_only`` keeps the sub-network this
        input uses: active neurons, the edges between them, and only the chosen edge of each
        max/min neuron."""
        return TracedGraph(self, active_only=active_only)


# ----------------------------------------------------------------------------- inputs
def neuron_id(graph: NeuronGraph, spec: str) -> int:
    """Global id of neuron ``"LAYER:INDEX"`` (a shape-only layer names the neuron it shows)."""
    return graph.neuron_id(*parse_neuron(spec))


def as_input(graph: NeuronGraph, x) -> dict[str, np.ndarray]:
    """Check one input (an array, or a dict input-layer name -> array) against the model's
    inputs: each array has the input's shape, with or without a batch axis of 1."""
    in_entries = [e for e in graph.entries if e.kind == "input"]
    if not isinstance(x, dict):
        if len(in_entries) != 1:
            names = [e.name for e in in_entries]
            raise InputFileError(f"the model has inputs {names}: give one array per input")
        x = {in_entries[0].name: x}
    out = {}
    for e in in_entries:
        if e.name not in x:
            raise InputFileError(f"no array for input {e.name!r}")
        out[e.name] = fit_array(x[e.name], e.output.shape, f"input {e.name!r}")
    return out


# ----------------------------------------------------------------------------- passes
def trace(graph: NeuronGraph, x, *, target: str | None = None, method: str = "blocks",
          info: dict | None = None) -> Trace:
    """Resolve ``graph`` for input ``x``.

    Parameters
    ----------
    graph : NeuronGraph; its selection is what :meth:`Trace.subgraph` exports (values are
        computed for the whole model).
    x : array of the input's shape (with or without a batch axis of 1), or a dict input-layer
        name -> array for several inputs. Use :func:`loader.inputs.read_input` for
        ``.npy`` and image files.
    target : ``"LAYER:INDEX"``: compute ``contribution`` (and ``gradient``) for this neuron.
    method : ``"blocks"`` (default) or ``"edges"`` (the same passes over enumerated edge
        batches: the slow reference).

    Returns
    -------
    Trace
    """
    graph = as_graph(graph, "trace", channel=False)
    inputs = as_input(graph, x)
    target_id = None if target is None else neuron_id(graph, target)
    entries = graph.entries
    t0 = time.perf_counter()
    fwd = forward_pass(graph, inputs, method=method)
    values, slope, chosen = fwd.values, fwd.slope, fwd.chosen
    t1 = time.perf_counter()
    active = (slope != 0) & fwd.has_inputs
    result = Trace(graph, values, slope, active, chosen, info=dict(info or {}))
    result.seconds["forward"] = t1 - t0
    if target_id is not None:
        grad = np.zeros(graph.total_neurons + 1)
        grad[target_id] = 1.0
        last = int(graph.layer_of_ids(np.array([target_id]))[0])
        for i in range(last, -1, -1):
            e = entries[i]
            if e.kind != "neurons":
                continue
            op = e.op
            sl = slice(op.offset, op.offset + op.n_neurons)
            g = grad[sl]
            if not g.any():
                continue
            if i in fwd.jacobians:
                out = values[sl].reshape(op.out_shape)
                gpre = activations.jacobian_vjp(fwd.jacobians[i], out,
                                                g.reshape(op.out_shape)).reshape(-1)
            else:
                gpre = g * slope[sl]
            if gpre.any():
                fwd.passes[i].backward(gpre, values, chosen.get(i), grad)
            grad[-1] = 0.0
        grad = grad[:-1]
        result.target, result.target_id = target, target_id
        result.gradient = grad
        result.contribution = values[:-1] * grad
        result.seconds["backward"] = time.perf_counter() - t1
    return result


# ----------------------------------------------------------------------------- as a graph
_NODE_ATTRS = (("value", "double"), ("active", "boolean"))
_EDGE_ATTRS = (("chosen", "boolean"),)


class TracedGraph(NeuronGraph):
    """A trace's selection as a streamable graph: node attributes ``value``, ``active`` (and
    ``contribution`` with a target), edge attribute ``chosen`` on every edge into a max/min
    neuron. With ``active_only``: active neurons, edges between active neurons, and only the
    chosen edge into each max/min neuron."""

    def __init__(self, t: Trace, active_only: bool = False):
        base = t.graph
        super().__init__(base.entries, name=base.name, source=base.source, format=base.format)
        self.trace, self.active_only = t, active_only
        self._narrow(base, t.active if active_only else None, "active only")

    @property
    def extra_attributes(self) -> dict:
        node = list(_NODE_ATTRS)
        if self.trace.contribution is not None:
            node.append(("contribution", "double"))
        return {"node": node, "edge": list(_EDGE_ATTRS)}

    def graph_data(self) -> dict:
        data = super().graph_data()
        t = self.trace
        data["trace"] = {"target": t.target, "active_only": self.active_only, **t.info}
        return data

    # ------------------------------------------------------------------ counts
    def selected_edge_count(self, i: int) -> int:
        if not self.active_only:
            return super().selected_edge_count(i)
        if i not in self.edge_masks:
            return 0
        if i not in self._selected_edges:
            op = self.entries[i].op
            if i in self.trace.chosen:
                self._selected_edges[i] = int(len(self._chosen_edges(i)[0]))
            elif hasattr(op, "pairs"):
                self._selected_edges[i] = self._count_windowed(i)
            else:
                self._selected_edges[i] = sum(len(b) for b in self.iter_edge_batches(layers=[i]))
        return self._selected_edges[i]

    def _count_windowed(self, i: int) -> int:
        """Edges from active sources into the selected active neurons of a windowed layer, per
        (pair, group): active inputs of the group at the pair's input position times
        selected outputs of the group at its output position."""
        op = self.entries[i].op
        ids = op.inputs[0].array()
        act = np.where(ids >= 0, self.trace.active[np.maximum(ids, 0)], False)
        a_in = op.in_view(act).reshape(-1, op.groups, op.cin_g).sum(axis=2)
        a_out = op.by_channel(self.edge_masks[i]).reshape(-1, op.groups, op.cout_g).sum(axis=2)
        total = 0
        for out_pos, _, in_pos, _ in op.pairs.iter_chunks(1 << 16):
            total += int((a_in[in_pos] * a_out[out_pos]).sum())
        return total

    def _chosen_edges(self, i: int):
        op = self.entries[i].op
        ch = self.trace.chosen[i]
        mask = self.edge_masks[i]
        keep = ch >= 0
        if mask is not None:
            keep &= mask
        keep &= self.trace.active[np.maximum(ch, 0)]
        local = np.flatnonzero(keep)
        return ch[local], local + op.offset

    # ------------------------------------------------------------------ streams
    def iter_node_batches(self, batch_size: int = DEFAULT_BATCH):
        t = self.trace
        for b in super().iter_node_batches(batch_size):
            extra = {"value": t.values[b.id], "active": t.active[b.id]}
            if t.contribution is not None:
                extra["contribution"] = t.contribution[b.id]
            yield NodeBatch(b.id, b.layer, b.layer_index, b.index, b.op, b.bias, b.activation,
                            extra)

    def iter_edge_batches(self, batch_size: int = DEFAULT_BATCH, *, reuse_buffers: bool = False,
                          layers: list[int] | None = None):
        t = self.trace
        for i in sorted(self.edge_masks) if layers is None else layers:
            if i not in self.edge_masks:
                continue
            op = self.entries[i].op
            ch = t.chosen.get(i)
            if self.active_only and ch is not None:
                src, dst = self._chosen_edges(i)
                for a in range(0, len(src), batch_size):
                    s = src[a:a + batch_size]
                    yield EdgeBatch(s, dst[a:a + batch_size], np.ones(len(s), np.float32), i,
                                    {"chosen": np.ones(len(s), dtype=bool)})
                continue
            for src, dst, w in op.iter_edges(batch_size, self.edge_masks[i], reuse_buffers):
                if self.active_only:
                    keep = t.active[src]
                    if not keep.all():
                        src, dst, w = src[keep], dst[keep], w[keep]
                    if not len(src):
                        continue
                extra = {} if ch is None else {"chosen": src == ch[dst - op.offset]}
                yield EdgeBatch(src, dst, w, i, extra)



# ----------------------------------------------------------------------------- stored graphs
@dataclass
class ArrayTrace:
    """A trace of a graph given as arrays (a selection pulled from Neo4j): one entry per
    neuron of the selection, sorted by id. ``chosen`` is the chosen source id of max/min
    neurons (-1: none) and -1 elsewhere; ``contribution`` and ``gradient`` are None without
    a target."""

    ids: np.ndarray
    layer_index: np.ndarray
    index: np.ndarray
    op: np.ndarray
    values: np.ndarray
    active: np.ndarray
    chosen: np.ndarray
    target_id: int | None = None
    contribution: np.ndarray | None = None
    gradient: np.ndarray | None = None
    seconds: dict = field(default_factory=dict)

    def pos(self, ids) -> np.ndarray:
        """Rows of global neuron ids (which must be in the trace)."""
        return np.searchsorted(self.ids, ids)


def trace_arrays(layers: list[dict], nodes: dict, edges: dict, inputs: dict, *,
                 target_id: int | None = None) -> ArrayTrace:
    """Trace a graph held as arrays (what Neo4j and GraphML hold): the same passes as
    :func:`trace`, over the given edges.

    Parameters
    ----------
    layers : the contract's graph-level ``layers`` list.
    nodes : equal-length arrays ``id``, ``layer_index``, ``index``, ``op``, ``bias``,
        ``activation``: every neuron the values need (a target's cone, or a whole graph).
    edges : arrays ``src``, ``dst``, ``weight``: every edge into the non-input neurons.
    inputs : input-layer name -> array of its full shape.
    target_id : compute contributions to this neuron.

    A max (min) neuron chooses, among its maximal (minimal) sources, the one with the least id
    (without the window's geometry; for a window reading a layer's output in position order,
    that is the first in window order). A softmax layer must be whole in the selection.
    """
    t0 = time.perf_counter()
    graph = ArrayGraph.prepare(layers, nodes, edges, check_sources=True)
    x = {l["name"]: np.asarray(inputs[l["name"]], dtype=np.float64).reshape(-1)
         for l in layers if l["kind"] == "input" and graph.holds(l["index"])}
    fwd = forward_arrays(graph, x, trace=True)
    values = fwd.values
    t1 = time.perf_counter()
    result = ArrayTrace(graph.ids, graph.layer_index, graph.index, graph.op, values,
                        (fwd.slope != 0) & fwd.has_inputs, fwd.chosen)
    result.seconds["forward"] = t1 - t0
    if target_id is None:
        return result
    n = len(graph)
    grad = np.zeros(n)
    top = int(graph.rows_of(target_id))
    if top >= n or graph.ids[top] != target_id:
        raise WeightgraphError(f"the target (id {target_id}) is not in the selection")
    grad[top] = 1.0
    for k in sorted(graph.layers, reverse=True):
        layer = graph.layers[k]
        a, b = graph.rows(k)
        if a == b or layer["kind"] != "neurons":
            continue
        g = grad[a:b]
        if not g.any():
            continue
        if k in fwd.jacobians:
            shape = layer["output_shape"]
            gpre = activations.jacobian_vjp(fwd.jacobians[k], values[a:b].reshape(shape),
                                            g.reshape(shape)).reshape(-1)
        else:
            gpre = g * fwd.slope[a:b]
        graph.layer_pass(k).backward(gpre, values, fwd.chosen[a:b], grad)
    result.target_id = target_id
    result.gradient = grad
    result.contribution = values * grad
    result.seconds["backward"] = time.perf_counter() - t1
    return result
