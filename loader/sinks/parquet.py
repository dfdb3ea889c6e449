"""The neuron graph as a Parquet dataset: ``DIR/graph.json``, ``DIR/nodes/``, ``DIR/edges/``.

Layout (Hive-partitioned by the layer's position, so engines read one layer without the rest)::

    DIR/graph.json                                 name, selection, layers, counts, contract
    DIR/nodes/layer_index=K/part-0.parquet         id, layer, index, op, bias, activation
    DIR/edges/layer_index=K/part-TTTTT.parquet     src, dst, weight   (edges entering layer K,
                                                   one file per tile; a stream: part-0)

``layer_index`` is not stored in the files: it is the partition key, read from the path by
pyarrow (``partitioning="hive"``), DuckDB (``hive_partitioning=true``), Spark and Polars.
Widths: ``id``, ``index``, ``src``, ``dst`` int64; ``layer_index`` int32; ``bias`` and
``weight`` float32 (the values the graph is made of, bit for bit); strings UTF-8. Edge columns
are required (never null).

Measured by ``bench/bench_parquet.py`` on the 2-core VM (pyarrow 26), 2026-11-28, quiet (load
average 1.4-1.9): all 14,975,945,472 edges of VGG16 at 224x224, ``fast``, 2 workers, in 1.7 min:
**146.4M edges/s** (goal 100M), **4.14 GB, 0.276 bytes per edge** (goal 0.5), 70.0M edges per
CPU-second. Then DuckDB over that dataset: edges and weight sum per layer over all 15e9 edges
15.7 s (goal 60), the in-degree histogram of block5_conv1 2.3 s, the 10 strongest edges into
one block1_conv2 neuron 0.12 s (goal 1 s; row groups pruned on ``dst``). Earlier the same day,
the VM at load 11-17 from four other engineers' work: 21.2 min (11.8M edges/s wall, 48.7M per
CPU-second; the previous writer, delta + zstd in one process: 32M per CPU-second, 2.99 GB),
DuckDB 94 s / 32 s / 0.89 s.

In that loaded run, the writer alone on the first 8M edges of block1_conv2, block3_conv2, block5_conv1
and fc1 (the same batches for every variant; M edges per CPU-second, bytes/edge; fc1's
distinct weights dominate the sizes of the sample):

=============================================  =========  ==========
variant                                        M/CPU-s    bytes/edge
=============================================  =========  ==========
``pq.write_table`` defaults (the baseline)     27.5       3.56
same, the enumerator's natural order           22.8       3.49
**fast** (default)                             76.7       1.15
**compact**                                    49.0       1.04
compact with statistics on every column        46.1       1.04
compact with nullable columns                  41.3       1.04
fast with zstd level 1 on the ids too          63.9       1.07
fast with BYTE_STREAM_SPLIT weights            73.9       1.15
compact with lz4 ids                           54.7       1.07
compact with RLE_DICTIONARY weights            28.8       1.19
compact with 8 MiB data pages                  45.8       1.04
fast with snappy ids (quiet run; fast: 85.5)   79.8       1.81
our GraphML writer                             1.5        91.3
=============================================  =========  ==========

and the weight-major enumeration alone 88.6M edges per CPU-second: at 48.7M per CPU-second
end to end, the enumeration was then about half of the export's time. Since then it writes
into preallocated (for shards: reused) arrays, 300-400M edges per CPU-second alone on three
VGG16 layers (180-290 before); end to end (VGG16 at 112x112, block1_conv2..block3_conv1, 1.36e9
edges, 2 workers, fast) 55.6 against 59.2M edges per CPU-second before: no change measurable
at load 6-24. Per layer (8M edges,
load ~7): fast 0.20 / 0.43 bytes per edge on block1_conv2 / block5_conv1, compact 0.063 / 0.29.
Reading (VGG16 at 112x112, block1_conv2 alone, 457M edges, 2 workers, load 11): fast 0.216
bytes/edge at 13.8M edges/s wall, compact 0.078 at 9.9M; DuckDB count + weight sum 0.84-0.89 s
CPU for either, ``sum(src), sum(dst)`` 3.1 s CPU (fast) against 2.3-2.5 s (compact).

Edge order and encodings, chosen by measurement:

* Order: **weight-major within tiles of output positions**
  (:meth:`loader.ops.windowed.WindowedOp.iter_edges_by_weight`): a kernel entry's edges are
  consecutive, so ``weight`` is constant over runs of hundreds to thousands of edges and
  ``src``/``dst`` step by a constant along each run. The enumerator's own order (pair by pair,
  all channels) repeats a whole kernel slab per position instead: ``pq.write_table`` defaults
  took 1.84 bytes/edge on ``block1_conv2`` and 3.58 on ``block5_conv1`` in that order.
* Ids (``fast``): BYTE_STREAM_SPLIT + lz4 (a progression's high bytes are constant streams;
  snappy is as fast but took 0.93 bytes/edge on the whole VGG16 against lz4's 0.28);
  (``compact``): DELTA_BINARY_PACKED + zstd, 0.04 bytes/value but pyarrow's delta encoder
  runs at ~100M values/s, the slowest step of the old writer.
* ``weight``: PLAIN + zstd: 0.075 bytes/value at 220M values/s; dictionary (RLE) is slower and
  needs a dictionary page as large as a layer's kernel (else it falls back to PLAIN);
  BYTE_STREAM_SPLIT saves nothing.
* Statistics (min/max) on ``src`` and ``dst`` only, so a filter on ``dst`` skips the row groups
  of other tiles; on ``weight`` they cost ~30% of the writer's time and prune nothing asked.
* Row groups: one enumerator batch (about 1M edges); files: one per tile (64M edges), so
  ``workers`` processes write tiles at once with the same output as one process.
* Not reached with pyarrow's encoders: 100M edges/s on this machine's two shared cores. The
  next step would be writing the pages of a run directly from its (first id, step, length,
  weight) without materialising the edges (hand-written Parquet pages), not tried.

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
from ..graph.coerce import as_graph
from ..processes import process_alive
from .base import BatchSink
from .graphml import _json_scalar

__all__ = ["ParquetDatasetWriter", "write_parquet", "check_target", "is_dataset",
           "dataset_bytes", "edge_shards", "write_edge_shard", "DATASET_FORMAT",
           "DATASET_VERSION", "EDGE_TILE", "EDGE_ENCODINGS", "DEFAULT_ENCODING"]

DATASET_FORMAT = "weightgraph-parquet"
DATASET_VERSION = 1
CONTRACT_VERSION = 2
# Output positions per tile of the weight-major order, in edges: small enough that a filter on
# one neuron reads few row groups of a big layer, large enough that runs stay long (a tile is
# never less than one position; VGG16 block1_conv2 has 36,864 edges per position).
EDGE_TILE = 64 << 20


class DatasetExistsError(WeightgraphError):
    """The target directory exists and is not a weightgraph dataset."""


def _schemas(extra: dict | None = None):
    """(node schema, edge schema); ``extra`` adds a graph's further attributes (a trace's,
    ``{"node": [(name, GraphML type)], "edge": [...]}``) as nullable columns after the
    contract's: null where a row lacks one (``chosen_rate`` off max/min layers)."""
    import pyarrow as pa

    extra = extra or {}
    types = {"double": pa.float64(), "boolean": pa.bool_(), "long": pa.int64(),
             "int": pa.int64()}  # GraphML attribute type -> column type
    nodes = pa.schema([("id", pa.int64()), ("layer", pa.string()), ("index", pa.int64()),
                       ("op", pa.string()), ("bias", pa.float32()),
                       ("activation", pa.string())]
                      + [(n, types[t]) for n, t in extra.get("node", [])])
    # Required (non-nullable) columns: an edge always has all three, and the writer then
    # skips definition levels (+10% edges per CPU-second, measured).
    edges = pa.schema([pa.field("src", pa.int64(), nullable=False),
                       pa.field("dst", pa.int64(), nullable=False),
                       pa.field("weight", pa.float32(), nullable=False)]
                      + [pa.field(n, types[t]) for n, t in extra.get("edge", [])])
    return nodes, edges


