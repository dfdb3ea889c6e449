"""Neo4j bulk-import sink: ``neo4j-admin database import full`` CSV files, written in the
same stream as every other sink.

Rows are built by the vectorised text machinery of :mod:`loader.sinks.text` (shared with the
GraphML writer). The importer reads the header files and the data files as given on its command
line (``--nodes=Neuron=H,F``, ``--relationships=W=H,F``); node ids are the contract's integer
ids, imported as the store's own ids where they are 0..N-1 (:mod:`loader.sinks.import_ids`).

The files are plain text by default: the bulk path's fastest input. Measured on the whole VGG16 at
32x32 (270,404,352 relationships, quiet 2-core VM): enumerating the graph and writing them took
48 s (7.12 GB), and the importer's relationship stage read them in 82-91 s; it read the same rows
from Parquet (:mod:`loader.sinks.neo4j_parquet`, ~10x smaller) 1.75x slower on VGG16 block 1
(31.1 s against 17.8 s, both with actual ids), and gzip (``compress=True``, level :data:`loader.sinks.text.GZIP_LEVEL`)
costs more to write than it saves in reading (31 s for block 1 on one core, against 4.5 s
plain).

Weights go in as float properties (``weight:float``, imported with ``--normalize-types=false``)
written as the shortest text of their float32 value (``-0.05762701``, against the 21-byte
``-0.057627011090517044`` of the widened float64): 30% fewer bytes to write and parse (VGG16
block 1: the relationship stage 15.9 s against 20.5 s in the same run). Exact: neo4j-admin
parses a ``:float`` cell with Java's ``Float.parseFloat``, which rounds correctly, and a
shortest round-trip text parses back to its float32 under correct rounding (checked by hand on
36.7M values: 20M random bit patterns over every exponent and subnormals, and every float32 in
[2^-8, 2^-7) of both signs: no mismatch). A float property reads back as the exact float64
widening, the value the online path stores (tests/test_bulk.py compares them bit for bit).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import BatchSink
from .import_ids import ImportIds
from .neo4j_labels import CHANNEL, NEURON
from .text import (GZIP_LEVEL, FloatText, Output, TextBuilder, decimal_columns, encode_strings,
                   text_slices)

# Imported with --normalize-types=false (so that a float stays a float): every integer column
# says long, as the online path stores them.
NODE_HEADER = ("neuron:ID,model,id:long,layer,layer_index:long,index:long,op,bias:double,"
               "activation\n")
# A weight is a float32: its shortest float32 text, stored as a float property, which reads
# back as the exact float64 widening, the value the online path stores (module notes).
REL_HEADER = ":START_ID,:END_ID,weight:float\n"
CHANNEL_NODE_HEADER = (":ID,model,id:long,layer,layer_index:long,channel:long,op,"
                       "neurons:long,bias:double,activation\n")
# neo4j-admin's array delimiter is ';'. An empty cell is no property: bias and activation where
# the channel's neurons differ, kernel on parameter-free layers.
CHANNEL_REL_HEADER = ":START_ID,:END_ID,weight:double,edges:long,total:double,kernel:double[]\n"


def _csv_text(value: str) -> bytes:
    return ('"' + value.replace('"', '""') + '"').encode("utf-8")


class Neo4jCSVSink(BatchSink):
    """Node and relationship CSV files for ``neo4j-admin database import full``.

    Rows are formatted by the same vectorised text builder as the GraphML writer (integers by
    digit arithmetic, weights as the exact float64 ``repr`` of each distinct value), so the
    imported graph holds exactly the weights the online path sends.

    Parameters
    ----------
    directory : path
        Where the files go (``nodes_header.csv``, ``nodes.csv``, ``rels_header.csv``,
        ``rels.csv``; ``model_header.csv`` and ``model.csv`` from :meth:`write_model`).
    model : str
        The model's name, written into every node row.
    compress : bool
        gzip the data files (``nodes.csv.gz``, ``rels.csv.gz``): ~10x smaller, slower to write.

    Examples
    --------
    >>> with Neo4jCSVSink("bulk/", "vgg16_b1") as sink:
    ...     for batch in g.iter_node_batches(): sink.write(batch)
    ...     for batch in g.iter_edge_batches(reuse_buffers=True): sink.write(batch)
    >>> sink.node_files, sink.relationship_files
    """

    node_header_text, rel_header_text = NODE_HEADER, REL_HEADER
    labels = NEURON

    def __init__(self, directory: str | os.PathLike, model: str, compress: bool = False):
        self.directory = Path(directory)
        self.model = model
        self.node_header = self.directory / "nodes_header.csv"
        self.rel_header = self.directory / "rels_header.csv"
        suffix = ".csv.gz" if compress else ".csv"
        self.node_file = self.directory / f"nodes{suffix}"
        self.rel_file = self.directory / f"rels{suffix}"
        self.model_header = self.directory / "model_header.csv"
        self.model_file = self.directory / "model.csv"
        self.node_header.write_text(self.node_header_text)
        self.rel_header.write_text(self.rel_header_text)
        self._files = [open(self.node_file, "wb"), open(self.rel_file, "wb")]
        level = GZIP_LEVEL if compress else None
        self._nodes_out = Output(self._files[0], level)
        self._rels_out = Output(self._files[1], level)
        self.ids = ImportIds()
        self._text = TextBuilder()
        self._floats = FloatText()
        self._weights = FloatText(single=True)
        self._model_field = b"," + _csv_text(model) + b","

    def write_nodes(self, b) -> None:
        n = len(b)
        self.ids.add(b.id)
        bias = self._floats.encode(np.broadcast_to(np.asarray(b.bias, dtype=np.float64), (n,)))
        acts = encode_strings(b.activations(), _csv_text)
        layer = b"," + _csv_text(b.layer) + f",{b.layer_index},".encode()
        op = b"," + _csv_text(b.op) + b","
        for rows in text_slices(n):
            ids = decimal_columns(b.id[rows])
            parts = [ids, self._model_field, ids, layer, decimal_columns(b.index[rows]), op,
                     bias.rows(rows), b",", acts.rows(rows), b"\n"]
            self._nodes_out.write(self._text.build(parts, len(ids)).tobytes())

    def write_edges(self, b) -> None:
        weights = self._weights.encode(b.weight)
        for rows in text_slices(len(b)):
            parts = [decimal_columns(b.src[rows]), b",", decimal_columns(b.dst[rows]), b",",
                     weights.rows(rows), b"\n"]
            self._rels_out.write(self._text.build(parts, rows.stop - rows.start).tobytes())

    def write_model(self, props: dict) -> None:
        """The model's ``(:Model)`` node as a one-row file of its own (label ``Model``; its id
        after the graph's nodes, or 0 in an id space of its own: :meth:`ImportIds.model_id`),
        so that the imported store holds the model and its state at once. Called after the
        nodes are written.

        ``props`` maps names to str, int or float values (None values are left out).
        """
        kinds = {bool: None, int: ":long", float: ":double", str: ""}
        id_column, model_id = self.ids.model_id()
        names, cells = [id_column], [str(model_id)]
        for key, value in props.items():
            if value is None:
                continue
            kind = kinds.get(type(value))
            if kind is None:
                raise TypeError(f"Model property {key!r}: {type(value).__name__} is not "
                                "str, int or float")
            names.append(key + kind)
            cells.append(_csv_text(value).decode() if isinstance(value, str) else repr(value))
        self.model_header.write_text(",".join(names) + "\n")
        self.model_file.write_text(",".join(cells) + "\n", encoding="utf-8")

    @property
    def model_files(self) -> list[Path]:
        """The header and the row of the ``(:Model)`` node (after :meth:`write_model`)."""
        return [self.model_header, self.model_file]

    @property
    def node_files(self) -> list[Path]:
        """The header and the data file of the nodes, in the order the importer wants."""
        return [self.node_header, self.node_file]

    @property
    def relationship_files(self) -> list[Path]:
        return [self.rel_header, self.rel_file]

    def close(self) -> None:
        try:
            self._nodes_out.close()
            self._rels_out.close()
        finally:
            for f in self._files:
                f.close()

    def __enter__(self) -> Neo4jCSVSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ChannelNeo4jCSVSink(Neo4jCSVSink):
    """:class:`Neo4jCSVSink` for a :class:`~loader.graph.channels.ChannelGraph`: ``Channel``
    nodes and ``CW`` relationships with ``weight``, ``edges``, ``total`` and ``kernel`` (a
    ``double[]`` cell, values ``;``-separated, each the exact ``repr`` of its float32 value)."""

    node_header_text, rel_header_text = CHANNEL_NODE_HEADER, CHANNEL_REL_HEADER
    labels = CHANNEL

    def write_nodes(self, b) -> None:
        # A model has a few thousand channels: row by row is fast enough.
        self.ids.add(b.id)
        rows = []
        layer = _csv_text(b.layer).decode()
        model = _csv_text(self.model).decode()
        for cid, ch, bias, act, n in zip(b.id.tolist(), b.channel.tolist(), b.bias.tolist(),
                                         b.activation.tolist(), b.neurons.tolist()):
            rows.append(f"{cid},{model},{cid},{layer},{b.layer_index},{ch},"
                        f"{_csv_text(b.op).decode()},{n},{'' if bias != bias else repr(bias)},"
                        f"{'' if act is None else _csv_text(str(act)).decode()}\n")
        self._nodes_out.write("".join(rows).encode("utf-8"))

    def write_edges(self, b) -> None:
        n = len(b)
        if n == 0:
            return
        weights, totals = self._floats.encode(b.weight), self._floats.encode(b.total)
        if b.kernel is not None:
            k = b.kernel.shape[1]
            flat = self._floats.encode(np.ascontiguousarray(b.kernel).reshape(-1))
        for rows in text_slices(n):
            parts = [decimal_columns(b.src[rows]), b",", decimal_columns(b.dst[rows]), b",",
                     weights.rows(rows), b",", decimal_columns(b.edges[rows]), b",",
                     totals.rows(rows), b","]
            if b.kernel is not None:
                cells = flat.rows(slice(rows.start * k, rows.stop * k))
                cells = cells.reshape(rows.stop - rows.start, k, -1)
                for c in range(k):
                    parts += ([b";"] if c else []) + [cells[:, c, :]]
            parts.append(b"\n")
            self._rels_out.write(self._text.build(parts, rows.stop - rows.start).tobytes())
