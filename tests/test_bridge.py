"""Neo4j -> NetworkX / GraphML (loader.neo4j.pull) against the real Neo4j server.

The oracles: a whole model pulled back from Neo4j executes exactly like Keras, and every
selection pulled from the database equals the same selection of the graph built from Keras
alone (``keras_graph.reference_graph``: kernels and geometry, no ``loader`` code; the
selection taken with NetworkX by the contract's rules), node, edge and attribute. The Parquet
pulls are compared with the same reference and, row for row, with the product's direct
export of the same selection (two product paths that must agree).
"""

from __future__ import annotations

import json
import os

import networkx as nx
import numpy as np
import pytest

from loader.neo4j.pull import ModelNotFound, plan_pull, pull, pull_to_graphml
from loader.errors import SelectionError, TooLargeError
from loader.graph.forward import execute_networkx
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.queries import WriteQueryRefused
import keras_graph
from oracle import assert_matches_keras
from test_queries import delete_model, load_into_neo4j, small_model

pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def loaded(driver):
    model = small_model()
    name = f"test_q_bridge_{os.getpid()}"
    load_into_neo4j(driver, NeuronGraph.from_model(model), name)
    yield name, model
    delete_model(driver, name)


def assert_same_graph(got: nx.DiGraph, want: nx.DiGraph):
    assert dict(got.nodes(data=True)) == dict(want.nodes(data=True))
    assert set(got.edges) == set(want.edges)
    for u, v, w in want.edges(data="weight"):
        assert got.edges[u, v]["weight"] == w  # exact: float32 widened, stored as float64
    assert got.graph["name"] == want.graph["name"]
    assert json.loads(got.graph["layers"]) == json.loads(want.graph["layers"])


def reference(model, name, *, layers=None, cone=None):
    """The graph built from Keras alone (keras_graph), whole or the selection ``layers`` /
    ``cone``."""
    G = keras_graph.reference_graph(model, name)
    if layers is not None:
        return keras_graph.layer_range(G, *layers.split(":"))
    if cone is not None:
        layer, index, *depth = cone.split(":")
        return keras_graph.cone(G, keras_graph.neuron_at(G, layer, int(index)),
                                int(depth[0]) if depth else None)
    return G


def test_whole_model_round_trip_executes_like_keras(driver, loaded):
    name, model = loaded
    G = pull(name, driver=driver)
    x = np.random.default_rng(1).normal(size=(3, 6, 6, 2)).astype("float32")
    ours = execute_networkx(G, x)
    assert_matches_keras(ours, model, x, shape_only_included=False)  # per layer, and model(x)
    assert set(ours) >= {"image", "conv1", "pool", "conv2", "add", "dense"}


def test_whole_model_pull_equals_to_networkx(driver, loaded):
    name, model = loaded
    assert_same_graph(pull(name, driver=driver), reference(model, name))


@pytest.mark.parametrize("spec", ["conv2:dense", "pool:add", "conv1:conv1", "add:dense",
                                  ":pool", "image:image", "flatten:dense"])
def test_layers_pull_equals_neurongraph_selection(driver, loaded, spec):
    name, model = loaded
    G = pull(name, layers=spec, driver=driver)
    assert_same_graph(G, reference(model, name, layers=spec))


@pytest.mark.parametrize("spec", ["dense:1", "add:5", "add:5:1", "add:5:2", "conv2:7:3",
                                  "pool:2", "image:4", "dense:0:0", "conv1:0"])
def test_cone_pull_equals_neurongraph_selection(driver, loaded, spec):
    name, model = loaded
    plan = plan_pull(name, cone=spec, driver=driver)
    want = reference(model, name, cone=spec)
    assert (plan.n_nodes, plan.n_edges) == (want.number_of_nodes(), want.number_of_edges())
    assert_same_graph(pull(name, cone=spec, driver=driver), want)


def test_cypher_pull_takes_edges_and_fetches_their_neurons(driver, loaded, tmp_path):
    name, model = loaded
    path = tmp_path / "into_dense.cypher"
    path.write_text(
        "// name: into_layer\n// params: $model (string), $layer (string)\n"
        "// returns: src, dst, weight\n"
        "MATCH (s:Neuron {model: $model})-[w:W]->(t:Neuron {model: $model})\n"
        "WHERE t.layer = $layer\nRETURN s.id AS src, t.id AS dst, w.weight AS weight\n")
    G = pull(name, cypher=str(path), params={"layer": "dense"}, driver=driver)
    R = reference(model, name)
    dense = [n for n, a in R.nodes(data=True) if a["layer"] == "dense"]
    want = R.edge_subgraph([(s, t) for t in dense for s in R.predecessors(t)])
    assert dict(G.nodes(data=True)) == dict(want.nodes(data=True))
    assert {(u, v, w) for u, v, w in G.edges(data="weight")} == \
        {(u, v, w) for u, v, w in want.edges(data="weight")}


