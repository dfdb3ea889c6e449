"""Aggregated traces of models loaded in Neo4j: computed from the stored graph (no Keras
model), stored in O(neurons + pooling edges) (no property or relationship per W edge), and
answering against TensorFlow (:mod:`tf_aggregate`) as the file-based trace set does; the named
queries, ``pull --trace T [--effective]``, the report, and bad inputs that store nothing.

Needs the real Neo4j server (conftest.py's ``driver``); never skips.
"""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner

from keras_oracle import keras_outputs
from tf_aggregate import (argmax_rates, float64_model, mean_contributions, mean_outputs,
                          relu_active_rates)
from loader.cli import main
from loader.demo import trained_digits
from loader.graph.forward import execute_networkx
from loader.graph.neuron_graph import NeuronGraph
from loader.graph.trace_set import trace_set
from loader.neo4j.load import load
from loader.neo4j.models import delete_model
from loader.neo4j.queries import run_query
from loader.neo4j.trace_sets import pull_trace_set, read_trace_set, trace_set_loaded
from loader.neo4j.traces import CHUNK, list_traces, read_trace

pytestmark = pytest.mark.neo4j


def _count(driver, what, **params):
    return driver.execute_query(f"MATCH {what} RETURN count(*) AS c", **params).records[0]["c"]


@pytest.fixture(scope="module")
def stored(driver, tmp_path_factory):
    """The digits CNN loaded whole, the 360 held-out digits in a .npy file, and their
    aggregated trace computed in and stored to Neo4j (contributions to each digit's
    predicted class)."""
    model, split = trained_digits(0)
    g = NeuronGraph.from_model(model)
    name = f"t_set_{np.random.default_rng().integers(1 << 30)}"
    load(g, name, driver=driver, replace=True)
    d = tmp_path_factory.mktemp("set")
    x = split.x_test.astype(np.float64)
    np.save(d / "test.npy", x)
    # Nothing per W edge: the model's W edges, counted (other tests' models load and go
    # beside this one), and none of them gains a property.
    model_w = "(:Neuron {model: $m})-[w:W]->()"
    rels = _count(driver, model_w, m=name)
    result = trace_set_loaded(driver, name, d / "test.npy", name=f"{name}_set",
                              target="predicted", batch_size=100)
    assert _count(driver, model_w, m=name) == rels == g.n_edges
    assert _count(driver, f"{model_w} WHERE size(keys(w)) > 1", m=name) == 0
    yield model, g, x, name, f"{name}_set", result, d
    delete_model(driver, name)


def test_stored_set_matches_tensorflow(driver, stored):
    model, g, x, name, trace, result, _ = stored
    a = read_trace_set(driver, trace)
    assert a["trace"]["n"] == 360 and a["trace"]["kind"] == "aggregate"
    assert np.array_equal(a["id"], np.arange(g.total_neurons))
    m64 = float64_model(model)
    scale = lambda v: max(float(np.abs(v).max()), 1e-30)  # noqa: E731
    for layer, want in mean_outputs(m64, x).items():
        e = g.entry(layer)
        if e.op is None:
            continue
        got = a["mean_value"][e.op.offset:e.op.offset + e.op.n_neurons]
        assert np.abs(got - want.reshape(-1)).max() <= 1e-7 * scale(want), layer
    for layer, want in relu_active_rates(m64, x).items():
        e = g.entry(layer).op
        got = a["active_rate"][e.offset:e.offset + e.n_neurons]
        np.testing.assert_array_equal(np.round(got * 360), np.round(want.reshape(-1) * 360))
    contributions, _ = mean_contributions(m64, x, "predicted")
    for layer, want in contributions.items():
        e = g.entry(layer)
        if e.op is None:
            continue
        got = a["mean_contribution"][e.op.offset:e.op.offset + e.op.n_neurons]
        assert np.abs(got - want.reshape(-1)).max() <= 1e-7 * scale(want), layer
    ch = a["choices"]
    for pool in ("pool1", "pool2"):
        op = g.entry(pool).op
        rates, _ = argmax_rates(m64, x, pool)
        mine = (ch["dst"] >= op.offset) & (ch["dst"] < op.offset + op.n_neurons)
        # a 2x2 window wholly inside its input: the rank in id order is the window position
        got = np.zeros(rates.shape)
        got[ch["dst"][mine] - op.offset, ch["rank"][mine]] = ch["rate"][mine]
        np.testing.assert_array_equal(np.round(got * 360), np.round(rates * 360), err_msg=pool)
        assert (a["padding_rate"][op.offset:op.offset + op.n_neurons] == 0).all()


