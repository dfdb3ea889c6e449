"""Loading VGG16 block 1 at 32x32 (--layers block1_conv1:block1_pool, 37,954,304
relationships) into Neo4j: ours (online, bulk) against two baselines in the same run.

Baselines, each timed on a prefix of the same relationships:
  * a Python loop issuing one ``CREATE`` per edge (MATCH both ends by (model, id));
  * the textbook approach: UNWIND batches of 10,000 row maps, MATCH both ends by the indexed
    property, one writer.

Prints relationships/s and ratios, and the store size per relationship after the bulk import.
WARNING: the bulk phase rebuilds the whole database of the server it talks to (it runs
``scripts/neo4j-local``); point it at a scratch server (WEIGHTGRAPH_NEO4J_HOME, NEO4J_BOLT_PORT,
NEO4J_URI) or pass --no-bulk.

    .venv/bin/python bench/bench_load.py [--no-bulk] [--prefix-textbook 500000]
"""

from __future__ import annotations

import argparse
import subprocess
import time

import numpy as np

from loader.neo4j.db import Database, connect
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.load import load
from loader.neo4j.server import server_control
from loader.neo4j.models import delete_model, verify
from loader.neo4j.schema import create_schema


def edges_prefix(g, n):
    out, got = [], 0
    for b in g.iter_edge_batches(min(n, 1 << 20)):
        take = min(len(b), n - got)
        out.append((b.src[:take], b.dst[:take], b.weight[:take].astype(np.float64)))
        got += take
        if got >= n:
            break
    return [np.concatenate(x) for x in zip(*out)]


def baseline_nodes(driver, g, name):
    for nb in g.iter_node_batches(20_000):
        driver.execute_query("UNWIND $ids AS i CREATE (:Neuron {model: $m, id: i})",
                             ids=nb.id.tolist(), m=name)


def one_create_per_edge(driver, name, src, dst, w):
    t = time.perf_counter()
    with driver.session() as s:
        for a, b, x in zip(src.tolist(), dst.tolist(), w.tolist()):
            s.run("MATCH (a:Neuron {model: $m, id: $a}), (b:Neuron {model: $m, id: $b}) "
                  "CREATE (a)-[:W {weight: $w}]->(b)", m=name, a=a, b=b, w=x).consume()
    return len(src) / (time.perf_counter() - t)


def textbook(driver, name, src, dst, w, batch=10_000):
    t = time.perf_counter()
    with driver.session() as s:
        for i in range(0, len(src), batch):
            rows = [{"s": a, "d": b, "w": x} for a, b, x in
                    zip(src[i:i + batch].tolist(), dst[i:i + batch].tolist(),
                        w[i:i + batch].tolist())]
            s.execute_write(lambda tx: tx.run(
                "UNWIND $rows AS r MATCH (a:Neuron {model: $m, id: r.s}) "
                "MATCH (b:Neuron {model: $m, id: r.d}) CREATE (a)-[:W {weight: r.w}]->(b)",
                rows=rows, m=name).consume())
    return len(src) / (time.perf_counter() - t)


def store_bytes() -> int:
    """Bytes of the local server's `neo4j` store (-1 where it cannot be read)."""
    store = server_control("local").data_dir() / "databases" / "neo4j"
    out = subprocess.run(["du", "-sb", str(store)], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 else -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-bulk", action="store_true")
    ap.add_argument("--prefix-loop", type=int, default=3_000)
    ap.add_argument("--prefix-textbook", type=int, default=500_000)
    ap.add_argument("--input-shape", default="32,32,3")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(","))
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=shape,
                               layers="block1_conv1:block1_pool")
    print(f"graph: {g.n_nodes:,} neurons, {g.n_edges:,} relationships")
    driver = connect()
    create_schema(Database(driver))
    src, dst, w = edges_prefix(g, max(args.prefix_loop, args.prefix_textbook))

    delete_model(driver, "bench_baseline")
    baseline_nodes(driver, g, "bench_baseline")
    loop = one_create_per_edge(driver, "bench_baseline", src[:args.prefix_loop],
                               dst[:args.prefix_loop], w[:args.prefix_loop])
    print(f"baseline one CREATE per edge  ({args.prefix_loop:,} rels): {loop:>12,.0f} rel/s")
    delete_model(driver, "bench_baseline")
    baseline_nodes(driver, g, "bench_baseline")
    tb = textbook(driver, "bench_baseline", src[:args.prefix_textbook],
                  dst[:args.prefix_textbook], w[:args.prefix_textbook])
    print(f"baseline textbook UNWIND 10k  ({args.prefix_textbook:,} rels): {tb:>12,.0f} rel/s")
    delete_model(driver, "bench_baseline")

    delete_model(driver, "bench_online")
    s = load(g, "bench_online", driver=driver, progress=True)
    assert verify("bench_online", driver=driver).ok
    print(f"ours online (all {g.n_edges:,} rels):            {s.rate:>12,.0f} rel/s  "
          f"({s.seconds:.1f} s; x{s.rate / loop:,.0f} loop, x{s.rate / tb:.1f} textbook)")
    if not args.no_bulk:
        b = load(g, "bench_bulk", driver=driver, mode="bulk", replace=True, progress=True)
        assert verify("bench_bulk", driver=driver).ok
        size = store_bytes()
        print(f"ours bulk (all, end to end):                 {b.rate:>12,.0f} rel/s  "
              f"({b.seconds:.1f} s: {b.extra}; x{b.rate / tb:.1f} textbook)")
        if size > 0:
            print(f"store size: {size / 1e6:,.0f} MB = {size / g.n_edges:.1f} bytes per "
                  "relationship (nodes and indexes included)")
        delete_model(driver, "bench_bulk")
    else:
        delete_model(driver, "bench_online")
    driver.close()


if __name__ == "__main__":
    main()
