"""Benchmark: loader.neo4j.pull.pull (Neo4j -> NetworkX) against reading row by row, and the
latency of the receptive_field query.

1. Pull: the same selection of a loaded model (default: the depth-2 cone of VGG16@32x32
   block3_conv3:1000, ~5.3M edges) is pulled twice into an ``nx.DiGraph``:
   * ours: ``pull()`` end to end (counting included) - pages of ~100k edges, each one record
     of three lists, fetched on a background thread while NetworkX inserts the previous one;
   * baseline: one ``session.run`` returning one record per edge (and per neuron), each added
     with ``G.add_edge`` / ``G.add_node`` - the obvious way to do it with the driver.
   Both read exactly the same relationships (the edges entering the neurons of the plan) and
   the two graphs are compared in full. The baseline is handed the plan (the ids of the
   cone) for free, so the ratio is conservative.
2. Receptive field: ``loader.neo4j.queries.receptive_field`` (the layer-by-layer procedure, with 1
   and with several concurrent workers) and, with ``--statement``, the one-statement Cypher
   of queries/receptive_field.cypher, on the neuron given (default block3_conv3:1000: a cone
   of 55.6M edges, 2,112 input neurons, up to 8.1e17 paths from one of them).

The model must be loaded in Neo4j under ``--name``; ``--load`` loads it first with
``loader.neo4j.load.load`` (the cone of ``--load-cone`` only, to keep the load to ~15 minutes).

Run: ``.venv/bin/python bench/bench_pull.py --name vgg16_32_cone --load`` (Neo4j running).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loader.neo4j.models import loaded_models  # noqa: E402
from loader.neo4j.pull import plan_pull, pull  # noqa: E402
from loader.neo4j.db import connect  # noqa: E402
from loader.neo4j.queries import receptive_field, run_query  # noqa: E402

_BASELINE_EDGES = """
UNWIND $ids AS i
MATCH (t:Neuron {model: $model, id: i})<-[w:W]-(s)
RETURN s.id AS src, i AS dst, w.weight AS weight
"""
_BASELINE_NODES = """
UNWIND $ids AS i
MATCH (n:Neuron {model: $model, id: i})
RETURN n.id AS id, n.layer AS layer, n.layer_index AS layer_index, n.index AS index,
       n.op AS op, n.bias AS bias, n.activation AS activation
"""


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def ensure_loaded(driver, args):
    if args.name in loaded_models(driver):
        return
    if not args.load:
        sys.exit(f"model {args.name!r} is not in Neo4j; run with --load, or load it with "
                 "`weightgraph load`")
    from loader.graph.neuron_graph import NeuronGraph
    from loader.neo4j.load import load

    graph = NeuronGraph.from_model(args.model, weights=None, input_shape=args.input_shape,
                                   cone=args.load_cone)
    print(f"loading {args.name}: {graph.n_nodes:,} neurons, {graph.n_edges:,} edges ...",
          flush=True)
    _, seconds = timed(lambda: load(graph, name=args.name, mode="online"))
    print(f"  loaded in {seconds:.0f} s ({graph.n_edges / seconds:,.0f} edges/s)")


def pull_ours(driver, args):
    return pull(args.name, cone=args.pull_cone, driver=driver, max_edges=50_000_000)


def pull_baseline(driver, plan):
    import networkx as nx

    G = nx.DiGraph()
    targets = np.concatenate([p[1] for p in plan.edge_pages]).tolist()
    with driver.session(database=None) as session:
        for rec in session.run(_BASELINE_NODES, model=plan.model, ids=plan.node_ids.tolist()):
            G.add_node(rec["id"], layer=rec["layer"], layer_index=rec["layer_index"],
                       index=rec["index"], op=rec["op"], bias=rec["bias"],
                       activation=rec["activation"])
        for rec in session.run(_BASELINE_EDGES, model=plan.model, ids=targets):
            G.add_edge(rec["src"], rec["dst"], weight=rec["weight"])
    return G


def same_edges(a, b) -> bool:
    if a.number_of_edges() != b.number_of_edges() or a.number_of_nodes() != b.number_of_nodes():
        return False
    ea = sorted(a.edges(data="weight"))
    eb = sorted(b.edges(data="weight"))
    return ea == eb and dict(a.nodes(data=True)) == dict(b.nodes(data=True))


def bench_pull(driver, args):
    plan, t_plan = timed(lambda: plan_pull(args.name, cone=args.pull_cone, driver=driver))
    print(f"\npull cone {args.pull_cone}: {plan.n_nodes:,} neurons, {plan.n_edges:,} edges "
          f"(counted in {t_plan:.1f} s)")
    ours, t_ours = timed(lambda: pull_ours(driver, args))
    rate_ours = plan.n_edges / t_ours
    print(f"  ours     : {t_ours:7.1f} s  {rate_ours:12,.0f} edges/s  (pull(), planning included)")
    if args.skip_baseline:
        return
    base, t_base = timed(lambda: pull_baseline(driver, plan))
    rate_base = plan.n_edges / t_base
    print(f"  baseline : {t_base:7.1f} s  {rate_base:12,.0f} edges/s  (row by row, session.run)")
    print(f"  ratio    : {rate_ours / rate_base:.2f}x faster (the baseline's planning not "
          f"counted: {(t_base + t_plan) / t_ours:.2f}x with it)")
    print(f"  same graph: {same_edges(ours, base)}")


def bench_receptive_field(driver, args):
    layer, index = args.neuron.rsplit(":", 1)
    print(f"\nreceptive_field {args.neuron}")
    times = {}
    for workers in (1, args.workers):
        for attempt in ("cold", "warm"):
            rf, seconds = timed(lambda: receptive_field(driver, args.name, layer, int(index),
                                                        workers=workers))
            times[(workers, attempt)] = seconds
            paths = rf.column("paths")
            print(f"  layerwise, {workers} worker(s), {attempt}: {seconds:6.1f} s  "
                  f"({len(rf):,} inputs, max {max(paths):.3g} paths)", flush=True)
    if args.statement:
        for attempt in ("cold", "warm"):
            rf, seconds = timed(lambda: run_query(driver, "receptive_field",
                                                  {"model": args.name, "layer": layer,
                                                   "index": int(index)}, procedure=False))
            times[("statement", attempt)] = seconds
            print(f"  one statement, {attempt}: {seconds:6.1f} s ({len(rf):,} inputs)",
                  flush=True)
    speedup = times[(1, "warm")] / times[(args.workers, "warm")]
    print(f"  ratio: {args.workers} workers {speedup:.2f}x faster than 1")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bench_vgg16_32_cone")
    parser.add_argument("--load", action="store_true", help="load the model if it is missing")
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--input-shape", default=(32, 32, 3),
                        type=lambda s: tuple(int(v) for v in s.split(",")))
    parser.add_argument("--load-cone", default="block3_conv3:1000")
    parser.add_argument("--pull-cone", default="block3_conv3:1000:2")
    parser.add_argument("--neuron", default="block3_conv3:1000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--statement", action="store_true",
                        help="also time the one-statement receptive_field.cypher")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-pull", action="store_true")
    parser.add_argument("--skip-rf", action="store_true")
    args = parser.parse_args()
    driver = connect()
    try:
        ensure_loaded(driver, args)
        if not args.skip_pull:
            bench_pull(driver, args)
        if not args.skip_rf:
            bench_receptive_field(driver, args)
    finally:
        driver.close()


if __name__ == "__main__":
    main()