# Column encodings of the edges, by name (see the module notes for the measurements). Both keep
# min/max statistics on src and dst (row-group pruning for questions about one neuron) and
# none on weight (they cost ~30% of the writer's time and no query here prunes on weight).
EDGE_ENCODINGS = {
    # Ids split into byte streams (a progression's high bytes are constant) and lz4, weights
    # PLAIN + zstd level 1: the fastest measured that keeps the whole VGG16 under 0.5 B/edge.
    # Not snappy: as fast, but 0.93 bytes/edge on the whole VGG16 (lz4 0.28). Neo4j's
    # importer cannot read lz4: `load DIR --mode bulk` rewrites such files with zstd first.
    "fast": dict(use_dictionary=False, write_statistics=["src", "dst"],
                 compression={"src": "lz4", "dst": "lz4", "weight": "zstd"},
                 compression_level={"weight": 1},
                 column_encoding={"src": "BYTE_STREAM_SPLIT", "dst": "BYTE_STREAM_SPLIT",
                                  "weight": "PLAIN"}),
    # Delta-encoded ids + zstd: about half the bytes, about 60% of the speed.
    "compact": dict(use_dictionary=False, write_statistics=["src", "dst"], compression="zstd",
                    column_encoding={"src": "DELTA_BINARY_PACKED",
                                     "dst": "DELTA_BINARY_PACKED", "weight": "PLAIN"}),
}
DEFAULT_ENCODING = "fast"
_NODE_OPTIONS = dict(compression="zstd")


