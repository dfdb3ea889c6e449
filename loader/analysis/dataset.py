"""Reading a Parquet dataset (``loader.sinks.parquet``) with DuckDB or pyarrow.

DuckDB runs in process, streams the files and prunes by partition (``layer_index``) and by row
group statistics (``dst``, ``src``, ``weight``), so questions over all 15e9 edges of VGG16 at
224x224 run in bounded memory on one machine (figures in ``bench/bench_parquet.py``).

Examples
--------
>>> con = open_duckdb("vgg16.parquet")
>>> con.sql("SELECT layer_index, count(*), sum(weight) FROM edges GROUP BY 1 ORDER BY 1").show()
>>> layers, nodes, edges = read_arrays("vgg16_32.parquet")   # for loader.graph.forward
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import WeightgraphError
from ..sinks.parquet import DATASET_FORMAT, is_dataset

__all__ = ["read_graph_json", "open_duckdb", "read_arrays", "run_sql", "layer_statistics",
           "write_statistics",
           "NotADatasetError"]


class NotADatasetError(WeightgraphError):
    """A path that holds no weightgraph Parquet dataset."""


_EMPTY = {
    "nodes": "SELECT NULL::BIGINT AS id, NULL::VARCHAR AS layer, NULL::BIGINT AS \"index\", "
             "NULL::VARCHAR AS op, NULL::FLOAT AS bias, NULL::VARCHAR AS activation, "
             "NULL::INTEGER AS layer_index WHERE false",
    "edges": "SELECT NULL::BIGINT AS src, NULL::BIGINT AS dst, NULL::FLOAT AS weight, "
             "NULL::INTEGER AS layer_index WHERE false",
}


def read_graph_json(path: str | os.PathLike) -> dict:
    """The graph-level data of a dataset (``DIR/graph.json``); a clear error if it is none."""
    path = Path(path)
    if not is_dataset(path):
        raise NotADatasetError(f"{path} is not a weightgraph Parquet dataset (no graph.json "
                               f"of format {DATASET_FORMAT}); write one with "
                               "`weightgraph export MODEL -o DIR --format parquet`")
    return json.loads((path / "graph.json").read_text())


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_duckdb(path: str | os.PathLike, con=None, *, threads: int | None = None):
    """A DuckDB connection with views ``nodes`` and ``edges`` and a table ``layers``.

    Parameters
    ----------
    path : the dataset directory.
    con : an open ``duckdb`` connection to add the views to (default: a new in-memory one).
    threads : DuckDB's worker threads (default: DuckDB's, one per core).

    Returns
    -------
    duckdb.DuckDBPyConnection
        ``nodes(id, layer, index, op, bias, activation, layer_index)``,
        ``edges(src, dst, weight, layer_index)`` (``layer_index``: the layer the edge enters),
        ``layers(layer_index, name, class_name, kind, op, neurons, edges, offset)`` from
        ``graph.json`` (the whole model's counts; the dataset may hold a selection).
    """
    import duckdb

    meta = read_graph_json(path)
    con = con or duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    root = Path(path).resolve()
    for kind in ("nodes", "edges"):
        files = root / kind
        if any(files.glob("layer_index=*/*.parquet")):
            source = (f"SELECT * FROM read_parquet({_literal(str(files / '*' / '*.parquet'))}, "
                      "hive_partitioning = true, hive_types = {'layer_index': INTEGER})")
        else:
            source = _EMPTY[kind]
        con.execute(f"CREATE OR REPLACE VIEW {kind} AS {source}")
    con.execute("CREATE OR REPLACE TABLE layers (layer_index INTEGER, name VARCHAR, "
                "class_name VARCHAR, kind VARCHAR, op VARCHAR, neurons BIGINT, edges BIGINT, "
                "\"offset\" BIGINT)")
    rows = [(l["index"], l["name"], l["class_name"], l["kind"], l["op"], l["neurons"],
             l["edges"], l["offset"]) for l in meta["layers"]]
    if rows:
        con.executemany("INSERT INTO layers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return con


def read_arrays(path: str | os.PathLike, engine: str = "pyarrow"):
    """``(layers, nodes, edges)`` of a (small) dataset as numpy arrays, what
    :func:`loader.graph.forward.execute_arrays` takes; ``engine`` is ``pyarrow`` or ``duckdb``.

    Reads everything into memory: for graphs that fit (check ``graph.json``'s ``edges``).
    """
    meta = read_graph_json(path)
    if engine == "duckdb":
        con = open_duckdb(path)
        nodes = con.execute("SELECT id, layer_index, \"index\", bias, activation FROM nodes"
                            ).fetchnumpy()
        edges = con.execute("SELECT src, dst, weight FROM edges").fetchnumpy()
        con.close()
    elif engine == "pyarrow":
        nodes = _pyarrow_columns(Path(path) / "nodes",
                                 ["id", "layer_index", "index", "bias", "activation"])
        edges = _pyarrow_columns(Path(path) / "edges", ["src", "dst", "weight"])
    else:
        raise ValueError(f"engine must be pyarrow or duckdb, not {engine!r}")
    nodes = {k: np.asarray(v) for k, v in nodes.items()}
    edges = {k: np.asarray(v) for k, v in edges.items()}
    return meta["layers"], nodes, edges


def _pyarrow_columns(folder: Path, columns: list[str]) -> dict:
    import pyarrow as pa
    import pyarrow.dataset as ds

    if not folder.is_dir():
        return {c: np.zeros(0) for c in columns}
    part = ds.partitioning(pa.schema([("layer_index", pa.int32())]), flavor="hive")
    table = ds.dataset(folder, format="parquet", partitioning=part).to_table(columns=columns)
    return {c: table.column(c).to_numpy() for c in columns}


def run_sql(path: str | os.PathLike, query: str, *, threads: int | None = None):
    """Run one SQL statement over a dataset's views; returns ``(column names, rows)``.

    Errors of DuckDB (a syntax error, a missing column) become one-line
    :class:`~loader.errors.WeightgraphError`.
    """
    import duckdb

    con = open_duckdb(path, threads=threads)
    try:
        result = con.execute(query)
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightgraphError(f"SQL: {first}") from None
    finally:
        con.close()


def layer_statistics(path: str | os.PathLike, *, threads: int | None = None) -> list[dict]:
    """Exact per-layer statistics of a dataset's edges, computed by DuckDB (no sampling).

    One scan of the edges (streamed, bounded memory whatever the size) and one of the
    in-degrees per layer.

    Returns
    -------
    list of dict, one per layer with edges, in ``layer_index`` order: ``layer_index``,
    ``name``, ``edges``, ``weight_min``, ``weight_max``, ``weight_sum``, ``abs_weight_sum``,
    ``weight_mean``, ``weight_std`` (population), ``in_degree_min``, ``in_degree_max``,
    ``in_degree_mean`` (over the layer's neurons that have edges).

    Examples
    --------
    >>> for row in layer_statistics("vgg16.parquet"): print(row["name"], row["edges"])
    """
    con = open_duckdb(path, threads=threads)
    try:
        weights = con.execute(
            "SELECT layer_index, count(*), min(weight), max(weight), sum(weight::DOUBLE), "
            "sum(abs(weight::DOUBLE)), sum(weight::DOUBLE * weight::DOUBLE) FROM edges "
            "GROUP BY 1 ORDER BY 1").fetchall()
        degrees = dict((li, (lo, hi, mean)) for li, lo, hi, mean in con.execute(
            "SELECT layer_index, min(d), max(d), avg(d) FROM (SELECT layer_index, dst, "
            "count(*) AS d FROM edges GROUP BY 1, 2) GROUP BY 1").fetchall())
        names = dict(con.execute("SELECT layer_index, name FROM layers").fetchall())
    finally:
        con.close()
    rows = []
    for li, n, lo, hi, total, total_abs, total_sq in weights:
        mean = total / n
        rows.append({
            "layer_index": li, "name": names.get(li), "edges": n, "weight_min": lo,
            "weight_max": hi, "weight_sum": total, "abs_weight_sum": total_abs,
            "weight_mean": mean, "weight_std": max(0.0, total_sq / n - mean * mean) ** 0.5,
            "in_degree_min": degrees[li][0], "in_degree_max": degrees[li][1],
            "in_degree_mean": degrees[li][2]})
    return rows


def write_statistics(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """:func:`layer_statistics` of a dataset as a Markdown table in ``out_dir/statistics.md``.

    A channel dataset (``export --granularity channel``) is refused: its edges are channel
    edges, reported from the model by :func:`loader.analysis.channels.analyze_channels`."""
    meta = read_graph_json(path)
    if meta.get("granularity") == "channel":
        raise WeightgraphError(f"{path} is a channel dataset: query it with `weightgraph "
                               "sql`, or write the channel report from the model "
                               "(`analyze MODEL --granularity channel`)")
    rows = layer_statistics(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {meta['name']}: exact statistics of every edge", "",
             f"Dataset `{path}` ({meta['selection']}): {meta['nodes']:,} neurons, "
             f"{meta['edges']:,} edges; computed by DuckDB over all edges (no sampling).", "",
             "| # | layer | edges | weight min | max | mean | std | sum | sum abs "
             "| in-degree min | max | mean |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['layer_index']} | {r['name']} | {r['edges']:,} | {r['weight_min']:.6g} | "
            f"{r['weight_max']:.6g} | {r['weight_mean']:.6g} | {r['weight_std']:.6g} | "
            f"{r['weight_sum']:.6g} | {r['abs_weight_sum']:.6g} | {r['in_degree_min']} | "
            f"{r['in_degree_max']} | {r['in_degree_mean']:.4g} |")
    target = out / "statistics.md"
    target.write_text("\n".join(lines) + "\n")
    return target
