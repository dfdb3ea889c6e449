"""Benchmark: the whole VGG16 at 224x224 (weights=None) as a Parquet dataset, then DuckDB on it.

1. Baselines on a bounded sample (the first ``--sample`` edges of four layers of different
   shapes: block1_conv2, block3_conv2, block5_conv1, fc1), in the same run:
   ``pyarrow.parquet`` with default settings (what ``pq.write_table`` does) on the very
   batches our writer gets, the same in the enumerator's natural order, our writer's settings
   on those batches, and our GraphML writer on a smaller sample. Edges/s and bytes/edge each.
2. The export of all 14,975,945,472 edges with ``write_parquet`` (goals: >= 100M edges/s,
   <= 0.5 bytes/edge).
3. DuckDB over the dataset, each timed: edges and weight sum per layer (all edges; goal < 60 s),
   the in-degree histogram of one layer, the 10 strongest edges into one neuron (goal < 1 s,
   by row-group pruning on ``dst``), checked against the graph's own count of in-edges.

Everything written goes under ``--dir`` (default: a new directory in /tmp) and is deleted at
the end, also on failure. Run: ``.venv/bin/python bench/bench_parquet.py`` (~30 min and ~3 GB
of disk on the 2-core VM; ``--sample`` and ``--input-shape`` make it smaller).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.sinks.graphml import GraphMLWriter  # noqa: E402
from loader.sinks.parquet import _EDGE_OPTIONS, EDGE_TILE, write_parquet  # noqa: E402
from loader.terminal import human, seconds  # noqa: E402

SAMPLE_LAYERS = ("block1_conv2", "block3_conv2", "block5_conv1", "fc1")


def sample_batches(g, n_per_layer, by_weight):
    for name in SAMPLE_LAYERS:
        taken = 0
        for b in g.iter_edge_batches(1 << 20, layers=[g.index_of(name)], by_weight=by_weight):
            yield b
            taken += len(b)
            if taken >= n_per_layer:
                break


def parquet_sample(g, path, n_per_layer, by_weight, options):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("weight", pa.float32())])
    batches = [b for b in sample_batches(g, n_per_layer, by_weight)]  # outside the timing
    n = sum(len(b) for b in batches)
    start = time.perf_counter()  # wall clock: the baselines run back to back, same load
    with pq.ParquetWriter(path, schema, **options) as writer:
        for b in batches:
            writer.write_table(pa.Table.from_arrays([b.src, b.dst, b.weight], schema=schema))
    s = time.perf_counter() - start
    size = os.path.getsize(path)
    os.remove(path)
    return n, s, size


def graphml_sample(g, path, n_per_layer):
    batches = [b.copy() for b in sample_batches(g, n_per_layer, None)]
    n = sum(len(b) for b in batches)
    start = time.perf_counter()
    with GraphMLWriter(path, g.graph_data()) as out:
        for b in batches:
            out.write_edges(b)
    s = time.perf_counter() - start
    size = os.path.getsize(path)
    os.remove(path)
    return n, s, size


def report(label, n, s, size):
    print(f"  {label:<58} {n / s / 1e6:8.1f} M edges/s {size / n:8.4f} bytes/edge "
          f"({n:,} edges, {seconds(s)})", flush=True)
    return n / s, size / n


def timed_sql(con, label, query, params=()):
    start, cpu = time.perf_counter(), time.process_time()
    rows = con.execute(query, list(params)).fetchall()
    s, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"  {label:<58} {s:8.2f} s ({cpu:.2f} s CPU)", flush=True)
    return rows, s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-shape", default="224,224,3")
    ap.add_argument("--sample", type=float, default=8e6, help="edges per sample layer")
    ap.add_argument("--dir", help="where to write (deleted at the end)")
    ap.add_argument("--skip-full", action="store_true", help="baselines only")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(","))
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=shape)
    print(f"VGG16 {shape}: {g.n_nodes:,} nodes, {g.n_edges:,} edges; {os.cpu_count()} cores",
          flush=True)
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_parquet_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        n = int(args.sample)
        print(f"baselines, same run: first {n:,} edges of each of {', '.join(SAMPLE_LAYERS)}")
        base = report("pq.write_table defaults, our (weight-major) batches",
                      *parquet_sample(g, work / "a.parquet", n, EDGE_TILE, {}))
        report("pq.write_table defaults, enumerator's natural order",
               *parquet_sample(g, work / "b.parquet", n, None, {}))
        ours = report("our settings (delta ids, zstd), our batches",
                      *parquet_sample(g, work / "c.parquet", n, EDGE_TILE, _EDGE_OPTIONS))
        gml = report("GraphML writer (loader.sinks.graphml)",
                     *graphml_sample(g, work / "d.graphml", max(1, n // 8)))
        print(f"  ratios on the sample: speed {ours[0] / base[0]:.2f}x pq defaults, "
              f"{ours[0] / gml[0]:.1f}x GraphML; size {base[1] / ours[1]:.1f}x smaller than "
              f"pq defaults, {gml[1] / ours[1]:.0f}x smaller than GraphML", flush=True)
        if args.skip_full:
            return
        target = work / "vgg16.parquet"
        print("full export (write_parquet):", flush=True)
        cpu = time.process_time()
        stats = write_parquet(g, target, progress=False)
        cpu = time.process_time() - cpu
        print(f"  {stats['edges']:,} edges, {stats['nodes']:,} nodes in "
              f"{seconds(stats['seconds'])} ({seconds(cpu)} of CPU: "
              f"{stats['edges'] / cpu / 1e6:.1f} M edges per CPU-second; the VM is shared): "
              f"{stats['edges_per_s'] / 1e6:.1f} M edges/s "
              f"(goal 100), {human(stats['bytes'])}, {stats['bytes_per_edge']:.4f} bytes/edge "
              f"(goal 0.5); vs pq defaults on the sample: {stats['edges_per_s'] / base[0]:.2f}x "
              f"speed, {base[1] / stats['bytes_per_edge']:.1f}x smaller", flush=True)
        duckdb_queries(g, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(f"deleted {work}")


def duckdb_queries(g, target):
    from loader.analysis.dataset import open_duckdb

    con = open_duckdb(target)
    print("DuckDB:", flush=True)
    rows, _ = timed_sql(con, "edges and weight sum per layer (all edges; goal < 60 s)",
                        "SELECT layer_index, count(*), sum(weight) FROM edges GROUP BY 1 "
                        "ORDER BY 1")
    assert {li: c for li, c, _ in rows} == {s.index: s.edges for s in g.layer_specs()
                                            if s.edges}, "per-layer counts differ from the plan"
    print(f"    {sum(c for _, c, _ in rows):,} edges counted, equal to the plan per layer")
    hist_layer = g.index_of("block5_conv1")
    rows, _ = timed_sql(con, f"in-degree histogram of block5_conv1 ({g.full_edge_count(hist_layer):,} edges)",
                        "SELECT indegree, count(*) FROM (SELECT dst, count(*) AS indegree "
                        "FROM edges WHERE layer_index = ? GROUP BY dst) GROUP BY 1 ORDER BY 1",
                        [hist_layer])
    print(f"    {rows}")
    layer = g.index_of("block1_conv2")
    h, w, c = g.entries[layer].output.shape
    dst = g.entries[layer].op.offset + ((h // 2) * w + w // 2) * c + 5  # the centre, channel 5
    rows, s = timed_sql(con, f"10 strongest edges into block1_conv2 ({h // 2},{w // 2},5) "
                        "(goal < 1 s)",
                        "SELECT src, weight FROM edges WHERE layer_index = ? AND dst = ? "
                        "ORDER BY abs(weight) DESC LIMIT 10", [layer, dst])
    (count,), _ = timed_sql(con, "  its in-degree (576 = 3x3x64 expected)",
                            "SELECT count(*) FROM edges WHERE layer_index = ? AND dst = ?",
                            [layer, dst])
    print(f"    top weights {[round(w, 4) for _, w in rows[:3]]}..., in-degree {count[0]}")
    rows, s = timed_sql(con, "10 strongest edges into that neuron, no layer filter",
                        "SELECT src, weight FROM edges WHERE dst = ? "
                        "ORDER BY abs(weight) DESC LIMIT 10", [dst])
    con.close()


if __name__ == "__main__":
    main()
