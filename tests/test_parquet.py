"""The Parquet dataset: written by loader.sinks.parquet, read back by pyarrow and DuckDB.

The oracle is Keras (tests/keras_oracle.py via oracle.assert_matches_keras): the dataset read
back executes to every layer's Keras output; its edges per layer are the counts from Keras's
shapes (tests/keras_graph.py).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from loader.analysis.dataset import open_duckdb, read_arrays, run_sql
from loader.cli import main
from loader.errors import WeightgraphError
from loader.graph.forward import execute_arrays
from loader.graph.neuron_graph import NeuronGraph
from loader.sinks.parquet import DatasetExistsError, ParquetDatasetWriter, write_parquet
from keras_graph import layer_counts
from oracle import assert_matches_keras, randomise_weights
from shared_models import shared_model
from test_load import residual_model

L = keras.layers
README = Path(__file__).resolve().parent.parent / "README.md"


@shared_model
def mixed_model():
    """Zero padding, grouped and strided conv, depthwise, average pooling with same padding,
    transposed conv, a concatenation read through an id map, dilation, max pooling, Dense."""
    x = keras.Input((9, 8, 6))
    y = L.ZeroPadding2D(((1, 2), (0, 1)))(x)
    y = L.Conv2D(8, 3, strides=2, groups=2, padding="valid", activation="relu")(y)
    z = L.DepthwiseConv2D(3, padding="same")(x)
    z = L.AveragePooling2D(3, strides=2, padding="same")(z)
    u = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    c = L.Concatenate()([x, L.Activation("tanh")(x)])
    v = L.Conv2D(5, (2, 3), dilation_rate=2, padding="same")(c)
    w = L.MaxPooling2D(2)(v)
    f = L.Dense(7, activation="softmax")(L.Flatten()(w))
    g = L.GlobalAveragePooling2D()(z)
    return randomise_weights(keras.Model(x, [y, z, u, f, g]))


def sorted_edges(batches):
    src = np.concatenate([b.src for b in batches])
    dst = np.concatenate([b.dst for b in batches])
    w = np.concatenate([b.weight for b in batches])
    order = np.lexsort((src, dst))
    return src[order], dst[order], w[order]


@pytest.mark.parametrize("make", [mixed_model, residual_model])
def test_weight_major_order_gives_the_enumerators_edges_bit_for_bit(make):
    g = NeuronGraph.from_model(make())
    natural = sorted_edges(list(g.iter_edge_batches(700)))
    by_weight = sorted_edges(list(g.iter_edge_batches(700, by_weight=3000)))
    assert np.array_equal(natural[0], by_weight[0]) and np.array_equal(natural[1], by_weight[1])
    assert np.array_equal(natural[2].view(np.uint32), by_weight[2].view(np.uint32))


def test_weight_major_order_keeps_each_weight_in_one_run_per_tile():
    inp = keras.Input((12, 12, 3))
    model = randomise_weights(keras.Model(inp, L.Conv2D(4, 3, padding="same")(inp)))
    g = NeuronGraph.from_model(model)
    batches = list(g.iter_edge_batches(1 << 20, by_weight=1 << 30))  # one tile
    weight = np.concatenate([b.weight for b in batches])
    runs = 1 + np.count_nonzero(np.diff(weight))
    assert runs == 3 * 3 * 3 * 4  # one run per kernel entry
    steps = np.diff(batches[0].dst)[:100]
    # Along a run dst steps by cout (8 where the tap skips a border position).
    assert set(steps[steps > 0].tolist()) == {4, 8} and np.mean(steps == 4) > 0.85


@pytest.mark.parametrize("engine", ["pyarrow", "duckdb"])
@pytest.mark.parametrize("make", [mixed_model, residual_model])
def test_dataset_read_back_executes_to_keras(tmp_path, make, engine):
    model = make()
    g = NeuronGraph.from_model(model)
    stats = write_parquet(g, tmp_path / "ds", batch_size=500, tile_edges=2000, progress=False)
    counts = layer_counts(model).values()
    n_nodes, n_edges = sum(n for n, _ in counts), sum(e for _, e in counts)
    assert (stats["nodes"], stats["edges"]) == (n_nodes, n_edges)
    layers, nodes, edges = read_arrays(tmp_path / "ds", engine=engine)
    assert len(edges["src"]) == n_edges and len(nodes["id"]) == n_nodes
    x = np.random.default_rng(3).normal(size=(2,) + g.entries[0].output.shape).astype("f4")
    ours = execute_arrays(layers, nodes, edges, x)
    assert_matches_keras(ours, model, x, shape_only_included=False)


def test_dataset_layout_columns_widths_and_graph_json(tmp_path):
    model = residual_model()
    g = NeuronGraph.from_model(model)
    write_parquet(g, tmp_path / "ds", progress=False)
    meta = json.loads((tmp_path / "ds" / "graph.json").read_text())
    assert meta["format"] == "weightgraph-parquet" and meta["contract_version"] == 2
    assert (meta["nodes"], meta["edges"]) == (g.n_nodes, g.n_edges)
    assert [l["name"] for l in meta["layers"]] == [s.name for s in g.layer_specs()]
    conv = g.index_of("conv")
    edge_file = tmp_path / "ds" / "edges" / f"layer_index={conv}" / "part-00000.parquet"
    schema = pq.read_schema(edge_file)
    assert [(f.name, str(f.type)) for f in schema] == [
        ("src", "int64"), ("dst", "int64"), ("weight", "float")]
    node_file = tmp_path / "ds" / "nodes" / f"layer_index={conv}" / "part-0.parquet"
    assert [(f.name, str(f.type)) for f in pq.read_schema(node_file)] == [
        ("id", "int64"), ("layer", "string"), ("index", "int64"), ("op", "string"),
        ("bias", "float"), ("activation", "string")]
    assert not any(f.nullable for f in schema)
    column = pq.ParquetFile(edge_file).metadata.row_group(0).column(1)
    assert "BYTE_STREAM_SPLIT" in column.encodings and column.compression == "LZ4"
    assert column.statistics.has_min_max
    con = open_duckdb(tmp_path / "ds")
    per_layer = dict(con.execute("SELECT l.name, count(*) FROM edges JOIN layers l "
                                 "USING (layer_index) GROUP BY 1").fetchall())
    assert per_layer == {name: e for name, (_, e) in layer_counts(model).items() if e}
    acts = con.execute("SELECT DISTINCT activation FROM nodes WHERE layer_index = ?",
                       [conv]).fetchall()
    assert acts == [("relu",)]


def test_dst_filter_prunes_row_groups_of_other_tiles(tmp_path):
    inp = keras.Input((32, 32, 2))
    model = randomise_weights(keras.Model(inp, L.Conv2D(3, 3, padding="same")(inp)))
    g = NeuronGraph.from_model(model)
    write_parquet(g, tmp_path / "ds", batch_size=1000, tile_edges=5000, progress=False)
    (folder,) = (tmp_path / "ds" / "edges").iterdir()
    dst = g.entry(g.entries[1].name).op.offset + 500
    groups = touching = 0
    files_touched = set()
    for part in sorted(folder.iterdir()):  # one file per tile
        meta = pq.ParquetFile(part).metadata
        for r in range(meta.num_row_groups):
            stats = meta.row_group(r).column(1).statistics
            groups += 1
            if stats.min <= dst <= stats.max:
                touching += 1
                files_touched.add(part.name)
    # ~11 tiles of 9 taps each: only the 9 row groups of the neuron's own tile can hold it.
    assert groups >= 90 and touching == 9 and len(files_touched) == 1


def test_workers_and_encodings_change_neither_rows_nor_files(tmp_path):
    model = mixed_model()
    g = NeuronGraph.from_model(model)
    rows, files = [], []
    for run, (workers, encoding) in enumerate([(1, "fast"), (3, "fast"), (2, "compact")]):
        ds = tmp_path / f"ds{run}"
        write_parquet(g, ds, batch_size=300, tile_edges=1500, workers=workers,
                      encoding=encoding, progress=False)
        files.append(sorted(str(p.relative_to(ds)) for p in ds.rglob("*.parquet")))
        rows.append(open_duckdb(ds).execute(
            "SELECT layer_index, src, dst, weight FROM edges ORDER BY ALL").fetchall())
    assert len(files[0]) > 2 * len(g.layer_specs())  # several tiles per layer
    assert files[0] == files[1] == files[2]
    assert rows[0] == rows[1] == rows[2]
    assert len(rows[0]) == sum(e for _, e in layer_counts(model).values())
    encodings = pq.ParquetFile(tmp_path / "ds2" / files[2][0]).metadata
    assert any("DELTA_BINARY_PACKED" in encodings.row_group(0).column(c).encodings
               for c in range(encodings.num_columns))
    with pytest.raises(WeightgraphError, match="unknown Parquet edge encoding"):
        write_parquet(g, tmp_path / "bad", encoding="nope", progress=False)
    assert not (tmp_path / "bad").exists()


def test_writer_leaves_nothing_when_the_stream_fails(tmp_path):
    g = NeuronGraph.from_model(residual_model())
    with pytest.raises(RuntimeError):
        with ParquetDatasetWriter(tmp_path / "ds", g.graph_data()) as out:
            for batch in g.iter_edge_batches(100):
                out.write_edges(batch)
                raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_dataset_is_replaced_and_other_directories_refused(tmp_path):
    g = NeuronGraph.from_model(residual_model())
    write_parquet(g, tmp_path / "ds", progress=False)
    write_parquet(g, tmp_path / "ds", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetExistsError):
        write_parquet(g, tmp_path / "other", progress=False)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


_EXPORT = """
import sys
from loader.graph.neuron_graph import NeuronGraph
from loader.sinks.parquet import write_parquet
g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(64, 64, 3))
write_parquet(g, sys.argv[1], batch_size=1 << 16, workers=2, progress=False)
"""


def _children(pid):
    pids = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            pids |= {int(p) for p in f.read().split()}
    return pids


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow  # builds a whole keras.applications model
def test_killed_export_leaves_nothing_under_dir(tmp_path):
    """Killed while its two worker processes write tiles: the workers die with it."""
    target = tmp_path / "vgg16.parquet"
    proc = subprocess.Popen([sys.executable, "-c", _EXPORT, str(target)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".vgg16.parquet.*.tmp/edges/*/*.parquet")):
            assert proc.poll() is None, "the export ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        workers = _children(proc.pid)
    finally:
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(workers) >= 2
    deadline = time.monotonic() + 60
    while any(_running(w) for w in workers):
        assert time.monotonic() < deadline, "a worker outlived the killed export"
        time.sleep(0.05)
    # The workers were mid-tile (a tile of a 64x64 VGG16 layer takes seconds): they died with
    # the export instead of finishing and closing their files.
    left = [p for p in tmp_path.glob(".vgg16.parquet.*.tmp/**/*") if p.is_file()]
    assert left and max(p.stat().st_mtime for p in left) < killed_at + 1.0
    assert not target.exists()
    # The next export to the same place removes what the killed one left.
    write_parquet(NeuronGraph.from_model(residual_model()), target, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vgg16.parquet"]


def test_cli_export_and_sql_formats(tmp_path):
    model = residual_model()
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "m.parquet"
    runner = CliRunner()
    r = runner.invoke(main, ["export", str(path), "-o", str(out), "--format", "parquet",
                             "--quiet"])
    assert r.exit_code == 0, r.output
    g = NeuronGraph.from_model(model)
    q = "SELECT count(*) AS n, sum(weight) AS w FROM edges"
    r = runner.invoke(main, ["sql", str(out), q, "--format", "csv"])
    assert r.exit_code == 0, r.output
    header, row = r.output.strip().splitlines()
    assert header == "n,w"
    assert int(row.split(",")[0]) == sum(e for _, e in layer_counts(model).values())
    want = sum(float(b.weight.astype(np.float64).sum()) for b in g.iter_edge_batches())
    assert abs(float(row.split(",")[1]) - want) <= 1e-9 * max(1.0, abs(want))
    r = runner.invoke(main, ["sql", str(out), "SELECT name FROM layers ORDER BY layer_index "
                             "LIMIT 2", "--format", "json"])
    assert json.loads(r.output) == [{"name": s.name} for s in g.layer_specs()[:2]]
    r = runner.invoke(main, ["sql", str(out), "SELECT count(*) FROM nodes"])
    assert r.exit_code == 0 and str(g.n_nodes) in r.output and "(1 row)" in r.output
    r = runner.invoke(main, ["sql", str(out), "SELECT nope FROM edges"])
    assert r.exit_code == 1 and r.output.startswith("Error: SQL:")
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(main, ["export", str(path), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "--format parquet" in r.output


def test_sql_on_a_directory_that_is_no_dataset_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["sql", str(tmp_path), "SELECT 1"])
    assert r.exit_code == 1 and "not a weightgraph Parquet dataset" in r.output
    with pytest.raises(WeightgraphError):
        open_duckdb(tmp_path)


def test_layer_statistics_are_exact_against_numpy_over_the_enumeration(tmp_path):
    from loader.analysis.dataset import layer_statistics

    model = mixed_model()
    g = NeuronGraph.from_model(model)
    write_parquet(g, tmp_path / "ds", progress=False)
    rows = {r["layer_index"]: r for r in layer_statistics(tmp_path / "ds")}
    counts = layer_counts(model)
    for spec in g.layer_specs():
        if not counts[spec.name][1]:
            assert spec.index not in rows
            continue
        batches = list(g.iter_edge_batches(layers=[spec.index]))
        w = np.concatenate([b.weight for b in batches]).astype(np.float64)
        dst = np.concatenate([b.dst for b in batches])
        degree = np.unique(dst, return_counts=True)[1]
        r = rows[spec.index]
        assert (r["name"], r["edges"]) == (spec.name, counts[spec.name][1])
        assert (r["weight_min"], r["weight_max"]) == (np.float32(w.min()), np.float32(w.max()))
        for key, want in (("weight_sum", w.sum()), ("abs_weight_sum", np.abs(w).sum()),
                          ("weight_std", w.std())):
            assert abs(r[key] - want) <= 1e-9 * max(1.0, abs(want)), (spec.name, key)
        assert (r["in_degree_min"], r["in_degree_max"]) == (degree.min(), degree.max())
        assert abs(r["in_degree_mean"] - degree.mean()) < 1e-9
    r = CliRunner().invoke(main, ["analyze", str(tmp_path / "ds"), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "rep" / "statistics.md").read_text()
    assert all(f"| {spec.name} | {spec.edges:,} |" in text for spec in g.layer_specs()
               if spec.edges)


def test_the_readme_per_layer_query_is_exact_and_equals_joining_first(tmp_path):
    """The README's first `weightgraph sql` example aggregates by layer_index, then joins the
    small layers table (joining the 15e9 VGG16 edges to it first took 3x longer): per layer,
    the name, the edge count and the weight sum of numpy over the enumeration, and the same
    rows as the join-first form it replaced."""
    text = README.read_text()
    query = re.search(r'weightgraph sql vgg16_32\.parquet "(SELECT l\.name.*?)"', text, re.S)
    query = " ".join(query.group(1).split())
    g = NeuronGraph.from_model(mixed_model())
    write_parquet(g, tmp_path / "ds", progress=False)
    r = CliRunner().invoke(main, ["sql", str(tmp_path / "ds"), query, "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    specs = [s for s in g.layer_specs() if s.edges]
    assert [(row["name"], row["edges"]) for row in rows] == [(s.name, s.edges) for s in specs]
    for row, spec in zip(rows, specs):
        w = np.concatenate([b.weight for b in g.iter_edge_batches(layers=[spec.index])])
        want = float(w.astype(np.float64).sum())
        assert abs(row["w"] - want) <= 1e-9 * max(1.0, abs(want)), spec.name
    join_first = ("SELECT l.name, count(*) AS edges, sum(weight) AS w FROM edges "
                  "JOIN layers l USING (layer_index) GROUP BY ALL ORDER BY min(layer_index)")
    columns, old = run_sql(tmp_path / "ds", join_first)
    assert [(n, e) for n, e, _ in old] == [(row["name"], row["edges"]) for row in rows]
    assert all(abs(w - row["w"]) <= 1e-9 * max(1.0, abs(w)) for (_, _, w), row in zip(old, rows))
