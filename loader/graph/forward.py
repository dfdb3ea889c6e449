"""Execute a neuron graph: the value of every neuron, layers in ``layer_index`` order.

This is the correctness oracle of the test suite (executed graph == Keras, layer by layer)
and works on any representation of the contract: a :class:`NeuronGraph` (streamed), or a
NetworkX graph (from GraphML or pulled back from Neo4j). :func:`forward_pass` runs one input
through a :class:`NeuronGraph` a block of edges at a time (:mod:`loader.graph.blocks`), keeping
what a trace needs besides the values: activation slopes and the max/min neurons' choices.

Each layer is a sparse matrix-vector product (``sum``: weighted bincount per sample) or a
segment reduction (``max``/``min``/``product``: ufunc ``.at``), then bias and activation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..errors import WeightgraphError
from ..ops import activations
from .array_graph import START, ArrayGraph, accumulate
from .blocks import layer_pass
from .coerce import as_graph


class _Layer:
    def __init__(self, name, op, shape, n, samples):
        self.name, self.op, self.shape, self.n = name, op, tuple(shape), n
        self.acc = np.full((n, samples), START[op])

    def add(self, local_dst, src_values, weight):
        accumulate(self.acc, self.op, local_dst, src_values, weight)

    def finish(self, bias, activation):
        return activate(self.acc + bias[:, None], activation_groups(activation), self.shape,
                        slopes=False)[0]


def activation_groups(activation) -> dict:
    """Activation name -> the neurons it applies to (a slice or a bool mask), from one name
    for a whole layer or an array of names (PReLU, max pooling over zero padding)."""
    if isinstance(activation, str):
        return {activation: slice(None)}
    names = np.asarray(activation, dtype=object)
    return {a: names == a for a in np.unique(names)}


def activate(pre: np.ndarray, groups: dict, shape, *, slopes: bool = True,
              out: np.ndarray | None = None, slope: np.ndarray | None = None):
    """A layer's activations on its pre-activations ``pre`` (neurons, or neurons x inputs;
    bias added): ``(output, slope, jacobian name or None)``, written into ``out`` and
    ``slope`` when given. ``groups``: :func:`activation_groups`; ``shape``: the layer's
    output shape. An activation that mixes the layer (softmax: over the last axis of its
    output) must hold all of it; its slope is 1 (the Jacobian does the rest). ``slopes``
    False: no slope is computed (None)."""
    out = np.empty_like(pre) if out is None else out
    if slopes and slope is None:
        slope = np.empty_like(pre)
    jac = None
    with np.errstate(over="ignore", invalid="ignore"):
        for name, sel in groups.items():
            if name in activations.JACOBIAN:
                if len(groups) != 1:
                    raise WeightgraphError(f"{name} on part of a layer")
                if pre.ndim == 1:
                    out[:] = activations.apply(name, pre.reshape(shape)).reshape(-1)
                else:
                    b = pre.shape[1]
                    out[:] = activations.apply(name, pre.T.reshape((b,) + tuple(shape))
                                               ).reshape(b, -1).T
                if slopes:
                    slope[:] = 1.0
                jac = name
            else:
                p = pre[sel]
                out[sel] = activations.apply(name, p)
                if slopes:
                    slope[sel] = np.where(np.isfinite(p), activations.slope(name, p), 0.0)
    return out, slope, jac


def _as_batch(x: np.ndarray, shape) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape == tuple(shape):
        x = x[None]
    return x.reshape(x.shape[0], -1).T  # (neurons, samples)


def execute(graph, inputs) -> dict[str, np.ndarray]:
    """Run a :class:`~loader.graph.NeuronGraph` (the whole graph) on ``inputs``.

    Parameters
    ----------
    graph : NeuronGraph with no selection.
    inputs : array for a single-input model, or dict input-layer name -> array; shape
        (samples, *input_shape) or input_shape.

    Returns
    -------
    dict layer name -> values of shape (samples, *output_shape), for every layer, shape-only
    layers included (gathered from the neurons they alias; padding zeros are 0).
    """
    graph = as_graph(graph, "execute", channel=False)
    if graph.selection != "all":
        raise ValueError("execute() runs whole graphs; this one is a selection")
    entries = graph.entries
    in_entries = [e for e in entries if e.kind == "input"]
    if not isinstance(inputs, dict):
        inputs = {in_entries[0].name: inputs}
    first = _as_batch(next(iter(inputs.values())), in_entries[0].output.shape)
    samples = first.shape[1]
    values = np.zeros((graph.total_neurons + 1, samples))  # last row: the padding zero
    results = {}
    for i, e in enumerate(entries):
        if e.kind == "input":
            values[e.op.offset:e.op.offset + e.op.n_neurons] = _as_batch(inputs[e.name],
                                                                        e.output.shape)
        elif e.kind == "neurons":
            op = e.op
            layer = _Layer(e.name, op.op, op.out_shape, op.n_neurons, samples)
            for src, dst, w in op.iter_edges(1 << 20):
                layer.add(dst - op.offset, values[src], w)
            idx = np.arange(op.n_neurons)
            values[op.offset:op.offset + op.n_neurons] = layer.finish(op.bias(idx),
                                                                       op.activation(idx))
        ids = e.output.array()
        ids = np.where(ids < 0, graph.total_neurons, ids)
        results[e.name] = values[ids].T.reshape((samples,) + tuple(e.output.shape))
    return results


def execute_arrays(layers: list[dict], nodes: dict, edges: dict, inputs) -> dict[str, np.ndarray]:
    """Run a graph given as plain arrays (what GraphML and Neo4j hold).

    Parameters
    ----------
    layers : the contract's graph-level ``layers`` list (name, index, kind, op, output_shape).
    nodes : dict of equal-length arrays ``id``, ``layer_index``, ``index``, ``bias``,
        ``activation``.
    edges : dict of arrays ``src``, ``dst``, ``weight`` (any order).
    inputs : as for :func:`execute`.

    Returns
    -------
    dict layer name -> values (samples, *output_shape) for the layers with neurons; a neuron
    the graph does not hold (an effective graph's dropped neurons) is 0 there.
    """
    graph = ArrayGraph.prepare(layers, nodes, edges)
    in_layers = [l for l in layers if l["kind"] == "input"]
    if not isinstance(inputs, dict):
        inputs = {in_layers[0]["name"]: inputs}
    fwd = forward_arrays(graph, {l["name"]: _as_batch(inputs[l["name"]], l["output_shape"])
                                 for l in in_layers})
    samples = fwd.values.shape[1]
    results = {}
    for k in sorted(graph.layers):
        layer = graph.layers[k]
        if layer["kind"] == "alias":
            continue
        a, b = graph.rows(k)
        out = fwd.values[a:b].T
        if b - a != int(np.prod(layer["output_shape"])):
            # A graph without some of a layer's neurons (an effective graph drops those that
            # are 0 on every input of its set): they are 0.
            full = np.zeros((samples, int(np.prod(layer["output_shape"]))))
            full[:, graph.index[a:b]] = out
            out = full
        results[layer["name"]] = out.reshape((samples,) + tuple(layer["output_shape"]))
    return results


@dataclass
class ArrayForward:
    """The forward pass over an :class:`~loader.graph.array_graph.ArrayGraph`, per row.
    ``values``: (rows, inputs), or (rows,) for a trace, which also keeps what its backward
    pass needs: ``slope``, ``has_inputs`` (False for a max/min neuron that chose nothing),
    ``chosen`` (per max/min neuron its chosen source id, -1 elsewhere) and ``jacobians``
    (layer index -> softmax / log_softmax)."""

    values: np.ndarray
    slope: np.ndarray | None = None
    has_inputs: np.ndarray | None = None
    chosen: np.ndarray | None = None
    jacobians: dict | None = None


def forward_arrays(graph: ArrayGraph, inputs: dict, *, trace: bool = False) -> ArrayForward:
    """Run ``graph`` forward, layers in index order. ``inputs``: input-layer name -> its
    values, (neurons, inputs), or (neurons,) for a ``trace`` (one input, with slopes and
    max/min choices; a softmax layer must then be whole in the graph)."""
    n = len(graph)
    if trace:
        fwd = ArrayForward(np.zeros(n), np.ones(n), np.ones(n, dtype=bool),
                           np.full(n, -1, dtype=np.int64), {})
    else:
        fwd = ArrayForward(np.zeros((n, next(iter(inputs.values())).shape[1])))
    for k in sorted(graph.layers):
        layer = graph.layers[k]
        a, b = graph.rows(k)
        if a == b or layer.get("kind") == "alias":
            continue
        values = fwd.values
        if layer["kind"] == "input":
            values[a:b] = inputs[layer["name"]][graph.index[a:b]]
            continue
        pre, chosen = graph.layer_pass(k).forward(values, choose=trace)
        groups = activation_groups(_uniform(graph.activation[a:b]))
        jac = next((g for g in groups if g in activations.JACOBIAN), None)
        if trace and jac and (b - a != layer["neurons"] or len(groups) != 1):
            raise WeightgraphError(
                f"layer {layer['name']!r} ends in {jac}, which mixes the whole layer: the "
                "selection must hold all of it")
        pre += graph.bias[a:b] if pre.ndim == 1 else graph.bias[a:b, None]
        values[a:b], slope, jac = activate(pre, groups, layer["output_shape"], slopes=trace)
        if not trace:
            continue
        fwd.slope[a:b] = slope
        if jac:
            fwd.jacobians[k] = jac
        if chosen is not None:
            ok = chosen >= 0
            ok[ok] = values[graph.rows_of(chosen[ok])] == values[a:b][ok]
            fwd.chosen[a:b] = np.where(ok, chosen, -1)
            fwd.has_inputs[a:b] = fwd.chosen[a:b] >= 0
    return fwd


def execute_networkx(G, inputs) -> dict[str, np.ndarray]:
    """Run an ``nx.DiGraph`` that follows the contract (``to_networkx``, GraphML, ``pull``)."""
    layers = G.graph["layers"]
    if isinstance(layers, str):
        layers = json.loads(layers)
    node_ids = list(G.nodes)
    data = G.nodes
    nodes = {"id": node_ids,
             "layer_index": [data[n]["layer_index"] for n in node_ids],
             "index": [data[n]["index"] for n in node_ids],
             "bias": [data[n]["bias"] for n in node_ids],
             "activation": [data[n]["activation"] for n in node_ids]}
    src, dst, w = [], [], []
    for u, v, d in G.edges(data=True):
        src.append(u)
        dst.append(v)
        w.append(d["weight"])
    return execute_arrays(layers, nodes, {"src": src, "dst": dst, "weight": w}, inputs)


def _uniform(act: np.ndarray):
    first = act[0] if len(act) else "linear"
    return first if (act == first).all() else act


# ----------------------------------------------------------------------------- one input
@dataclass
class ForwardPass:
    """One input through the graph. Arrays are indexed by global neuron id; ``values`` has one
    more slot at the end, the constant zero of padding (id -1 reads it)."""

    values: np.ndarray
    slope: np.ndarray  # the activation's derivative at each neuron (1 in softmax layers)
    has_inputs: np.ndarray  # False for a max/min neuron that took no edge (padding won)
    chosen: dict  # entry index of a max/min layer -> chosen source id per neuron, -1 none
    jacobians: dict  # entry index -> "softmax" / "log_softmax"
    passes: dict  # entry index -> its layer pass (for a backward pass)


def forward_pass(graph, inputs: dict, *, method: str = "blocks") -> ForwardPass:
    """Execute the whole graph for one input (``inputs``: input-layer name -> array of its
    shape), every layer by :func:`loader.graph.blocks.layer_pass`."""
    n = graph.total_neurons
    values = np.zeros(n + 1)
    slope = np.ones(n)
    has_inputs = np.ones(n, dtype=bool)
    chosen, jacobians, passes = {}, {}, {}
    for i, e in enumerate(graph.entries):
        op = e.op
        if e.kind == "input":
            values[op.offset:op.offset + op.n_neurons] = np.asarray(inputs[e.name]).reshape(-1)
        elif e.kind == "neurons":
            p = passes[i] = layer_pass(op, method=method)
            pre, ch = p.forward(values)
            sl = slice(op.offset, op.offset + op.n_neurons)
            values[sl], slope[sl], jac = _finish(op, pre)
            if ch is not None:
                # A window's padding zero is no edge: where it, not the best real entry, is
                # the neuron's output (max over padding, activation relu), nothing is chosen.
                ok = ch >= 0
                ok[ok] = values[ch[ok]] == values[sl][ok]
                ch = np.where(ok, ch, -1)
                chosen[i] = ch
                has_inputs[sl] = ch >= 0
            if jac:
                jacobians[i] = jac
    return ForwardPass(values, slope, has_inputs, chosen, jacobians, passes)


def _finish(op, pre: np.ndarray):
    """Activation of a layer: (output, slope, jacobian name or None)."""
    n = op.n_neurons
    pre = pre + op.bias(np.arange(n)).astype(np.float64)
    return activate(pre, activation_groups(op.activation(np.arange(n))), op.out_shape)


def _finish_many(op, pre: np.ndarray, out: np.ndarray | None = None,
                 slope: np.ndarray | None = None, *, bias: np.ndarray | None = None,
                 groups: dict | None = None):
    """:func:`_finish` for a batch: ``pre`` (neurons, B) -> (output, slope, jacobian name or
    None), each (neurons, B), written into ``out`` and ``slope`` when given; ``pre`` is used
    as scratch. Elementwise activations take the whole batch at once (ReLU and linear in
    place); an activation that mixes its layer (softmax) runs per input through
    :func:`_finish` itself. ``bias`` (float64) and ``groups`` (:func:`activation_groups`)
    may be given once for many calls."""
    n, b = pre.shape
    out = np.empty((n, b)) if out is None else out
    slope = np.empty((n, b)) if slope is None else slope
    if groups is None:
        groups = activation_groups(op.activation(np.arange(n)))
    if any(name in activations.JACOBIAN for name in groups):
        for j in range(b):
            out[:, j], slope[:, j], jac = _finish(op, pre[:, j])
        return out, slope, jac
    if bias is None:
        bias = op.bias(np.arange(n)).astype(np.float64)
    pre += bias[:, None]
    (only,) = groups if len(groups) == 1 else (None,)
    # A finite sum means every value is finite (an inf or a NaN would make it one), and it
    # allocates nothing; an overflowing sum just takes the general path.
    if only in ("relu", "linear") and np.isfinite(pre.sum()):
        if only == "relu":  # the slope is TensorFlow's ReluGrad mask: x > 0
            np.maximum(pre, 0.0, out=out)
            np.greater(pre, 0.0, out=slope)
        else:
            np.copyto(out, pre)
            slope.fill(1.0)
        return out, slope, None
    return activate(pre, groups, op.out_shape, out=out, slope=slope)
