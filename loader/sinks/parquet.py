"""The neuron graph as a Parquet dataset: ``DIR/graph.json``, ``DIR/nodes/``, ``DIR/edges/``.

Layout (Hive-partitioned by the layer's position, so engines read one layer without the rest)::

    DIR/graph.json                                 name, selection, layers, counts, contract
    DIR/nodes/layer_index=K/part-0.parquet         id, layer, index, op, bias, activation
    DIR/edges/layer_index=K/part-0.parquet         src, dst, weight   (edges entering layer K)

``layer_index`` is not stored in the files: it is the partition key, read from the path by
pyarrow (``partitioning="hive"``), DuckDB (``hive_partitioning=true``), Spark and Polars.
Widths: ``id``, ``index``, ``src``, ``dst`` int64; ``layer_index`` int32; ``bias`` and
``weight`` float32 (the values the graph is made of, bit for bit); strings UTF-8.

Measured by ``bench/bench_parquet.py`` on the shared 2-core VM (pyarrow 26, one process, the
VM at load average 7-11 from other work): all 14,975,945,472 edges of VGG16 at 224x224 in
25.2 min, **2.99 GB, 0.20 bytes per edge** (goal 0.5), 9.9M edges/s wall clock (goal 100M: not
reached; at most 463 CPU-seconds for the whole process, so >= 32M edges per CPU-second). Same
run, first 8M edges of block1_conv2, block3_conv2, block5_conv1 and fc1: ``pq.write_table``
defaults 3.54 bytes/edge at 20.5M edges/s, these settings 1.04 at 12.9M edges/s (fc1's
distinct weights dominate the sample), our GraphML writer 91 bytes at 0.5M. Then DuckDB over
the dataset: edges and weight sum per layer over all 15e9 edges 36.7 s; the 10 strongest edges
into one block1_conv2 neuron 0.34 s (row groups pruned on ``dst``).

Edge order and encodings, chosen by measurement (one column of 16M edges of VGG16
``block3_conv2`` at 224x224 written alone; values per second and bytes per value):

* Order: **weight-major within tiles of output positions**
  (:meth:`loader.ops.windowed.WindowedOp.iter_edges_by_weight`): a kernel entry's edges are
  consecutive, so ``weight`` is constant over runs of hundreds to thousands of edges and
  ``src``/``dst`` step by a constant along each run. The enumerator's own order (pair by pair,
  all channels) repeats a whole kernel slab per position instead: ``pq.write_table`` defaults
  took 1.84 bytes/edge on ``block1_conv2`` and 3.58 on ``block5_conv1`` in that order.
* ``src``, ``dst``: ``DELTA_BINARY_PACKED`` + zstd: 0.04 bytes/value at ~105M values/s
  (PLAIN + zstd 0.85 bytes at 44M/s; delta alone 1.8 bytes; delta + lz4 0.08 at 120M/s).
* ``weight``: PLAIN + zstd: 0.075 bytes/value at 220M values/s; dictionary (RLE) + zstd was
  0.087 at 115M/s (and it needs a dictionary page as large as a layer's kernel, or it falls
  back to PLAIN: 3.9 bytes/edge on ``block5_conv1``); BYTE_STREAM_SPLIT + zstd 0.086 at 186M/s.
* Row groups: one enumerator batch (about 1M edges). Statistics on every column, so a filter on
  ``dst`` skips the row groups of other tiles.

Nodes are few (VGG16: 15M nodes for 15e9 edges); they use the defaults plus zstd.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import WeightgraphError
from ..graph.batches import EdgeBatch, NodeBatch
from .base import BatchSink
from .graphml import _json_scalar

__all__ = ["ParquetDatasetWriter", "write_parquet", "check_target", "is_dataset",
           "dataset_bytes", "DATASET_FORMAT", "DATASET_VERSION", "EDGE_TILE"]

DATASET_FORMAT = "weightgraph-parquet"
DATASET_VERSION = 1
CONTRACT_VERSION = 2
# Output positions per tile of the weight-major order, in edges: small enough that a filter on
# one neuron reads few row groups of a big layer, large enough that runs stay long (a tile is
# never less than one position; VGG16 block1_conv2 has 36,864 edges per position).
EDGE_TILE = 64 << 20


class DatasetExistsError(WeightgraphError):
    """The target directory exists and is not a weightgraph dataset."""


def _schemas():
    import pyarrow as pa

    nodes = pa.schema([("id", pa.int64()), ("layer", pa.string()), ("index", pa.int64()),
                       ("op", pa.string()), ("bias", pa.float32()),
                       ("activation", pa.string())])
    edges = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("weight", pa.float32())])
    return nodes, edges


_EDGE_OPTIONS = dict(use_dictionary=False, compression="zstd",
                     column_encoding={"src": "DELTA_BINARY_PACKED",
                                      "dst": "DELTA_BINARY_PACKED", "weight": "PLAIN"})
_NODE_OPTIONS = dict(compression="zstd")


def _node_table(batch: NodeBatch):
    import pyarrow as pa

    n = len(batch)
    schema = _schemas()[0]
    table = pa.table([
        pa.array(batch.id, pa.int64()),
        pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [batch.layer]),
        pa.array(batch.index, pa.int64()),
        pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [batch.op]),
        pa.array(np.broadcast_to(np.asarray(batch.bias, np.float32), (n,))),
        pa.array(batch.activations().astype(str), pa.string()),
    ], names=schema.names)
    return table.cast(schema)


def _edge_table(batch: EdgeBatch):
    import pyarrow as pa

    return pa.Table.from_arrays([pa.array(batch.src), pa.array(batch.dst),
                                 pa.array(batch.weight)], schema=_schemas()[1])


def write_part(path: str | os.PathLike, kind: str, batches) -> int:
    """Write node or edge batches (``kind`` ``nodes`` / ``edges``) to one Parquet file of a
    dataset, with the dataset's schema and encodings; returns the rows written. The parts of a
    distributed export (``loader.analysis.spark``) are written with it."""
    import pyarrow.parquet as pq

    schema, options = ((_schemas()[0], _NODE_OPTIONS) if kind == "nodes"
                       else (_schemas()[1], _EDGE_OPTIONS))
    table_of = _node_table if kind == "nodes" else _edge_table
    rows = 0
    with pq.ParquetWriter(path, schema, **options) as writer:
        for batch in batches:
            if len(batch):
                writer.write_table(table_of(batch))
                rows += len(batch)
    return rows


def dataset_metadata(graph_data: dict, counts: dict[int, list[int]], edge_order: str) -> dict:
    """The content of ``graph.json``: graph data plus format, counts and order."""
    meta = dict(graph_data)
    meta.update(format=DATASET_FORMAT, format_version=DATASET_VERSION,
                contract_version=CONTRACT_VERSION,
                nodes=sum(v[0] for v in counts.values()),
                edges=sum(v[1] for v in counts.values()), edge_order=edge_order,
                partitioning="hive:layer_index",
                counts={str(k): {"nodes": v[0], "edges": v[1]}
                        for k, v in sorted(counts.items())})
    return meta


def finish_dataset(tmp: Path, path: Path, meta: dict) -> None:
    """Write ``graph.json`` into the temporary directory ``tmp`` and rename it to ``path``."""
    (tmp / "graph.json").write_text(json.dumps(meta, indent=1, default=_json_scalar) + "\n")
    _replace_dir(tmp, path)


def temporary_dir(path: Path) -> Path:
    """A new hidden temporary directory next to ``path`` (leftovers of dead exports removed)."""
    _remove_abandoned(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir(parents=True)
    return tmp


class ParquetDatasetWriter(BatchSink):
    """Write a neuron graph to a Parquet dataset directory, batch by batch, in bounded memory.

    Batches must come grouped by layer (as every ``NeuronGraph`` stream does): one file per
    layer and kind is open at a time. Everything goes to a hidden temporary directory next to
    ``path``, renamed to ``path`` by :meth:`close`; on an error, a kill, or :meth:`discard`,
    ``path`` is untouched (a killed process leaves only the hidden ``.NAME.*.tmp`` directory).
    An existing dataset at ``path`` is replaced on close; any other existing directory is
    refused.

    Parameters
    ----------
    path : str or os.PathLike
        The dataset directory.
    graph_data : dict
        ``NeuronGraph.graph_data()``: the model ``name``, ``selection`` and ``layers``.

    Examples
    --------
    >>> with ParquetDatasetWriter("vgg16.parquet", g.graph_data()) as out:
    ...     for batch in g.iter_node_batches(): out.write_nodes(batch)
    ...     for batch in g.iter_edge_batches(by_weight=EDGE_TILE): out.write_edges(batch)
    """

    def __init__(self, path: str | os.PathLike, graph_data: dict, *, edge_order: str = "natural"):
        self.path = Path(path)
        check_target(self.path)
        self.graph_data = graph_data
        self.edge_order = edge_order
        self.nodes_written = 0
        self.edges_written = 0
        self.layer_counts: dict[int, list[int]] = {}
        self._tmp = temporary_dir(self.path)
        self._open = {"nodes": None, "edges": None}  # kind -> (layer_index, pq.ParquetWriter)
        self._closed = False

    # ------------------------------------------------------------------ writing
    def _writer(self, kind: str, layer_index: int):
        import pyarrow.parquet as pq

        current = self._open[kind]
        if current is not None and current[0] == layer_index:
            return current[1]
        if current is not None:
            current[1].close()
        folder = self._tmp / kind / f"layer_index={int(layer_index)}"
        if folder.exists():
            raise ValueError(f"{kind} of layer {layer_index} came in two separate runs")
        folder.mkdir(parents=True)
        schema, options = ((_schemas()[0], _NODE_OPTIONS) if kind == "nodes"
                           else (_schemas()[1], _EDGE_OPTIONS))
        writer = pq.ParquetWriter(folder / "part-0.parquet", schema, **options)
        self._open[kind] = (layer_index, writer)
        return writer

    def write_nodes(self, batch: NodeBatch) -> None:
        """Append the neurons of ``batch`` to its layer's node file."""
        n = len(batch)
        if n == 0:
            return
        self._check_open()
        self._writer("nodes", batch.layer_index).write_table(_node_table(batch))
        self.nodes_written += n
        self.layer_counts.setdefault(int(batch.layer_index), [0, 0])[0] += n

    def write_edges(self, batch: EdgeBatch) -> None:
        """Append the edges of ``batch`` (one row group) to its layer's edge file."""
        n = len(batch)
        if n == 0:
            return
        self._check_open()
        self._writer("edges", batch.layer_index).write_table(_edge_table(batch))
        self.edges_written += n
        self.layer_counts.setdefault(int(batch.layer_index), [0, 0])[1] += n

    # ------------------------------------------------------------------ finishing
    def close(self) -> Path:
        """Close the files, write ``graph.json`` and move the dataset to ``path``."""
        if self._closed:
            return self.path
        try:
            self._close_files()
            finish_dataset(self._tmp, self.path,
                           dataset_metadata(self.graph_data, self.layer_counts, self.edge_order))
        except BaseException:
            self.discard()
            raise
        self._closed = True
        return self.path

    def discard(self) -> None:
        """Abandon the dataset: close and delete the temporary directory; ``path`` untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close_files()
        except Exception:
            pass
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _close_files(self) -> None:
        for kind, current in self._open.items():
            if current is not None:
                self._open[kind] = None
                current[1].close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"Parquet writer for {self.path} is closed")

    def __enter__(self) -> "ParquetDatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a weightgraph dataset (its ``graph.json``)."""
    meta = Path(path) / "graph.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format") == DATASET_FORMAT
    except (OSError, ValueError):
        return False


