"""The forward-equivalence oracle: execute the neuron graph, compare with Keras, per layer;
and count its neurons and edges, compare with Keras's shapes, per layer.

Keras's side comes from :mod:`keras_oracle` and :mod:`keras_graph`, which share no code with
``loader``.
"""

from __future__ import annotations

import keras
import numpy as np

# SHAPE_ONLY: Keras layers whose output is a view of their input's values (no new neurons):
# the graph keeps them as aliases, and the executors of a stored graph (execute_arrays,
# execute_networkx) do not report them. Listed from Keras's side, not taken from the product.
from keras_graph import SHAPE_ONLY, layer_counts
from keras_oracle import input_names, keras_outputs, layer_calls, layer_outputs, output_names
from loader.graph.forward import execute
from loader.graph.neuron_graph import NeuronGraph

TOLERANCE = 1e-4  # error relative to the layer's largest magnitude


def random_inputs(model, samples=2, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    xs = [rng.normal(size=(samples,) + s).astype("float32") for s in shapes]
    return xs[0] if len(xs) == 1 else dict(zip(input_names(model), xs))


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


def assert_equivalent(model, x=None, *, graph=None, tol=TOLERANCE, distinct_edges=True):
    """Executed graph == Keras at every layer; per layer, the planned and the enumerated
    neurons and edges == the counts from Keras's shapes (:func:`assert_counts_match`;
    ``distinct_edges=False`` skips its check that no edge repeats, which holds every edge's
    ids in memory: for the keras.applications models)."""
    g = graph or NeuronGraph.from_model(model)
    if x is None:
        x = random_inputs(model)
    keras_model = model if isinstance(model, keras.Model) else g.source
    assert_matches_keras(execute(g, x), keras_model, x, tol=tol)
    assert_counts_match(g, keras_model, distinct=distinct_edges)
    return g


def assert_matches_keras(ours: dict, model, x, *, shape_only_included=True, tol=TOLERANCE):
    """The executed graph's layer values ``ours`` (name -> array) equal Keras's.

    Every layer call Keras reports is compared, under the graph's name for it; only the
    shape-only layers (:data:`SHAPE_ONLY`) may be absent, and only when
    ``shape_only_included`` is false (the executors of a stored graph skip aliases). Then the
    values of the model's outputs are compared with Keras's own call of the whole model,
    ``model(x, training=False)``.
    """
    theirs = layer_outputs(model, x)
    classes = {c.name: c.class_name for c in layer_calls(model)}
    required = {name for name in theirs
                if shape_only_included or classes[name] not in SHAPE_ONLY}
    missing = sorted(required - set(ours))
    assert not missing, f"layers Keras has that the executed graph lacks: {missing}"
    assert any(classes[name] != "InputLayer" for name in required), "no layer to compare"
    compared = [name for name in theirs if name in ours]  # required ones, maybe aliases too
    for name in compared:
        _assert_close(ours[name], theirs[name], tol, f"layer {name}")
    for name, final in zip(output_names(model), keras_outputs(model, x), strict=True):
        _assert_close(ours[name], final, tol, f"model output {name} vs model(x)")


def _assert_close(got, want, tol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(float(np.abs(want).max()), 1e-6)
    err = float(np.abs(got - want).max()) / scale
    assert err <= tol, f"{what}: relative error {err:.3g}"


def assert_counts_match(g: NeuronGraph, model, batch_size=4096, distinct=True):
    """Per layer, the plan's neurons and edges and the enumerated edges equal the counts
    Keras's shapes give (:func:`keras_graph.layer_counts`); no edge points at a missing
    neuron or backwards; with ``distinct``, no edge repeats."""
    want = layer_counts(model)
    planned = {s.name: (s.neurons, s.edges) for s in g.layer_specs()}
    assert planned == want, {k: (planned.get(k), want.get(k)) for k in set(planned) | set(want)
                             if planned.get(k) != want.get(k)}
    per_layer = {}
    for b in g.iter_edge_batches(batch_size if distinct else 1 << 20):
        per_layer[b.layer_index] = per_layer.get(b.layer_index, 0) + len(b)
        assert b.src.dtype == np.int64 and b.dst.dtype == np.int64
        assert b.weight.dtype == np.float32
        assert (b.src >= 0).all() and (b.dst < g.total_neurons).all()
        assert (b.src < b.dst).all()  # topological ids: edges go forward
    enumerated = {e.name: per_layer.get(i, 0) for i, e in enumerate(g.entries)}
    assert enumerated == {name: edges for name, (_, edges) in want.items()}
    if distinct:
        pairs = np.concatenate([b.src * g.total_neurons + b.dst for b in g.iter_edge_batches()])
        assert len(np.unique(pairs)) == len(pairs), "duplicate edges"
