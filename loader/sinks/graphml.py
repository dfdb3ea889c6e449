"""Streaming GraphML writer: node and edge batches to ``.graphml`` / ``.graphml.gz`` text.

Speed is the point of this module (VGG16 at 224x224 has 15e9 edges; ``nx.write_graphml``
writes ~110k edges/s): the text of a whole batch is built by the vectorised machinery of
:mod:`loader.sinks.text`, shared with the neo4j-admin CSV writer.

Measured by ``bench/bench_graphml.py`` (VGG16 layer ranges, ~4M edges, median of 3) on the
shared 2-core development VM, against ``nx.write_graphml`` of the same graph in the same run
(44-70k edges/s there): 3.3-3.7M edges/s to disk when kernel values repeat across positions,
63-76x; 1.5-1.8M edges/s when nearly every weight is distinct (a 2x2 feature map, or Dense),
22-31x, because each new value costs a ~0.35 us ``repr``. Formatting alone runs at 6-7M
edges/s; the rest is copying ~90 bytes per edge into the page cache.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from ..graph.batches import EdgeBatch, NodeBatch
from ..graph.coerce import as_graph
from .base import BatchSink
from .text import (GZIP_LEVEL, Encoded, FloatText, Output, TextBuilder, decimal_columns,
                   encode_strings, text_slices)

__all__ = ["GraphMLWriter", "ChannelGraphMLWriter", "write_graphml", "graph_attributes"]

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

# The channel graph's keys (loader.graph.channels): other names, so a reader can tell.
_CHANNEL_KEYS = (
    ("d0", "node", "layer", "string"),
    ("d1", "node", "layer_index", "int"),
    ("d2", "node", "channel", "long"),
    ("d3", "node", "op", "string"),
    ("d4", "node", "bias", "double"),
    ("d5", "node", "activation", "string"),
    ("d9", "node", "neurons", "long"),
    ("d6", "edge", "weight", "double"),
    ("e0", "edge", "edges", "long"),
    ("e1", "edge", "total", "double"),
    ("e2", "edge", "kernel", "string"),
    ("d7", "graph", "name", "string"),
    ("d8", "graph", "layers", "string"),
    ("g0", "graph", "granularity", "string"),
)

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def graph_attributes(graph_data: dict) -> dict[str, str]:
    """The graph-level attributes every sink writes: ``name`` and ``layers`` (a JSON string),
    and ``trace`` (a JSON string: target, input, preprocessing) for a trace's graph.

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
    attrs = {"name": str(graph_data["name"]), "layers": layers}
    if graph_data.get("granularity", "neuron") != "neuron":
        attrs["granularity"] = str(graph_data["granularity"])
    if graph_data.get("trace") is not None:
        attrs["trace"] = json.dumps(graph_data["trace"], separators=(",", ":"),
                                    default=_json_scalar)
    return attrs


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


def _encode_strings(values: np.ndarray) -> Encoded:
    return encode_strings(values, _xml_text)


