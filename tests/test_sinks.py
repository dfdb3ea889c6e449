"""GraphML and NetworkX sinks: every output reads back as the same graph, exactly.

On hand-made batches (``FakeGraph``) a GraphML file read with ``nx.read_graphml`` must equal
``to_networkx`` of the same batches node for node, edge for edge, attribute for attribute
(floats bit for bit): the two sinks agree. On a Keras model both, and ``keras_edges``, must
equal the graph built from Keras alone (``keras_graph.reference_graph``: kernels and geometry,
no ``loader`` code).
"""

import gzip
import json
import math
import struct

import igraph
import keras
import networkx as nx
import numpy as np
import pytest

from loader.graph import costs
from loader.graph.batches import EdgeBatch, NodeBatch
from loader.errors import TooLargeError, WeightgraphError
from loader.sinks import (GraphMLWriter, NetworkXSink, graph_attributes, keras_edges,
                          to_networkx, write_graphml)
from loader.sinks import text as text_module
from shared_models import shared_model
from keras_graph import layer_range, reference_graph

SPECIAL_FLOATS = np.array([1.0, -1.0, 0.0, -0.0, 1e-38, -1e-38, 1e-45, 3.4028235e38,
                           -3.0e38, 0.1, -0.123456789, 2.0 ** -126, 1234567.0, 5e-324],
                          dtype=np.float64).astype(np.float32)


class FakeGraph:
    """The NeuronGraph surface the sinks use, over hand-made batches."""

    def __init__(self, name, node_batches, edge_batches, layers=None):
        self.name = name
        self._nodes = list(node_batches)
        self._edges = list(edge_batches)
        self._layers = layers if layers is not None else [
            {"name": b.layer, "index": b.layer_index, "neurons": len(b)} for b in self._nodes]
        self.iterated = False
        self.claimed_edges = None

    @property
    def n_nodes(self):
        return sum(map(len, self._nodes))

    @property
    def n_edges(self):
        return sum(map(len, self._edges)) if self.claimed_edges is None else self.claimed_edges

    def iter_node_batches(self, batch_size=1 << 20):
        self.iterated = True
        yield from self._nodes

    def iter_edge_batches(self, batch_size=1 << 20, reuse_buffers=False):
        self.iterated = True
        yield from self._edges

    def graph_data(self):
        return {"name": self.name, "layers": self._layers}


def nodes(layer, layer_index, ids, op="sum", bias=None, activation="linear", first_index=0):
    ids = np.asarray(ids, dtype=np.int64)
    bias = np.zeros(len(ids), np.float32) if bias is None else np.asarray(bias)
    return NodeBatch(id=ids, layer=layer, layer_index=layer_index,
                     index=np.arange(first_index, first_index + len(ids), dtype=np.int64),
                     op=op, bias=bias, activation=activation)


def edges(src, dst, weight, layer_index):
    return EdgeBatch(np.asarray(src, np.int64), np.asarray(dst, np.int64),
                     np.asarray(weight, np.float32), layer_index)


def fake_graph():
    """Two layers, ids of 1 to 6 digits in one batch, special floats, per-neuron activations."""
    rng = np.random.default_rng(0)
    n_in, n_out = 14, 14
    inputs = np.arange(n_in)
    outputs = np.array([99, 100, 101, 999, 1000, 15, 123456, 17, 18, 19, 20, 21, 22, 23])
    activation = np.array(["relu", "leaky_relu:0.2", "linear", "a&b<c>\"'"] * 3 + ["x", "y"],
                          dtype=object)
    node_batches = [
        nodes("input_1", 0, inputs, op="input"),
        nodes("conv & <pool>", 1, outputs[:7], bias=SPECIAL_FLOATS[:7],
              activation=activation[:7]),
        nodes("conv & <pool>", 1, outputs[7:], bias=SPECIAL_FLOATS[7:].astype(np.float64),
              activation="relu", first_index=7),
    ]
    src = np.repeat(inputs, 3)
    dst = outputs[(np.arange(len(src)) * 5) % n_out]
    # Conv-like reuse: a few distinct weights repeated, plus every special value.
    weight = np.concatenate([SPECIAL_FLOATS, rng.standard_normal(len(src) - 14).astype(np.float32)])
    keep = np.unique(np.stack([src, dst], 1), axis=0, return_index=True)[1]
    src, dst, weight = src[np.sort(keep)], dst[np.sort(keep)], weight[np.sort(keep)]
    half = len(src) // 2
    edge_batches = [edges(src[:half], dst[:half], weight[:half], 1),
                    edges(src[half:], dst[half:], weight[half:], 1)]
    return FakeGraph("fake model", node_batches, edge_batches)


