"""Benchmark: the whole VGG16 channel graph, from kernels and geometry, against aggregating
its neuron edges (the only other way to get it), in the same run.

Steps, each timed with the process's peak RSS so far:
1. ours: ``ChannelGraph`` of VGG16 at 224x224 (``--top``: with its dense top), every channel
   edge streamed (``edges``, ``total``, ``kernel``), then GraphML, then NetworkX + PageRank +
   communities (NetworkX's Louvain) when the graph is small enough (no top);
2. ``--neo4j``: the channel graph into Neo4j in bulk (``neo4j-admin import``, CSV with the
   kernels), then ``verify`` (per layer: counts and the sums of weight, edges, total and every
   kernel value). WARNING: this rebuilds the whole database of the server the settings name
   (NEO4J_URI, WEIGHTGRAPH_NEO4J_HOME): point it at a scratch server;
3. baseline: the same channel aggregates by enumerating every neuron edge and summing per
   (source channel, target channel) with numpy, at a smaller input (``--baseline-input``,
   default 64), and ours on that same model in the same run: the ratio is of those two
   measured times (the channel edges found must be equal). An extra line extrapolates the
   baseline's rate to the neuron edges of the ``--input`` model (14,975,945,472 for VGG16 at
   224x224 with its top, 14,852,311,808 without) against ours measured there.

Measured (2-core VM shared with other jobs, no top, baseline at 48x48, same run): ours 5,699 nodes
and 1,635,968 edges with kernels in 7.8 s (peak RSS 0.78 GiB); GraphML 196 MiB in 62 s
(26k edges/s: nine distinct floats per edge, each a repr); NetworkX 28.7 s (2.03 GiB), PageRank
2.3 s, Louvain 5 communities 57 s (3.23 GiB); baseline 602,870,528 neuron edges aggregated in
74.8 s (8M edges/s), ~1,859 s extrapolated to 224x224: 238x.

Measured with ``--top --neo4j --baseline-input 48`` (same VM, load average 11-24 during the run:
four other engineers' jobs): ours 14,891 nodes and 24,606,336 channel edges with kernels in
27.9 s (peak RSS 1.76 GiB); GraphML 1,748 MiB in 730 s (33.7k edges/s, peak 2.24 GiB: 140M
kernel floats, each a repr); Neo4j bulk 1,019 s end to end (CSV 828 s, 1.70 GB; import 149 s;
swap and restart 38.5 s; schema 3.7 s; client peak 2.24 GiB), verify ok in 44.0 s (counts and
the sums of weight, edges, total and all 140M kernel values per layer); the delete of those
24.6M relationships ran at ~20k rels/s and was stopped after 5 min, before the baseline step, so
the baseline comes from a second run (``--top --skip-graphml --baseline-input 48``, load average
5.8-8.4): ours 24.4 s (peak 1.79 GiB) against 625,840,896 neuron edges aggregated at 48x48 in
49.9 s (13M edges/s; the same 24,606,336 channel pairs), ~1,195 s extrapolated to 224x224: 49x.
Formatting the kernels with Arrow's C++ shortest-float cast instead of the cached ``repr`` was
tried in the first run: 0.8x (0.24M against 0.30M values/s; 1.1-1.5x in isolated runs), so the
channel writers keep the cached ``repr``; the float text is the limit of GraphML and bulk CSV
here (140M kernel floats).

The ratios above (238x, 49x) were of extrapolated times; the runs since print the measured one.

Run: ``.venv/bin/python bench/bench_channels.py [--top] [--neo4j] [--baseline-input 64]
[--input 224] [--skip-graphml] [--skip-networkx]``; files go to a temporary directory that is
removed, and ``--neo4j`` deletes its model at the end.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loader.graph.channels import ChannelGraph  # noqa: E402
from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.sinks.graphml import write_graphml  # noqa: E402
from loader.sinks.networkx import to_networkx  # noqa: E402



def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def aggregate_by_enumeration(ng: NeuronGraph) -> int:
    """Channel pairs with edges, by summing every neuron edge (per layer pair, bincount)."""
    ents = [e for e in ng.entries if e.op is not None]
    offsets = np.array([e.op.offset for e in ents])
    chans = [e.op.out_shape[-1] for e in ents]
    tables = {}
    for b in ng.iter_edge_batches(reuse_buffers=True):
        d = int(np.searchsorted(offsets, b.dst[0], side="right") - 1)
        dst = (b.dst - offsets[d]) % chans[d]
        src_layer = np.searchsorted(offsets, b.src, side="right") - 1
        for a in np.unique(src_layer).tolist():
            sel = src_layer == a
            key = ((b.src[sel] - offsets[a]) % chans[a]) * chans[d] + dst[sel]
            n, t = tables.setdefault((a, d), (np.zeros(chans[a] * chans[d], np.int64),
                                              np.zeros(chans[a] * chans[d])))
            n += np.bincount(key, minlength=len(n))
            t += np.bincount(key, weights=b.weight[sel], minlength=len(t))
    return sum(int(np.count_nonzero(n)) for n, _ in tables.values())


def bulk_into_neo4j(g: ChannelGraph) -> None:
    """Bulk-load the channel graph (rebuilds the database), verify it, delete it."""
    from loader.neo4j.db import Database
    from loader.neo4j.load import load
    from loader.neo4j.models import delete_model, verify

    name = "bench_vgg16_channels"
    with Database.connect() as db:
        summary = load(g, name, mode="bulk", replace=True, driver=db,
                       notify=lambda line: print("  " + line))
    print(f"Neo4j bulk: {summary.relationships:,} CW relationships in {summary.seconds:.1f} s "
          f"({summary.rate:,.0f} rel/s; {summary.extra}), client peak {peak_gib():.2f} GiB")
    with Database.connect() as db:  # the database is new: a new driver
        t = time.perf_counter()
        v = verify(name, driver=db)
        print(f"verify: ok={v.ok} in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        delete_model(db, name)
        print(f"delete: {time.perf_counter() - t:.1f} s")


def ours_whole(g: ChannelGraph) -> tuple[int, float]:
    """Every channel edge with its kernel (and the plan's count), timed: (edges, seconds)."""
    t = time.perf_counter()
    edges = g.n_edges
    n = sum(len(b) for b in g.iter_edge_batches())
    assert n == edges
    return edges, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", action="store_true", help="VGG16 with its dense top")
    ap.add_argument("--input", type=int, default=224, help="input size of ours (default 224)")
    ap.add_argument("--baseline-input", type=int, default=64)
    ap.add_argument("--skip-graphml", action="store_true")
    ap.add_argument("--skip-networkx", action="store_true")
    ap.add_argument("--neo4j", action="store_true",
                    help="bulk load into Neo4j and verify (REBUILDS the whole database)")
    args = ap.parse_args()
    import subprocess

    print("load average:", subprocess.run(["uptime"], capture_output=True, text=True).stdout
          .strip())
    tmp = Path(tempfile.mkdtemp(prefix="bench-channels-"))
    try:
        t = time.perf_counter()
        size = args.input
        g = ChannelGraph.from_model("vgg16", weights=None, include_top=args.top,
                                    input_shape=(size, size, 3))
        print(f"load VGG16 at {size}x{size}: {time.perf_counter() - t:.1f} s, peak "
              f"{peak_gib():.2f} GiB")
        edges, ours = ours_whole(g)
        print(f"ours at {size}x{size}: {g.n_nodes:,} nodes, {edges:,} channel edges (plan + "
              f"every edge with kernels) in {ours:.1f} s, peak {peak_gib():.2f} GiB")
        if not args.skip_graphml:
            stats = write_graphml(g, tmp / "vgg16.channels.graphml.gz", progress=False)
            print(f"GraphML: {stats['bytes'] / 2**20:.0f} MiB in {stats['seconds']:.1f} s "
                  f"({stats['edges_per_s']:,.0f} edges/s), peak {peak_gib():.2f} GiB")
        if args.neo4j:
            bulk_into_neo4j(g)
        if not args.top and not args.skip_networkx:
            import networkx as nx

            t = time.perf_counter()
            G = to_networkx(g)
            print(f"NetworkX: {G.number_of_edges():,} edges in {time.perf_counter() - t:.1f} s, "
                  f"peak {peak_gib():.2f} GiB")
            t = time.perf_counter()
            pr = nx.pagerank(G, weight="weight")
            print(f"PageRank: {len(pr):,} nodes in {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            comms = nx.community.louvain_communities(G.to_undirected(), weight="weight", seed=0)
            print(f"Louvain: {len(comms)} communities in {time.perf_counter() - t:.1f} s, "
                  f"peak {peak_gib():.2f} GiB")
            del G
        s = args.baseline_input
        ng = NeuronGraph.from_model("vgg16", weights=None, include_top=args.top,
                                    input_shape=(s, s, 3))
        small_edges, ours_small = ours_whole(ChannelGraph(ng))
        print(f"ours at {s}x{s}: {small_edges:,} channel edges in {ours_small:.2f} s")
        t = time.perf_counter()
        pairs = aggregate_by_enumeration(ng)
        base = time.perf_counter() - t
        rate = ng.n_edges / base
        assert pairs == small_edges, (pairs, small_edges)
        print(f"baseline at {s}x{s}: {ng.n_edges:,} neuron edges -> {pairs:,} channel edges in "
              f"{base:.1f} s ({rate / 1e6:.0f}M edges/s), peak {peak_gib():.2f} GiB")
        print(f"ratio at {s}x{s}, both measured: baseline {base:.1f} s / ours {ours_small:.2f} s "
              f"= {base / ours_small:,.0f}x")
        big = g.neurons.n_edges
        print(f"extrapolated: the baseline's rate over the {big:,} neuron edges at {size}x{size} "
              f"(top {'included' if args.top else 'left out'}) ~{big / rate:,.0f} s; ours "
              f"measured there {ours:.1f} s: ~{big / rate / ours:,.0f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
