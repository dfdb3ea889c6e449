"""Bulk mode (neo4j-admin import) against the real server: same graph as online mode.

A bulk load rebuilds the whole database. The graph of the CSV path (the default) is built
once, by the module's ``bulk_database`` fixture, and read by both tests; the second then
rebuilds the database with the other import paths (``rebuilds_database``). Both are slow
and run after every other test (see conftest.py), the readers of the shared database first.
"""

import secrets
from types import SimpleNamespace

import numpy as np
import pytest

from loader.neo4j.load import BulkLoadError
from loader.neo4j.db import connect
from loader.graph.forward import execute_arrays
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.load import load
from loader.neo4j.models import delete_model, model_exists, verify
from neo4j_helpers import layer_sums, read_back
from oracle import assert_matches_keras
from test_load import residual_model


@pytest.fixture(scope="module")
def bulk_database():
    """The database rebuilt once by a bulk load (CSV) of a residual model, over a database
    holding the same graph loaded online; what the online graph was, and what a bulk load
    without --replace did first, are kept for the tests to check."""
    # A fresh driver: another rebuild may have replaced the database under the session's
    # driver, whose bookmarks would then wait for transactions that no longer exist.
    driver = connect()
    tag = secrets.token_hex(3)  # a name no earlier run left behind
    online_name, bulk_name = f"online_twin_{tag}", f"bulk_twin_{tag}"
    model = residual_model(size=9, channels=5)
    g = NeuronGraph.from_model(model)
    load(g, online_name, driver=driver, batch_size=1000)
    online = layer_sums(driver, online_name)
    online_edges = _sorted_graph(driver, online_name)[2]
    try:
        load(g, bulk_name, driver=driver, mode="bulk")
        refused = None
    except BulkLoadError as exc:
        refused = exc
    kept_when_refused = model_exists(driver, online_name) is not None
    try:
        summary = load(g, bulk_name, driver=driver, mode="bulk", replace=True)
    finally:
        driver.close()
    yield SimpleNamespace(model=model, graph=g, online_name=online_name, bulk_name=bulk_name,
                          online=online, online_edges=online_edges, refused=refused,
                          kept_when_refused=kept_when_refused, summary=summary)
    driver = connect()
    try:
        delete_model(driver, bulk_name)
    finally:
        driver.close()


def test_bulk_load_gives_the_online_graph(bulk_database):
    db = bulk_database
    g, model, summary, online = db.graph, db.model, db.summary, db.online
    assert isinstance(db.refused, BulkLoadError) and "--replace" in str(db.refused)
    assert db.kept_when_refused  # refused: nothing touched
    # The database was rebuilt: a driver that ran execute_query holds bookmarks of the old
    # one (BookmarkTimeout), so the checks use a new driver, as a new process would.
    driver = connect()
    try:
        assert summary.relationships == g.n_edges
        assert model_exists(driver, db.online_name) is None  # the database was rebuilt
        bulk = layer_sums(driver, db.bulk_name)
        assert bulk.keys() == online.keys()
        for li in online:
            n0, e0, w0 = online[li]
            n1, e1, w1 = bulk[li]
            assert (n0, e0) == (n1, e1), li
            assert abs(w0 - w1) <= 1e-9 * max(1.0, abs(w0)), li
        v = verify(db.bulk_name, driver=driver)
        assert v.ok, "\n".join(v.lines())
        bulk_edges = _sorted_graph(driver, db.bulk_name)[2]
        assert summary.extra["input_type"] == "csv" and summary.extra["id_type"] == "actual"
        for k in ("src", "dst", "weight"):  # the plain CSV import files: bit for bit
            assert np.array_equal(db.online_edges[k], bulk_edges[k]), k
        layers, nodes, edges = read_back(driver, db.bulk_name)
        x = np.random.default_rng(9).normal(size=(2,) + g.entries[0].output.shape).astype("f4")
        ours = execute_arrays(layers, nodes, edges, x)
        assert_matches_keras(ours, model, x, shape_only_included=False)  # per layer, model(x)
        assert driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN count(*) AS c"
                                    ).records[0]["c"] >= 3
    finally:
        driver.close()


def _sorted_graph(driver, name):
    """(nodes by id, edges sorted by (src, dst)) read back from Neo4j."""
    layers, nodes, edges = read_back(driver, name)
    order = np.argsort(nodes["id"])
    nodes = {k: np.asarray(v, dtype=object)[order] for k, v in nodes.items()}
    e = np.lexsort((edges["dst"], edges["src"]))
    return layers, nodes, {k: v[e] for k, v in edges.items()}


