"""Neo4j bulk-import sink in Parquet: the files ``neo4j-admin database import full
--input-type=parquet`` reads, written in the same stream as every other sink; and the same
import inputs made from an existing Parquet dataset (:mod:`loader.sinks.parquet`).

Parquet or CSV (measured on VGG16 block 1 at 32x32, 37,954,304 relationships, quiet 2-core VM):
the Parquet files are ~10x smaller than plain CSV (77-911 MB whatever the codec, against 1.26 GB)
and quick to write (1.5 s against 4.5 s), but the importer's Parquet reader is its slowest input:
the relationship stage took 31.1 s from Parquet and 17.8 s from plain CSV (both with actual node
ids; 39.7 s and 29.5 s with integer ids), whatever the Parquet codec or encoding (zstd, snappy,
none; delta or plain ids: 39.7-44.3 s). So plain CSV (:mod:`loader.sinks.neo4j_csv`) is the
bulk path's default, and these files are for when disk is short (``--bulk-format parquet``) and
for loading an existing dataset without rewriting its edges.

The importer names a Parquet column by a *name-mapping header*: a CSV file of two rows, the
importer's header (``:START_ID,:END_ID,weight:double``) over the Parquet column names
(``src,dst,weight``). Node ids are the contract's integer ids, imported as the store's own ids
where they are 0..N-1 (:mod:`loader.sinks.import_ids`).

Exactness: the importer does not widen a float32 column into a ``double`` property exactly (it
goes through the shortest decimal: float32 0.1 became float64 0.1, not 0.10000000149...; found
by tests/test_bulk.py), so the files this sink writes hold ``weight`` and ``bias`` as float64,
widened here by numpy, and an existing dataset's float32 weights are imported as ``float``
properties (``weight:float``, with ``--normalize-types=false`` so that they are not turned into
doubles the same way): a float property reads back as the exact float64 widening, the value
the CSV and online paths store.

An existing dataset's edge files are imported as they are (they hold ``src``, ``dst`` and
``weight``); its node files lack the two properties a ``(:Neuron)`` carries besides the
contract's (``model``, and ``layer_index``, which the dataset keeps in the directory name), so
the nodes (few: 320k for the whole VGG16 at 32x32) are rewritten with them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import BatchSink
from .import_ids import ImportIds

__all__ = ["Neo4jParquetSink", "dataset_import_files", "NODE_HEADER", "REL_HEADER"]

# The importer's header over the Parquet column names (the name-mapping header files).
NODE_HEADER = ("neuron:ID,model,id:long,layer,layer_index:long,index:long,op,bias:double,"
               "activation\n"
               "neuron,model,id,layer,layer_index,index,op,bias,activation\n")
REL_HEADER = ":START_ID,:END_ID,weight:double\nsrc,dst,weight\n"
# An existing dataset's float32 weights (see the module's notes on exactness).
DATASET_REL_HEADER = ":START_ID,:END_ID,weight:float\nsrc,dst,weight\n"

_EDGE_OPTIONS = dict(use_dictionary=False, compression="zstd",
                     column_encoding={"src": "DELTA_BINARY_PACKED",
                                      "dst": "DELTA_BINARY_PACKED", "weight": "PLAIN"})


def _node_schema():
    import pyarrow as pa

    return pa.schema([("neuron", pa.int64()), ("model", pa.string()), ("id", pa.int64()),
                      ("layer", pa.string()), ("layer_index", pa.int64()),
                      ("index", pa.int64()), ("op", pa.string()), ("bias", pa.float64()),
                      ("activation", pa.string())])


def _edge_schema():
    import pyarrow as pa

    return pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("weight", pa.float64())])


class _NodeWriter:
    """Node rows with every ``(:Neuron)`` property, into one Parquet file."""

    def __init__(self, path: Path, model: str):
        import pyarrow.parquet as pq

        self.path = path
        self.model = model
        self._writer = pq.ParquetWriter(path, _node_schema(), compression="zstd")

    def write(self, ids, layer: str, layer_index: int, index, op: str, bias, activation):
        import pyarrow as pa

        n = len(ids)
        one = lambda value: pa.DictionaryArray.from_arrays(  # noqa: E731
            np.zeros(n, np.int32), [value])
        table = pa.table([
            pa.array(ids, pa.int64()), one(self.model), pa.array(ids, pa.int64()), one(layer),
            pa.array(np.full(n, layer_index, np.int64)), pa.array(index, pa.int64()), one(op),
            pa.array(np.broadcast_to(np.asarray(bias, np.float32).astype(np.float64), (n,))),
            activation if isinstance(activation, pa.Array) else pa.array(activation, pa.string()),
        ], names=_node_schema().names)
        self._writer.write_table(table.cast(_node_schema()))

    def close(self):
        self._writer.close()


def _write_model(directory: Path, props: dict,
                 model_id: tuple[str, int] = (":ID(Model)", 0)) -> list[Path]:
    """The ``(:Model)`` node as a one-row Parquet file (label ``Model``; id column and value
    ``model_id``, see :meth:`ImportIds.model_id`), with its name-mapping header; ``props`` maps
    names to str, int or float (None: left out)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {int: (":long", pa.int64()), float: (":double", pa.float64()), str: ("", pa.string())}
    names, columns, fields = [model_id[0]], ["model_id"], [pa.field("model_id", pa.int64())]
    values = [model_id[1]]
    for i, (key, value) in enumerate(props.items()):
        if value is None:
            continue
        kind = kinds.get(type(value))
        if kind is None:
            raise TypeError(f"Model property {key!r}: {type(value).__name__} is not "
                            "str, int or float")
        names.append(key + kind[0])
        columns.append(f"c{i}")
        fields.append(pa.field(f"c{i}", kind[1]))
        values.append(value)
    header, data = directory / "model_header.csv", directory / "model.parquet"
    header.write_text(",".join(names) + "\n" + ",".join(columns) + "\n")
    pq.write_table(pa.table([[v] for v in values], schema=pa.schema(fields)), data)
    return [header, data]