@shared_model
def small_keras_model():
    model = keras.Sequential([
        keras.Input((8, 8, 2), name="image"),  # a fixed name: every build is the same graph
        keras.layers.Conv2D(3, 3, activation="relu", name="conv"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(4, name="dense"),
    ], name="tiny_cnn")
    rng = np.random.default_rng(1)
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def keras_graph():
    from loader.graph.neuron_graph import NeuronGraph

    return NeuronGraph.from_model(small_keras_model())


def typed(attrs):
    """Attributes with their types, so that 1 == 1.0 or a lost sign of -0.0 is a difference."""
    return {k: (type(v).__name__, struct.pack("<d", v) if isinstance(v, float) else v)
            for k, v in attrs.items()}


def assert_same_graph(read, expected):
    assert type(read) is nx.DiGraph
    assert {n: typed(d) for n, d in read.nodes(data=True)} == \
        {n: typed(d) for n, d in expected.nodes(data=True)}
    assert {(u, v): typed(d) for u, v, d in read.edges(data=True)} == \
        {(u, v): typed(d) for u, v, d in expected.edges(data=True)}
    assert read.graph["name"] == expected.graph["name"]
    assert read.graph["layers"] == expected.graph["layers"]


def assert_equals_reference(G, reference):
    """``G`` is the reference graph: nodes, edges and attributes (typed, floats bit for bit),
    name, and the layers table (as JSON values)."""
    assert {n: typed(d) for n, d in G.nodes(data=True)} == \
        {n: typed(d) for n, d in reference.nodes(data=True)}
    assert {(u, v): typed(d) for u, v, d in G.edges(data=True)} == \
        {(u, v): typed(d) for u, v, d in reference.edges(data=True)}
    assert G.graph["name"] == reference.graph["name"]
    assert json.loads(G.graph["layers"]) == json.loads(reference.graph["layers"])


@pytest.mark.parametrize("suffix", [".graphml", ".graphml.gz"])
def test_graphml_reads_back_equal_to_to_networkx(tmp_path, suffix):
    graph = fake_graph()
    path = tmp_path / f"g{suffix}"
    stats = write_graphml(graph, path, progress=False)
    assert (stats["nodes"], stats["edges"]) == (graph.n_nodes, graph.n_edges)
    assert stats["bytes"] == path.stat().st_size
    expected = to_networkx(graph)
    assert expected.number_of_edges() == graph.n_edges
    assert_same_graph(nx.read_graphml(path, node_type=int), expected)
    # Ids are plain decimal (no leading zeros), also for readers that keep them as strings.
    assert set(nx.read_graphml(path).nodes) == {str(n) for n in expected}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_graphml_of_keras_model_equals_to_networkx(tmp_path, keras_graph):
    path = tmp_path / "tiny.graphml.gz"
    write_graphml(keras_graph, path, progress=False)
    expected = to_networkx(keras_graph)
    assert (expected.number_of_nodes(), expected.number_of_edges()) == \
        (keras_graph.n_nodes, keras_graph.n_edges)
    read = nx.read_graphml(path, node_type=int)
    assert_same_graph(read, expected)
    assert_equals_reference(read, reference_graph(small_keras_model()))
    layers = json.loads(read.graph["layers"])
    assert [layer["name"] for layer in layers][1:] == ["conv", "pool", "flatten", "dense"]
    assert {d["op"] for _, d in read.nodes(data=True)} == {"input", "sum", "max"}


def test_graphml_of_layer_selection_equals_to_networkx(tmp_path):
    from loader.graph.neuron_graph import NeuronGraph

    graph = NeuronGraph.from_model(small_keras_model(), layers="pool:dense")
    path = tmp_path / "part.graphml"
    write_graphml(graph, path, progress=False)
    assert_same_graph(nx.read_graphml(path, node_type=int), to_networkx(graph))
    assert_equals_reference(nx.read_graphml(path, node_type=int),
                            layer_range(reference_graph(small_keras_model()), "pool", "dense"))


def test_igraph_reads_graphml_counts_and_weights(tmp_path, keras_graph):
    path = tmp_path / "tiny.graphml"
    write_graphml(keras_graph, path, progress=False)
    g = igraph.Graph.Read_GraphML(str(path))
    assert g.is_directed()
    expected = reference_graph(small_keras_model())
    assert (g.vcount(), g.ecount()) == (expected.number_of_nodes(), expected.number_of_edges())
    ids = [int(i) for i in g.vs["id"]]
    for e in g.es.select(lambda e: e.index % 97 == 0):
        assert e["weight"] == expected.edges[ids[e.source], ids[e.target]]["weight"]
    assert g["name"] == "tiny_cnn"


def test_special_floats_round_trip_bit_for_bit(tmp_path):
    values = SPECIAL_FLOATS
    graph = FakeGraph("floats", [nodes("l", 0, range(len(values)), bias=values)],
                      [edges(range(len(values)), range(len(values)), values, 0)])
    path = tmp_path / "floats.graphml"
    write_graphml(graph, path, progress=False)
    read = nx.read_graphml(path, node_type=int)
    want = [struct.pack("<d", float(v)) for v in values]
    assert [struct.pack("<d", read.edges[i, i]["weight"]) for i in range(len(values))] == want
    assert [struct.pack("<d", read.nodes[i]["bias"]) for i in range(len(values))] == want
    text = path.read_text()
    assert ">-0.0</data>" in text and ">1.0</data>" in text  # repr of the float64 value
    assert math.copysign(1, read.edges[3, 3]["weight"]) == -1


def test_float_text_is_exact_across_batches_when_cache_overflows(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "_FLOAT_CACHE_ENTRIES", 5)
    rng = np.random.default_rng(3)
    batches = [edges(np.arange(40), np.arange(40) + 40, rng.choice(SPECIAL_FLOATS, 40), 1)
               for _ in range(4)]
    batches += [edges(np.arange(40), np.arange(40) + 40,
                      rng.standard_normal(40).astype(np.float32), 1)]
    for i, b in enumerate(batches):  # distinct (src, dst) pairs across batches
        batches[i] = edges(b.src, b.dst + 40 * i, b.weight, 1)
    graph = FakeGraph("cache", [nodes("l", 0, range(240))], batches)
    path = tmp_path / "cache.graphml"
    write_graphml(graph, path, progress=False)
    assert_same_graph(nx.read_graphml(path, node_type=int), to_networkx(graph))


@pytest.mark.parametrize("suffix", [".graphml", ".graphml.gz"])
def test_file_bytes_do_not_depend_on_how_batches_are_sliced(tmp_path, monkeypatch, suffix):
    graph = fake_graph()
    whole = tmp_path / f"whole{suffix}"
    write_graphml(graph, whole, progress=False)
    monkeypatch.setattr(text_module, "ROWS_PER_TEXT", 3)
    sliced = tmp_path / f"sliced{suffix}"
    write_graphml(graph, sliced, progress=False)
    assert sliced.read_bytes() == whole.read_bytes()


def test_writer_leaves_no_file_when_the_stream_fails(tmp_path):
    target = tmp_path / "out.graphml.gz"
    target.write_bytes(b"previous export")
    graph = fake_graph()
    with pytest.raises(RuntimeError, match="enumeration failed"):
        with GraphMLWriter(target, graph.graph_data()) as writer:
            for batch in graph.iter_node_batches():
                writer.write(batch)
            writer.write_edges(graph._edges[0])
            raise RuntimeError("enumeration failed")
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["out.graphml.gz"]


def test_write_graphml_refuses_a_stream_that_disagrees_with_the_counts(tmp_path):
    graph = fake_graph()
    graph.claimed_edges = graph.n_edges + 1  # an enumerator that lost an edge
    with pytest.raises(WeightgraphError, match="streamed"):
        write_graphml(graph, tmp_path / "bad.graphml", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_gzip_output_is_valid_gzip_of_the_plain_text(tmp_path):
    graph = fake_graph()
    write_graphml(graph, tmp_path / "a.graphml", progress=False)
    write_graphml(graph, tmp_path / "a.graphml.gz", progress=False)
    assert gzip.decompress((tmp_path / "a.graphml.gz").read_bytes()) == \
        (tmp_path / "a.graphml").read_bytes()


def test_to_networkx_refuses_above_max_edges_before_any_work():
    graph = fake_graph()
    with pytest.raises(TooLargeError) as excinfo:
        to_networkx(graph, max_edges=graph.n_edges - 1)
    message = str(excinfo.value)
    assert not graph.iterated
    estimate = (graph.n_edges * costs.NX_BYTES_PER_EDGE
                + graph.n_nodes * costs.NX_BYTES_PER_NODE)
    assert f"{estimate / 1000:.3g} KB" in message
    for advice in ("max_edges", "layers=", "cone=", "GraphML", "Neo4j"):
        assert advice in message
    assert to_networkx(graph, max_edges=graph.n_edges).number_of_edges() == graph.n_edges


def test_networkx_sink_attributes_follow_the_contract():
    graph = fake_graph()
    G = to_networkx(graph)
    assert G.is_directed() and not G.is_multigraph()
    node = G.nodes[99]
    assert node == {"layer": "conv & <pool>", "layer_index": 1, "index": 0, "op": "sum",
                    "bias": 1.0, "activation": "relu"}
    assert G.graph == graph_attributes(graph.graph_data())
    assert json.loads(G.graph["layers"])[0] == {"name": "input_1", "index": 0, "neurons": 14}
    sink = NetworkXSink()
    for batch in graph.iter_edge_batches():
        sink.write(batch)
    assert sorted(sink.close().edges(data="weight")) == sorted(G.edges(data="weight"))


def test_keras_edges_match_to_networkx(keras_graph):
    G = nx.DiGraph()
    G.add_weighted_edges_from(keras_edges(small_keras_model()))
    triples = list(keras_edges(small_keras_model()))
    assert all(type(s) is int and type(d) is int and type(w) is float for s, d, w in triples)
    expected = reference_graph(small_keras_model())
    assert sorted(G.edges(data="weight")) == sorted(expected.edges(data="weight"))
    assert len(triples) == expected.number_of_edges()