@pytest.mark.rebuilds_database  # after reading the shared CSV database, three more imports
def test_bulk_from_a_parquet_dataset_equals_the_csv_path(bulk_database, tmp_path):
    """The CSV path (the default, the shared database, checked against online mode above),
    the Parquet import files and a dataset written by `export --format parquet` give the
    same graph, bit for bit (weights float32 widened to the same float64), and it executes
    to Keras; a selection, whose ids are not 0..N-1, goes in through the importer's id
    mapping, exact."""
    from click.testing import CliRunner

    from loader.cli import main as cli
    from loader.neo4j.load import LoadError, load_dataset
    from loader.sinks.parquet import write_parquet

    tag = secrets.token_hex(3)
    model, g = bulk_database.model, bulk_database.graph
    # "dataset": the default encoding, lz4 ids, which the importer cannot read (rewritten with
    # zstd first); "compact": zstd throughout, imported as it is.
    datasets = {"dataset": tmp_path / "g.parquet", "compact": tmp_path / "c.parquet"}
    write_parquet(g, datasets["dataset"])
    write_parquet(g, datasets["compact"], encoding="compact")
    graphs = {}
    for how in ("csv", "parquet", "dataset", "compact"):
        if how == "csv":  # the shared database: read before the next import replaces it
            name, s = bulk_database.bulk_name, bulk_database.summary
        else:
            driver = connect()
            name = f"{how}_{tag}"
            if how in datasets:
                s = load_dataset(datasets[how], name, replace=True, driver=driver)
            else:
                s = load(g, name, driver=driver, mode="bulk", replace=True, bulk_format=how)
            driver.close()
        assert (s.neurons, s.relationships) == (g.n_nodes, g.n_edges)
        assert s.extra["input_type"] == ("csv" if how == "csv" else "parquet")
        assert s.extra["id_type"] == ("integer" if how in datasets else "actual")
        assert "relationship import" in s.extra["import_stages"]
        driver = connect()
        try:
            v = verify(name, driver=driver)
            assert v.ok, "\n".join(v.lines())
            graphs[how] = _sorted_graph(driver, name)
        finally:
            driver.close()
    layers, nodes, edges = graphs["csv"]
    for how in ("parquet", *datasets):
        _, n2, e2 = graphs[how]
        for k in ("id", "layer_index", "index", "bias", "activation", "op", "layer"):
            assert list(nodes[k]) == list(n2[k]), (how, k)
        for k in ("src", "dst", "weight"):
            assert np.array_equal(edges[k], e2[k]), (how, k)
    x = np.random.default_rng(3).normal(size=(2,) + g.entries[0].output.shape).astype("f4")
    _, n3, e3 = graphs["dataset"]
    ours = execute_arrays(layers, {k: list(v) for k, v in n3.items()}, e3, x)
    assert_matches_keras(ours, model, x, shape_only_included=False)

    # A selection from the pooling layer on keeps the contract's global ids (1080..1702, not
    # 0..N-1): integer ids, mapped.
    sel = NeuronGraph.from_model(model, layers=f"{g.entries[4].name}:{g.entries[-1].name}")
    driver = connect()
    s = load(sel, f"sel_{tag}", driver=driver, mode="bulk", replace=True)
    driver.close()
    assert s.extra["id_type"] == "integer"
    driver = connect()
    try:
        v = verify(f"sel_{tag}", driver=driver)
        assert v.ok, "\n".join(v.lines())
        _, sel_nodes, sel_edges = _sorted_graph(driver, f"sel_{tag}")
        want = {k: np.concatenate([getattr(b, k) for b in sel.iter_edge_batches()])
                for k in ("src", "dst", "weight")}
        order = np.lexsort((want["dst"], want["src"]))
        assert list(sel_nodes["id"]) == sorted(
            np.concatenate([b.id for b in sel.iter_node_batches()]).tolist())
        for k in ("src", "dst"):
            assert np.array_equal(sel_edges[k], want[k][order]), k
        assert np.array_equal(sel_edges["weight"], want["weight"][order].astype(np.float64))
    finally:
        driver.close()

    # Bad input: one line, non-zero exit, the database untouched.
    with pytest.raises(LoadError, match="not a weightgraph Parquet dataset"):
        load_dataset(tmp_path, "x")
    dataset = datasets["dataset"]
    r = CliRunner().invoke(cli, ["load", str(dataset), "--name", "y"])
    assert r.exit_code != 0 and "--mode bulk" in r.output
    r = CliRunner().invoke(cli, ["load", str(dataset), "--mode", "bulk", "--name", "y"])
    assert r.exit_code != 0 and "--replace" in r.output
    driver = connect()
    try:
        assert model_exists(driver, f"sel_{tag}") is not None  # the last bulk load's
        delete_model(driver, f"sel_{tag}")
    finally:
        driver.close()
