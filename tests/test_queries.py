"""Named queries (queries/*.cypher) against the real Neo4j server.

Every query's answer is checked against the same graph built from Keras alone (its kernels and
geometry: ``keras_graph.reference_graph``, which shares no code with ``loader``), computed with
NetworkX / numpy. Writes are refused and leave the
database unchanged; parameter values are data, never Cypher.

Needs the server of ``scripts/neo4j-local start`` (or docker compose): the ``driver`` fixture
(conftest.py) fails without it; these tests never skip.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import keras
import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers

from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.cypher import run_read
from loader.neo4j.db import Database
from loader.neo4j.models import ModelStateError
from loader.neo4j.queries import (MissingParameters, QueryNotFound, WriteQueryRefused,
                                  list_queries, load_query, parse_params, parse_query, run_query)
from keras_graph import reference_graph
from oracle import randomise_weights
from shared_models import shared_model

pytestmark = pytest.mark.neo4j


# ---------------------------------------------------------------------------- fixture data
@shared_model
def small_model():
    """Conv2D(same, relu) -> MaxPooling2D(same) -> Conv2D(same, relu) + residual Add -> Dense,
    6x6x2 input. Channel 0 of conv2 has only negative weights and a negative bias: its neurons
    are dead ReLUs (their inputs, max-pooled ReLUs, are never negative)."""
    inp = keras.Input((6, 6, 2), name="image")
    c1 = layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1")(inp)
    p = layers.MaxPooling2D(2, padding="same", name="pool")(c1)
    c2 = layers.Conv2D(3, 3, padding="same", activation="relu", name="conv2")(p)
    a = layers.Add(name="add")([p, c2])
    d = layers.Dense(4, name="dense")(layers.Flatten(name="flatten")(a))
    model = randomise_weights(keras.Model(inp, d, name="small"))
    kernel, bias = model.get_layer("conv2").get_weights()
    kernel[..., 0] = -np.abs(kernel[..., 0])
    bias[0] = -0.25
    model.get_layer("conv2").set_weights([kernel, bias])
    return model


def load_into_neo4j(driver, graph: NeuronGraph, name: str) -> None:
    """Load ``graph`` as model ``name`` with the project's online loader (replacing leftovers)."""
    from loader.neo4j.load import load

    load(graph, name=name, mode="online", driver=driver, replace=True)


def delete_model(driver, name: str) -> None:
    from loader.neo4j.models import delete_model as delete

    delete(driver, name)


@pytest.fixture(scope="module")
def loaded(driver):
    """(model name, keras model, reference nx graph) loaded into Neo4j for this module."""
    model = small_model()
    graph = NeuronGraph.from_model(model)
    name = f"test_q_queries_{os.getpid()}"
    load_into_neo4j(driver, graph, name)
    yield name, model, reference_graph(model, name)
    delete_model(driver, name)


def neuron_id(G, layer, index):
    return next(n for n, a in G.nodes(data=True) if a["layer"] == layer and a["index"] == index)


def paths_to_inputs(G, target):
    """Number of paths from every input neuron to ``target``: DP in reverse topological order."""
    paths = {target: 1}
    for n in nx.topological_sort(G.reverse(copy=False)):
        if n in paths:
            for s in G.predecessors(n):
                paths[s] = paths.get(s, 0) + paths[n]
    return {n: p for n, p in paths.items() if G.nodes[n]["op"] == "input"}


# ---------------------------------------------------------------------------- headers
def test_every_query_file_has_a_parsed_header_and_uses_model():
    queries = {q.name: q for q in list_queries()}
    for name in ("model_summary", "neuron", "top_inputs", "top_outputs", "pooling_choices",
                 "receptive_field", "layer_weight_stats", "dead_relus", "degree_distribution"):
        q = queries[name]
        assert q.description and q.returns, name
        assert q.params[0].name == "model" and q.params[0].type == "string", name
        assert q.path.name == f"{name}.cypher"
    assert queries["top_inputs"].param("k").default == 10
    assert not queries["top_inputs"].param("k").required
    assert queries["receptive_field"].procedure == "receptive_field"


