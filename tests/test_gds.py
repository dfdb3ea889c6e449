"""Graph Data Science inside Neo4j (loader.neo4j.gds) against the real server with GDS 2.13.9.

Every algorithm is checked against NetworkX (or, where NetworkX has no such function or its
semantics differ, the formula from the GDS manual written out here with numpy over the NetworkX
graph) on the same subgraph, pulled from Neo4j with ``loader.pull``. Also: projections are
dropped after an error and after Ctrl-C, a projection above the memory limit is refused before
anything is built, and nothing is written unless a property is asked for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner

from loader.errors import SelectionError, TooLargeError
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j import gds
from loader.neo4j.db import Database
from loader.neo4j.pull import pull
from test_queries import delete_model, load_into_neo4j, small_model

pytestmark = pytest.mark.neo4j

# Converged on a DAG of depth 6: both sides iterate to the fixed point (GDS stops when no
# score moves by more than the tolerance).
ITERATIONS = {"maxIterations": 100, "tolerance": 1e-12}
# Edges entering the pool layer only: each 2x2 window is a separate star (many components).
POOL_EDGES = ("MATCH (s:Neuron {model: $model})-[w:W]->(t:Neuron {model: $model}) "
              "WHERE t.layer = 'pool' RETURN s.id AS src, t.id AS dst, w.weight AS weight")


@pytest.fixture(scope="module")
def db(driver):
    return Database(driver)


@pytest.fixture(scope="module")
def loaded(driver):
    name = f"test_gds_{os.getpid()}"
    load_into_neo4j(driver, NeuronGraph.from_model(small_model(), name="small"), name)
    yield name
    delete_model(driver, name)


def projections_of(db, model: str) -> list[str]:
    """The weightgraph projections (``wg-<hex>-<model>``) of ``model`` in the catalog: other
    test files may project their own models meanwhile (scripts/test runs files side by
    side)."""
    return [g for g in gds.projections(db) if g.startswith("wg-") and g.endswith(f"-{model}")]


def weighted(G: nx.DiGraph, mode: str) -> nx.DiGraph:
    """G with edge attribute ``w`` = 1, weight or |weight|."""
    H = G.copy()
    for _, _, d in H.edges(data=True):
        d["w"] = {"none": 1.0, "weight": d["weight"], "abs": abs(d["weight"])}[mode]
    return H


def transition(G: nx.DiGraph, attr="w"):
    """(nodes, A) with A[i, j] = weight of edge i -> j (scipy sparse, rows = sources)."""
    nodes = list(G.nodes)
    return nodes, nx.to_scipy_sparse_array(G, nodelist=nodes, weight=attr, format="csr")


def power(step, n, iterations, tolerance):
    x = np.ones(n)
    for _ in range(iterations):
        new = step(x)
        done = np.max(np.abs(new - x)) < tolerance
        x = new
        if done:
            break
    return x


def gds_pagerank_oracle(G, d=0.85, iterations=100, tolerance=1e-12):
    """PageRank as GDS defines it: x(v) = (1 - d) + d * sum_{u -> v} x(u) * w(u, v) / W(u),
    W(u) the total out-weight of u. Not normalised (no division by the node count), and a
    dangling node's score goes nowhere."""
    nodes, A = transition(G)
    out = np.asarray(A.sum(axis=1)).ravel()
    inv = np.divide(1.0, out, out=np.zeros_like(out), where=out > 0)
    M = (A.T.multiply(inv)).tocsr()          # M[v, u] = w(u, v) / W(u)
    x = power(lambda x: (1 - d) + d * (M @ x), len(nodes), iterations, tolerance)
    return dict(zip(nodes, x))


