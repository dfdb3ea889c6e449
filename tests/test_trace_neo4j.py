"""Traces of models loaded in Neo4j: computed from the stored graph (the target's cone only,
no Keras model), stored per neuron (no property or relationship per W edge), answering the
named queries and ``pull --trace`` with the same values as the file-based trace.

Needs the real Neo4j server (conftest.py's ``driver``); never skips.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from test_trace_graph import relu_pool_model
from loader.cli import main
from loader.graph.neuron_graph import NeuronGraph
from loader.graph.trace import trace
from loader.neo4j.load import load
from loader.neo4j.models import delete_model
from loader.neo4j.queries import run_query
from loader.neo4j.traces import (CHUNK, delete_trace, list_traces, pull_trace, read_trace,
                                 trace_loaded)
from loader.sinks.networkx import to_networkx

pytestmark = pytest.mark.neo4j


def _count(driver, what, **params):
    return driver.execute_query(f"MATCH {what} RETURN count(*) AS c", **params).records[0]["c"]


@pytest.fixture(scope="module")
def stored(driver, tmp_path_factory):
    """A ReLU/max-pool model loaded whole, a file-based trace of it, and the same trace
    computed in and stored to Neo4j."""
    model = relu_pool_model()
    g = NeuronGraph.from_model(model)
    name = f"t_trace_{np.random.default_rng().integers(1 << 30)}"
    load(g, name, driver=driver, replace=True)
    x = np.random.default_rng(0).normal(size=(10, 9, 2))
    path = tmp_path_factory.mktemp("trace") / "x.npy"
    np.save(path, x)
    # Nothing per W edge: the model's W edges, counted (other tests' models load and go
    # beside this one), and none of them gains a property.
    model_w = "(:Neuron {model: $m})-[w:W]->()"
    rels = _count(driver, model_w, m=name)
    result = trace_loaded(driver, name, path, name=f"{name}_x", target="out:1")
    assert _count(driver, model_w, m=name) == rels == g.n_edges
    assert _count(driver, f"{model_w} WHERE size(keys(w)) > 1", m=name) == 0
    t = trace(g, x, target="out:1")
    yield name, f"{name}_x", g, t, result, path
    delete_model(driver, name)


def test_stored_trace_equals_the_file_based_trace(driver, stored):
    _, trace_name, g, t, result, _ = stored
    a = read_trace(driver, trace_name)
    # the target's cone, and nothing else
    cone = g.same_model(cone="out:1")
    ids = np.concatenate([b.id for b in cone.iter_node_batches()])
    assert np.array_equal(a["id"], np.sort(ids))
    np.testing.assert_allclose(a["value"], t.values[a["id"]], rtol=1e-12, atol=1e-12)
    assert np.array_equal(a["active"], t.active[a["id"]])
    np.testing.assert_allclose(a["contribution"], t.contribution[a["id"]], rtol=1e-9,
                               atol=1e-15)
    for i, ch in t.chosen.items():
        op = g.entries[i].op
        held = (a["id"] >= op.offset) & (a["id"] < op.offset + op.n_neurons)
        assert a["choice"][held].all()
        assert np.array_equal(a["chosen"][held], ch[a["id"][held] - op.offset])
    assert not a["choice"][~np.isin(a["id"], np.concatenate(
        [np.arange(g.entries[i].op.offset, g.entries[i].op.offset + g.entries[i].op.n_neurons)
         for i in t.chosen]))].any()
    # O(neurons): one chunk per (layer, 1024 neurons) held
    chunks = _count(driver, f"(c:TraceChunk {{trace: '{trace_name}'}})")
    assert chunks == result.chunks
    layers = {}
    for nid in a["id"]:
        i = int(g.layer_of_ids(np.array([nid]))[0])
        layers.setdefault(i, set()).add((nid - g.entries[i].op.offset) // CHUNK)
    assert chunks == sum(len(v) for v in layers.values())


def test_trace_value_query(driver, stored):
    name, trace_name, g, t, _, _ = stored
    for layer, index in [("out", 1), ("conv1", 17), ("pool1", 3), ("pool2", 2), ("relu", 5),
                         ("image", 7)]:
        entry = g.entry(layer)
        rows = run_query(driver, "trace_value", {"model": name, "trace": trace_name,
                                                 "layer": layer, "index": index}).records()
        nid = entry.op.offset + index
        assert len(rows) == 1
        r = rows[0]
        assert r["id"] == nid and r["value"] == pytest.approx(t.values[nid], rel=1e-12)
        assert r["active"] is bool(t.active[nid])
        assert r["contribution"] == pytest.approx(t.contribution[nid], rel=1e-9, abs=1e-15)
        src = t.chosen_source(f"{layer}:{index}") if entry.op.op == "max" else None
        assert (r["chosen_layer"], r["chosen_index"]) == (src or (None, None))


def test_pooling_choices_gain_the_chosen_column(driver, stored):
    name, trace_name, g, t, _, _ = stored
    op = g.entry("pool2").op
    for index in range(op.n_neurons):
        if not t.active[op.offset + index]:
            continue
        rows = run_query(driver, "pooling_choices", {"model": name, "layer": "pool2",
                                                     "index": index, "trace": trace_name}
                         ).records()
        chosen = [r for r in rows if r["chosen"]]
        assert len(chosen) == 1
        assert (chosen[0]["layer"], chosen[0]["index"]) == t.chosen_source(
            f"pool2:{index}")
        assert chosen[0]["value"] == max(r["value"] for r in rows)
        for r in rows:
            assert r["value"] == pytest.approx(t.values[r["id"]], rel=1e-12)
    plain = run_query(driver, "pooling_choices", {"model": name, "layer": "pool2",
                                                  "index": 0}).records()
    assert plain and all(r["chosen"] is None and r["value"] is None for r in plain)


def test_active_subgraph_query_matches_the_active_only_graph(driver, stored):
    name, trace_name, g, t, _, _ = stored
    H = to_networkx(t.subgraph(active_only=True))
    for layer in ("conv2", "pool1", "pool2", "relu", "dense"):
        op = g.entry(layer).op
        for index in range(0, op.n_neurons, max(1, op.n_neurons // 5)):
            nid = op.offset + index
            rows = run_query(driver, "trace_active_subgraph", {
                "model": name, "trace": trace_name, "layer": layer, "index": index}).records()
            if nid not in H:
                assert rows == []
                continue
            # the database holds the whole model, the trace only the target's cone: compare
            # with the neighbours that the trace holds
            held = set(read_trace(driver, trace_name)["id"].tolist())
            want_in = sorted(u for u in H.predecessors(nid))
            want_out = sorted(v for v in H.successors(nid) if v in held)
            assert sorted(r["id"] for r in rows if r["direction"] == "in") == want_in
            assert sorted(r["id"] for r in rows if r["direction"] == "out") == want_out
            for r in rows:
                assert r["value"] == pytest.approx(t.values[r["id"]], rel=1e-12)
                assert r["neuron_value"] == pytest.approx(t.values[nid], rel=1e-12)


def test_top_contributors_query(driver, stored):
    name, trace_name, g, t, _, _ = stored
    a = read_trace(driver, trace_name)
    order = np.argsort(-np.abs(a["contribution"]), kind="stable")
    for layer in (None, "conv1"):
        rows = run_query(driver, "top_contributors", {"model": name, "trace": trace_name,
                                                      "layer": layer, "k": 5}).records()
        ids = a["id"][order]
        if layer is not None:
            op = g.entry(layer).op
            ids = ids[(ids >= op.offset) & (ids < op.offset + op.n_neurons)]
        want = [int(i) for i in ids if t.contribution[i] != 0][:5]
        assert [r["id"] for r in rows] == want
        assert all(r["target"] == "out:1" for r in rows)
        for r in rows:
            assert r["contribution"] == pytest.approx(t.contribution[r["id"]], rel=1e-9)


def test_pull_brings_back_the_active_subgraph_with_values(driver, stored, tmp_path):
    _, trace_name, g, t, _, _ = stored
    G = pull_trace(trace_name, active_only=True, driver=driver)
    cone = g.same_model(cone="out:1")
    H = to_networkx(t.subgraph(active_only=True))
    cone_ids = set(np.concatenate([b.id for b in cone.iter_node_batches()]).tolist())
    H = H.subgraph([n for n in H if n in cone_ids])
    assert set(G.nodes) == set(H.nodes)
    assert set(G.edges) == {(u, v) for u, v in H.edges if v in cone_ids}
    for n, d in G.nodes(data=True):
        assert d["value"] == pytest.approx(t.values[n], rel=1e-12) and d["active"]
    for u, v, d in G.edges(data=True):
        if G.nodes[v]["op"] == "max":
            assert d["chosen"] is True
    stats = pull_trace(trace_name, driver=driver, path=tmp_path / "all.graphml")
    assert stats["nodes"] == len(cone_ids)


def test_trace_cli_against_neo4j(driver, stored, tmp_path):
    name, _, g, t, _, path = stored
    runner = CliRunner()
    tname = f"{name}_cli"
    args = ["trace", "--model", name, "--input", str(path), "--name", tname, "--target",
            "pool2:3"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"trace {tname} of {name}" in result.output
    again = runner.invoke(main, args)
    assert again.exit_code != 0 and "use --replace" in again.output
    assert len(again.output.strip().splitlines()) == 1
    assert runner.invoke(main, args + ["--replace"]).exit_code == 0
    listed = runner.invoke(main, ["trace", "list", "--model", name])
    assert tname in listed.output
    out = tmp_path / "active.graphml.gz"
    pulled = runner.invoke(main, ["pull", "--trace", tname, "--active-only", "-o", str(out)])
    assert pulled.exit_code == 0, pulled.output
    assert out.exists()
    bad = runner.invoke(main, ["trace", "--model", name, "--input", str(path), "--name",
                               f"{tname}b", "--target", "nope:1"])
    assert bad.exit_code != 0 and "no layer named 'nope'" in bad.output
    assert runner.invoke(main, ["trace", "delete", "--name", tname]).exit_code == 0
    assert tname not in [r["name"] for r in list_traces(driver)]
    missing = runner.invoke(main, ["trace", "delete", "--name", tname])
    assert missing.exit_code != 0 and f"no trace {tname!r}" in missing.output


@pytest.mark.slow  # builds a whole keras.applications model
def test_trace_of_a_loaded_cone_reads_only_the_cone(driver, model_name):
    """VGG16 at 32x32 loaded as a cone; the trace of a neuron inside it is computed from
    Neo4j alone and equals the file-based trace of the whole model."""
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3),
                               cone="block2_conv1:100")
    name = model_name("vggcone")
    load(g, name, driver=driver, source={"model": "vgg16"})
    x = np.random.default_rng(4).uniform(0, 255, size=(32, 32, 3))
    target = "block1_pool:40"
    result = trace_loaded(driver, name, "x.npy", x=x, name=f"{name}_t", target=target)
    full = g.same_model()
    t = trace(full, x, target=target)
    a = read_trace(driver, f"{name}_t")
    inner = g.same_model(cone=target)
    assert result.neurons == inner.n_nodes and result.edges_read == inner.n_edges
    np.testing.assert_allclose(a["value"], t.values[a["id"]], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a["contribution"], t.contribution[a["id"]], rtol=1e-7,
                               atol=1e-12)
    delete_model(driver, name)
    assert _count(driver, f"(c:TraceChunk {{model: '{name}'}})") == 0
    assert _count(driver, f"(t:Trace {{model: '{name}'}})") == 0


def test_incomplete_models_and_unknown_traces_are_one_line_errors(driver, model_name):
    g = NeuronGraph.from_model(relu_pool_model(), layers="conv2:dense")
    name = model_name("partial")
    load(g, name, driver=driver)
    from loader.errors import WeightgraphError

    with pytest.raises(WeightgraphError, match="needs everything from the input up"):
        trace_loaded(driver, name, "x.npy", x=np.zeros((10, 9, 2)), name=f"{name}_t")
    with pytest.raises(WeightgraphError, match="no trace 'nope_trace'"):
        delete_trace(driver, "nope_trace")


def test_analyze_a_stored_trace(driver, stored, tmp_path):
    name, trace_name, g, t, _, _ = stored
    from loader.analysis.traces import from_neo4j
    from loader.neo4j.db import Database

    view = from_neo4j(Database(driver), trace_name)
    # ranks in window order from the database: as many choices and ties as the file-based
    # trace's window positions (pool2 is 2x2 'same' on 5x5: border windows are partial, so
    # ranks and positions differ there; pool1 reads zero padding)
    for layer in ("pool1", "pool2"):
        pool = next(p for p in view.pools if p["layer"] == layer)
        assert pool["counts"].sum() == t.window_positions(layer).sum()
        assert pool["tied"] == t.tied_neurons(layer)
    c = view.inputs["image"]["contribution"]
    np.testing.assert_allclose(c, t.layer("image", "contribution"), rtol=1e-9, atol=1e-15)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["analyze", "--name", name, "--neuron", "out:1",
                                       "--trace", trace_name, "--metrics", "", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "## Trace: x.npy -> out:1" in text and "](contribution.png)" in text
    assert "](chosen_positions.png)" in text and "](active_fraction.png)" in text


def test_the_active_subgraph_loads_as_a_model(driver, stored, model_name):
    """A trace's selection is a graph like any other: ``load`` takes it (here the active
    subgraph), and ``verify`` finds every layer as planned."""
    from loader.neo4j.models import verify

    _, _, g, t, _, _ = stored
    sub = t.subgraph(active_only=True)
    name = model_name("active")
    summary = load(sub, name, driver=driver)
    assert summary.relationships == sub.n_edges
    assert verify(name, driver=driver).ok
    assert _count(driver, f"(n:Neuron {{model: '{name}'}})") == int(t.active.sum())