def test_unknown_query_names_the_known_ones():
    with pytest.raises(QueryNotFound, match="top_inputs"):
        load_query("no_such_query")


def test_parameters_are_typed_from_text_and_by_declaration():
    q = load_query("top_inputs")
    assert parse_params(["index=7", "k=3", "layer=007"], q) == {"index": 7, "k": 3,
                                                                 "layer": "007"}
    assert parse_params(["a=1.5", "b=true", "c=[1, 2]", "d=x=y", "e=-3", "f={\"k\": 1}"]) == {
        "a": 1.5, "b": True, "c": [1, 2], "d": "x=y", "e": -3, "f": {"k": 1}}
    cypher = "x' }) DETACH DELETE n //"
    assert parse_params([f"layer={cypher}"], q) == {"layer": cypher}


def test_missing_parameters_are_all_named(driver, loaded):
    with pytest.raises(MissingParameters, match=r"\$layer.*\$index"):
        run_query(driver, "neuron", {"model": loaded[0]})


# ---------------------------------------------------------------------------- each query
def test_model_summary_counts_neurons_and_edges_per_layer(driver, loaded):
    name, _, G = loaded
    result = run_query(driver, "model_summary", {"model": name})
    want = {}
    for n, a in G.nodes(data=True):
        row = want.setdefault(a["layer_index"], [a["layer_index"], a["layer"], a["op"], 0, 0, 0])
        row[3] += 1
        row[4] += G.in_degree(n)
        row[5] += G.out_degree(n)
    assert result.columns == ["layer_index", "layer", "op", "neurons", "edges_in", "edges_out"]
    assert result.rows == [want[i] for i in sorted(want)]


@pytest.mark.parametrize("layer,index", [("image", 5), ("conv1", 0), ("conv1", 107),
                                         ("pool", 13), ("conv2", 4), ("add", 26), ("dense", 3)])
def test_neuron_attributes_and_degrees(driver, loaded, layer, index):
    name, _, G = loaded
    n = neuron_id(G, layer, index)
    a = G.nodes[n]
    rows = run_query(driver, "neuron", {"model": name, "layer": layer, "index": index}).records()
    assert rows == [{"id": n, "layer": layer, "layer_index": a["layer_index"], "index": index,
                     "op": a["op"], "bias": a["bias"], "activation": a["activation"],
                     "in_degree": G.in_degree(n), "out_degree": G.out_degree(n)}]


@pytest.mark.parametrize("direction", ["top_inputs", "top_outputs"])
@pytest.mark.parametrize("layer,index,k", [("conv2", 4, 5), ("dense", 1, 27), ("conv1", 10, 3),
                                           ("pool", 4, 100)])
def test_strongest_connections_by_absolute_weight(driver, loaded, direction, layer, index, k):
    name, _, G = loaded
    n = neuron_id(G, layer, index)
    if direction == "top_inputs":
        edges = [(s, G.edges[s, n]["weight"]) for s in G.predecessors(n)]
    else:
        edges = [(t, G.edges[n, t]["weight"]) for t in G.successors(n)]
    want = [[m, G.nodes[m]["layer"], G.nodes[m]["index"], w]
            for m, w in sorted(edges, key=lambda e: (-abs(e[1]), e[0]))[:k]]
    result = run_query(driver, direction, {"model": name, "layer": layer, "index": index, "k": k})
    assert result.rows == want


def test_top_inputs_default_k_is_ten(driver, loaded):
    result = run_query(driver, "top_inputs", {"model": loaded[0], "layer": "dense", "index": 0})
    assert len(result) == 10