def gds_articlerank_oracle(G, d=0.85, iterations=100, tolerance=1e-12):
    """ArticleRank from the GDS manual: AR(v) = (1 - d) + d * sum_{u -> v} AR(u) / (C(u) +
    mean C), C(u) the out-degree of u and mean C the mean out-degree over all nodes. Weighted,
    the edge's weight multiplies the message and C(u) is u's out-weight, but the mean stays
    the mean *count* of out-edges (relationships / nodes), whatever the weights."""
    nodes, A = transition(G)
    out = np.asarray(A.sum(axis=1)).ravel()
    mean_degree = G.number_of_edges() / G.number_of_nodes()
    M = (A.T.multiply(1.0 / (out + mean_degree))).tocsr()
    x = power(lambda x: (1 - d) + d * (M @ x), len(nodes), iterations, tolerance)
    return dict(zip(nodes, x))


def assert_close(result: gds.GdsResult, expected: dict, column="score", tol=1e-4):
    got = dict(zip(result.columns["id"].tolist(), result.columns[column].tolist()))
    assert set(got) == set(expected)
    worst = max(abs(got[k] - expected[k]) for k in expected)
    assert worst <= tol, worst


def partition(ids, labels) -> set[frozenset]:
    groups: dict = {}
    for i, c in zip(ids, labels):
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


# ---------------------------------------------------------------------------- the server
def test_server_has_gds_2_13_9(db):
    assert db.read_one("RETURN gds.version() AS v")["v"] == "2.13.9"


# ---------------------------------------------------------------------------- centralities
@pytest.mark.parametrize("weight", ["none", "abs"])
def test_pagerank_equals_the_gds_formula_over_the_pulled_graph(db, loaded, weight):
    G = pull(loaded, driver=db)
    result = gds.run("pagerank", loaded, weight=weight, config=ITERATIONS, driver=db)
    assert (result.nodes, result.relationships) == (G.number_of_nodes(), G.number_of_edges())
    expected = gds_pagerank_oracle(weighted(G, weight))
    assert_close(result, expected)
    # And NetworkX itself: nx.pagerank spreads a dangling node's mass uniformly, which is the
    # teleport term again, so its fixed point solves x = c * 1 + d * M x for some constant c:
    # GDS's scores divided by their sum, exactly (at convergence).
    nx_scores = nx.pagerank(weighted(G, weight), alpha=0.85, weight="w", tol=1e-12,
                            max_iter=100)
    total = result.columns["score"].sum()
    normalised = dict(zip(result.columns["id"].tolist(), (result.columns["score"] / total)))
    assert max(abs(nx_scores[k] - normalised[k]) for k in G) <= 1e-4 * min(nx_scores.values())


def test_pagerank_of_a_layer_range_matches_the_pulled_range(db, loaded):
    G = pull(loaded, layers="conv2:dense", driver=db)
    result = gds.run("pagerank", loaded, layers="conv2:dense", weight="abs", config=ITERATIONS,
                     driver=db)
    assert_close(result, gds_pagerank_oracle(weighted(G, "abs")))


@pytest.mark.parametrize("weight", ["none", "abs"])
def test_articlerank_equals_the_manual_formula(db, loaded, weight):
    G = pull(loaded, driver=db)
    result = gds.run("articlerank", loaded, weight=weight, config=ITERATIONS, driver=db)
    assert_close(result, gds_articlerank_oracle(weighted(G, weight)))


@pytest.mark.parametrize("weight,orientation", [("none", "NATURAL"), ("none", "REVERSE"),
                                                ("abs", "REVERSE"), ("abs", "NATURAL")])
def test_degree_is_exact(db, loaded, weight, orientation):
    G = weighted(pull(loaded, cone="dense:2:3", driver=db), weight)
    result = gds.run("degree", loaded, cone="dense:2:3", weight=weight,
                     config={"orientation": orientation}, driver=db)
    degree = G.out_degree if orientation == "NATURAL" else G.in_degree
    expected = dict(degree(weight="w"))
    got = result.as_dict()
    assert set(got) == set(expected)
    assert max(abs(got[k] - expected[k]) for k in expected) < 1e-9


