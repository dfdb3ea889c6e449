"""Spark: the enumeration itself as a Spark job, and a Parquet dataset as DataFrames/GraphFrames.

:func:`export_parquet_spark` writes the same dataset as :func:`loader.sinks.parquet.write_parquet`
(the same rows; files split per shard): its tasks are *shards of the plan*, one per
(layer, tile of output positions) of the weight-major order plus one per layer's nodes. Ids
are global and deterministic and a shard's rows depend only on the shard, so the output does
not depend on the number of tasks or on which executor runs which shard. Every executor
rebuilds the graph from the model, which must therefore come out the same everywhere: a
``.keras``/``.h5`` file, or an application name with a weights file or ``imagenet`` (random
weights, ``weights=None``, would differ per executor and are refused).

Examples
--------
>>> spark = spark_session()                       # local[*]; graphframes=True adds the jar
>>> export_parquet_spark(spark, "model.keras", "model.parquet")
>>> nodes, edges = read_dataset(spark, "model.parquet")
>>> to_graphframe(spark, "model.parquet").pageRank(resetProbability=0.15, maxIter=20)
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from ..errors import WeightgraphError
from ..graph.neuron_graph import DEFAULT_BATCH, NeuronGraph
from ..sinks.parquet import (EDGE_TILE, check_target, dataset_bytes, dataset_metadata,
                             edge_shards, finish_dataset, temporary_dir, write_edge_shard,
                             write_part)

__all__ = ["spark_session", "read_dataset", "to_graphframe", "export_parquet_spark",
           "GRAPHFRAMES_PACKAGE"]

# The GraphFrames jar matching graphframes-py 0.12 on Spark 4 (Scala 2.13), from Maven Central.
GRAPHFRAMES_PACKAGE = "io.graphframes:graphframes-spark4_2.13:0.12.1"


def spark_session(master: str = "local[*]", *, app: str = "weightgraph",
                  graphframes: bool = False, config: dict | None = None):
    """A SparkSession for weightgraph datasets.

    ``graphframes=True`` asks Spark to fetch the GraphFrames jar (:data:`GRAPHFRAMES_PACKAGE`)
    from Maven; it is off by default because a machine that cannot reach that artifact would
    fail to start the session at all.

    Executors run this Python (``PYSPARK_PYTHON`` defaults to ``sys.executable``), so they
    import the same ``loader``.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName(app)
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4"))
    if graphframes:
        builder = builder.config("spark.jars.packages", GRAPHFRAMES_PACKAGE)
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def read_dataset(spark, path: str | os.PathLike):
    """``(nodes, edges)`` DataFrames of a dataset; ``layer_index`` comes from the partitions."""
    from .dataset import read_graph_json

    read_graph_json(path)  # a clear error when it is no dataset
    root = Path(path).resolve()
    return (spark.read.parquet(str(root / "nodes")), spark.read.parquet(str(root / "edges")))


def to_graphframe(spark, path: str | os.PathLike):
    """A ``graphframes.GraphFrame`` of a dataset: vertices ``id`` + attributes, edges
    ``src``, ``dst``, ``weight``, ``layer_index``."""
    from graphframes import GraphFrame

    nodes, edges = read_dataset(spark, path)
    return GraphFrame(nodes, edges)


def _shards(graph: NeuronGraph, tile_edges: int) -> list[tuple[str, int, int]]:
    return ([("nodes", i, 0) for i in sorted(graph.node_masks)]
            + [("edges", i, t) for i, t in edge_shards(graph, tile_edges)])


def _run_shards(model: str, weights, input_shape, include_top: bool, tmp: str,
                tile_edges: int, batch_size: int):
    """The task body: rebuild the graph once per partition, write each shard's file."""
    def run(shards):
        graph = NeuronGraph.from_model(model, weights=weights, input_shape=input_shape,
                                       include_top=include_top)
        for kind, i, tile in shards:
            folder = Path(tmp) / kind / f"layer_index={i}"
            folder.mkdir(parents=True, exist_ok=True)
            if kind == "nodes":
                batches = (b for b in graph.iter_node_batches(batch_size) if b.layer_index == i)
                rows = write_part(folder / "part-0.parquet", kind, batches)
            else:
                rows = write_edge_shard(graph, i, tile, folder / f"part-{tile:05d}.parquet",
                                        batch_size=batch_size, tile_edges=tile_edges)
            yield kind, i, rows
    return run


def export_parquet_spark(spark, model: str | os.PathLike, path: str | os.PathLike, *,
                         weights="default", input_shape=None, include_top: bool = True,
                         tasks: int | None = None, tile_edges: int = EDGE_TILE,
                         batch_size: int = DEFAULT_BATCH) -> dict:
    """Enumerate a model's whole neuron graph as a Spark job into a Parquet dataset.

    Parameters
    ----------
    spark : SparkSession
    model : a ``.keras``/``.h5`` file, or an application name with deterministic weights.
    path : the dataset directory; written to a hidden temporary directory next to it (on a
        file system every executor sees) and renamed when every shard is written and the
        counts equal the plan.
    tasks : Spark partitions over the shards (default: Spark's default parallelism); the
        output is the same for any value.
    tile_edges, batch_size : as for :func:`~loader.sinks.parquet.write_parquet`.

    Returns
    -------
    dict
        ``path``, ``nodes``, ``edges``, ``shards``, ``bytes``, ``seconds``, ``edges_per_s``.
    """
    if str(weights).lower() in ("none", "random") or (
            not Path(str(model)).exists() and weights is None):
        raise WeightgraphError("a Spark export rebuilds the model on every executor: give a "
                               "model file or deterministic weights, not random ones")
    path = Path(path)
    check_target(path)
    start = time.perf_counter()
    graph = NeuronGraph.from_model(str(model), weights=weights, input_shape=input_shape,
                                   include_top=include_top)
    shards = _shards(graph, tile_edges)
    tmp = temporary_dir(path)
    try:
        sc = spark.sparkContext
        job = _run_shards(str(model), weights, input_shape, include_top, str(tmp), tile_edges,
                          batch_size)
        results = sc.parallelize(shards, tasks or sc.defaultParallelism).mapPartitions(
            job).collect()
        counts: dict[int, list[int]] = {}
        for kind, i, rows in results:
            counts.setdefault(i, [0, 0])[0 if kind == "nodes" else 1] += rows
        want = {i: [graph.entries[i].op.n_neurons, graph.full_edge_count(i)]
                for i in graph.node_masks}
        if counts != want:
            raise WeightgraphError(f"{graph.name}: the Spark shards wrote {counts}, but the "
                                   f"plan counts {want}; nothing was written to {path}")
        finish_dataset(tmp, path, dataset_metadata(graph.graph_data(), counts, "weight-major"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    edges = sum(v[1] for v in counts.values())
    return {"path": str(path), "nodes": sum(v[0] for v in counts.values()), "edges": edges,
            "shards": len(shards), "bytes": dataset_bytes(path), "seconds": seconds,
            "edges_per_s": edges / seconds if seconds > 0 else float("inf")}