class GraphMLWriter(BatchSink):
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
    extra_attributes : dict, optional
        ``{"node": [(name, type), ...], "edge": [...]}``: further attributes (GraphML types
        ``double``, ``boolean``, ...) that batches carry in ``extra`` (a trace's ``value``,
        ``active``, ``contribution``, ``chosen``). An element whose batch lacks one leaves it
        out (``chosen`` is only on edges into max/min neurons).

    Examples
    --------
    >>> with GraphMLWriter("vgg16.graphml", g.graph_data()) as out:
    ...     for batch in g.iter_node_batches(): out.write_nodes(batch)
    ...     for batch in g.iter_edge_batches(): out.write_edges(batch)
    """

    keys = _KEYS

    def __init__(self, path: str | os.PathLike, graph_data: dict,
                 extra_attributes: dict | None = None):
        self.path = Path(path)
        extra = extra_attributes or {}
        self._extra = {where: [(f"d{len(self.keys) + k}", name, kind) for k, (name, kind) in
                               enumerate(extra.get(where, []), start=start)]
                       for where, start in (("node", 0),
                                            ("edge", len(extra.get("node", []))))}
        n_extra = sum(len(v) for v in self._extra.values())
        self._keys = self.keys + tuple((key, where, name, kind) for where in ("node", "edge")
                                   for key, name, kind in self._extra[where])
        attrs = graph_attributes(graph_data)
        if "trace" in attrs:
            self._keys += ((f"d{len(self.keys) + n_extra}", "graph", "trace", "string"),)
        self.nodes_written = 0
        self.edges_written = 0
        self._floats = FloatText()
        self._text = TextBuilder()
        self._tmp = self.path.with_name(
            f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        self._file = open(self._tmp, "xb")
        self._closed = False
        try:
            level = GZIP_LEVEL if self.path.name.endswith(".gz") else None
            self._out = Output(self._file, level)
            self._out.write(_header(attrs, self._keys))
        except BaseException:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            raise

    def write_nodes(self, batch: NodeBatch) -> None:
        """Append one ``<node>`` element per neuron of ``batch``."""
        n = len(batch)
        if n == 0:
            return
        self._check_open()
        same_for_all = isinstance(batch.activation, str)
        activation = _xml_text(batch.activation) if same_for_all else None
        bias = self._floats.encode(np.broadcast_to(np.asarray(batch.bias), (n,)))
        activations = None if same_for_all else _encode_strings(batch.activation)
        layer = (b'"><data key="d0">' + _xml_text(batch.layer)
                 + b'</data><data key="d1">' + str(int(batch.layer_index)).encode()
                 + b'</data><data key="d2">')
        op = b'</data><data key="d3">' + _xml_text(batch.op) + b'</data><data key="d4">'
        extra = self._extra_columns(self._extra["node"], batch.extra, n)
        for rows in text_slices(n):
            parts = [
                b'<node id="', decimal_columns(batch.id[rows]),
                layer, decimal_columns(batch.index[rows]),
                op, bias.rows(rows),
                b'</data><data key="d5">',
                activation if same_for_all else activations.rows(rows),
                b"</data>",
            ]
            for key, text in extra:
                parts += [key, text.rows(rows), b"</data>"]
            parts.append(b"</node>\n")
            self._out.write(self._text.build(parts, rows.stop - rows.start))
        self.nodes_written += n

    def write_edges(self, batch: EdgeBatch) -> None:
        """Append one ``<edge>`` element per edge of ``batch``."""
        n = len(batch)
        if n == 0:
            return
        self._check_open()
        weights = self._floats.encode(batch.weight)
        extra = self._extra_columns(self._extra["edge"], batch.extra, n)
        for rows in text_slices(n):
            parts = [
                b'<edge source="', decimal_columns(batch.src[rows]),
                b'" target="', decimal_columns(batch.dst[rows]),
                b'"><data key="d6">', weights.rows(rows),
                b"</data>",
            ]
            for key, text in extra:
                parts += [key, text.rows(rows), b"</data>"]
            parts.append(b"</edge>\n")
            self._out.write(self._text.build(parts, rows.stop - rows.start))
        self.edges_written += n

    def _extra_columns(self, declared, values: dict, n: int) -> list:
        """(opening ``<data>`` tag, encoded texts) of each declared attribute the batch has."""
        out = []
        for key, name, kind in declared:
            if name not in values:
                continue
            v = np.asarray(values[name])
            if len(v) != n:
                raise ValueError(f"attribute {name!r} has {len(v)} values for {n} elements")
            if kind == "boolean":
                text = Encoded(_BOOL_TEXT, v.astype(bool).astype(np.intp))
            else:
                text = self._floats.encode(v)
            out.append((b'<data key="%s">' % key.encode(), text))
        return out

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


class ChannelGraphMLWriter(GraphMLWriter):
    """:class:`GraphMLWriter` for a :class:`~loader.graph.channels.ChannelGraph`.

    Node keys ``layer``, ``layer_index``, ``channel``, ``op``, ``bias`` (left out where the
    channel's neurons differ), ``activation`` (likewise), ``neurons``; edge keys ``edges``,
    ``total``, ``weight`` and ``kernel`` (a JSON list of the float32 values, exact; left out
    without a kernel); graph keys ``name``, ``layers`` and ``granularity`` (``channel``).

    Examples
    --------
    >>> g = ChannelGraph.from_model("vgg16", weights=None)
    >>> with ChannelGraphMLWriter("vgg16.channels.graphml.gz", g.graph_data()) as out:
    ...     for batch in g.iter_node_batches(): out.write_nodes(batch)
    ...     for batch in g.iter_edge_batches(): out.write_edges(batch)
    """

    keys = _CHANNEL_KEYS

    def write_nodes(self, batch) -> None:
        """One ``<node>`` per channel (a few thousand per model: written row by row)."""
        self._check_open()
        lines = []
        layer = _xml_text(batch.layer).decode()
        for cid, ch, b, act, n in zip(batch.id.tolist(), batch.channel.tolist(),
                                      batch.bias.tolist(), batch.activation.tolist(),
                                      batch.neurons.tolist()):
            data = (f'<node id="{cid}"><data key="d0">{layer}</data><data key="d1">'
                    f'{int(batch.layer_index)}</data><data key="d2">{ch}</data>'
                    f'<data key="d3">{_xml_text(batch.op).decode()}</data>')
            if b == b:  # not NaN: the channel's neurons share one bias
                data += f'<data key="d4">{b!r}</data>'
            if act is not None:
                data += f'<data key="d5">{_xml_text(act).decode()}</data>'
            lines.append(data + f'<data key="d9">{n}</data></node>\n')
        self._out.write("".join(lines).encode())
        self.nodes_written += len(batch)

    def write_edges(self, batch) -> None:
        """One ``<edge>`` per channel edge, the text built for the whole batch at once."""
        n = len(batch)
        if n == 0:
            return
        self._check_open()
        weights = self._floats.encode(batch.weight)
        totals = self._floats.encode(batch.total)
        if batch.kernel is not None:
            k = batch.kernel.shape[1]
            flat = self._floats.encode(np.ascontiguousarray(batch.kernel).reshape(-1))
        for rows in text_slices(n):
            parts = [
                b'<edge source="', decimal_columns(batch.src[rows]),
                b'" target="', decimal_columns(batch.dst[rows]),
                b'"><data key="d6">', weights.rows(rows),
                b'</data><data key="e0">', decimal_columns(batch.edges[rows]),
                b'</data><data key="e1">', totals.rows(rows), b"</data>",
            ]
            if batch.kernel is not None:
                cells = flat.rows(slice(rows.start * k, rows.stop * k))
                cells = cells.reshape(rows.stop - rows.start, k, -1)
                parts.append(b'<data key="e2">[')
                for c in range(k):
                    parts += ([b","] if c else []) + [cells[:, c, :]]
                parts.append(b"]</data>")
            parts.append(b"</edge>\n")
            self._out.write(self._text.build(parts, rows.stop - rows.start))
        self.edges_written += n


_BOOL_TEXT = np.array([b"false", b"true"], dtype="S5")


def _header(attrs: dict[str, str], keys=_KEYS) -> bytes:
    lines = [
        "<?xml version='1.0' encoding='utf-8'?>",
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ]
    lines += [f'  <key id="{key}" for="{where}" attr.name="{name}" attr.type="{kind}"/>'
              for key, where, name, kind in keys]
    lines.append('  <graph edgedefault="directed">')
    head = "\n".join(lines).encode() + b"\n"
    for key, where, name, _ in keys:
        if where == "graph":
            head += b'    <data key="%s">%s</data>\n' % (key.encode(), _xml_text(attrs[name]))
    return head


def write_graphml(graph, path: str | os.PathLike, *, batch_size: int = 1 << 20,
                  progress: bool = True) -> dict:
    """Stream a :class:`~loader.graph.NeuronGraph` (or a
    :class:`~loader.graph.channels.ChannelGraph`) to a GraphML file, nodes then edges.

    Parameters
    ----------
    graph : NeuronGraph or ChannelGraph
        The graph, or a selection of it (``layers=`` / ``cone=``), or a trace's graph
        (:meth:`loader.graph.trace.Trace.subgraph`: its ``extra_attributes`` are written too).
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
    from ..errors import WeightgraphError
    from ..terminal import progress as progress_bar

    graph = as_graph(graph, "write_graphml")
    start = time.perf_counter()
    n_nodes, n_edges = graph.n_nodes, graph.n_edges
    extra = getattr(graph, "extra_attributes", None)
    writer_class = (ChannelGraphMLWriter if getattr(graph, "granularity", "neuron") == "channel"
                    else GraphMLWriter)
    with writer_class(path, graph.graph_data(), extra) as writer, progress_bar(
            n_edges, f"GraphML {Path(path).name}", enabled=progress, unit="edge") as bar:
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
