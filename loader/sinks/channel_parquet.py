"""The channel graph as a Parquet dataset (``export --granularity channel --format parquet``).

The same layout as the neuron dataset (:mod:`loader.sinks.parquet`: ``graph.json``, Hive
partitions by ``layer_index``, written into a hidden temporary directory and renamed at the
end, so a failed export leaves nothing at DIR), with the channel contract's columns:

- ``DIR/nodes/layer_index=K/part-0.parquet``: ``id`` int64, ``layer`` string, ``channel``
  int64, ``op`` string, ``neurons`` int64, ``bias`` float64 and ``activation`` string (null
  where the channel's neurons differ);
- ``DIR/edges/layer_index=K/part-0.parquet`` (K: the layer the edge enters): ``src``, ``dst``,
  ``edges`` int64, ``total``, ``weight`` float64, ``kernel`` list<float32> (null without one);
- ``graph.json``: the graph data (``granularity`` = ``channel``) and the dataset's counts.

A channel graph is small (VGG16 at 224x224: 24.6M edges), so one file per layer and kind.

Examples
--------
>>> g = ChannelGraph.from_model("vgg16", weights=None)
>>> write_channel_parquet(g, "vgg16.channels.parquet")["edges"]
24606336
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import WeightgraphError
from .base import BatchSink
from .parquet import dataset_bytes, dataset_metadata, finish_dataset, temporary_dir

__all__ = ["ChannelParquetWriter", "write_channel_parquet"]


def _schemas():
    import pyarrow as pa

    nodes = pa.schema([("id", pa.int64()), ("layer", pa.string()), ("channel", pa.int64()),
                       ("op", pa.string()), ("neurons", pa.int64()), ("bias", pa.float64()),
                       ("activation", pa.string())])
    edges = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("edges", pa.int64()),
                       ("total", pa.float64()), ("weight", pa.float64()),
                       ("kernel", pa.list_(pa.float32()))])
    return nodes, edges


class ChannelParquetWriter(BatchSink):
    """Channel node and edge batches into a dataset directory (one Parquet file per layer
    and kind, opened when the layer's first batch comes, closed at the next layer).

    Examples
    --------
    >>> with ChannelParquetWriter("ch.parquet", g.graph_data()) as out:
    ...     for b in g.iter_node_batches(): out.write_nodes(b)
    ...     for b in g.iter_edge_batches(): out.write_edges(b)
    """

    def __init__(self, path: str | os.PathLike, graph_data: dict):
        self.path = Path(path)
        self.graph_data = graph_data
        self._tmp = temporary_dir(self.path)
        self._writers: dict[tuple[str, int], object] = {}
        self.counts: dict[int, list[int]] = {}
        self.nodes_written = self.edges_written = 0

    def _writer(self, kind: str, layer_index: int):
        import pyarrow.parquet as pq

        key = (kind, int(layer_index))
        if key not in self._writers:
            folder = self._tmp / kind / f"layer_index={int(layer_index)}"
            folder.mkdir(parents=True)
            schema = _schemas()[0 if kind == "nodes" else 1]
            self._writers[key] = pq.ParquetWriter(folder / "part-0.parquet", schema,
                                                  compression="zstd")
        return self._writers[key]

    def write_nodes(self, b) -> None:
        import pyarrow as pa

        n = len(b)
        bias = np.asarray(b.bias, dtype=np.float64)
        table = pa.Table.from_arrays([
            pa.array(b.id), pa.array([b.layer] * n, pa.string()), pa.array(b.channel),
            pa.array([b.op] * n, pa.string()), pa.array(b.neurons),
            pa.array(bias, mask=np.isnan(bias)),
            pa.array([None if a is None else str(a) for a in b.activation.tolist()],
                     pa.string())], schema=_schemas()[0])
        self._writer("nodes", b.layer_index).write_table(table)
        self.counts.setdefault(int(b.layer_index), [0, 0])[0] += n
        self.nodes_written += n

    def write_edges(self, b) -> None:
        import pyarrow as pa

        n = len(b)
        if not n:
            return
        if b.kernel is None:
            kernel = pa.nulls(n, pa.list_(pa.float32()))
        else:
            k = np.ascontiguousarray(b.kernel, dtype=np.float32)
            kernel = pa.ListArray.from_arrays(
                pa.array(np.arange(0, n * k.shape[1] + 1, k.shape[1], dtype=np.int32)),
                pa.array(k.reshape(-1)))
        table = pa.Table.from_arrays([
            pa.array(b.src), pa.array(b.dst), pa.array(b.edges),
            pa.array(np.asarray(b.total, np.float64)), pa.array(np.asarray(b.weight, np.float64)),
            kernel], schema=_schemas()[1])
        self._writer("edges", b.layer_index).write_table(table)
        self.counts.setdefault(int(b.layer_index), [0, 0])[1] += n
        self.edges_written += n

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()
        meta = dataset_metadata(self.graph_data, self.counts, edge_order="by target layer")
        finish_dataset(self._tmp, self.path, meta)

    def discard(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "ChannelParquetWriter":
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()


def write_channel_parquet(graph, path: str | os.PathLike, *, batch_size: int = 1 << 20,
                          progress: bool = True) -> dict:
    """Stream a :class:`~loader.graph.channels.ChannelGraph` (or a selection) to a dataset.

    Returns
    -------
    dict
        ``path``, ``nodes``, ``edges``, ``bytes``, ``seconds``, ``edges_per_s``.
    """
    from ..terminal import progress as progress_bar

    start = time.perf_counter()
    n_nodes, n_edges = graph.n_nodes, graph.n_edges
    with ChannelParquetWriter(path, graph.graph_data()) as out, progress_bar(
            n_edges, f"Parquet {Path(path).name}", enabled=progress, unit="edge") as bar:
        for b in graph.iter_node_batches():
            out.write_nodes(b)
        for b in graph.iter_edge_batches(batch_size):
            out.write_edges(b)
            bar.update(len(b))
        if (out.nodes_written, out.edges_written) != (n_nodes, n_edges):
            raise WeightgraphError(
                f"{graph.name}: streamed {out.nodes_written:,} channels and "
                f"{out.edges_written:,} edges, but the graph counts {n_nodes:,} and "
                f"{n_edges:,}; nothing was written to {path}")
    seconds = time.perf_counter() - start
    return {"path": str(path), "nodes": n_nodes, "edges": n_edges, "bytes": dataset_bytes(path),
            "seconds": seconds, "edges_per_s": n_edges / seconds if seconds > 0 else float("inf")}
