"""Benchmark: loader.sinks.graphml.write_graphml against networkx.write_graphml.

Both write the same neuron graph (a layer range of VGG16, random weights, ~4M edges); the
NetworkX DiGraph is built with ``to_networkx`` outside the timed part. Both files are then read
back with igraph (a C reader, fast enough for millions of edges) and compared in full: node
ids and attributes, and every (source, target, weight) triple, floats bit for bit.

Run: ``.venv/bin/python bench/bench_graphml.py`` (about 4 minutes on 2 cores; ``--scenario``
runs one of them, ``--skip-networkx`` only times ours).
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.sinks import to_networkx, write_graphml  # noqa: E402

SCENARIOS = {
    # Each kernel value is used at every one of 48x48 positions: the common case of a CNN.
    "conv-reused-weights": dict(input_shape=(48, 48, 3), layers="block1_conv1:block1_conv1"),
    # 2x2 feature maps: 2.4M kernel values, each used at most 4 times, so nearly every weight
    # needs its own repr (the cost of Dense layers too).
    "conv-distinct-weights": dict(input_shape=(32, 32, 3), layers="block5_conv3:block5_pool"),
}


def build(scenario: str) -> NeuronGraph:
    return NeuronGraph.from_model("vgg16", weights=None, include_top=False,
                                  **SCENARIOS[scenario])


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def read_igraph(path: Path) -> dict:
    """Everything a GraphML file says about the graph, as arrays sorted by id / (src, dst)."""
    import igraph

    g = igraph.Graph.Read_GraphML(str(path))
    ids = np.array([int(i) for i in g.vs["id"]], dtype=np.int64)
    pairs = np.array(g.get_edgelist(), dtype=np.int64).reshape(-1, 2)
    src, dst = ids[pairs[:, 0]], ids[pairs[:, 1]]
    weight = np.array(g.es["weight"], dtype=np.float64)
    edge_order = np.lexsort((dst, src))
    node_order = np.argsort(ids)
    nodes = {name: np.array(g.vs[name], dtype=object)[node_order]
             for name in ("layer", "layer_index", "index", "op", "bias", "activation")}
    return {"ids": ids[node_order], "src": src[edge_order], "dst": dst[edge_order],
            "weight": weight[edge_order], "nodes": nodes, "name": g["name"],
            "layers": g["layers"]}


def same_bytes(gz_path: Path, plain_path: Path) -> bool:
    with gzip.open(gz_path, "rb") as unzipped, open(plain_path, "rb") as plain:
        while True:
            a, b = unzipped.read(1 << 24), plain.read(1 << 24)
            if a != b:
                return False
            if not a:
                return True


def same_content(a: dict, b: dict) -> list[str]:
    problems = []
    for key in ("ids", "src", "dst"):
        if not np.array_equal(a[key], b[key]):
            problems.append(key)
    if not np.array_equal(a["weight"].view(np.uint64), b["weight"].view(np.uint64)):
        problems.append("weight (bits)")
    for name in a["nodes"]:
        if not np.array_equal(a["nodes"][name], b["nodes"][name]):
            problems.append(f"node {name}")
    for key in ("name", "layers"):
        if a[key] != b[key]:
            problems.append(key)
    return problems


def report(label: str, graph, path: Path, runs: int = 3, note: str = "") -> float:
    stats = [write_graphml(graph, path, progress=False) for _ in range(runs)]
    seconds = sorted(s["seconds"] for s in stats)
    rate = graph.n_edges / seconds[len(seconds) // 2]
    print(f"  {label} {seconds[len(seconds) // 2]:7.2f} s  {rate / 1e6:6.2f} M edges/s  "
          f"{stats[0]['bytes'] / graph.n_edges:5.1f} bytes/edge  (runs: "
          + ", ".join(f"{s:.2f}" for s in seconds) + f" s){note}")
    return rate


def run(scenario: str, workdir: Path, skip_networkx: bool) -> dict:
    graph = build(scenario)
    n_edges, n_nodes = graph.n_edges, graph.n_nodes
    print(f"\n{scenario}: VGG16 {SCENARIOS[scenario]}, {n_nodes:,} nodes, {n_edges:,} edges")
    ours_path = workdir / f"{scenario}.ours.graphml"
    ours_gz = workdir / f"{scenario}.ours.graphml.gz"
    nx_path = workdir / f"{scenario}.networkx.graphml"

    # Three runs each, the median counts: on a shared VM one run can be 2x off. The first
    # touches of fresh memory are also slow there, so the first plain run is a warm-up.
    write_graphml(graph, ours_path, progress=False)
    ours_rate = report("ours      .graphml   ", graph, ours_path)
    report("ours      .graphml.gz", graph, ours_gz, note=f"  ({os.cpu_count()} cores compress)")
    result = {"scenario": scenario, "edges": n_edges, "ours_edges_per_s": ours_rate,
              "identical": same_bytes(ours_gz, ours_path)}
    if not result["identical"]:
        print("  DIFFERENT: the .gz file does not decompress to the .graphml file")
    if skip_networkx:
        return result

    import networkx as nx

    G, build_s = timed(lambda: to_networkx(graph, max_edges=n_edges))
    _, nx_s = timed(lambda: nx.write_graphml(G, nx_path))
    G = None  # free the graph before the read-back checks
    nx_rate = n_edges / nx_s
    print(f"  networkx  .graphml    {nx_s:7.2f} s  {nx_rate / 1e6:6.2f} M edges/s  "
          f"{nx_path.stat().st_size / n_edges:5.1f} bytes/edge  (to_networkx, untimed: "
          f"{build_s:.1f} s)")
    print(f"  ratio ours / networkx: {ours_rate / nx_rate:.1f}x")

    ours, theirs = read_igraph(ours_path), read_igraph(nx_path)
    problems = same_content(ours, theirs)
    if len(ours["src"]) != n_edges or len(ours["ids"]) != n_nodes:
        problems.append("counts")
    print(f"  read back with igraph: {len(ours['ids']):,} nodes, {len(ours['src']):,} edges: "
          + ("identical content" if not problems else f"DIFFERENT: {', '.join(problems)}"))
    result.update(networkx_edges_per_s=nx_rate, ratio=ours_rate / nx_rate,
                  identical=result["identical"] and not problems)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--skip-networkx", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    args = parser.parse_args()
    scenarios = args.scenario or list(SCENARIOS)
    with tempfile.TemporaryDirectory(prefix="bench_graphml_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [run(s, workdir, args.skip_networkx) for s in scenarios]
    return 0 if all(r.get("identical", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