def check_target(path: str | os.PathLike) -> None:
    """Refuse a target that is neither absent, an empty directory, nor a dataset."""
    path = Path(path)
    if path.exists() and not is_dataset(path) and (not path.is_dir() or any(path.iterdir())):
        raise DatasetExistsError(f"{path} exists and is not a weightgraph dataset: "
                                 "choose another directory or remove it")
    if not path.parent.is_dir():
        raise WeightgraphError(f"no directory {path.parent} to write {path.name} into")


def _remove_abandoned(path: Path) -> None:
    """Delete the temporary directories that killed exports to ``path`` left (their process
    is gone); a running export's own is kept."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace_dir(new: Path, path: Path) -> None:
    """Move ``new`` to ``path``; an old dataset there is moved aside first, deleted after."""
    old = None
    if path.exists():
        check_target(path)
        old = path.parent / f".{path.name}.{secrets.token_hex(4)}.old"
        os.rename(path, old)
    os.rename(new, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_parquet(graph, path: str | os.PathLike, *, batch_size: int = 1 << 20,
                  tile_edges: int = EDGE_TILE, progress: bool = True) -> dict:
    """Stream a :class:`~loader.graph.NeuronGraph` to a Parquet dataset directory.

    Parameters
    ----------
    graph : NeuronGraph
        The graph, or a selection of it (``layers=`` / ``cone=``).
    path : str or os.PathLike
        The dataset directory (created; an existing dataset there is replaced).
    batch_size : int
        Edges per batch and row group.
    tile_edges : int
        Edges per tile of output positions in the weight-major order (see the module notes).
    progress : bool
        Show a progress bar over the edges on stderr.

    Returns
    -------
    dict
        ``path``, ``nodes``, ``edges``, ``bytes`` (on disk), ``seconds``, ``edges_per_s``,
        ``bytes_per_edge``.

    Examples
    --------
    >>> g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3))
    >>> stats = write_parquet(g, "vgg16_32.parquet")
    >>> stats["edges"] == g.n_edges
    True
    """
    from ..terminal import progress as progress_bar

    start = time.perf_counter()
    n_nodes, n_edges = graph.n_nodes, graph.n_edges
    with ParquetDatasetWriter(path, graph.graph_data(), edge_order="weight-major") as writer, \
            progress_bar(n_edges, f"Parquet {Path(path).name}", enabled=progress,
                         unit="edge") as bar:
        for nodes in graph.iter_node_batches(batch_size):
            writer.write_nodes(nodes)
        for edges in graph.iter_edge_batches(batch_size, by_weight=tile_edges):
            writer.write_edges(edges)
            bar.update(len(edges))
        if (writer.nodes_written, writer.edges_written) != (n_nodes, n_edges):
            raise WeightgraphError(
                f"{graph.name}: streamed {writer.nodes_written:,} nodes and "
                f"{writer.edges_written:,} edges, but the graph counts {n_nodes:,} and "
                f"{n_edges:,}; nothing was written to {path}")
    seconds = time.perf_counter() - start
    size = dataset_bytes(path)
    return {"path": str(path), "nodes": n_nodes, "edges": n_edges, "bytes": size,
            "seconds": seconds, "edges_per_s": n_edges / seconds if seconds > 0 else float("inf"),
            "bytes_per_edge": size / n_edges if n_edges else 0.0}


def dataset_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of every file under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