def _edge_options(encoding: str) -> dict:
    try:
        return EDGE_ENCODINGS[encoding]
    except KeyError:
        raise WeightgraphError(f"unknown Parquet edge encoding {encoding!r}: choose one of "
                               f"{', '.join(EDGE_ENCODINGS)}") from None


def _extra_columns(schema, base: int, values: dict, n: int) -> list:
    """The columns after the contract's ``base`` ones: a batch's ``extra`` values, or nulls."""
    import pyarrow as pa

    out = []
    for f in list(schema)[base:]:
        v = values.get(f.name)
        out.append(pa.nulls(n, f.type) if v is None else pa.array(np.asarray(v), f.type))
    return out


def _node_table(batch: NodeBatch, schema=None):
    import pyarrow as pa

    n = len(batch)
    schema = schema or _schemas()[0]
    table = pa.table([
        pa.array(batch.id, pa.int64()),
        pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [batch.layer]),
        pa.array(batch.index, pa.int64()),
        pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [batch.op]),
        pa.array(np.broadcast_to(np.asarray(batch.bias, np.float32), (n,))),
        pa.array(batch.activations().astype(str), pa.string()),
    ] + _extra_columns(schema, 6, batch.extra, n), names=schema.names)
    return table.cast(schema)


def _edge_table(batch: EdgeBatch, schema=None):
    import pyarrow as pa

    schema = schema or _schemas()[1]
    # Zero-copy views of the enumerator's arrays (a pulled graph's float64 weights are float32
    # values widened exactly, so narrowing them back is exact).
    return pa.Table.from_arrays([pa.array(np.asarray(batch.src, np.int64)),
                                 pa.array(np.asarray(batch.dst, np.int64)),
                                 pa.array(np.asarray(batch.weight, np.float32))]
                                + _extra_columns(schema, 3, batch.extra, len(batch)),
                                schema=schema)