@pytest.mark.parametrize("weight", ["none", "abs"])
def test_betweenness_exact_equals_networkx(db, loaded, weight):
    G = weighted(pull(loaded, cone="dense:1:3", driver=db), weight)
    result = gds.run("betweenness", loaded, cone="dense:1:3", weight=weight, driver=db)
    expected = nx.betweenness_centrality(G, normalized=False,
                                         weight=None if weight == "none" else "w")
    assert max(expected.values()) > 10
    assert_close(result, expected, tol=1e-6)


def test_sampled_betweenness_is_reproducible_with_a_seed(db, loaded):
    config = {"samplingSize": 20, "samplingSeed": 7}
    with gds.project(loaded, cone="dense:1:3", driver=db) as g:
        a, b = g.stream("betweenness", config), g.stream("betweenness", config)
        exact = g.stream("betweenness")
    assert a.as_dict() == b.as_dict()
    assert a.as_dict() != exact.as_dict()


def adjacency(G):
    nodes = list(G)
    return nodes, nx.to_scipy_sparse_array(G, nodelist=nodes, weight=None,
                                           format="csr").astype(float)


@pytest.mark.parametrize("undirected", [False, True])
def test_eigenvector_follows_its_recurrence_and_networkx_on_the_undirected_view(db, loaded,
                                                                                 undirected):
    # GDS 2.13.9 sends a node's *unnormalised* value to its neighbours and normalises only the
    # value it keeps: y_k = x_{k-1} + A^T y_{k-1}, x_k = y_k / |y_k|_2 (x_0 = y_0 = 1/N), one
    # step less than maxIterations. So it is not quite the (A + I) power iteration of
    # nx.eigenvector_centrality: on the (nearly bipartite) undirected layered graph it settles
    # within ~1e-3 of NetworkX's vector and does not converge to 1e-4; on the DAG NetworkX
    # does not converge at all. (y grows like lambda^k: past ~110 iterations it overflows.)
    G = pull(loaded, driver=db)
    H = G.to_undirected() if undirected else G
    nodes, A = adjacency(H)
    with gds.project(loaded, undirected=undirected, driver=db) as g:
        result = g.stream("eigenvector", {"maxIterations": 40, "tolerance": 1e-300})
    x = y = np.full(len(nodes), 1 / len(nodes))
    x = x / np.linalg.norm(x)
    for _ in range(39):
        y = x + A.T @ y
        x = y / np.linalg.norm(y)
    assert_close(result, dict(zip(nodes, x)), tol=1e-9)
    if undirected:
        expected = nx.eigenvector_centrality(H, max_iter=1000, tol=1e-12)
        assert_close(result, expected, tol=2e-3)


def test_hits_is_the_principal_singular_pair(db, loaded):
    # The GDS manual's HITS: auth = A^T hub, hub = A auth, each scaled to unit L2 norm, for
    # hitsIterations rounds; converged, they are the principal right and left singular vectors
    # of A (numpy's SVD here: nx.hits answers with a mixed-sign vector on this graph).
    G = pull(loaded, driver=db)
    nodes, A = adjacency(G)
    result = gds.run("hits", loaded, config={"hitsIterations": 30}, driver=db)
    hub = np.ones(len(nodes))
    for _ in range(30):
        auth = A.T @ hub
        auth /= np.linalg.norm(auth)
        hub = A @ auth
        hub /= np.linalg.norm(hub)
    assert_close(result, dict(zip(nodes, auth)), column="auth", tol=1e-9)
    assert_close(result, dict(zip(nodes, hub)), column="hub", tol=1e-9)
    converged = gds.run("hits", loaded, config={"hitsIterations": 300}, driver=db)
    u, _, vt = np.linalg.svd(A.toarray())
    assert_close(converged, dict(zip(nodes, np.abs(vt[0]))), column="auth")
    assert_close(converged, dict(zip(nodes, np.abs(u[:, 0]))), column="hub")


