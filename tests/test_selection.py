"""Subgraphs chosen at enumeration time equal the same selection taken from the whole graph."""

import json

import keras
import networkx as nx
import pytest
from click.testing import CliRunner
from keras import layers

from loader.cli import main
from loader.errors import ModelLoadError, SelectionError
from loader.graph.neuron_graph import NeuronGraph
from loader.sinks.networkx import to_networkx
from oracle import randomise_weights
from shared_models import shared_model


@shared_model
def branchy_model():
    inp = keras.Input((7, 6, 2))
    a = layers.Conv2D(3, 3, padding="same", name="a")(inp)
    b = layers.Conv2D(3, 1, strides=1, name="b")(inp)
    c = layers.Add(name="c")([a, b])
    p = layers.ZeroPadding2D(1, name="pad")(c)
    d = layers.MaxPooling2D(3, strides=2, name="d")(p)
    e = layers.Concatenate(name="e")([d, layers.AveragePooling2D(3, strides=2, padding="same",
                                                                  name="avg")(c)])
    out = layers.Dense(4, name="out")(layers.Flatten(name="flat")(e))
    return randomise_weights(keras.Model(inp, out))


def upstream(G, top, depth=None):
    """Reference cone from the whole graph: nodes within ``depth`` hops upstream of ``top``,
    and the edges entering the nodes closer than ``depth``."""
    dist = nx.single_source_shortest_path_length(G.reverse(copy=False), top, cutoff=depth)
    expand = {n for n, d in dist.items() if depth is None or d < depth}
    edges = {(u, v) for v in expand for u in G.predecessors(v)}
    return set(dist), edges


@pytest.mark.parametrize("cone", ["out:2", "out:1:2", "d:5", "d:7:1", "c:20:0", "e:10",
                                  "flat:9", "avg:3:2"])
def test_cone_equals_upstream_of_whole_graph(cone):
    model = branchy_model()
    full = to_networkx(NeuronGraph.from_model(model))
    g = NeuronGraph.from_model(model, cone=cone)
    sub = to_networkx(g)
    name, index, *depth = cone.split(":")
    top = g.entry(name).output.take(__import__("numpy").array([int(index)]))[0]
    nodes, edges = upstream(full, int(top), int(depth[0]) if depth else None)
    assert set(sub.nodes) == nodes
    assert set(sub.edges) == edges
    assert g.n_nodes == len(nodes) and g.n_edges == len(edges)
    for u, v in edges:
        assert sub.edges[u, v]["weight"] == full.edges[u, v]["weight"]
    for n in nodes:
        assert sub.nodes[n] == full.nodes[n]


@pytest.mark.parametrize("spec", ["a:c", "c:d", "d:out", "avg:avg", "b:e", ":c", "e:"])
def test_layer_range_equals_filter_of_whole_graph(spec):
    model = branchy_model()
    full = to_networkx(NeuronGraph.from_model(model))
    g = NeuronGraph.from_model(model, layers=spec)
    sub = to_networkx(g)
    first, last = spec.split(":")
    names = [e.name for e in g.entries]
    lo = names.index(first) if first else 0
    hi = names.index(last) if last else len(names) - 1
    chosen = {n for n, d in full.nodes(data=True) if lo <= d["layer_index"] <= hi}
    edges = {(u, v) for u, v in full.edges if v in chosen}
    assert set(sub.edges) == edges
    assert set(sub.nodes) == chosen | {u for u, _ in edges}
    assert g.n_edges == len(edges)


@pytest.mark.parametrize("bad, match", [("nope:out", "no layer named"), ("out", "FIRST:LAST"),
                                        ("out:a", "comes after"), ("flat:flat", "no neurons")])
def test_bad_layer_ranges_are_clear(bad, match):
    with pytest.raises(SelectionError, match=match):
        NeuronGraph.from_model(branchy_model(), layers=bad)


@pytest.mark.parametrize("bad, match", [("out:4", "out of range"), ("out", "LAYER:INDEX"),
                                        ("zzz:1", "no layer named")])
def test_bad_cones_are_clear(bad, match):
    with pytest.raises(SelectionError, match=match):
        NeuronGraph.from_model(branchy_model(), cone=bad)


@pytest.mark.slow  # builds a whole keras.applications model
def test_vgg16_block1_at_32_has_the_planned_relationships():
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3),
                               layers="block1_conv1:block1_pool")
    assert g.n_edges == 37_954_304
    assert g.n_nodes == 3 * 32 * 32 + 2 * 32 * 32 * 64 + 16 * 16 * 64


@pytest.mark.slow  # builds a whole keras.applications model
def test_plan_vgg16_224_json_totals():
    result = CliRunner().invoke(main, ["plan", "vgg16", "--weights", "none", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["edges"] == 14_975_945_472
    assert plan["neurons"] == 15_237_608
    assert sum(layer["edges"] for layer in plan["layers"]) == plan["edges"]
    assert plan["estimates"]["neo4j_store_bytes"] >= 75 * plan["edges"]


def test_imagenet_top_at_other_input_shape_is_refused_before_download():
    with pytest.raises(ModelLoadError, match="input_shape|input shape") as info:
        NeuronGraph.from_model("vgg16", weights="imagenet", input_shape=(64, 64, 3))
    assert "\n" not in str(info.value)
