"""The whole VGG16 at 32x32 with its dense top in Neo4j (319,976 neurons, 270,404,352
relationships): bulk load, verify, named queries, GDS PageRank and WCC on all of it, each
figure with `plan`'s prediction beside it (loader/graph/costs.py), and baselines in the same run:

  * the previous bulk path on the whole model: Parquet import files, integer node ids (the
    importer's id mapping), the server serving the old database during the import;
  * the new path with --keep-serving (the server beside the import), to show what stopping it
    is worth;
  * NetworkX PageRank (same damping, iterations, tolerance and |weight|) on the same edges as
    GDS: the loaded graph itself when NetworkX can hold it (--nx-memory, at the measured 355
    bytes per edge), else the layer range --nx-layers of the same model, which GDS then also
    projects and ranks: the ratio is of those two measured times. An extra line extrapolates
    NetworkX's time per edge to the whole loaded graph against GDS's PageRank on it.

--load-only times the loads alone (no verify, queries, GDS or NetworkX).

WARNING: every load rebuilds the whole database of the server it talks to (the local server
of WEIGHTGRAPH_NEO4J_HOME, NEO4J_BOLT_PORT, NEO4J_URI): point it at a scratch server. The
whole model needs ~23 GB of disk for the store; run the server with NEO4J_HEAP_SIZE=6g
NEO4J_PAGECACHE_SIZE=3g (README "Sizing"). At the end the store is deleted (`weightgraph
server reset`) unless --keep.

    .venv/bin/python bench/bench_whole_model.py [--layers A:B] [--no-baselines] [--load-only]
        [--keep] [--nx-layers A:B]

The smallest run that takes every baseline path (three bulk loads, GDS and NetworkX on the
same 6.3M edges): ``--layers block5_conv3:fc1`` (a few minutes, a 1g heap is enough).
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


def networkx_pagerank(g: NeuronGraph) -> tuple[float, float]:
    """nx.pagerank (|weight|, 20 iterations, tolerance 1e-7) on every edge of ``g``:
    (seconds to build the DiGraph, seconds of PageRank)."""
    import networkx as nx

    G = nx.DiGraph()
    t = time.perf_counter()
    for b in g.iter_edge_batches(1 << 20):
        G.add_weighted_edges_from(zip(b.src.tolist(), b.dst.tolist(),
                                      np.abs(b.weight).astype(float).tolist()))
    build = time.perf_counter() - t
    t = time.perf_counter()
    try:
        nx.pagerank(G, alpha=0.85, weight="weight", tol=1e-7, max_iter=20)
        converged = "converged"
    except nx.PowerIterationFailedConvergence:
        converged = "not converged in 20 iterations (as GDS may stop)"
    seconds = time.perf_counter() - t
    say(f"  NetworkX on {G.number_of_edges():,} edges ({G.number_of_nodes():,} nodes): built in "
        f"{build:.1f} s, PageRank {seconds:.1f} s ({converged}) = "
        f"{seconds / G.number_of_edges() * 1e9:.0f} ns/edge")
    del G
    return build, seconds


def gds_pagerank(layers: str) -> tuple[float, float]:
    """GDS PageRank (|weight|, the same settings) on the layer range ``layers`` of the loaded
    model: (seconds to project, seconds of PageRank)."""
    with Database.connect() as db:  # the database may be new since the last driver
        with gds.project("vgg16_whole", layers=layers, weight="abs", algorithms=("pagerank",),
                         driver=db) as p:
            t = time.perf_counter()
            p.stats("pagerank", {"maxIterations": 20, "tolerance": 1e-7})
            seconds = time.perf_counter() - t
            say(f"  GDS on {p.relationships:,} relationships ({layers}): projected in "
                f"{p.project_seconds:.1f} s, PageRank {seconds:.2f} s")
            return p.project_seconds, seconds


def pagerank_baseline(args, g: NeuronGraph, shape, pagerank_gds: float) -> None:
    """NetworkX against GDS on the same edges (see the module's docstring)."""
    if g.n_edges * costs.NX_BYTES_PER_EDGE <= args.nx_memory * 1e9:
        say(f"baseline: NetworkX PageRank on the same {g.n_edges:,} edges as GDS's above")
        same, gds_s = g, pagerank_gds
    else:
        say(f"baseline: GDS and NetworkX PageRank on {args.nx_layers} (the whole graph needs "
            f"{human(g.n_edges * costs.NX_BYTES_PER_EDGE)} in NetworkX)")
        same = NeuronGraph.from_model("vgg16", weights=None, input_shape=shape,
                                      layers=args.nx_layers)
        _, gds_s = gds_pagerank(args.nx_layers)
    build, nx_s = networkx_pagerank(same)
    say(f"  ratio on the same {same.n_edges:,} edges, both measured: PageRank NetworkX "
        f"{nx_s:.1f} s / GDS {gds_s:.2f} s = x{nx_s / gds_s:,.1f}; with NetworkX's build "
        f"x{(build + nx_s) / gds_s:,.1f}")
    whole = nx_s / same.n_edges * g.n_edges
    say(f"  extrapolated: NetworkX at that rate on all {g.n_edges:,} edges ~{whole:,.0f} s and "
        f"{human(g.n_edges * costs.NX_BYTES_PER_EDGE)}; GDS measured {pagerank_gds:.1f} s "
        f"(~x{whole / pagerank_gds:,.0f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input-shape", default="32,32,3")
    ap.add_argument("--layers", help="a layer range instead of the whole model (development)")
    ap.add_argument("--nx-memory", type=float, default=3.0, help="GB for the NetworkX baseline")
    ap.add_argument("--nx-layers", default="block5_conv3:fc1",
                    help="the layer range NetworkX and GDS rank when the whole is too big")
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
        pagerank_baseline(args, g, shape, pagerank_gds)

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
        subprocess.run([sys.executable, "-m", "loader.cli.neo4j_local", "reset", "--yes"],
                       check=True)
        subprocess.run([sys.executable, "-m", "loader.cli.neo4j_local", "start"], check=True)
        say(f"deleted the store ({human(size)}); the import files were deleted by the load")


if __name__ == "__main__":
    main()