def test_stored_set_equals_the_file_based_one(driver, stored):
    _, g, x, _, trace, result, _ = stored
    ts = trace_set(g, x, target="predicted")
    a = read_trace_set(driver, trace)
    for what in ("mean_value", "active_rate", "nonzero_rate", "mean_contribution",
                 "mean_abs_contribution"):
        np.testing.assert_allclose(a[what], ts.array(what), rtol=1e-12, atol=1e-15,
                                   err_msg=what)
    ch = a["choices"]
    for pool in ("pool1", "pool2"):
        src, dst, rate = ts.chosen_rates(pool)
        order = np.lexsort((src, dst))
        mine = np.isin(ch["dst"], dst)
        np.testing.assert_array_equal(ch["src"][mine], src[order])
        np.testing.assert_array_equal(ch["rate"][mine], rate[order])
    # O(neurons + pooling edges): one chunk per (layer, 1,024 neurons), pooling edges in the
    # chunks' lists
    layers = {}
    for nid in a["id"]:
        i = int(g.layer_of_ids(np.array([nid]))[0])
        layers.setdefault(i, set()).add((nid - g.entries[i].op.offset) // CHUNK)
    assert result.chunks == sum(len(v) for v in layers.values()) == _count(
        driver, "(c:TraceChunk {trace: $t})", t=trace)
    assert len(ch["src"]) == 1_536
    with pytest.raises(Exception, match="aggregates a set of inputs"):
        read_trace(driver, trace)


def test_named_queries_read_the_chunks(driver, stored):
    _, g, x, name, trace, _, _ = stored
    ts = trace_set(g, x, target="predicted")
    rows = run_query(driver, "pooling_usage", {"model": name, "trace": trace}).records()
    assert [(r["layer"], r["position"]) for r in rows] == [
        (p, k) for p in ("pool1", "pool2") for k in range(4)]
    for r in rows:
        neuron, position, rate = ts.choice_entries(r["layer"])
        at = position == r["position"]
        assert r["edges"] == at.sum() and r["never_chosen"] == (rate[at] == 0).sum()
        assert r["share"] == pytest.approx(ts.window_rates(r["layer"]).reshape(-1)
                                           [r["position"]], rel=1e-12)
        assert r["padding_share"] == 0 and r["neurons"] == g.entry(r["layer"]).op.n_neurons
    rows = run_query(driver, "never_active", {"model": name, "trace": trace, "k": 3}).records()
    by_layer = {r["layer"]: r for r in rows}
    for st in ts.steps:
        rates = ts.active_rate[st.lo:st.hi]
        r = by_layer[st.name]
        assert r["never_active"] == (rates == 0).sum() and r["neurons"] == st.hi - st.lo
        assert r["indexes"] == np.flatnonzero(rates == 0)[:3].tolist()
    assert by_layer["fc"]["never_active"] == 16
    for by, key in (("mean", np.abs(ts.mean_contribution)), ("abs", ts.mean_abs_contribution)):
        rows = run_query(driver, "top_mean_contributors",
                         {"model": name, "trace": trace, "layer": "conv2", "k": 5,
                          "by": by}).records()
        op = g.entry("conv2").op
        best = np.argsort(-key[op.offset:op.offset + op.n_neurons], kind="stable")[:5]
        assert [r["index"] for r in rows] == best.tolist()
        assert rows[0]["id"] == op.offset + best[0]
        assert rows[0]["mean_contribution"] == pytest.approx(
            ts.mean_contribution[op.offset + best[0]], rel=1e-12)


def test_pull_effective_executes_to_the_model(driver, stored, tmp_path):
    model, g, x, name, trace, _, _ = stored
    G = pull_trace_set(trace, effective=True, driver=driver)
    assert G.number_of_nodes() == 2_046 and G.number_of_edges() == 60_130
    out = execute_networkx(G, x)["logits"]
    want = np.asarray(keras_outputs(float64_model(model), x)[0])
    assert np.abs(out - want).max() <= 1e-7 * np.abs(want).max()
    np.testing.assert_array_equal(out.argmax(axis=1), want.argmax(axis=1))
    full = pull_trace_set(trace, driver=driver)
    assert full.number_of_edges() == 64_960
    rates = [d["chosen_rate"] for _, _, d in full.edges(data=True) if "chosen_rate" in d]
    assert len(rates) == 1_536 and sum(rates) == pytest.approx(384)  # 1 per pooling neuron
    fewer = pull_trace_set(trace, effective=True, min_rate=0.1, driver=driver)
    assert fewer.number_of_edges() < 60_130
    # the CLI: GraphML and Parquet
    runner = CliRunner()
    res = runner.invoke(main, ["pull", "--trace", trace, "--effective",
                               "-o", str(tmp_path / "eff.graphml.gz")])
    assert res.exit_code == 0, res.output
    H = nx.read_graphml(tmp_path / "eff.graphml.gz", node_type=int)
    assert H.number_of_edges() == 60_130 and json.loads(H.graph["trace"])["effective"]
    res = runner.invoke(main, ["pull", "--trace", trace, "-o", str(tmp_path / "set.parquet"),
                               "--format", "parquet"])
    assert res.exit_code == 0, res.output
    from loader.analysis.dataset import open_duckdb

    con = open_duckdb(tmp_path / "set.parquet")
    assert con.execute("SELECT count(*), count(chosen_rate), round(sum(chosen_rate)) FROM edges"
                       ).fetchone() == (64_960, 1_536, 384)
    res = runner.invoke(main, ["pull", "--trace", trace, "--active-only", "-o",
                               str(tmp_path / "x.graphml")])
    assert res.exit_code == 2 and "--effective" in res.output


def test_report_of_a_stored_set(driver, stored, tmp_path):
    _, _, _, name, trace, _, _ = stored
    res = CliRunner().invoke(main, ["analyze", "--name", name, "--trace", trace, "--no-gds",
                                    "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "r" / "report.md").read_text()
    for picture in ("chosen_rate_positions.png", "active_rates.png", "effective_graph.png",
                    "mean_contribution.png"):
        assert f"]({picture})" in text and (tmp_path / "r" / picture).is_file()
    assert "| fc | 32 | 16 |" in text  # never active
    assert "| pool1 | 256 | 256 | 1,024 | 934 |" in text  # the effective graph's pool1


def test_a_cone_target_and_listing(driver, stored):
    model, g, x, name, _, _, d = stored
    t = f"{name}_cone"
    result = trace_set_loaded(driver, name, d / "test.npy", name=t, target="logits:3")
    a = read_trace_set(driver, t)
    cone = NeuronGraph.from_model(model, cone="logits:3").plan()
    assert len(a["id"]) == cone.selected_neurons < g.total_neurons
    want, _ = mean_contributions(float64_model(model), x, ("logits", 3))
    op = g.entry("conv1").op
    held = (a["id"] >= op.offset) & (a["id"] < op.offset + op.n_neurons)
    w = want["conv1"].reshape(-1)
    assert np.abs(a["mean_contribution"][held] - w[a["id"][held] - op.offset]).max() <= \
        1e-7 * np.abs(w).max()
    listed = {r["name"]: r for r in list_traces(driver, model=name)}
    assert listed[t]["kind"] == "aggregate" and listed[t]["n"] == 360
    assert result.trace_set.predicted is None  # the cone holds one logit: no predictions


def test_bad_sets_store_nothing(driver, stored, tmp_path):
    from PIL import Image

    _, _, _, name, _, _, _ = stored
    middle = tmp_path / "middle"
    middle.mkdir()
    for j in range(5):
        Image.fromarray(np.full((8, 8), 20 * j, np.uint8)).save(middle / f"{j}.png")
    (middle / "2.png").write_bytes(b"garbage")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 8, 8, 3)))
    empty = tmp_path / "empty"
    empty.mkdir()
    before = _count(driver, "(c:TraceChunk)")
    for path, message in ((middle, "2.png is not a readable image"),
                          (wrong, "this one has (4, 8, 8, 3)"),
                          (empty, "no inputs in the directory")):
        res = CliRunner().invoke(main, ["trace", "--model", name, "--inputs", str(path),
                                        "--aggregate", "--name", f"{name}_bad",
                                        "--target", "predicted", "--quiet"])
        lines = [l for l in res.output.splitlines() if l.strip()]
        assert res.exit_code == 1 and lines[-1].startswith("Error: ") and message in lines[-1]
        assert _count(driver, "(t:Trace {name: $t})", t=f"{name}_bad") == 0
        assert _count(driver, "(c:TraceChunk)") == before
