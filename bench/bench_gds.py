"""Benchmark: PageRank and WCC inside Neo4j (loader.neo4j.gds) against pulling the same graph
into NetworkX and running them there.

The model (default: VGG16 with random weights at 32x32, layer block5_conv1 and the block4_pool
neurons feeding it: 4,194,304 relationships) is loaded online under a fresh name, then, in the
same run:

* ours: ``gds.project`` (Cypher projection, |weight|), ``pagerank`` (stats, then the top 10)
  and ``wcc`` (stats) on the projection, then the drop;
* baseline: ``loader.pull`` into an ``nx.DiGraph`` (the fast pull, see bench_pull.py) and
  ``nx.pagerank`` / ``nx.number_weakly_connected_components`` on it, with the same damping,
  iterations and tolerance (scipy's power iteration inside NetworkX).

It prints each time, the ratio, and checks that both answer the same: GDS's scores divided by
their sum equal ``nx.pagerank`` (see loader/neo4j/gds.py), the component counts are equal.
The model is deleted at the end (``--keep`` keeps it; ``--name`` reuses a loaded one).

Run: ``.venv/bin/python bench/bench_gds.py`` (Neo4j with GDS running; ~3 minutes, ~2 GB of
RAM for the NetworkX baseline at the default size).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loader.neo4j import gds  # noqa: E402
from loader.neo4j.db import Database  # noqa: E402
from loader.neo4j.models import delete_model, loaded_models  # noqa: E402
from loader.neo4j.pull import pull  # noqa: E402

CONFIG = {"dampingFactor": 0.85, "maxIterations": 100, "tolerance": 1e-10}


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def load_model(db, args) -> str:
    from loader.graph.neuron_graph import NeuronGraph
    from loader.neo4j.load import load

    graph = NeuronGraph.from_model(args.model, weights=None, input_shape=args.input_shape,
                                   layers=args.layers)
    name = f"bench_gds_{secrets.token_hex(3)}"
    print(f"loading {name}: {graph.n_nodes:,} neurons, {graph.n_edges:,} relationships ...",
          flush=True)
    _, seconds = timed(lambda: load(graph, name=name, mode="online", driver=db, progress=False))
    print(f"  loaded in {seconds:.0f} s")
    return name


def ours(db, name):
    times = {}
    start = time.perf_counter()
    with gds.project(name, weight="abs", algorithms=("pagerank", "wcc"), driver=db) as g:
        times["project"] = g.project_seconds
        rels, estimate = g.relationships, g.estimate_bytes
        stats, times["pagerank"] = timed(lambda: g.stats("pagerank", CONFIG))
        full, times["pagerank stream"] = timed(lambda: g.stream("pagerank", CONFIG))
        wcc, times["wcc"] = timed(lambda: g.stats("wcc"))
    times["total"] = time.perf_counter() - start
    return times, rels, estimate, stats, full, wcc["componentCount"]


def baseline(db, name):
    import networkx as nx

    times = {}
    G, times["pull"] = timed(lambda: pull(name, driver=db, max_edges=100_000_000))
    for _, _, d in G.edges(data=True):
        d["w"] = abs(d["weight"])
    scores, times["pagerank"] = timed(lambda: nx.pagerank(
        G, alpha=CONFIG["dampingFactor"], max_iter=CONFIG["maxIterations"],
        tol=CONFIG["tolerance"], weight="w"))
    components, times["wcc"] = timed(lambda: nx.number_weakly_connected_components(G))
    times["total"] = sum(times.values())
    return times, G.number_of_edges(), scores, components


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--input-shape", default="32,32,3")
    ap.add_argument("--layers", default="block5_conv1:block5_conv1")
    ap.add_argument("--name", help="a model already loaded (not deleted at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the loaded model")
    args = ap.parse_args()
    args.input_shape = tuple(int(v) for v in args.input_shape.split(","))
    print(f"load average {os.getloadavg()[0]:.2f} (2-core machine shared: timings are noisy)")
    with Database.connect() as db:
        name = args.name or load_model(db, args)
        try:
            times, rels, estimate, stats, full, components = ours(db, name)
            print(f"GDS: {rels:,} relationships, estimate {estimate / 1e6:.0f} MB; "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in times.items())
                  + f"; projection {rels / times['project']:,.0f} rels/s; PageRank ran "
                    f"{stats['ranIterations']} iterations")
            base, edges, scores, nx_components = baseline(db, name)
            print("NetworkX: " + ", ".join(f"{k} {v:.2f} s" for k, v in base.items()))
            print(f"ratio (NetworkX / GDS): PageRank alone {base['pagerank'] / times['pagerank']:.1f}x,"
                  f" end to end (pull + PageRank + WCC vs project + PageRank + WCC) "
                  f"{base['total'] / times['total']:.1f}x")
            ids, values = full.columns["id"], full.columns["score"]
            normalised = values / values.sum()
            worst = max(abs(scores[i] - v) for i, v in zip(ids.tolist(), normalised.tolist()))
            print(f"agreement: PageRank max |GDS/sum - nx| = {worst:.2e} (largest score "
                  f"{max(scores.values()):.2e}); components GDS {components} vs NetworkX "
                  f"{nx_components}; edges {rels:,} vs {edges:,}")
            assert components == nx_components and rels == edges
            print(f"load average {os.getloadavg()[0]:.2f}")
        finally:
            if not args.name and not args.keep:
                delete_model(db, name)
                print(f"deleted {name}")
            assert name not in loaded_models(db) or args.name or args.keep


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