def test_top_k_is_the_k_highest_scores(db, loaded):
    full = gds.run("pagerank", loaded, weight="abs", driver=db)
    top = gds.run("pagerank", loaded, weight="abs", top=5, driver=db)
    order = np.lexsort((full.columns["id"], -full.columns["score"]))[:5]
    assert top.columns["id"].tolist() == full.columns["id"][order].tolist()


# ---------------------------------------------------------------------------- communities
def test_wcc_gives_networkx_components(db, loaded):
    G = pull(loaded, cypher=POOL_EDGES, driver=db)
    result = gds.run("wcc", loaded, cypher=POOL_EDGES, driver=db)
    expected = {frozenset(c) for c in nx.weakly_connected_components(G)}
    assert len(expected) > 10
    assert partition(result.columns["id"].tolist(), result.columns["component"].tolist()) \
        == expected
    sizes = gds.run("wcc", loaded, cypher=POOL_EDGES, top=3, driver=db)
    assert sizes.key == "community"
    assert sizes.columns["size"].tolist() == sorted(map(len, expected), reverse=True)[:3]


@pytest.mark.parametrize("name", ["louvain", "leiden"])
def test_communities_are_as_modular_as_networkx_louvain(db, loaded, name):
    G = weighted(pull(loaded, driver=db), "abs").to_undirected()
    # One thread (and, for Leiden, a seed): the partition is then the same on every run; with
    # several threads Leiden fell short of the bound once in about six runs.
    config = {"concurrency": 1, **({"randomSeed": 7} if name == "leiden" else {})}
    result = gds.run(name, loaded, weight="abs", config=config, driver=db)
    ids, labels = result.columns["id"].tolist(), result.columns["community"].tolist()
    assert set(ids) == set(G)
    ours = nx.community.modularity(G, partition(ids, labels), weight="w")
    reference = nx.community.modularity(
        G, nx.community.louvain_communities(G, weight="w", seed=1), weight="w")
    assert ours >= reference - 0.02, (ours, reference)
    assert ours > 0.3


# ---------------------------------------------------------------------------- the projection
def test_projection_is_dropped_after_an_error_and_after_ctrl_c(db, loaded):
    with pytest.raises(gds.GdsError) as err:
        gds.run("pagerank", loaded, config={"maxIterations": -1}, driver=db)
    assert "\n" not in str(err.value) and "maxIterations" in str(err.value)
    assert not projections_of(db, loaded)
    with pytest.raises(KeyboardInterrupt):
        with gds.project(loaded, driver=db) as g:
            assert g.name in gds.projections(db)
            raise KeyboardInterrupt
    assert g.name not in gds.projections(db)


def test_ctrl_c_during_the_projection_terminates_it_and_leaves_nothing(db, loaded):
    # A projection slow enough to be caught running: every edge 4,000 times.
    slow = ("MATCH (s:Neuron {model: $model})-[w:W]->(t:Neuron {model: $model}) "
            "UNWIND range(1, 4000) AS k RETURN s.id AS src, t.id AS dst, w.weight AS weight")
    running = ("SHOW TRANSACTIONS YIELD transactionId, metaData "
               "WHERE metaData.weightgraph_projection STARTS WITH 'wg-' "
               f"AND metaData.weightgraph_projection ENDS WITH '-{loaded}' "
               "RETURN transactionId")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "loader.cli", "gds", "wcc", "--model",
                             loaded, "--cypher", slow], cwd=root, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _show(db, running):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err.endswith("\ninterrupted\n"), err
    assert err.startswith("projecting cypher of model") and err.count("\n") == 2, err
    time.sleep(1)
    assert not _show(db, running)
    assert not projections_of(db, loaded)


def _show(db, statement):
    # SHOW TRANSACTIONS runs in an auto-commit transaction only.
    with db.session() as s:
        return list(s.run(statement))


