"""Streaming GraphML writer: node and edge batches to ``.graphml`` / ``.graphml.gz`` text.

Speed is the point of this module (VGG16 at 224x224 has 15e9 edges; ``nx.write_graphml``
writes ~110k edges/s). A batch is turned into text without a Python loop over its elements:

* integers become ASCII with digit arithmetic on whole arrays (4 digits per table lookup);
* a weight's text is ``repr`` of its float64 value, the only per-value Python work, done for the
  *distinct* values of a batch and cached across batches by bit pattern, because a conv kernel
  value is reused at every output position and every max-pooling edge is 1.0;
* each element is one fixed-width ``uint8`` row of constant tags and those fields, 0-padded;
  removing the pad bytes with one boolean mask gives the finished text of the whole batch,
  handed to one ``write``;
* writing (and gzip compression, on all cores) runs on background threads while the next batch
  is formatted.

Measured by ``bench/bench_graphml.py`` on the 2-core development machine: about 6-7M edges/s
for conv layers (~60x ``nx.write_graphml``). A weight value seen for the first time costs
~0.4 us (``repr``), so a layer whose weights are all distinct (Dense) writes ~2.5M edges/s.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from ..batches import EdgeBatch, NodeBatch

__all__ = ["GraphMLWriter", "write_graphml", "graph_attributes"]

# One table of the keys we declare: (id, for, attr.name, attr.type). Short ids like NetworkX's,
# because the key id is repeated in every <data> element (one per edge).
_KEYS = (
    ("d0", "node", "layer", "string"),
    ("d1", "node", "layer_index", "int"),
    ("d2", "node", "index", "long"),
    ("d3", "node", "op", "string"),
    ("d4", "node", "bias", "double"),
    ("d5", "node", "activation", "string"),
    ("d6", "edge", "weight", "double"),
    ("d7", "graph", "name", "string"),
    ("d8", "graph", "layers", "string"),
)

# gzip level 1: on GraphML text it compresses ~4.1x at ~240 MB/s per core, where level 3 gives
# 4.3x at 140 MB/s and level 6 4.6x at 70 MB/s (measured on 90-byte edge lines). Compression is
# the slowest stage of a .gz export, so the few percent of size are not worth 2-3x the time.
GZIP_LEVEL = 1
# Each chunk becomes an independent gzip member (RFC 1952 allows concatenated members; gzip,
# zcat, zlib's gzread and Python read them as one stream), so all cores can compress at once.
_GZIP_CHUNK = 4 << 20
# Distinct float values whose text stays cached: 4M entries (~130 MB) hold the largest kernels
# of VGG16/ResNet (3x3x512x512 = 2.4M weights).
_FLOAT_CACHE_ENTRIES = 1 << 22
# Longest repr of a float64: sign, 17 digits, point, "e-308".
_FLOAT_TEXT_WIDTH = 24

_DIGITS4 = np.frombuffer(b"".join(b"%04d" % i for i in range(10_000)), dtype=np.uint32)
_POW10 = 10 ** np.arange(1, 19, dtype=np.int64)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def graph_attributes(graph_data: dict) -> dict[str, str]:
    """The graph-level attributes every sink writes: ``name`` and ``layers`` (a JSON string).

    Parameters
    ----------
    graph_data : dict
        ``NeuronGraph.graph_data()``: at least ``name`` and ``layers``.

    Returns
    -------
    dict
        ``{"name": str, "layers": str}``, the same strings in GraphML, NetworkX and Neo4j.

    Examples
    --------
    >>> attrs = graph_attributes({"name": "m", "layers": [{"name": "input", "index": 0}]})
    >>> attrs["layers"]
    '[{"name":"input","index":0}]'
    """
    layers = json.dumps(graph_data.get("layers", []), separators=(",", ":"),
                        default=_json_scalar)
    return {"name": str(graph_data["name"]), "layers": layers}


def _json_scalar(value):
    # Layer tables may carry numpy integers or tuples of them (shapes).
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to the layers JSON")


def _xml_text(value: str) -> bytes:
    if _XML_INVALID.search(value):
        raise ValueError(f"{value!r} holds a character XML 1.0 cannot represent")
    # \r would come back as \n (XML end-of-line normalisation) unless written as a reference.
    return escape(value).replace("\r", "&#13;").encode("utf-8")


def _decimal_columns(values: np.ndarray) -> np.ndarray:
    """ASCII decimal of non-negative integers: an (n, width) uint8 array, right-aligned, 0-padded.

    Four digits per lookup in a 10,000-entry table of 4-byte strings, so an 8-digit id costs
    two integer divisions and two gathers (~5 ms per million values).
    """
    x = np.asarray(values)
    if x.dtype.kind not in "iu":
        x = x.astype(np.int64)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 1), dtype=np.uint8)
    lo, hi = int(x.min()), int(x.max())
    if lo < 0:
        raise ValueError(f"negative id or index {lo} cannot be written")
    width = len(str(hi))
    chunks = -(-width // 4)
    quads = np.empty((n, chunks), dtype=np.uint32)
    rest = x.astype(np.int64, copy=False)
    for c in range(chunks - 1, -1, -1):
        quotient = rest // 10_000
        quads[:, c] = _DIGITS4[rest - quotient * 10_000]
        rest = quotient
    cols = quads.view(np.uint8)[:, chunks * 4 - width:]
    if len(str(lo)) != width:
        # Mixed lengths: blank each value's leading zeros (multiplying keeps it branch-free).
        ndigits = 1 + np.searchsorted(_POW10, x, side="right")
        keep = np.arange(width) >= (width - ndigits)[:, None]
        cols = cols * keep
    return cols


class _FloatText:
    """The exact text of float values: ``repr`` of the float64 value, as 0-padded uint8 rows.

    ``float(text) == float(value)`` for every value, so any reader parsing a double gets the
    value back bit for bit. ``repr`` (~0.4 us per value here) is paid once per distinct bit
    pattern while the pattern stays in the cache.
    """

    def __init__(self, max_entries: int = _FLOAT_CACHE_ENTRIES):
        self._max_entries = max_entries
        # Per float dtype: sorted bit patterns and their texts (1-D "S24" arrays: gathering
        # whole fixed-size items is ~30x faster than fancy-indexing rows of a 2-D uint8 array).
        self._caches: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}

    def columns(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values)
        if v.dtype not in (np.float32, np.float64):
            v = v.astype(np.float64)
        v = np.ascontiguousarray(v)
        bits = v.view(np.uint32 if v.dtype == np.float32 else np.uint64)
        keys, inverse = np.unique(bits, return_inverse=True)
        text = self._lookup(v.dtype, keys)
        return _gather_rows(text, inverse)

    def _lookup(self, dtype: np.dtype, keys: np.ndarray) -> np.ndarray:
        empty = (np.empty(0, keys.dtype), np.empty(0, f"S{_FLOAT_TEXT_WIDTH}"))
        cached_keys, cached_text = self._caches.get(dtype, empty)
        pos = np.searchsorted(cached_keys, keys)
        hit = np.zeros(keys.shape[0], dtype=bool)
        inside = pos < cached_keys.shape[0]
        hit[inside] = cached_keys[pos[inside]] == keys[inside]
        if hit.all():
            return cached_text.take(pos)
        text = np.empty(keys.shape[0], dtype=cached_text.dtype)
        text[hit] = cached_text.take(pos[hit])
        miss = ~hit
        new_keys = keys[miss]
        new_text = _repr_texts(new_keys.view(dtype))
        text[miss] = new_text
        if cached_keys.shape[0] + new_keys.shape[0] <= self._max_entries:
            at = pos[miss]
            self._caches[dtype] = (np.insert(cached_keys, at, new_keys),
                                   np.insert(cached_text, at, new_text))
        else:
            # Full: start over from this batch, the likeliest to repeat (same layer).
            self._caches[dtype] = (keys, text)
        return text


def _repr_texts(values: np.ndarray) -> np.ndarray:
    floats = values.astype(np.float64).tolist()
    # One %-format call runs the repr loop in C: ~20% faster than a list comprehension.
    joined = (b"%r\0" * len(floats)) % tuple(floats)
    return np.array(joined.split(b"\0")[:-1], dtype=f"S{_FLOAT_TEXT_WIDTH}")


def _gather_rows(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` as (n, width) uint8 rows, width trimmed to the longest entry used."""
    raw = table.view(np.uint8).reshape(table.shape[0], table.itemsize)
    width = max(1, int(np.count_nonzero(raw, axis=1).max()))
    if width < table.itemsize:
        table = np.ascontiguousarray(raw[:, :width]).view(f"S{width}").ravel()
    return table.take(index.ravel()).view(np.uint8).reshape(-1, width)