@pytest.mark.parametrize("index", [0, 4, 13, 26])
def test_pooling_choices_are_every_window_entry(driver, loaded, index):
    name, _, G = loaded
    p = neuron_id(G, "pool", index)
    want = sorted([p, s, G.nodes[s]["layer"], G.nodes[s]["layer_index"], G.nodes[s]["index"]]
                  for s in G.predecessors(p))
    result = run_query(driver, "pooling_choices", {"model": name, "layer": "pool", "index": index})
    assert [r[:5] for r in result.rows] == want
    # without a trace, the trace columns are empty (tests/test_trace_neo4j.py fills them)
    assert result.columns[5:] == ["chosen", "value"]
    assert all(r[5:] == [None, None] for r in result.rows)
    # 2x2 'same' pooling of 6x6: every window is full, four candidates per neuron
    assert len(want) == 4


def test_pooling_choices_of_a_sum_neuron_is_empty(driver, loaded):
    result = run_query(driver, "pooling_choices", {"model": loaded[0], "layer": "conv2",
                                                   "index": 0})
    assert result.rows == []


@pytest.mark.parametrize("procedure", [True, False], ids=["layerwise", "statement"])
@pytest.mark.parametrize("layer,index", [("dense", 2), ("add", 13), ("conv2", 0), ("pool", 4),
                                         ("conv1", 50), ("image", 3)])
def test_receptive_field_counts_paths_from_every_input(driver, loaded, procedure, layer, index):
    name, _, G = loaded
    want = paths_to_inputs(G, neuron_id(G, layer, index))
    result = run_query(driver, "receptive_field",
                       {"model": name, "layer": layer, "index": index}, procedure=procedure)
    assert result.columns == ["id", "layer", "index", "paths", "complete"]
    assert {r[0]: r[3] for r in result.rows} == want
    assert all(r[1] == "image" and r[2] == G.nodes[r[0]]["index"] and r[4] is True
               for r in result.rows)
    if layer == "add":
        # The residual path (pool -> add) and the conv2 path both count.
        assert max(want.values()) > max(paths_to_inputs(G, neuron_id(G, "pool", 4)).values())


def dense_chain(depth: int, width: int) -> keras.Model:
    """``depth`` Dense(width) layers: every input neuron has width**(depth-1) paths to each
    output neuron."""
    inp = keras.Input((width,), name="x")
    x = inp
    for i in range(depth):
        x = layers.Dense(width, name=f"d{i}")(x)
    return keras.Model(inp, x)


@pytest.fixture(scope="module")
def chains(driver):
    """Two tiny models at the limits: 30 layers deep (the statement has 24 stages), and 24
    layers of width 8 (8**23 = 2**69 paths, past Cypher's 64-bit integers)."""
    names = {}
    for key, depth, width in (("deep", 30, 2), ("wide", 24, 8)):
        name = f"test_q_chain_{key}_{os.getpid()}"
        load_into_neo4j(driver, NeuronGraph.from_model(dense_chain(depth, width)), name)
        names[key] = (name, depth, width)
    yield names
    for name, _, _ in names.values():
        delete_model(driver, name)


def test_receptive_field_procedure_has_no_depth_limit(driver, chains):
    name, depth, width = chains["deep"]
    params = {"model": name, "layer": f"d{depth - 1}", "index": 1}
    rows = run_query(driver, "receptive_field", params).rows
    assert [(r[1], r[3], r[4]) for r in rows] == [("x", 2 ** (depth - 1), True)] * width
    # the one statement stops after its 24 stages and says so
    partial = run_query(driver, "receptive_field", params, procedure=False).rows
    assert partial and not any(r[4] for r in partial)
    assert {r[1] for r in partial} == {f"d{depth - 1 - 24}"}