def test_cypher_pull_must_return_src_dst_weight(driver, loaded):
    with pytest.raises(SelectionError, match="src, dst, weight"):
        pull(loaded[0], cypher="MATCH (n:Neuron {model: $model}) RETURN n.id AS id",
             driver=driver)


def test_cypher_pull_refuses_a_write(driver, loaded):
    with pytest.raises(WriteQueryRefused):
        pull(loaded[0], cypher="MATCH (n:Neuron {model: $model}) SET n.bias = 0 "
                               "RETURN n.id AS src, n.id AS dst, 1.0 AS weight", driver=driver)
    assert pull(loaded[0], layers="conv1:conv1", driver=driver).number_of_edges() == 1536


def test_pull_refuses_above_the_limit_before_pulling(driver, loaded):
    name, _ = loaded
    with pytest.raises(TooLargeError) as exc:
        pull(name, driver=driver, max_edges=2000)
    message = str(exc.value)
    assert "2,247 edges" in message and "265 neurons" in message and "graphml" in message.lower()
    with pytest.raises(TooLargeError, match="at least"):
        pull(name, cone="dense:0", driver=driver, max_edges=200)
    with pytest.raises(TooLargeError):
        pull(name, layers="conv1:pool", driver=driver, max_edges=1000)
    # at the limit it pulls
    assert pull(name, driver=driver, max_edges=2247).number_of_edges() == 2247


def test_unknown_model_lists_the_loaded_ones(driver, loaded):
    with pytest.raises(ModelNotFound, match=loaded[0]):
        pull("no_such_model_here", driver=driver)


@pytest.mark.parametrize("selection", [{"cone": "flatten:3"}, {"layers": "nope:dense"},
                                       {"cone": "dense:4"}, {"layers": "dense:conv1"}])
def test_bad_selections_are_clear_errors(driver, loaded, selection):
    with pytest.raises(SelectionError):
        pull(loaded[0], driver=driver, **selection)


@pytest.mark.parametrize("selection", [{}, {"layers": "pool:dense"}, {"cone": "add:5:2"}])
def test_pull_to_graphml_streams_the_same_graph(driver, loaded, selection, tmp_path):
    name, model = loaded
    path = tmp_path / "pulled.graphml.gz"
    stats = pull_to_graphml(name, path, driver=driver, **selection)
    got = nx.read_graphml(path, node_type=int)
    want = reference(model, name, **selection)
    assert (stats["nodes"], stats["edges"]) == (want.number_of_nodes(), want.number_of_edges())
    assert_same_graph(got, want)


def test_cli_pull_writes_graphml(driver, loaded, tmp_path):
    from click.testing import CliRunner

    from loader.cli.analysis import pull as pull_command

    name, model = loaded
    out = tmp_path / "cone.graphml"
    result = CliRunner().invoke(pull_command, ["--name", name, "--cone", "dense:1", "-o",
                                               str(out)])
    assert result.exit_code == 0, result.output
    assert_same_graph(nx.read_graphml(out, node_type=int),
                      reference(model, name, cone="dense:1"))
    assert pull_command.help.rstrip().splitlines()[-1].strip().startswith("weightgraph pull")


def dataset_rows(path):
    """Every node and edge row of a Parquet dataset, sorted, read by DuckDB."""
    from loader.analysis.dataset import open_duckdb

    con = open_duckdb(path)
    nodes = con.execute("SELECT id, layer, layer_index, index, op, bias, activation FROM nodes "
                        "ORDER BY id").fetchall()
    edges = con.execute("SELECT layer_index, src, dst, weight FROM edges ORDER BY ALL").fetchall()
    con.close()
    return nodes, edges


def reference_rows(G):
    """The rows :func:`dataset_rows` reads, from a reference graph."""
    nodes = sorted((n, a["layer"], a["layer_index"], a["index"], a["op"], a["bias"],
                    a["activation"]) for n, a in G.nodes(data=True))
    edges = sorted((G.nodes[t]["layer_index"], s, t, w) for s, t, w in G.edges(data="weight"))
    return nodes, edges