def write_part(path: str | os.PathLike, kind: str, batches,
               encoding: str = DEFAULT_ENCODING) -> int:
    """Write node or edge batches (``kind`` ``nodes`` / ``edges``) to one Parquet file of a
    dataset, with the dataset's schema and encodings; returns the rows written. The parts of a
    parallel or distributed export (``loader.analysis.spark``) are written with it."""
    import pyarrow.parquet as pq

    schema, options = ((_schemas()[0], _NODE_OPTIONS) if kind == "nodes"
                       else (_schemas()[1], _edge_options(encoding)))
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

    Batches may come in any order of layers (a pull from Neo4j interleaves them): each layer
    and kind has one file, open until :meth:`close`, and every batch is one row group of it.
    An edge batch whose ``layer_index`` is unknown (negative) is split by the layer of its
    ``dst``, from the ``offset`` and ``neurons`` of ``graph_data["layers"]``.
    Everything goes to a hidden temporary directory next to ``path``, renamed to ``path`` by
    :meth:`close`; on an error, a kill, or :meth:`discard`, ``path`` is untouched (a killed
    process leaves only the hidden ``.NAME.*.tmp`` directory). An existing dataset at ``path``
    is replaced on close; any other existing directory is refused.

    Parameters
    ----------
    path : str or os.PathLike
        The dataset directory.
    graph_data : dict
        ``NeuronGraph.graph_data()``: the model ``name``, ``selection`` and ``layers``.
    edge_order : str
        Recorded in ``graph.json``.
    encoding : str
        A key of :data:`EDGE_ENCODINGS`.
    extra_attributes : dict, optional
        ``{"node": [(name, type), ...], "edge": [...]}`` (GraphML types ``double``,
        ``boolean``, ``long``): further nullable columns that batches carry in ``extra`` (a
        trace's or an aggregated trace's); listed in ``graph.json`` as ``attributes``.

    Examples
    --------
    >>> with ParquetDatasetWriter("vgg16.parquet", g.graph_data()) as out:
    ...     for batch in g.iter_node_batches(): out.write_nodes(batch)
    ...     for batch in g.iter_edge_batches(by_weight=EDGE_TILE): out.write_edges(batch)
    """

    def __init__(self, path: str | os.PathLike, graph_data: dict, *, edge_order: str = "natural",
                 encoding: str = DEFAULT_ENCODING, extra_attributes: dict | None = None):
        self.path = Path(path)
        check_target(self.path)
        _edge_options(encoding)
        self.extra = {k: list(v) for k, v in (extra_attributes or {}).items() if v}
        self.schemas = _schemas(self.extra)
        self.graph_data = dict(graph_data)
        if self.extra:
            self.graph_data["attributes"] = {k: [n for n, _ in v] for k, v in self.extra.items()}
        self.edge_order = edge_order
        self.encoding = encoding
        self.nodes_written = 0
        self.edges_written = 0
        self.layer_counts: dict[int, list[int]] = {}
        self._tmp = temporary_dir(self.path)
        self._open: dict[tuple[str, int], object] = {}  # (kind, layer_index) -> ParquetWriter
        self._layer_starts = None  # sorted (offset, layer_index) for batches without a layer
        self._closed = False

    # ------------------------------------------------------------------ writing
    def part_path(self, kind: str, layer_index: int, part: str) -> Path:
        """A new file ``kind/layer_index=K/part-PART.parquet`` in the temporary directory,
        for parts written elsewhere (:func:`write_edge_shard`); count them with
        :meth:`add_rows`."""
        folder = self._tmp / kind / f"layer_index={int(layer_index)}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"part-{part}.parquet"

    def add_rows(self, kind: str, layer_index: int, rows: int) -> None:
        """Count rows that a part written at :meth:`part_path` holds."""
        self.layer_counts.setdefault(int(layer_index), [0, 0])[1 if kind == "edges" else 0] += rows
        if kind == "edges":
            self.edges_written += rows
        else:
            self.nodes_written += rows

    def _writer(self, kind: str, layer_index: int):
        import pyarrow.parquet as pq

        key = (kind, int(layer_index))
        if key not in self._open:
            schema, options = ((self.schemas[0], _NODE_OPTIONS) if kind == "nodes"
                               else (self.schemas[1], _edge_options(self.encoding)))
            self._open[key] = pq.ParquetWriter(self.part_path(kind, layer_index, "0"), schema,
                                               **options)
        return self._open[key]

    def write_nodes(self, batch: NodeBatch) -> None:
        """Append the neurons of ``batch`` to its layer's node file."""
        if len(batch) == 0:
            return
        self._check_open()
        self._writer("nodes", batch.layer_index).write_table(_node_table(batch,
                                                                         self.schemas[0]))
        self.add_rows("nodes", batch.layer_index, len(batch))

    def write_edges(self, batch: EdgeBatch) -> None:
        """Append the edges of ``batch`` (one row group) to its layer's edge file."""
        if len(batch) == 0:
            return
        self._check_open()
        if batch.layer_index < 0:
            for part in self._split_by_layer(batch):
                self.write_edges(part)
            return
        self._writer("edges", batch.layer_index).write_table(_edge_table(batch,
                                                                         self.schemas[1]))
        self.add_rows("edges", batch.layer_index, len(batch))

    def _split_by_layer(self, batch: EdgeBatch):
        if self._layer_starts is None:
            rows = sorted((int(l["offset"]), int(l["index"]), int(l["neurons"]))
                          for l in self.graph_data["layers"] if l.get("offset") is not None)
            self._layer_starts = np.array([r[:2] for r in rows], dtype=np.int64).reshape(-1, 2)
        starts, indexes = self._layer_starts[:, 0], self._layer_starts[:, 1]
        owner = np.searchsorted(starts, batch.dst, side="right") - 1
        if (owner < 0).any():
            raise WeightgraphError(f"edge into neuron {int(batch.dst[owner < 0][0])}, which "
                                   "no layer of the graph holds")
        for o in np.unique(owner):
            sel = owner == o
            yield EdgeBatch(batch.src[sel], batch.dst[sel], batch.weight[sel], int(indexes[o]),
                            {k: np.asarray(v)[sel] for k, v in batch.extra.items()})

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
        while self._open:
            self._open.popitem()[1].close()

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
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


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


