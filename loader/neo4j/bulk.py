"""Offline load: ``neo4j-admin database import full`` CSV files written in the same stream.

The fastest way into Neo4j (no transactions, no lock or index maintenance per row), at the
price of rebuilding the database: Community edition has one user database, so a bulk load
replaces everything in it. It refuses to do so unless told (``replace=True``).

Steps: check the database is empty (or ``replace``); write gzip CSVs of nodes and
relationships while summing per-layer checksums; stop the server; import; start it; create
the constraints and indexes; write the ``(:Model)`` node, marked complete.

After a bulk load the database is new: a driver that ran ``execute_query`` before it holds
bookmarks of the old database and fails with ``BookmarkTimeout``; open a new driver (the CLI
runs in a new process anyway).

The server is driven through :class:`ServerControl`: :class:`LocalServer` (the project's
``scripts/neo4j-local``) or :class:`ComposeServer` (``docker compose`` with the repository's
``docker-compose.yml``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import WeightgraphError
from ..graph.neuron_graph import NeuronGraph
from .schema import create_schema
from ..sinks.text import FloatText, Output, TextBuilder, decimal_columns, encode_strings, text_slices

NODE_HEADER = ("neuron:ID,model,id:long,layer,layer_index:int,index:long,op,bias:double,"
               "activation\n")
REL_HEADER = ":START_ID,:END_ID,weight:double\n"
GZIP_LEVEL = 1  # see loader.sinks.graphml: level 1 is ~3x faster than 3 for ~5% more bytes


class BulkLoadError(WeightgraphError):
    """The bulk load could not run or the import failed (the message says what to do)."""


# ------------------------------------------------------------------------------ servers
class ServerControl:
    """How to stop, import into and start the Neo4j server that holds the database."""

    def stop(self) -> None: ...
    def start(self) -> None: ...
    def import_full(self, nodes: list[Path], rels: list[Path], report: Path) -> str: ...

    def describe(self) -> str:
        return type(self).__name__


def _run(cmd: list[str], what: str, env=None, timeout=None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except FileNotFoundError:
        raise BulkLoadError(f"{what}: {cmd[0]} not found") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise BulkLoadError(f"{what} failed (exit {p.returncode}): {' | '.join(tail)}")
    return p.stdout


def _import_args(nodes, rels, report, prefix=""):
    return ["database", "import", "full", "--overwrite-destination=true", "--id-type=integer",
            "--bad-tolerance=0", f"--report-file={report}",
            "--max-off-heap-memory=2G",
            "--nodes=Neuron=" + ",".join(prefix + str(p) for p in nodes),
            "--relationships=W=" + ",".join(prefix + str(p) for p in rels), "--", "neo4j"]


class LocalServer(ServerControl):
    """The server run by ``scripts/neo4j-local`` (no Docker)."""

    def __init__(self, script: str | os.PathLike | None = None):
        self.script = Path(script) if script else find_local_script()

    def stop(self):
        _run([str(self.script), "stop"], "stopping Neo4j")

    def start(self):
        _run([str(self.script), "start"], "starting Neo4j")

    def import_full(self, nodes, rels, report):
        return _run([str(self.script), "admin", *_import_args(nodes, rels, report)],
                    "neo4j-admin database import")

    def describe(self):
        return f"local server ({self.script})"


class ComposeServer(ServerControl):
    """The ``neo4j`` service of the repository's docker-compose.yml.

    The CSV directory is mounted read-only into a one-off container of the same image, which
    runs the import against the service's data volume while the service is stopped.
    """

    def __init__(self, project_dir: str | os.PathLike = ".", service: str = "neo4j"):
        self.project_dir = Path(project_dir).resolve()
        self.service = service
        self._csv_dir: Path | None = None

    def _compose(self, *args):
        return ["docker", "compose", "--project-directory", str(self.project_dir), *args]

    def stop(self):
        _run(self._compose("stop", self.service), "docker compose stop")

    def start(self):
        _run(self._compose("up", "-d", "--wait", self.service), "docker compose up")

    def import_full(self, nodes, rels, report):
        csv_dir = Path(nodes[0]).parent
        inside = lambda p: Path("/bulk") / Path(p).name  # noqa: E731
        cmd = self._compose("run", "--rm", "--no-deps", "-v", f"{csv_dir}:/bulk",
                            self.service, "neo4j-admin",
                            *_import_args([inside(p) for p in nodes], [inside(p) for p in rels],
                                          inside(report)))
        return _run(cmd, "neo4j-admin database import (docker compose)")

    def describe(self):
        return f"docker compose service {self.service!r} in {self.project_dir}"


def find_local_script() -> Path:
    """``scripts/neo4j-local``: $WEIGHTGRAPH_NEO4J_LOCAL, else beside the package or the cwd."""
    env = os.environ.get("WEIGHTGRAPH_NEO4J_LOCAL")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "scripts" / "neo4j-local",
                   Path.cwd() / "scripts" / "neo4j-local"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise BulkLoadError("cannot find scripts/neo4j-local for the bulk import: run from the "
                        "repository, set WEIGHTGRAPH_NEO4J_LOCAL, or use --server compose")


def server_control(kind: str | ServerControl | None) -> ServerControl:
    if isinstance(kind, ServerControl):
        return kind
    if kind in (None, "local"):
        return LocalServer()
    if kind == "compose":
        return ComposeServer()
    raise BulkLoadError(f"unknown server kind {kind!r}: local or compose")


# ------------------------------------------------------------------------------ CSV
def _csv_text(value: str) -> bytes:
    return ('"' + value.replace('"', '""') + '"').encode("utf-8")


class CSVWriter:
    """Node and relationship CSV files for ``neo4j-admin database import full``.

    Rows are formatted by the same vectorised text builder as the GraphML writer (integers by
    digit arithmetic, weights as the exact float64 ``repr`` of each distinct value), so the
    imported graph holds exactly the weights the online path sends.
    """

    def __init__(self, directory: Path, model: str):
        self.directory = Path(directory)
        self.model = model
        self.node_header = self.directory / "nodes_header.csv"
        self.rel_header = self.directory / "rels_header.csv"
        self.node_file = self.directory / "nodes.csv.gz"
        self.rel_file = self.directory / "rels.csv.gz"
        self.node_header.write_text(NODE_HEADER)
        self.rel_header.write_text(REL_HEADER)
        self._files = [open(self.node_file, "wb"), open(self.rel_file, "wb")]
        self._nodes_out = Output(self._files[0], GZIP_LEVEL)
        self._rels_out = Output(self._files[1], GZIP_LEVEL)
        self._text = TextBuilder()
        self._floats = FloatText()
        self._model_field = b"," + _csv_text(model) + b","

    def write_nodes(self, b) -> None:
        n = len(b)
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
        weights = self._floats.encode(b.weight)
        for rows in text_slices(len(b)):
            parts = [decimal_columns(b.src[rows]), b",", decimal_columns(b.dst[rows]), b",",
                     weights.rows(rows), b"\n"]
            self._rels_out.write(self._text.build(parts, rows.stop - rows.start).tobytes())

    def close(self) -> None:
        self._nodes_out.close()
        self._rels_out.close()
        for f in self._files:
            f.close()


# ------------------------------------------------------------------------------ load
def _database_contents(driver, database) -> tuple[int, list[str]]:
    with driver.session(database=database) as s:
        n = s.run("MATCH (n) RETURN count(n) AS c").single()["c"]
        models = [r["name"] for r in s.run("MATCH (m:Model) RETURN m.name AS name")]
    return n, models


def load_bulk(graph: NeuronGraph, name: str, *, driver, database=None, replace=False,
              progress=False, source=None, server=None, csv_dir=None, keep_csv=False):
    """Rebuild the database with ``graph`` through ``neo4j-admin database import full``."""
    from .load import LayerChecksums, LoadSummary, _progress

    server = server_control(server)
    n_existing, models = _database_contents(driver, database)
    if n_existing and not replace:
        listing = f" (models: {', '.join(models)})" if models else ""
        raise BulkLoadError(
            f"bulk mode rebuilds the whole database, which holds {n_existing:,} nodes{listing}: "
            "use --replace to delete everything in it, or --mode online to add this model")
    start = time.perf_counter()
    own_dir = csv_dir is None
    directory = Path(csv_dir or tempfile.mkdtemp(prefix="weightgraph-bulk-")).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    checksums = LayerChecksums(graph)
    try:
        writer = CSVWriter(directory, name)
        try:
            bar = _progress(graph.n_nodes + graph.n_edges, "CSV", progress, "row")
            for nb in graph.iter_node_batches():
                writer.write_nodes(nb)
                bar.update(len(nb))
            for eb in graph.iter_edge_batches(reuse_buffers=True):
                writer.write_edges(eb)
                checksums.add(eb)
                bar.update(len(eb))
            bar.close()
        finally:
            writer.close()
        csv_seconds = time.perf_counter() - start
        report = directory / "import.report"
        server.stop()
        t_import = time.perf_counter()
        try:
            server.import_full([writer.node_header, writer.node_file],
                               [writer.rel_header, writer.rel_file], report)
        finally:
            import_seconds = time.perf_counter() - t_import
            server.start()
        t_schema = time.perf_counter()
        create_schema(driver, database)
        data = graph.graph_data()
        with driver.session(database=database) as s:
            s.run("CREATE (m:Model {name: $name}) SET m += $props", name=name, props={
                "graph_data": json.dumps(data), "plan": graph.plan().model_dump_json(),
                "mode": "bulk", "state": "complete", "batch_size": 0,
                "selection": graph.selection, "nodes": graph.n_nodes, "edges": graph.n_edges,
                "checksums": json.dumps(checksums.layers), "source": json.dumps(source or {}),
                "completed_at": time.time()}).consume()
        seconds = time.perf_counter() - start
        return LoadSummary(name, "bulk", graph.n_nodes, graph.n_edges, seconds, extra={
            "csv_seconds": round(csv_seconds, 2), "import_seconds": round(import_seconds, 2),
            "schema_seconds": round(time.perf_counter() - t_schema, 2),
            "csv_bytes": sum(p.stat().st_size for p in directory.glob("*.csv*"))})
    finally:
        if own_dir and not keep_csv:
            shutil.rmtree(directory, ignore_errors=True)