def test_too_large_a_projection_is_refused_before_anything_is_built(db, loaded):
    need = gds.estimate_memory(db, 265, 2247, weight="abs", algorithms=("pagerank",))
    assert need > 100_000
    with pytest.raises(TooLargeError, match="needs up to .* of Neo4j heap") as err:
        gds.run("pagerank", loaded, weight="abs", max_memory=need - 1, driver=db)
    assert "\n" not in str(err.value)
    assert not projections_of(db, loaded)
    # A bigger estimate for a bigger graph, and the undirected view doubles the relationships.
    assert gds.estimate_memory(db, 26500, 2247000) > gds.estimate_memory(db, 265, 2247)
    assert gds.estimate_memory(db, 26500, 2247000, undirected=True) \
        > 1.5 * gds.estimate_memory(db, 26500, 2247000)


@pytest.mark.parametrize("name", ["pagerank", "degree", "louvain"])
def test_signed_weights_are_refused_where_the_algorithm_needs_nonnegative_ones(db, loaded, name):
    # (GDS's weighted degree would silently sum only the positive weights.)
    with pytest.raises(SelectionError, match="--weight abs"):
        gds.run(name, loaded, weight="weight", driver=db)
    assert not projections_of(db, loaded)


def node_properties(db, model):
    return sorted((r["id"], sorted(r["props"].items())) for r in db.read(
        "MATCH (n:Neuron {model: $m}) RETURN n.id AS id, properties(n) AS props", m=model))


def test_gds_is_read_only_unless_a_property_is_written(db, loaded):
    before = node_properties(db, loaded)
    result = gds.run("pagerank", loaded, weight="abs", driver=db)
    gds.run("louvain", loaded, weight="abs", driver=db)
    assert node_properties(db, loaded) == before
    written = gds.run("pagerank", loaded, weight="abs", write_property="gds_pagerank", driver=db)
    try:
        assert written.written == len(before)
        got = {r["id"]: r["p"] for r in db.read(
            "MATCH (n:Neuron {model: $m}) RETURN n.id AS id, n.gds_pagerank AS p", m=loaded)}
        expected = result.as_dict()
        assert max(abs(got[k] - expected[k]) for k in expected) < 1e-9
    finally:
        db.write("MATCH (n:Neuron {model: $m}) REMOVE n.gds_pagerank", m=loaded)
    with pytest.raises(SelectionError, match="contract"):
        gds.run("pagerank", loaded, write_property="bias", driver=db)


