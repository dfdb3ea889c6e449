"""The forward-equivalence oracle: execute the neuron graph, compare with Keras, per layer."""

from __future__ import annotations

import numpy as np

from loader.graph.forward import execute
from loader.graph.neuron_graph import NeuronGraph
from loader.keras.model import layer_outputs

TOLERANCE = 1e-4  # error relative to the layer's largest magnitude


def random_inputs(model, samples=2, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    xs = [rng.normal(size=(samples,) + s).astype("float32") for s in shapes]
    return xs[0] if len(xs) == 1 else {c.name: x for c, x in zip(_input_calls(model), xs)}


def _input_calls(model):
    from loader.keras.model import walk

    return [c for c in walk(model) if c.is_input]


def randomise_weights(model, seed=0):
    """Non-trivial weights everywhere (BN statistics included), so every weight matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for w in ws:
            r = rng.normal(scale=0.5, size=w.shape).astype(w.dtype)
            new.append(np.abs(r) + 0.5 if "variance" in _weight_name(layer, len(new)) else r)
        layer.set_weights(new)
    return model


def _weight_name(layer, i):
    try:
        return layer.weights[i].path
    except (AttributeError, IndexError):
        return ""


def assert_equivalent(model, x=None, *, graph=None, tol=TOLERANCE, check_counts=True):
    """Executed graph == Keras at every layer; enumerated edges == planned edges per layer."""
    g = graph or NeuronGraph.from_model(model)
    if x is None:
        x = random_inputs(model)
    ours = execute(g, x)
    from loader.keras.model import walk

    theirs = layer_outputs(walk(g.keras_model), x)
    assert set(theirs) <= set(ours)
    for name, want in theirs.items():
        got = ours[name]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        scale = max(float(np.abs(want).max()), 1e-6)
        err = float(np.abs(got - want).max()) / scale
        assert err <= tol, f"layer {name}: relative error {err:.3g}"
    final = np.asarray(model(x, training=False) if not isinstance(x, dict) else model(x))
    last = [c for c in walk(g.keras_model)][-1].name
    scale = max(float(np.abs(final).max()), 1e-6)
    assert float(np.abs(ours[last] - final).max()) / scale <= tol
    if check_counts:
        assert_counts_match(g)
    return g


def assert_counts_match(g: NeuronGraph, batch_size=4096):
    """The enumerated edges of every layer equal its planned (analytic) count, and no edge
    repeats or points at a missing neuron."""
    per_layer = {}
    for b in g.iter_edge_batches(batch_size):
        per_layer[b.layer_index] = per_layer.get(b.layer_index, 0) + len(b)
        assert b.src.dtype == np.int64 and b.dst.dtype == np.int64
        assert b.weight.dtype == np.float32
        assert (b.src >= 0).all() and (b.src < g.total_neurons).all()
        assert (b.src < b.dst).all()  # topological ids: edges go forward
    for spec in g.layer_specs():
        assert per_layer.get(spec.index, 0) == spec.edges, spec.name
    pairs = np.concatenate([b.src * g.total_neurons + b.dst for b in g.iter_edge_batches()])
    assert len(np.unique(pairs)) == len(pairs), "duplicate edges"
