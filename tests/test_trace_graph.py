"""A trace as a graph: GraphML and NetworkX with ``value``, ``active``, ``contribution`` and
``chosen``, and the active subgraph (``active_only``), which for a network of ReLUs, max
pooling and linear layers is the linear network this input selects: executed as one (every
activation dropped, each max neuron copying its one chosen input), it reproduces every value.
"""

from __future__ import annotations

import json

import keras
import networkx as nx
import numpy as np
import pytest
from keras import layers

from keras_oracle import layer_outputs
from oracle import randomise_weights
from shared_models import shared_model
from loader.graph.neuron_graph import NeuronGraph
from loader.graph.trace import trace
from loader.sinks.graphml import write_graphml
from loader.sinks.networkx import to_networkx


@shared_model
def relu_pool_model():
    inp = keras.Input((10, 9, 2), name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ZeroPadding2D(1, name="pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)  # max over padding: relu
    s = layers.Conv2D(4, 1, name="skip")(x)
    x = layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = layers.ReLU(name="relu")(layers.Add(name="add")([x, s]))
    a = layers.MaxPooling2D(2, padding="same", name="pool2")(x)
    b = layers.AveragePooling2D(2, padding="same", name="avg")(x)
    x = layers.Concatenate(name="concat")([a, b])
    x = layers.Dense(6, activation="relu", name="dense")(layers.Flatten(name="flatten")(x))
    return randomise_weights(keras.Model(inp, layers.Dense(3, name="out")(x)))


def linear_execution(nodes: dict, edges, layer_of: dict) -> dict:
    """Execute a subgraph as a linear network: value = bias + sum of weight x input for
    ``sum`` neurons, the one input for ``max`` neurons, the stored value for inputs; no
    activation anywhere. ``nodes``: id -> attributes; ``edges``: (src, dst, weight)."""
    incoming: dict = {}
    for u, v, w in edges:
        assert u in nodes and v in nodes, "an edge leaves the subgraph"
        incoming.setdefault(v, []).append((u, w))
    out = {}
    for n in sorted(nodes):  # ids are topological
        d = nodes[n]
        ins = incoming.get(n, [])
        if d["op"] == "input":
            out[n] = d["value"]
        elif d["op"] in ("max", "min"):
            assert len(ins) <= 1, f"{len(ins)} edges into an active max neuron"
            out[n] = out[ins[0][0]] if ins else 0.0
        else:
            out[n] = d["bias"] + sum(w * out[u] for u, w in ins)
    return out


def test_active_subgraph_executed_as_a_linear_network_reproduces_every_value(tmp_path):
    model = relu_pool_model()
    g = NeuronGraph.from_model(model)
    x = np.random.default_rng(0).normal(size=(10, 9, 2))
    t = trace(g, x, target="out:1")
    assert 0.2 < t.active.mean() < 0.95  # a real selection: some ReLUs off, pooling choices
    path = tmp_path / "active.graphml.gz"
    stats = write_graphml(t.subgraph(active_only=True), path, progress=False)
    G = nx.read_graphml(path, node_type=int)
    assert (G.number_of_nodes(), G.number_of_edges()) == (stats["nodes"], stats["edges"])
    assert all(d["active"] for _, d in G.nodes(data=True))
    assert G.number_of_nodes() == int(t.active.sum())
    got = linear_execution(dict(G.nodes(data=True)),
                           ((u, v, d["weight"]) for u, v, d in G.edges(data=True)), None)
    for n, v in got.items():
        assert v == pytest.approx(G.nodes[n]["value"], rel=1e-9, abs=1e-9), G.nodes[n]
    # ... and the outputs are Keras's.
    keras_out = layer_outputs(model, x[None].astype("float32"))["out"][0]
    off = g.entry("out").op.offset
    ours = np.array([got[off + k] for k in range(3)])
    assert np.abs(ours - keras_out).max() <= 1e-4 * np.abs(keras_out).max()
    for u, v, d in G.edges(data=True):
        if G.nodes[v]["op"] == "max":
            assert d["chosen"] is True
        assert G.nodes[u]["active"] and G.nodes[v]["active"]


@pytest.mark.slow  # builds a whole keras.applications model
def test_active_subgraph_of_resnet50_is_a_linear_network():
    """ResNet50 at 32x32 (logits, no softmax): zero padding under max pooling, batch
    normalisation, residual adds, global average pooling, 63M edges before the selection."""
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3),
                                        classifier_activation=None)
    g = NeuronGraph.from_model(model)
    x = np.random.default_rng(1).uniform(-1, 1, size=(32, 32, 3))
    t = trace(g, x)
    sub = t.subgraph(active_only=True)
    n = g.total_neurons
    value = np.zeros(n)
    seen = np.zeros(n, dtype=bool)
    meta = {}
    for b in sub.iter_node_batches():
        meta[b.layer_index] = (b.id, np.asarray(b.bias, np.float64), b.op)
        seen[b.id] = True
    edges_by_layer: dict = {}
    count = 0
    for b in sub.iter_edge_batches():
        assert seen[b.src].all() and seen[b.dst].all()
        edges_by_layer.setdefault(b.layer_index, []).append(b.copy())
        count += len(b)
    assert count == sub.n_edges
    for i in sorted(meta):
        ids, bias, op = meta[i]
        if op == "input":
            value[ids] = t.values[ids]
            continue
        acc = np.zeros(n)
        got = np.zeros(n, dtype=bool)
        for b in edges_by_layer.get(i, []):
            if op == "max":
                assert not got[b.dst].any()
                acc[b.dst] = value[b.src]
            else:
                acc += np.bincount(b.dst, weights=b.weight * value[b.src], minlength=n)
            got[b.dst] = True
        value[ids] = acc[ids] + bias
    for i, (ids, _, _) in meta.items():
        want = t.values[ids]
        scale = max(float(np.abs(want).max()), 1e-12)
        assert np.abs(value[ids] - want).max() <= 1e-9 * scale, g.entries[i].name
    logits = layer_outputs(model, x[None].astype("float32"))["predictions"][0]
    off = g.entry("predictions").op.offset
    ours = np.where(seen[off:off + 1000], value[off:off + 1000], 0.0)
    assert np.abs(ours - logits).max() <= 1e-4 * np.abs(logits).max()