class Neo4jParquetSink(BatchSink):
    """Node and relationship Parquet files for ``neo4j-admin database import full
    --input-type=parquet``.

    Parameters
    ----------
    directory : path
        Where the files go (``nodes_header.csv``, ``nodes.parquet``, ``rels_header.csv``,
        ``rels.parquet``; ``model_header.csv`` and ``model.parquet`` from :meth:`write_model`).
    model : str
        The model's name, written into every node row.

    Examples
    --------
    >>> with Neo4jParquetSink("bulk/", "vgg16_b1") as sink:
    ...     for batch in g.iter_node_batches(): sink.write(batch)
    ...     for batch in g.iter_edge_batches(reuse_buffers=True): sink.write(batch)
    >>> sink.node_files, sink.relationship_files
    """

    def __init__(self, directory: str | os.PathLike, model: str):
        import pyarrow.parquet as pq

        self.directory = Path(directory)
        self.node_header = self.directory / "nodes_header.csv"
        self.rel_header = self.directory / "rels_header.csv"
        self.node_header.write_text(NODE_HEADER)
        self.rel_header.write_text(REL_HEADER)
        self.rel_file = self.directory / "rels.parquet"
        self._nodes = _NodeWriter(self.directory / "nodes.parquet", model)
        self._rels = pq.ParquetWriter(self.rel_file, _edge_schema(), **_EDGE_OPTIONS)
        self._model_files: list[Path] = []
        self.ids = ImportIds()

    def write_nodes(self, b) -> None:
        self.ids.add(b.id)
        self._nodes.write(b.id, b.layer, b.layer_index, b.index, b.op, b.bias,
                          b.activations().astype(str))

    def write_edges(self, b) -> None:
        import pyarrow as pa

        if len(b):
            self._rels.write_table(pa.Table.from_arrays(
                [pa.array(b.src), pa.array(b.dst), pa.array(b.weight.astype(np.float64))],
                schema=_edge_schema()))

    def write_model(self, props: dict) -> None:
        """The model's ``(:Model)`` node, so that the imported store holds it at once (after
        the nodes: its id follows theirs when they are 0..N-1)."""
        self._model_files = _write_model(self.directory, props, self.ids.model_id())

    @property
    def model_files(self) -> list[Path]:
        return self._model_files

    @property
    def node_files(self) -> list[Path]:
        return [self.node_header, self._nodes.path]

    @property
    def relationship_files(self) -> list[Path]:
        return [self.rel_header, self.rel_file]

    def close(self) -> None:
        try:
            self._nodes.close()
        finally:
            self._rels.close()

    def __enter__(self) -> Neo4jParquetSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _layer_files(root: Path, kind: str) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for part in sorted((root / kind).glob("layer_index=*/*.parquet")):
        out.setdefault(int(part.parent.name.split("=", 1)[1]), []).append(part)
    return out