@pytest.mark.parametrize("selection", [{}, {"layers": "pool:dense"}, {"cone": "add:5:2"}])
def test_pull_to_parquet_equals_the_direct_export_in_bounded_pages(driver, loaded, selection,
                                                                   tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import loader.neo4j.pull as pull_module
    from loader.neo4j.pull import pull_to_parquet
    from loader.sinks.parquet import write_parquet

    name, model = loaded
    # Pages of a few neurons and edges: many row groups per layer, layers interleaved.
    monkeypatch.setattr(pull_module, "PAGE_EDGES", 40)
    monkeypatch.setattr(pull_module, "PAGE_NODES", 7)
    stats = pull_to_parquet(name, tmp_path / "pulled", driver=driver, **selection)
    g = NeuronGraph.from_model(model, name=name, **selection)
    write_parquet(g, tmp_path / "direct", progress=False)
    assert (stats["nodes"], stats["edges"]) == (g.n_nodes, g.n_edges)
    assert dataset_rows(tmp_path / "pulled") == reference_rows(reference(model, name,
                                                                         **selection))
    assert dataset_rows(tmp_path / "pulled") == dataset_rows(tmp_path / "direct")
    pulled = json.loads((tmp_path / "pulled" / "graph.json").read_text())
    direct = json.loads((tmp_path / "direct" / "graph.json").read_text())
    for key in ("format", "contract_version", "name", "nodes", "edges", "counts", "layers"):
        assert pulled[key] == direct[key], key
    assert pulled["edge_order"] == "pulled" and pulled["selection"] == g.selection
    conv2 = tmp_path / "pulled" / "edges" / f"layer_index={g.index_of('conv2')}"
    if not selection.get("cone"):
        assert max(pq.ParquetFile(p).metadata.num_row_groups for p in conv2.iterdir()) > 1


def test_pulled_dataset_executes_to_keras(driver, loaded, tmp_path):
    from loader.analysis.dataset import read_arrays
    from loader.graph.forward import execute_arrays
    from loader.neo4j.pull import pull_to_parquet

    name, model = loaded
    pull_to_parquet(name, tmp_path / "pulled", driver=driver)
    layers, nodes, edges = read_arrays(tmp_path / "pulled", engine="duckdb")
    x = np.random.default_rng(4).normal(size=(3, 6, 6, 2)).astype("float32")
    assert_matches_keras(execute_arrays(layers, nodes, edges, x), model, x,
                         shape_only_included=False)


def test_failed_pull_to_parquet_leaves_nothing(driver, loaded, tmp_path, monkeypatch):
    import loader.neo4j.pull as pull_module

    name, _ = loaded
    pages = []

    def failing(src, dst, weight):
        pages.append(len(src))
        if len(pages) == 3:
            raise RuntimeError("connection lost")
        return real(src, dst, weight)

    real = pull_module._edge_batch
    monkeypatch.setattr(pull_module, "PAGE_EDGES", 40)
    monkeypatch.setattr(pull_module, "_edge_batch", failing)
    with pytest.raises(RuntimeError, match="connection lost"):
        pull_module.pull_to_parquet(name, tmp_path / "pulled", driver=driver)
    assert len(pages) == 3 and list(tmp_path.iterdir()) == []


def test_cli_pull_writes_a_parquet_dataset(driver, loaded, tmp_path):
    from click.testing import CliRunner

    from loader.cli.analysis import pull as pull_command
    from loader.sinks.parquet import write_parquet

    name, model = loaded
    out = tmp_path / "block.parquet"
    result = CliRunner().invoke(pull_command, ["--name", name, "--layers", "conv2:dense", "-o",
                                               str(out), "--format", "parquet", "--quiet"])
    assert result.exit_code == 0, result.output
    write_parquet(NeuronGraph.from_model(model, name=name, layers="conv2:dense"),
                  tmp_path / "direct", progress=False)
    assert dataset_rows(out) == dataset_rows(tmp_path / "direct")
    assert dataset_rows(out) == reference_rows(reference(model, name, layers="conv2:dense"))
    from loader.cli import main

    result = CliRunner().invoke(main, ["pull", "--name", name, "-o", str(tmp_path / "x")])
    assert result.exit_code == 1 and result.output.startswith("Error: say --format parquet")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
