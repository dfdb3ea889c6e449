"""The whole VGG16 at 32x32 with its dense top in Neo4j (319,976 neurons, 270,404,352
relationships): bulk load, verify, named queries, GDS PageRank and WCC on all of it, each
figure with `plan`'s prediction beside it (loader/graph/costs.py), and baselines in the same run:

  * the previous bulk path on the whole model: Parquet import files, integer node ids (the
    importer's id mapping), the server serving the old database during the import;
  * the new path with --keep-serving (the server beside the import), to show what stopping it
    is worth;
  * NetworkX PageRank on the largest graph it can hold here (--nx-memory, at the measured 355
    bytes per edge; the first edges of the same model), extrapolated per edge to the whole.

--load-only times the loads alone (no verify, queries, GDS or NetworkX).

WARNING: every load rebuilds the whole database of the server it talks to (the local server
of WEIGHTGRAPH_NEO4J_HOME, NEO4J_BOLT_PORT, NEO4J_URI): point it at a scratch server. The
whole model needs ~23 GB of disk for the store; run the server with NEO4J_HEAP_SIZE=6g
NEO4J_PAGECACHE_SIZE=3g (README "Sizing"). At the end the store is deleted (`weightgraph
server reset`) unless --keep.

    .venv/bin/python bench/bench_whole_model.py [--layers A:B] [--no-baselines] [--load-only]
        [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

import numpy as np

from loader.graph import costs
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j import gds
from loader.neo4j.db import Database
from loader.neo4j.load import load
from loader.neo4j.models import verify
from loader.neo4j.queries import run_query
from loader.sinks.import_ids import ImportIds
from loader.terminal import human

from bench_load import store_bytes  # noqa: E402  (bench/ is the script's directory)


def load_avg() -> str:
    return "load avg " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def say(text: str) -> None:
    print(f"{text}   [{load_avg()}]", flush=True)


@contextlib.contextmanager
def integer_ids():
    """The previous release's node ids: the importer maps them (``--id-type=integer``), the
    Model node in an id space of its own."""
    ImportIds.dense = property(lambda self: False, lambda self, value: None)
    try:
        yield
    finally:
        del ImportIds.dense


def bulk(g: NeuronGraph, name: str, fmt: str, keep_serving: bool = False, label: str = ""):
    s = load(g, name, mode="bulk", replace=True, bulk_format=fmt, keep_serving=keep_serving)
    e = s.extra
    say(f"  bulk {label or fmt:<22} {g.n_edges:>12,} rels: {s.seconds:7.1f} s = "
        f"{s.rate:>10,.0f} rel/s (files {e['files_seconds']} s, {human(e['files_bytes'])}; "
        f"stop {e['stop_seconds']} s; import {e['import_seconds']} s, {e['id_type']} ids "
        f"{e['import_stages']}; swap {e['swap_seconds']} s; schema {e['schema_seconds']} s)")
    return s


LAST = {"seconds": 0.0}


def timed(what: str, fn, predicted: str = ""):
    t = time.perf_counter()
    out = fn()
    LAST["seconds"] = time.perf_counter() - t
    say(f"  {what}: {time.perf_counter() - t:.2f} s" + (f"   (plan: {predicted})"
                                                          if predicted else ""))
    return out


def networkx_pagerank(g: NeuronGraph, max_edges: int, total_edges: int) -> float:
    """Seconds per edge of nx.pagerank (|weight|) on the first ``max_edges`` edges."""
    import networkx as nx

    G = nx.DiGraph()
    got = 0
    t = time.perf_counter()
    for b in g.iter_edge_batches(1 << 20):
        take = min(len(b), max_edges - got)
        G.add_weighted_edges_from(zip(b.src[:take].tolist(), b.dst[:take].tolist(),
                                      np.abs(b.weight[:take]).astype(float).tolist()))
        got += take
        if got >= max_edges:
            break
    build = time.perf_counter() - t
    t = time.perf_counter()
    nx.pagerank(G, alpha=0.85, weight="weight", tol=1e-7, max_iter=20)
    seconds = time.perf_counter() - t
    per_edge = seconds / got
    say(f"  baseline NetworkX PageRank on {got:,} edges ({G.number_of_nodes():,} nodes; built "
        f"in {build:.1f} s): {seconds:.1f} s = {per_edge * 1e9:.0f} ns/edge -> "
        f"{per_edge * total_edges:,.0f} s for {total_edges:,} edges, and "
        f"{human(total_edges * costs.NX_BYTES_PER_EDGE)} of memory")
    del G
    return per_edge * total_edges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input-shape", default="32,32,3")
    ap.add_argument("--layers", help="a layer range instead of the whole model (development)")
    ap.add_argument("--nx-memory", type=float, default=3.0, help="GB for the NetworkX baseline")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--load-only", action="store_true", help="time the loads alone")
    ap.add_argument("--keep", action="store_true", help="keep the store at the end")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(","))
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=shape, layers=args.layers,
                               name="vgg16_whole")
    est = g.plan().estimates
    say(f"graph: {g.n_nodes:,} neurons, {g.n_edges:,} relationships; "
        f"{os.cpu_count()} cores")

    say("whole graph, bulk path (plain CSV, actual node ids, server stopped for the import):")
    s = bulk(g, "vgg16_whole", "csv", label="csv")
    say(f"  plan: {est['neo4j_bulk_seconds']:.0f} s end to end; measured {s.seconds:.0f} s "
        f"(x{s.seconds / est['neo4j_bulk_seconds']:.2f} the prediction)")
    size = store_bytes()
    say(f"  store: {human(size)} = {size / g.n_edges:.1f} bytes per relationship (plan: "
        f"{human(est['neo4j_store_bytes'])}, {costs.NEO4J_BYTES_PER_REL} bytes per relationship)")

    if args.load_only:
        if not args.no_baselines:
            load_baselines(g, s)
        return finish(args)
    with Database.connect() as db:
        v = timed("verify (counts and weight sums per layer)", lambda: verify("vgg16_whole",
                                                                               driver=db))
        assert v.ok, "\n".join(v.lines())
        rows = timed("query model_summary", lambda: run_query(
            db, "model_summary", {"model": "vgg16_whole"}).records())
        assert sum(r["neurons"] for r in rows) == g.n_nodes
        assert sum(r["edges_in"] for r in rows) == g.n_edges
        timed("query top_inputs fc1:100", lambda: run_query(
            db, "top_inputs", {"model": "vgg16_whole", "layer": "fc1", "index": 100,
                               "k": 10}).records())
        rf = timed("query receptive_field block5_conv3:100", lambda: run_query(
            db, "receptive_field", {"model": "vgg16_whole", "layer": "block5_conv3",
                                    "index": 100}).records())
        say(f"    receptive field: {len(rf):,} input neurons")

        need = timed("GDS memory estimate (projection + PageRank, WCC)",
                     lambda: gds.estimate_memory(db, g.n_nodes, g.n_edges, weight="abs",
                                                 algorithms=("pagerank", "wcc")))
        say(f"    estimate {human(need)}; plan {human(est['gds_projection_bytes'])}; heap "
            f"{human(gds.server_memory(db)['max'])}")
        t = time.perf_counter()
        with gds.project("vgg16_whole", weight="abs", algorithms=("pagerank", "wcc"),
                         driver=db) as p:
            say(f"  GDS projection: {p.relationships:,} relationships in "
                f"{p.project_seconds:.1f} s ({p.relationships / p.project_seconds:,.0f} rel/s)")
            mem = db.read_one("CALL gds.graph.list($g) YIELD sizeInBytes, memoryUsage "
                              "RETURN sizeInBytes, memoryUsage", g=p.name)
            say(f"    projection memory: {human(mem['sizeInBytes'])} ({mem['memoryUsage']}) = "
                f"{mem['sizeInBytes'] / g.n_edges:.1f} bytes per relationship (plan "
                f"{human(est['gds_projection_bytes'])}, {costs.GDS_BYTES_PER_REL} per "
                "relationship)")
            pr = timed("GDS PageRank (|weight|, 20 iterations max)", lambda: p.stats(
                "pagerank", {"maxIterations": 20, "tolerance": 1e-7}))
            pagerank_gds = LAST["seconds"]
            say(f"    {pr.get('ranIterations')} iterations, converged {pr.get('didConverge')}")
            wcc = timed("GDS WCC", lambda: p.stats("wcc"))
            say(f"    components: {wcc.get('componentCount')}")
        say(f"  GDS total (project, run, drop): {time.perf_counter() - t:.1f} s")
    # Baselines after the whole model (each load replaces the database).
    if not args.no_baselines:
        load_baselines(g, s)
        nx_edges = int(args.nx_memory * 1e9 / costs.NX_BYTES_PER_EDGE)
        pagerank_nx = networkx_pagerank(g, nx_edges, g.n_edges)
        say(f"  PageRank on the whole model: GDS {pagerank_gds:.1f} s, NetworkX extrapolated "
            f"{pagerank_nx:,.0f} s (x{pagerank_nx / pagerank_gds:,.0f})")

    finish(args)


def load_baselines(g: NeuronGraph, new) -> None:
    """The whole model again: by the previous bulk path, and by the new one beside a
    running server."""
    say("baseline: the previous bulk path (Parquet, integer ids, server serving meanwhile)")
    with integer_ids():
        old = bulk(g, "vgg16_whole", "parquet", keep_serving=True, label="previous")
    say("baseline: the new path with --keep-serving")
    kept = bulk(g, "vgg16_whole", "csv", keep_serving=True, label="csv --keep-serving")
    say(f"  end to end: new x{new.rate / old.rate:.2f} the previous path; stopping the server "
        f"for the import x{new.rate / kept.rate:.2f}")


def finish(args) -> None:
    if not args.keep:
        size = store_bytes()
        subprocess.run([sys.executable, "-m", "loader.neo4j.server", "reset", "--yes"],
                       check=True)
        subprocess.run([sys.executable, "-m", "loader.neo4j.server", "start"], check=True)
        say(f"deleted the store ({human(size)}); the import files were deleted by the load")


if __name__ == "__main__":
    main()