@pytest.mark.parametrize("procedure", [True, False], ids=["layerwise", "statement"])
def test_receptive_field_counts_past_int64_become_floats(driver, chains, procedure):
    name, depth, width = chains["wide"]
    params = {"model": name, "layer": f"d{depth - 1}", "index": 0}
    rows = run_query(driver, "receptive_field", params, procedure=procedure).rows
    assert [r[3] for r in rows] == [float(width ** (depth - 1))] * width  # 2**69, exact


def test_layer_weight_stats_per_layer(driver, loaded):
    name, _, G = loaded
    by_layer: dict[int, list[float]] = {}
    for _, t, w in G.edges(data="weight"):
        by_layer.setdefault(G.nodes[t]["layer_index"], []).append(w)
    result = run_query(driver, "layer_weight_stats", {"model": name})
    assert [r[0] for r in result.rows] == sorted(by_layer)
    for li, layer, count, lo, hi, mean, std in result.rows:
        w = np.array(by_layer[li])
        assert count == len(w)
        assert (lo, hi) == (w.min(), w.max())
        assert math.isclose(mean, w.mean(), rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(std, w.std(), rel_tol=1e-9, abs_tol=1e-12)
    one = run_query(driver, "layer_weight_stats", {"model": name, "layer": "conv2"})
    assert [r[1] for r in one.rows] == ["conv2"]


def test_dead_relus_have_no_positive_weight_or_bias(driver, loaded):
    name, _, G = loaded
    want = sorted(n for n, a in G.nodes(data=True)
                  if a["activation"] in ("relu", "relu6") and a["bias"] <= 0
                  and all(G.edges[s, n]["weight"] <= 0 for s in G.predecessors(n)))
    result = run_query(driver, "dead_relus", {"model": name})
    assert [r[3] for r in result.rows] == want
    # conv2 channel 0 was made dead on purpose: 9 positions
    assert sum(1 for n in want if G.nodes[n]["layer"] == "conv2") >= 9
    assert all(r[5] == G.in_degree(r[3]) for r in result.rows)


def test_degree_distribution_histograms(driver, loaded):
    name, _, G = loaded
    want = Counter()
    for n, a in G.nodes(data=True):
        want[(a["layer_index"], a["layer"], "in", G.in_degree(n))] += 1
        want[(a["layer_index"], a["layer"], "out", G.out_degree(n))] += 1
    result = run_query(driver, "degree_distribution", {"model": name})
    assert result.rows == [list(k) + [v] for k, v in sorted(want.items())]


# ---------------------------------------------------------------------------- read-only
def _snapshot(driver, name, probe):
    """What a write probe could change: our model, the probe label, Models, indexes."""
    rec = driver.execute_query(
        "MATCH (n:Neuron {model: $name}) WITH count(n) AS neurons, sum(n.bias) AS bias "
        "OPTIONAL MATCH (:Neuron {model: $name})-[w:W]->() "
        "RETURN neurons, bias, count(w) AS rels, sum(w.weight) AS weight", name=name
    ).records[0]
    probes = driver.execute_query(f"MATCH (p:{probe}) RETURN count(p) AS n").records[0]["n"]
    models = driver.execute_query("MATCH (m:Model {name: $probe}) RETURN count(m) AS n",
                                  probe=probe).records[0]["n"]
    labels = {r["label"] for r in driver.execute_query("CALL db.labels()").records}
    indexes = {r["name"] for r in driver.execute_query("SHOW INDEXES YIELD name").records}
    return dict(rec), probes, models, probe in labels, {i for i in indexes if probe in i}


WRITES = {
    "create": "CREATE (p:{probe} {{x: 1}}) RETURN p",
    "delete": "MATCH (n:Neuron {{model: $model}}) DETACH DELETE n",
    "set": "MATCH (n:Neuron {{model: $model}}) SET n.bias = 99.0 RETURN count(n)",
    "remove": "MATCH (n:Neuron {{model: $model}}) REMOVE n.bias RETURN count(n)",
    "merge": "MERGE (m:Model {{name: '{probe}'}}) RETURN m",
    "create_label_procedure": "CALL db.createLabel('{probe}')",
    "in_transactions": "CALL {{ CREATE (:{probe}) }} IN TRANSACTIONS",
    "schema": "CREATE INDEX {probe}_index FOR (n:{probe}) ON (n.x)",
    "read_then_write": "MATCH (n:Neuron {{model: $model}}) WITH n LIMIT 1 "
                       "CALL {{ WITH n SET n.bias = 1.0 }} RETURN count(*)",
}


@pytest.mark.parametrize("kind", list(WRITES))
def test_write_queries_are_refused_and_change_nothing(driver, loaded, kind, tmp_path):
    name = loaded[0]
    probe = f"WgWriteProbe{os.getpid()}"
    before = _snapshot(driver, name, probe)
    text = WRITES[kind].format(probe=probe)
    path = tmp_path / f"{kind}.cypher"
    path.write_text(f"// name: {kind}\n// params: $model (string)\n{text}\n")
    for query in (parse_query(text), str(path)):
        with pytest.raises(WriteQueryRefused, match="read-only"):
            run_query(driver, query, {"model": name})
    assert _snapshot(driver, name, probe) == before


def test_the_read_transaction_itself_refuses_a_write(driver, loaded):
    # Second line of defence: even past the EXPLAIN check, the READ transaction rejects writes.
    name = loaded[0]
    probe = f"WgWriteProbe{os.getpid()}"
    before = _snapshot(driver, name, probe)
    with pytest.raises(WriteQueryRefused):
        run_read(Database(driver, "neo4j"), f"CREATE (:{probe})", {}, timeout=None,
                 label="probe")
    assert _snapshot(driver, name, probe) == before


@pytest.mark.parametrize("value", [
    "conv1' }) DETACH DELETE n //",
    "conv1\"}) MATCH (m) DETACH DELETE m RETURN 1 //",
    "x` RETURN 1 UNION MATCH (n) DETACH DELETE n //",
])
def test_a_parameter_holding_cypher_is_only_data(driver, loaded, value):
    name, _, G = loaded
    probe = "WgNoProbe"
    before = _snapshot(driver, name, probe)
    assert run_query(driver, "neuron", {"model": name, "layer": value, "index": 0}).rows == []
    with pytest.raises(ModelStateError, match="not allowed"):  # never a model name
        run_query(driver, "model_summary", {"model": value})
    assert _snapshot(driver, name, probe) == before
    # and the model still answers
    assert run_query(driver, "neuron", {"model": name, "layer": "conv1", "index": 0}).rows


# ---------------------------------------------------------------------------- CLI
def test_cli_query_prints_table_json_and_csv(driver, loaded):
    from loader.cli.analysis import query

    name, _, G = loaded
    runner = CliRunner()
    args = ["neuron", "--model", name, "-p", "layer=conv2", "-p", "index=4"]
    table = runner.invoke(query, args)
    assert table.exit_code == 0, table.output
    assert "in_degree" in table.output and "(1 row)" in table.output
    as_json = runner.invoke(query, args + ["--format", "json"])
    assert json.loads(as_json.output)[0]["id"] == neuron_id(G, "conv2", 4)
    as_csv = runner.invoke(query, args + ["-f", "csv"])
    assert as_csv.output.splitlines()[0].startswith("id,layer,layer_index")
    listing = runner.invoke(query, ["--list"])
    assert "receptive_field" in listing.output and "$k (int, default 10)" in listing.output
    assert query.help.rstrip().splitlines()[-1].strip().startswith("weightgraph query")


def test_cli_query_errors_are_weightgraph_errors(driver, loaded):
    from loader.cli.analysis import query
    from loader.errors import WeightgraphError

    result = CliRunner().invoke(query, ["neuron", "--model", loaded[0], "-p", "layer=conv2"])
    assert isinstance(result.exception, WeightgraphError)
    assert "$index" in str(result.exception)