def _string_columns(values: np.ndarray) -> np.ndarray:
    """Escaped UTF-8 text of per-element strings, as 0-padded uint8 rows (distinct values once)."""
    uniq, inverse = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    encoded = [_xml_text(s) for s in uniq.tolist()]
    table = np.array(encoded, dtype=f"S{max(1, max(len(e) for e in encoded))}")
    return _gather_rows(table, inverse)


def _assemble(parts: list, n: int) -> np.ndarray:
    """Rows made of constant byte strings and (n, w) uint8 fields, pad bytes removed.

    The text never holds a 0 byte, so ``rows[rows != 0]`` drops exactly the padding and leaves
    the rows concatenated in order: ~50 ms for a million 100-byte rows.
    """
    widths = [len(p) if isinstance(p, bytes) else p.shape[1] for p in parts]
    rows = np.empty((n, sum(widths)), dtype=np.uint8)
    col = 0
    for part, width in zip(parts, widths):
        if isinstance(part, bytes):
            rows[:, col:col + width] = np.frombuffer(part, dtype=np.uint8)
        else:
            rows[:, col:col + width] = part
        col += width
    return rows[rows != 0]


class _Output:
    """Ordered background output: optional gzip on a thread pool, writes on one thread.

    zlib and file writes release the GIL, so they overlap with the formatting of the next
    batch. The queue is bounded, so memory stays flat when the disk is the slowest stage.
    """

    _STOP = object()

    def __init__(self, file, gzip_level: int | None):
        self._file = file
        self._level = gzip_level
        self._error: BaseException | None = None
        self._discard = False
        if gzip_level is None:
            self._pool = None
            pending = 2
        else:
            workers = max(1, min(os.cpu_count() or 1, 16))
            self._pool = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="graphml-gzip")
            pending = 2 * workers
        self._queue: queue.Queue = queue.Queue(maxsize=pending)
        self._thread = threading.Thread(target=self._drain, name="graphml-write", daemon=True)
        self._thread.start()

    def write(self, data) -> None:
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B")
        if self._pool is None:
            self._queue.put(view)
            return
        for start in range(0, len(view), _GZIP_CHUNK):
            chunk = view[start:start + _GZIP_CHUNK]
            self._queue.put(self._pool.submit(zlib.compress, chunk, self._level, 31))

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is not None or self._discard:
                continue
            try:
                self._file.write(item.result() if isinstance(item, Future) else item)
            except BaseException as exc:  # re-raised in the producer's thread
                self._error = exc

    def close(self, *, discard: bool = False) -> None:
        self._discard = discard
        self._queue.put(self._STOP)
        self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=discard)
        if self._error is not None and not discard:
            raise self._error