def test_trace_graph_in_graphml_and_networkx(tmp_path):
    model = relu_pool_model()
    g = NeuronGraph.from_model(model)
    x = np.random.default_rng(0).normal(size=(10, 9, 2))
    t = trace(g, x, target="out:2", info={"input": "x.npy"})
    sub = t.subgraph()
    H = to_networkx(sub)
    path = tmp_path / "trace.graphml"
    write_graphml(sub, path, progress=False)
    G = nx.read_graphml(path, node_type=int)
    assert set(G.nodes) == set(H.nodes) and set(G.edges) == set(H.edges)
    assert json.loads(G.graph["trace"]) == {"target": "out:2", "active_only": False,
                                            "input": "x.npy"}
    assert G.number_of_nodes() == g.total_neurons and G.number_of_edges() == g.n_edges
    for n, d in G.nodes(data=True):
        h = H.nodes[n]
        assert d["value"] == h["value"] == t.values[n]
        assert d["active"] is h["active"] is bool(t.active[n])
        assert d["contribution"] == h["contribution"] == t.contribution[n]
    for u, v, d in G.edges(data=True):
        assert H.edges[u, v]["weight"] == d["weight"]
        if G.nodes[v]["op"] == "max":
            assert d["chosen"] is H.edges[u, v]["chosen"]
        else:
            assert "chosen" not in d and "chosen" not in H.edges[u, v]
    # exactly one chosen edge into every max neuron that took an input, from a source of
    # the same value
    for v, d in G.nodes(data=True):
        if d["op"] != "max":
            continue
        chosen = [u for u in G.predecessors(v) if G.edges[u, v]["chosen"]]
        layer = g.entries[d["layer_index"]].name
        src = t.chosen_source(f"{layer}:{d['index']}")
        if src is None:
            assert chosen == [] and not d["active"]
        else:
            assert len(chosen) == 1 and G.nodes[chosen[0]]["value"] == d["value"]


@pytest.mark.slow  # builds a whole keras.applications model
def test_active_only_on_a_cone():
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3),
                               cone="block2_pool:100")
    x = np.random.default_rng(0).uniform(0, 255, size=(32, 32, 3))
    t = trace(g, x, target="block2_pool:100")
    sub = t.subgraph(active_only=True)
    H = to_networkx(sub)
    assert H.number_of_edges() == sub.n_edges and H.number_of_nodes() == sub.n_nodes
    full = to_networkx(t.subgraph())
    assert set(H.nodes) == {n for n, d in full.nodes(data=True) if d["active"]}
    kept = {(u, v) for u, v, d in full.edges(data=True)
            if full.nodes[u]["active"] and full.nodes[v]["active"] and d.get("chosen", True)}
    assert set(H.edges) == kept
    # nothing upstream of the target is lost: every neuron with a contribution is kept
    contributing = {n for n, d in full.nodes(data=True) if d["contribution"] != 0}
    assert contributing <= set(H.nodes)
