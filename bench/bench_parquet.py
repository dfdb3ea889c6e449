"""Benchmark: the whole VGG16 at 224x224 (weights=None) as a Parquet dataset, then DuckDB on it.

1. Variants on a bounded sample (the first ``--sample`` edges of each of ``--layers``), in the
   same run, on the very batches our writer gets (enumerated before the timing): the
   baseline ``pyarrow.parquet`` with default settings (what ``pq.write_table`` does), the
   same in the enumerator's natural order, each of our ``EDGE_ENCODINGS`` and the measured
   alternatives, and our GraphML writer on a smaller sample. Per variant: edges/s of wall
   clock and per CPU-second (the machine is shared: CPU-seconds are the steadier figure),
   bytes/edge, and the ratio to the baseline. Also the enumeration alone.
2. The export of all 14,975,945,472 edges with ``write_parquet`` (``--workers`` processes,
   ``--encoding``; goals: >= 100M edges/s, <= 0.5 bytes/edge).
   Baseline on the full layer set, same run: every edge of VGG16 at ``--baseline-shape``
   (default 32x32: 270,404,352 edges, what the machine affords at pyarrow's 3.6 bytes per
   edge), enumerated and written with ``pq.ParquetWriter``'s defaults, one file per layer
   (what ``pq.write_table`` does), against ``write_parquet`` of that same graph (same
   ``--workers`` and ``--encoding``); wall time, CPU time and bytes, and the ratios.
3. DuckDB over the dataset, each timed: edges and weight sum per layer (all edges; goal < 60 s),
   the in-degree histogram of one layer, the 10 strongest edges into one neuron (goal < 1 s,
   by row-group pruning on ``dst``), checked against the graph's own count of in-edges.

Everything written goes under ``--dir`` (default: a new directory in /tmp) and is deleted at
the end, also on failure. Run: ``.venv/bin/python bench/bench_parquet.py`` (~15-30 min and
~3-5 GB of disk on the 2-core VM; ``--skip-full``, ``--sample`` and ``--input-shape`` make it
smaller).
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
from loader.sinks.parquet import EDGE_ENCODINGS, EDGE_TILE, write_parquet  # noqa: E402
from loader.terminal import human, seconds  # noqa: E402

SAMPLE_LAYERS = ("block1_conv2", "block3_conv2", "block5_conv1", "fc1")



def sample_batches(g, layers, n_per_layer, by_weight):
    for name in layers:
        taken = 0
        for b in g.iter_edge_batches(1 << 20, layers=[g.index_of(name)], by_weight=by_weight):
            yield b
            taken += len(b)
            if taken >= n_per_layer:
                break


def variant(name, base, **changes):
    """One of our encodings with some options changed (a measured alternative)."""
    options = dict(EDGE_ENCODINGS[base])
    options["column_encoding"] = {**options["column_encoding"], **changes.pop("encode", {})}
    options.update(changes)
    return name, options


def parquet_sample(batches, path, options, schema=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from loader.sinks.parquet import _schemas

    schema = schema or _schemas()[1]
    n = sum(len(b) for b in batches)
    # Wall clock and CPU time: the variants run back to back under the same (shared) load.
    start, cpu = time.perf_counter(), time.process_time()
    with pq.ParquetWriter(path, schema, **options) as writer:
        for b in batches:
            writer.write_table(pa.Table.from_arrays([b.src, b.dst, b.weight], schema=schema))
    s, cpu = time.perf_counter() - start, time.process_time() - cpu
    size = os.path.getsize(path)
    os.remove(path)
    return n, s, cpu, size


def graphml_sample(g, layers, path, n_per_layer):
    batches = [b.copy() for b in sample_batches(g, layers, n_per_layer, None)]
    n = sum(len(b) for b in batches)
    start, cpu = time.perf_counter(), time.process_time()
    with GraphMLWriter(path, g.graph_data()) as out:
        for b in batches:
            out.write_edges(b)
    s, cpu = time.perf_counter() - start, time.process_time() - cpu
    size = os.path.getsize(path)
    os.remove(path)
    return n, s, cpu, size


def report(label, n, s, cpu, size, base=None):
    ratio = "" if base is None else (f"  x{n / cpu / base[1]:5.2f} CPU rate, "
                                     f"/{base[2] / (size / n):5.1f} size")
    print(f"  {label:<44} {n / s / 1e6:6.1f} {n / cpu / 1e6:6.1f} {size / n:8.4f}{ratio}",
          flush=True)
    return n / s, n / cpu, size / n


def timed_sql(con, label, query, params=()):
    start, cpu = time.perf_counter(), time.process_time()
    rows = con.execute(query, list(params)).fetchall()
    s, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"  {label:<58} {s:8.2f} s ({cpu:.2f} s CPU)", flush=True)
    return rows, s


def variants_table(g, layers, n, work):
    print(f"variants, same run, first {n:,} edges of each of {', '.join(layers)} "
          f"(load average {os.getloadavg()[0]:.1f}):")
    start, cpu, count = time.perf_counter(), time.process_time(), 0
    for b in sample_batches(g, layers, n, EDGE_TILE):
        count += len(b)
    print(f"  enumeration alone (weight-major): {count / (time.perf_counter() - start) / 1e6:.1f}"
          f" M edges/s wall, {count / (time.process_time() - cpu) / 1e6:.1f} per CPU-second")
    batches = list(sample_batches(g, layers, n, EDGE_TILE))  # outside the timings
    print(f"  {'variant':<44} {'M/s':>6} {'M/CPUs':>6} {'B/edge':>8}")
    base = report("pq.write_table defaults (baseline)",
                  *parquet_sample(batches, work / "a.parquet", {}))
    natural = list(sample_batches(g, layers, n, None))
    report("pq defaults, enumerator's natural order",
           *parquet_sample(natural, work / "b.parquet", {}), base=base)
    del natural
    best = {}
    import pyarrow as pa
    nullable = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("weight", pa.float32())])
    for label, options, schema in [
            ("fast (ours, default)", EDGE_ENCODINGS["fast"], None),
            ("compact (ours)", EDGE_ENCODINGS["compact"], None),
            ("compact, statistics on every column", dict(EDGE_ENCODINGS["compact"],
                                                         write_statistics=True), None),
            ("compact, nullable columns", EDGE_ENCODINGS["compact"], nullable),
            (*variant("fast, ids snappy", "fast",
                      compression={"src": "snappy", "dst": "snappy", "weight": "zstd"}), None),
            (*variant("fast, ids zstd level 1", "fast", compression="zstd",
                      compression_level=1), None),
            (*variant("fast, weight BYTE_STREAM_SPLIT", "fast",
                      encode={"weight": "BYTE_STREAM_SPLIT"}), None),
            (*variant("compact, ids lz4", "compact",
                      compression={"src": "lz4", "dst": "lz4", "weight": "zstd"}), None),
            (*variant("compact, weight dictionary (RLE_DICTIONARY)", "compact",
                      encode={"weight": None}, use_dictionary=["weight"]), None),
            (*variant("compact, 8 MiB data pages", "compact", data_page_size=8 << 20), None)]:
        if "column_encoding" in options:  # None: leave the column to use_dictionary
            options = dict(options, column_encoding={k: v for k, v in
                                                     options["column_encoding"].items() if v})
        best[label] = report(label, *parquet_sample(batches, work / "c.parquet", options,
                                                    schema), base=base)
    report("GraphML writer (loader.sinks.graphml), n/8", *graphml_sample(
        g, layers, work / "d.graphml", max(1, n // 8)), base=base)
    return base


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-shape", default="224,224,3")
    ap.add_argument("--sample", type=float, default=8e6, help="edges per sample layer")
    ap.add_argument("--layers", default=",".join(SAMPLE_LAYERS), help="sample layers")
    ap.add_argument("--workers", type=int, default=2, help="processes of the full export")
    ap.add_argument("--encoding", default="fast", choices=sorted(EDGE_ENCODINGS))
    ap.add_argument("--dir", help="where to write (deleted at the end)")
    ap.add_argument("--skip-full", action="store_true", help="variants only")
    ap.add_argument("--skip-variants", action="store_true", help="full export only")
    ap.add_argument("--baseline-shape", default="32,32,3",
                    help="H,W,C of the VGG16 both write whole for the measured ratio")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(","))
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=shape)
    print(f"VGG16 {shape}: {g.n_nodes:,} nodes, {g.n_edges:,} edges; {os.cpu_count()} cores",
          flush=True)
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_parquet_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = None
        if not args.skip_variants:
            base = variants_table(g, args.layers.split(","), int(args.sample), work)
        if not args.skip_baseline:
            full_layer_baseline(tuple(int(v) for v in args.baseline_shape.split(",")), work,
                                args.workers, args.encoding)
        if args.skip_full:
            return
        target = work / "vgg16.parquet"
        print(f"full export (write_parquet, {args.workers} workers, {args.encoding}; load "
              f"average {os.getloadavg()[0]:.1f}):", flush=True)
        stats = write_parquet(g, target, workers=args.workers, encoding=args.encoding,
                              progress=False)
        cpu = sum(os.times()[:4])  # this process and its finished workers
        print(f"  {stats['edges']:,} edges, {stats['nodes']:,} nodes in "
              f"{seconds(stats['seconds'])} (load average now {os.getloadavg()[0]:.1f}; "
              f"{seconds(cpu)} of CPU in all: {stats['edges'] / cpu / 1e6:.1f} M edges per "
              f"CPU-second): {stats['edges_per_s'] / 1e6:.1f} M edges/s (goal 100), "
              f"{human(stats['bytes'])}, {stats['bytes_per_edge']:.4f} bytes/edge (goal 0.5)"
              + ("" if base is None else
                 f"; pq defaults on the sample: {base[0] / 1e6:.1f} M edges/s, "
                 f"{base[2]:.2f} bytes/edge"), flush=True)
        duckdb_queries(g, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(f"deleted {work}")


def full_layer_baseline(shape, work, workers, encoding):
    """Every edge of VGG16 at ``shape``: pyarrow's defaults against ``write_parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from loader.sinks.parquet import _schemas

    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=shape)
    schema = _schemas()[1]
    folder = work / "baseline"
    folder.mkdir()
    start, cpu = time.perf_counter(), time.process_time()
    for spec in g.layer_specs():
        if not spec.edges:
            continue
        with pq.ParquetWriter(folder / f"{spec.index}.parquet", schema) as writer:
            for b in g.iter_edge_batches(1 << 20, layers=[spec.index]):
                writer.write_table(pa.Table.from_arrays([b.src, b.dst, b.weight], schema=schema))
    base_s, base_cpu = time.perf_counter() - start, time.process_time() - cpu
    base_bytes = sum(p.stat().st_size for p in folder.iterdir())
    shutil.rmtree(folder)
    before = sum(os.times()[:4])  # this process and its finished workers
    stats = write_parquet(g, work / "ours", workers=workers, encoding=encoding, progress=False)
    ours_cpu = sum(os.times()[:4]) - before
    shutil.rmtree(work / "ours")
    n = g.n_edges
    print(f"full layer set of VGG16 {shape}, same run (load average {os.getloadavg()[0]:.1f}):"
          f" {n:,} edges, every layer", flush=True)
    print(f"  baseline pq defaults: {base_s:.1f} s ({n / base_s / 1e6:.1f} M edges/s; CPU "
          f"{base_cpu:.1f} s), {human(base_bytes)} = {base_bytes / n:.3f} bytes/edge")
    print(f"  ours write_parquet ({workers} workers, {encoding}): {stats['seconds']:.1f} s "
          f"({n / stats['seconds'] / 1e6:.1f} M edges/s; CPU {ours_cpu:.1f} s with the "
          f"workers), {human(stats['bytes'])} = {stats['bytes_per_edge']:.3f} bytes/edge")
    print(f"  ratio baseline / ours: {base_s / stats['seconds']:.2f}x the time, "
          f"{base_cpu / ours_cpu:.2f}x the CPU, {base_bytes / stats['bytes']:.1f}x the bytes",
          flush=True)


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