def edge_shards(graph, tile_edges: int = EDGE_TILE) -> list[tuple[int, int]]:
    """``(layer_index, tile)`` for every shard of a graph's edges in the weight-major order: a
    tile of a whole layer's output positions, or (a layer cut by a selection) the layer as
    tile 0. A shard's rows depend on the shard alone, so shards can be written by any process,
    in any order (:func:`write_parquet` with ``workers``, ``loader.analysis.spark``)."""
    return [(i, t) for i in sorted(graph.edge_masks)
            for t in (range(graph.entries[i].op.n_tiles(tile_edges))
                      if graph.edge_masks[i] is None else range(1))]


def write_edge_shard(graph, layer_index: int, tile: int, path: str | os.PathLike, *,
                     batch_size: int = 1 << 20, tile_edges: int = EDGE_TILE,
                     encoding: str = DEFAULT_ENCODING) -> int:
    """Write the edges of one shard (:func:`edge_shards`) to the Parquet file ``path``;
    returns the rows written."""
    if graph.edge_masks[layer_index] is None:
        op = graph.entries[layer_index].op
        # One buffer for every batch: each is encoded before the next one is made.
        batches = (EdgeBatch(s, d, w, layer_index) for s, d, w in
                   op.iter_edges_by_weight(batch_size, tile_edges, range(tile, tile + 1),
                                           reuse_buffers=True))
    else:
        batches = graph.iter_edge_batches(batch_size, layers=[layer_index], by_weight=tile_edges)
    return write_part(path, "edges", batches, encoding)


# The graph a forked worker of write_parquet enumerates (inherited, never pickled).
_FORK_GRAPH = None


def _shard_job(args) -> tuple[int, int]:
    layer_index, tile, path, options = args
    return layer_index, write_edge_shard(_FORK_GRAPH, layer_index, tile, path, **options)


def _die_with_parent() -> None:
    # A worker of a killed export must not keep writing into its temporary directory.
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_shards(graph, jobs: list, workers: int):
    """Yield ``(layer_index, rows)`` per job, from ``workers`` forked processes (or this one)."""
    global _FORK_GRAPH
    if workers <= 1 or len(jobs) <= 1:
        _FORK_GRAPH = graph
        try:
            yield from map(_shard_job, jobs)
        finally:
            _FORK_GRAPH = None
        return
    import multiprocessing

    _FORK_GRAPH = graph
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(workers, len(jobs)), initializer=_die_with_parent) as pool:
            yield from pool.imap_unordered(_shard_job, jobs)
    finally:
        _FORK_GRAPH = None


def write_parquet(graph, path: str | os.PathLike, *, batch_size: int = 1 << 20,
                  tile_edges: int = EDGE_TILE, encoding: str = DEFAULT_ENCODING,
                  workers: int = 1, progress: bool = True) -> dict:
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
        Edges per tile of output positions in the weight-major order (see the module notes);
        each tile is one file ``part-TTTTT.parquet`` of its layer.
    encoding : str
        ``fast`` (default) or ``compact``: see :data:`EDGE_ENCODINGS`.
    workers : int
        Processes writing tiles at once (forked from this one; Linux and macOS). The dataset's
        rows and files do not depend on it.
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
    >>> stats = write_parquet(g, "vgg16_32.parquet", workers=2)
    >>> stats["edges"] == g.n_edges
    True
    """
    from ..terminal import progress as progress_bar

    graph = as_graph(graph, "write_parquet", channel=False)
    start = time.perf_counter()
    n_nodes, n_edges = graph.n_nodes, graph.n_edges
    options = dict(batch_size=batch_size, tile_edges=tile_edges, encoding=encoding)
    extra = getattr(graph, "extra_attributes", None)
    with ParquetDatasetWriter(path, graph.graph_data(),
                              edge_order="natural" if extra else "weight-major",
                              encoding=encoding, extra_attributes=extra) as writer, \
            progress_bar(n_edges, f"Parquet {Path(path).name}", enabled=progress,
                         unit="edge") as bar:
        for nodes in graph.iter_node_batches(batch_size):
            writer.write_nodes(nodes)
        if extra:  # a trace's graph: its batches carry the attributes, in one stream
            for edges in graph.iter_edge_batches(batch_size):
                writer.write_edges(edges)
                bar.update(len(edges))
        else:
            jobs = [(i, t, writer.part_path("edges", i, f"{t:05d}"), options)
                    for i, t in edge_shards(graph, tile_edges)]
            for layer_index, rows in _run_shards(graph, jobs, workers):
                writer.add_rows("edges", layer_index, rows)
                bar.update(rows)
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