# ---------------------------------------------------------------------------- the command
def test_cli_lists_runs_and_refuses_in_one_line(db, loaded):
    from loader.cli import main

    runner = CliRunner()
    listed = runner.invoke(main, ["gds", "--list"])
    assert listed.exit_code == 0 and all(name in listed.output for name in gds.ALGORITHMS)
    help_text = runner.invoke(main, ["gds", "--help"]).output
    assert "Example:" in help_text and "weightgraph gds pagerank" in help_text
    before = node_properties(db, loaded)
    out = runner.invoke(main, ["gds", "pagerank", "--model", loaded, "--weight", "abs",
                               "--top", "3", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    top = gds.run("pagerank", loaded, weight="abs", top=3, driver=db)
    assert [r["id"] for r in rows] == top.columns["id"].tolist()
    everything = runner.invoke(main, ["gds", "wcc", "--model", loaded, "--cypher", POOL_EDGES,
                                      "--format", "csv"])
    lines = everything.stdout.splitlines()
    assert lines[0] == "id,component" and len(lines) == 1 + 27 * 5   # 27 windows of 4 + 1
    assert partition(*zip(*(map(int, line.split(",")) for line in lines[1:]))) == {
        frozenset(c) for c in nx.weakly_connected_components(pull(loaded, cypher=POOL_EDGES,
                                                                  driver=db))}
    assert node_properties(db, loaded) == before
    for args, message in (
            (["pagerank", "--model", loaded, "--weight", "weight"], "--weight abs"),
            (["pagerank", "--model", loaded, "--max-memory", "1K"], "needs up to"),
            (["pagerank", "--model", "no_such_model"], "no model"),
            (["nosuch", "--model", loaded], "unknown GDS algorithm"),
            (["pagerank", "--model", loaded, "--write-property", "id"], "contract")):
        bad = runner.invoke(main, ["gds", *args])
        assert bad.exit_code == 1, (args, bad.output)
        assert message in bad.output and bad.output.count("\n") == 1, bad.output
    assert node_properties(db, loaded) == before
    assert not projections_of(db, loaded)


def test_cli_writes_a_property_only_when_asked(db, loaded):
    from loader.cli import main

    out = CliRunner().invoke(main, ["gds", "wcc", "--model", loaded, "--layers", "pool:pool",
                                    "--write-property", "gds_component"])
    try:
        assert out.exit_code == 0, out.output
        values = {r["id"]: r["c"] for r in db.read(
            "MATCH (n:Neuron {model: $m}) RETURN n.id AS id, n.gds_component AS c", m=loaded)}
        G = pull(loaded, layers="pool:pool", driver=db)
        assert {k for k, v in values.items() if v is not None} == set(G)
        written = partition([k for k in G], [values[k] for k in G])
        assert written == {frozenset(c) for c in nx.weakly_connected_components(G)}
    finally:
        db.write("MATCH (n:Neuron {model: $m}) REMOVE n.gds_component", m=loaded)


# ---------------------------------------------------------------------------- analyze
def test_analyze_whole_model_sections_equal_networkx(db, loaded, tmp_path):
    from loader.analysis import analyze
    from loader.analysis.gds import whole_model

    G = pull(loaded, driver=db)
    s = whole_model(db, loaded)
    assert (s.nodes, s.relationships) == (G.number_of_nodes(), G.number_of_edges())
    pagerank = gds_pagerank_oracle(weighted(G, "abs"))
    by_layer: dict = {}
    for n, d in G.nodes(data=True):
        by_layer.setdefault(d["layer"], []).append(n)
    assert [r["layer"] for r in s.layers] == sorted(by_layer, key=lambda k: G.nodes[
        by_layer[k][0]]["layer_index"])
    for r in s.layers:
        nodes = by_layer[r["layer"]]
        assert r["neurons"] == len(nodes)
        assert abs(r["pagerank_mean"] - np.mean([pagerank[n] for n in nodes])) <= 1e-4
        assert abs(r["pagerank_max"] - max(pagerank[n] for n in nodes)) <= 1e-4
        assert r["in_degree_mean"] == pytest.approx(np.mean([G.in_degree(n) for n in nodes]))
        assert r["in_degree_max"] == max(G.in_degree(n) for n in nodes)
        assert r["out_degree_mean"] == pytest.approx(np.mean([G.out_degree(n) for n in nodes]))
        assert 1 <= r["communities"] <= s.communities
    assert s.components == nx.number_weakly_connected_components(G)
    assert [r["id"] for r in s.top] == sorted(pagerank, key=lambda n: (-pagerank[n], n))[:10]
    assert s.modularity > 0.3
    assert not projections_of(db, loaded)

    path = analyze(loaded, tmp_path, neuron="dense:1", metrics=(), driver=db)
    text = path.read_text()
    assert "Whole model, inside Neo4j (Graph Data Science)" in text
    assert (tmp_path / "gds_layers.png").read_bytes().startswith(b"\x89PNG")
    # Above the memory limit the section says why, and the rest of the report is written.
    small = analyze(loaded, tmp_path / "small", neuron="dense:1", metrics=(), driver=db,
                    gds_max_memory=1000).read_text()
    assert "Not computed: projecting" in small and "Receptive field" in small