class GraphMLWriter:
    """Write a neuron graph to GraphML, batch by batch, in bounded memory.

    The file follows the neuron-graph contract (v1): node ids are the neuron ids in decimal;
    node keys ``layer``, ``layer_index``, ``index``, ``op``, ``bias``, ``activation``; edge key
    ``weight``; graph keys ``name`` and ``layers`` (JSON). Floats are written as the ``repr``
    of their float64 value, so readers get them back exactly. A path ending in ``.gz`` is
    gzip-compressed.

    The text goes to a hidden temporary file next to ``path`` and is renamed to ``path`` by
    :meth:`close`; on an error (or :meth:`discard`) the temporary file is deleted, so ``path``
    never holds a half-written graph.

    Parameters
    ----------
    path : str or os.PathLike
        Target file, ``.graphml`` or ``.graphml.gz``. An existing file is replaced on close.
    graph_data : dict
        ``NeuronGraph.graph_data()``: the model ``name`` and its ``layers`` table.

    Examples
    --------
    >>> with GraphMLWriter("vgg16.graphml", g.graph_data()) as out:
    ...     for batch in g.iter_node_batches(): out.write_nodes(batch)
    ...     for batch in g.iter_edge_batches(): out.write_edges(batch)
    """

    def __init__(self, path: str | os.PathLike, graph_data: dict):
        self.path = Path(path)
        self.nodes_written = 0
        self.edges_written = 0
        self._floats = _FloatText()
        self._tmp = self.path.with_name(
            f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        self._file = open(self._tmp, "xb")
        self._closed = False
        try:
            level = GZIP_LEVEL if self.path.name.endswith(".gz") else None
            self._out = _Output(self._file, level)
            self._out.write(_header(graph_attributes(graph_data)))
        except BaseException:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            raise

    def write(self, batch: NodeBatch | EdgeBatch) -> None:
        """Write a :class:`NodeBatch` or an :class:`EdgeBatch`."""
        if isinstance(batch, EdgeBatch):
            self.write_edges(batch)
        else:
            self.write_nodes(batch)

    def write_nodes(self, batch: NodeBatch) -> None:
        """Append one ``<node>`` element per neuron of ``batch``."""
        n = len(batch)
        if n == 0:
            return
        self._check_open()
        if isinstance(batch.activation, str):
            activation = _xml_text(batch.activation)
        else:
            activation = _string_columns(batch.activation)
        bias = np.broadcast_to(np.asarray(batch.bias), (n,))
        parts = [
            b'<node id="', _decimal_columns(batch.id),
            b'"><data key="d0">' + _xml_text(batch.layer)
            + b'</data><data key="d1">' + str(int(batch.layer_index)).encode()
            + b'</data><data key="d2">', _decimal_columns(batch.index),
            b'</data><data key="d3">' + _xml_text(batch.op)
            + b'</data><data key="d4">', self._floats.columns(bias),
            b'</data><data key="d5">', activation,
            b"</data></node>\n",
        ]
        self._out.write(_assemble(parts, n))
        self.nodes_written += n

    def write_edges(self, batch: EdgeBatch) -> None:
        """Append one ``<edge>`` element per edge of ``batch``."""
        n = len(batch)
        if n == 0:
            return
        self._check_open()
        parts = [
            b'<edge source="', _decimal_columns(batch.src),
            b'" target="', _decimal_columns(batch.dst),
            b'"><data key="d6">', self._floats.columns(batch.weight),
            b"</data></edge>\n",
        ]
        self._out.write(_assemble(parts, n))
        self.edges_written += n

    def close(self) -> Path:
        """Finish the document and move it to ``path``. Returns ``path``."""
        if self._closed:
            return self.path
        try:
            self._out.write(b"</graph>\n</graphml>\n")
            self._out.close()
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise
        self._closed = True
        return self.path

    def discard(self) -> None:
        """Abandon the file: stop writing and delete the temporary file; ``path`` is untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._out.close(discard=True)
        finally:
            self._file.close()
            self._tmp.unlink(missing_ok=True)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"GraphML writer for {self.path} is closed")

    def __enter__(self) -> "GraphMLWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def _header(attrs: dict[str, str]) -> bytes:
    lines = [
        "<?xml version='1.0' encoding='utf-8'?>",
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ]
    lines += [f'  <key id="{key}" for="{where}" attr.name="{name}" attr.type="{kind}"/>'
              for key, where, name, kind in _KEYS]
    lines.append('  <graph edgedefault="directed">')
    head = "\n".join(lines).encode() + b"\n"
    for key, where, name, _ in _KEYS:
        if where == "graph":
            head += b'    <data key="%s">%s</data>\n' % (key.encode(), _xml_text(attrs[name]))
    return head


def write_graphml(graph, path: str | os.PathLike, *, batch_size: int = 1 << 20,
                  progress: bool = True) -> dict:
    """Stream a :class:`~loader.graph.NeuronGraph` to a GraphML file, nodes then edges.

    Parameters
    ----------
    graph : NeuronGraph
        The graph, or a selection of it (``layers=`` / ``cone=``).
    path : str or os.PathLike
        ``.graphml`` or ``.graphml.gz`` (gzip level 1, compressed on all cores).
    batch_size : int
        Edges per batch: 1M keeps ~250 MB of text buffers in flight.
    progress : bool
        Show a progress bar over the edges on stderr.

    Returns
    -------
    dict
        ``path``, ``nodes``, ``edges``, ``bytes`` (file size), ``seconds``, ``edges_per_s``.

    Examples
    --------
    >>> g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3))
    >>> stats = write_graphml(g, "vgg16.graphml.gz")
    >>> stats["edges"] == g.n_edges
    True
    """
    from tqdm import tqdm

    from ..errors import WeightgraphError

    start = time.perf_counter()
    n_nodes, n_edges = graph.n_nodes, graph.n_edges
    with GraphMLWriter(path, graph.graph_data()) as writer, tqdm(
            total=n_edges, unit="edge", unit_scale=True, disable=not progress,
            desc=f"GraphML {Path(path).name}") as bar:
        for nodes in graph.iter_node_batches(batch_size):
            writer.write_nodes(nodes)
        # The writer is done with a batch when write_edges returns, so buffers may be reused.
        for edges in graph.iter_edge_batches(batch_size, reuse_buffers=True):
            writer.write_edges(edges)
            bar.update(len(edges))
        if (writer.nodes_written, writer.edges_written) != (n_nodes, n_edges):
            raise WeightgraphError(
                f"{graph.name}: streamed {writer.nodes_written:,} nodes and "
                f"{writer.edges_written:,} edges, but the graph counts {n_nodes:,} and "
                f"{n_edges:,}; nothing was written to {path}")
    seconds = time.perf_counter() - start
    return {"path": str(path), "nodes": n_nodes, "edges": n_edges,
            "bytes": os.path.getsize(path), "seconds": seconds,
            "edges_per_s": n_edges / seconds if seconds > 0 else float("inf")}