def dataset_import_files(dataset: str | os.PathLike, directory: str | os.PathLike, model: str,
                         layers: list[dict]) -> dict:
    """Import inputs for the dataset at ``dataset``: its edge files as they are (those
    compressed with a codec the importer lacks, see :data:`IMPORTER_CODECS`, rewritten into
    ``directory`` with zstd), its nodes rewritten into ``directory`` with ``model`` and
    ``layer_index``; and, read from the files themselves, per layer the neurons, edges and
    weight sums (what ``verify`` compares).

    ``layers`` is the dataset's ``graph.json`` layer list (names by index).

    Returns
    -------
    dict
        ``node_files`` and ``relationship_files`` (header first), ``nodes`` and ``edges``
        (counts), ``checksums`` ({layer index: {layer, neurons, edges, weight_sum, abs_sum}}).
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root, directory = Path(dataset), Path(directory)
    names = {int(spec["index"]): spec["name"] for spec in layers}
    checksums: dict[str, dict] = {}
    nodes = _NodeWriter(directory / "nodes.parquet", model)
    n_nodes = 0
    try:
        for li, parts in _layer_files(root, "nodes").items():
            count = 0
            for part in parts:
                f = pq.ParquetFile(part)
                for rg in range(f.num_row_groups):
                    t = f.read_row_group(rg)
                    ids = t.column("id").to_numpy()
                    if not len(ids):
                        continue
                    layer = t.column("layer")[0].as_py()
                    op = t.column("op")[0].as_py()
                    nodes.write(ids, layer, li, t.column("index").to_numpy(), op,
                                t.column("bias").to_numpy(),
                                t.column("activation").combine_chunks())
                    count += len(ids)
            checksums[str(li)] = {"layer": names.get(li, str(li)), "neurons": count, "edges": 0,
                                  "weight_sum": 0.0, "abs_sum": 0.0}
            n_nodes += count
    finally:
        nodes.close()
    rel_files: list[Path] = []
    n_edges = 0
    for li, parts in _layer_files(root, "edges").items():
        c = checksums.setdefault(str(li), {"layer": names.get(li, str(li)), "neurons": 0,
                                           "edges": 0, "weight_sum": 0.0, "abs_sum": 0.0})
        for k, part in enumerate(parts):
            f = pq.ParquetFile(part)
            readable = _importer_reads(f)
            copy = None if readable else pq.ParquetWriter(
                directory / f"edges-{li}-{k}.parquet", f.schema_arrow, **_TRANSCODE_OPTIONS)
            try:
                for rg in range(f.num_row_groups):
                    t = f.read_row_group(rg, columns=None if copy else ["weight"])
                    if copy is not None:
                        copy.write_table(t)
                    w = t.column("weight").cast("float64")
                    c["edges"] += len(w)
                    c["weight_sum"] += float(pc.sum(w).as_py() or 0.0)
                    c["abs_sum"] += float(pc.sum(pc.abs(w)).as_py() or 0.0)
            finally:
                if copy is not None:
                    copy.close()
            if f.metadata.num_rows:
                rel_files.append(part.resolve() if readable
                                 else directory / f"edges-{li}-{k}.parquet")
        n_edges += c["edges"]
    header = directory / "rels_header.csv"
    header.write_text(DATASET_REL_HEADER)
    node_header = directory / "nodes_header.csv"
    node_header.write_text(NODE_HEADER)
    return {"node_files": [node_header, directory / "nodes.parquet"],
            "relationship_files": [header, *rel_files], "nodes": n_nodes, "edges": n_edges,
            "checksums": checksums}


# Codecs neo4j-admin's Parquet reader has (its lib/ carries snappy-java and zstd-jni, not
# aircompressor: an lz4 column fails with ClassNotFoundException
# io.airlift.compress.lz4.Lz4Decompressor). Files with another codec, such as the dataset's
# default `fast` encoding (lz4 ids), are rewritten row group by row group with zstd.
IMPORTER_CODECS = frozenset({"UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD"})
_TRANSCODE_OPTIONS = dict(use_dictionary=False, compression="zstd", compression_level=1,
                          write_statistics=False)


def _importer_reads(f) -> bool:
    """Whether every column chunk of the ParquetFile ``f`` uses a codec the importer reads."""
    meta = f.metadata
    return all(meta.row_group(rg).column(c).compression in IMPORTER_CODECS
               for rg in range(meta.num_row_groups) for c in range(meta.num_columns))


def write_model_files(directory: str | os.PathLike, props: dict) -> list[Path]:
    """The ``(:Model)`` node's import files (see :class:`Neo4jParquetSink.write_model`)."""
    return _write_model(Path(directory), props)
