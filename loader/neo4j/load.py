"""Load a neuron graph into Neo4j: online over Bolt, or offline with ``neo4j-admin import``.

**Online** (:class:`loader.sinks.neo4j_online.Neo4jOnlineSink`): exactly once, whatever
happens. Every batch is written in one transaction together with a ``(:LoadBatch {model,
key})`` node; a batch whose transaction committed is skipped on ``resume``. Batch boundaries
are a pure function of the graph and the batch size, which the ``(:Model)`` node records, so a
resumed load cuts the same batches.

Why the online path is fast (bench/bench_load.py: VGG16 block 1 at 32x32, 37,954,304
relationships, 2-core machine with the server beside it): 238k rels/s against 63k for the
textbook UNWIND of 10,000 row maps matching both ends by (model, id) with one writer (3.8x),
and 620 rels/s for one CREATE per edge (384x); 160k vs 68k (2.4x) in a run where another
benchmark shared the two cores. 30,000 relationships per transaction (``WEIGHTGRAPH_BATCH_SIZE``)
is large enough to amortise the commit and small enough to keep transaction state far below
the 2.8 GiB pool (100k-row batches were slower: GC); four writers (``WEIGHTGRAPH_WORKERS``)
keep the server's serial commit path busy. The server's CPU is the limit (client ~5% of a core).

**Bulk** (:class:`loader.sinks.neo4j_csv.Neo4jCSVSink` + ``neo4j-admin database import full``):
the fastest way in (no transactions, no lock or index maintenance per row), at the price of
rebuilding the database: Community edition has one user database, so a bulk load replaces
everything in it and refuses to unless told (``replace=True``, which says what goes before it
goes). Steps: check the disk space against the plan's estimates; write the import files
(plain CSV by default, :mod:`loader.sinks.neo4j_csv`; Parquet, ~10x smaller, with
``bulk_format="parquet"``; the ``(:Model)`` node, state ``complete``, included) while summing
per-layer checksums; stop the server (``keep_serving=True``: leave it serving the old database
during the import); import the files into a staging database (the store's node ids are the
contract's where they are 0..N-1: :mod:`loader.sinks.import_ids`); compare the import's counts
with the plan; swap the store directories, start the server, count again (a difference puts the
old store back), delete the old store; create the schema. Until the swap, a failure leaves the
previous database untouched and served again; a kill leaves it untouched, and the next
``weightgraph server start`` serves it. Afterwards the database is new: a driver that ran
queries before it holds bookmarks of the old one and fails with ``BookmarkTimeout``; open a new
driver.

Why the server is stopped for the import by default: the whole VGG16 at 32x32 (270,404,352
relationships, a 21 GB store) imports while the operating system's page cache holds the store
files it links; a server beside it holds its heap (6 GB with the README's sizing for GDS) and
takes that memory from the cache. Measured on the quiet 2-core VM (bench/bench_whole_model.py,
same run): the import took 199 s with the server stopped, 353 s with it running (linking 91 s
against 231 s); end to end 267 s against 427 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import neo4j

from ..config import Settings
from ..errors import WeightgraphError, one_line
from ..graph import costs
from ..graph.coerce import as_graph
from ..graph.neuron_graph import NeuronGraph
from ..sinks.neo4j_csv import ChannelNeo4jCSVSink, Neo4jCSVSink
from ..sinks.neo4j_labels import CHANNEL, NEURON, GraphLabels, labels_for
from ..sinks.neo4j_online import ChannelNeo4jOnlineSink, Neo4jOnlineSink
from ..sinks.neo4j_parquet import Neo4jParquetSink, dataset_import_files, write_model_files
from ..processes import process_alive
from ..terminal import progress as progress_bar
from .db import Database, Neo4jUnavailable, using
from .faults import kill_point
from .models import (LayerChecksums, check_name, create_model_node, delete_graph,
                     layer_checksums, model_node, reset_model_node, same_checksums,
                     set_model_state, state_of)
from .schema import create_schema
from .server import ServerControl, server_control

NODE_BATCH_SIZE = 20_000


class LoadError(WeightgraphError):
    """A load that cannot start or go on (name taken, nothing to resume, bad option...)."""


class BulkLoadError(LoadError):
    """The bulk load could not run or the import failed (the message says what to do)."""


@dataclass
class LoadSummary:
    name: str
    mode: str
    neurons: int
    relationships: int
    seconds: float
    skipped_batches: int = 0
    extra: dict = field(default_factory=dict)
    unit: str = "neurons"  # what the nodes are: neurons, or channels (a channel graph)

    @property
    def rate(self) -> float:
        return self.relationships / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"loaded {self.name!r} ({self.mode}): {self.neurons:,} {self.unit}, "
                f"{self.relationships:,} relationships in {self.seconds:.1f} s "
                f"({self.rate:,.0f} rel/s)")


def load(graph: NeuronGraph, name: str | None = None, *, mode: str = "online",
         batch_size: int | None = None, workers: int | None = None, replace: bool = False,
         resume: bool = False, driver: Database | neo4j.Driver | None = None,
         database: str | None = None, progress: bool = False, source: dict | None = None,
         server: str | ServerControl | None = None, csv_dir=None,
         settings: Settings | None = None, notify=None,
         bulk_format: str = "csv", keep_serving: bool = False) -> LoadSummary:
    """Load ``graph`` into Neo4j under ``name``.

    Parameters
    ----------
    graph : NeuronGraph or ChannelGraph, or a model
        The graph (or a selection of it) to load; a model file path, a ``keras.applications``
        name or a Keras model is converted whole with :meth:`NeuronGraph.from_model`'s
        defaults (:func:`loader.graph.coerce.as_graph`). A ``ChannelGraph`` goes in as
        ``(:Channel)-[:CW {weight, edges, total, kernel}]->(:Channel)`` with
        ``Model.granularity = 'channel'``, through the same exactly-once machinery.
    name : str, optional
        The model's name in Neo4j; default the graph's name.
    mode : ``online`` (Bolt, batched transactions) or ``bulk`` (neo4j-admin import; rebuilds
        the database).
    batch_size, workers : int, optional
        Online: relationships per transaction (for a channel graph: relationships times
        kernel length, so that a transaction's size stays bounded) and concurrent writers;
        default from the
        settings (``WEIGHTGRAPH_BATCH_SIZE``, ``WEIGHTGRAPH_WORKERS``, environment or ``.env``).
    replace : delete an existing graph of that name first (bulk: the whole database).
    resume : finish an interrupted load of that name; batches already committed are skipped.
    driver : Database or neo4j.Driver, optional
        Where to load; default a connection from the settings (``NEO4J_*``).
    server : ``local``, ``compose`` or a :class:`ServerControl` (bulk only).
    bulk_format : ``csv`` (default: plain CSV, the importer's fastest input) or ``parquet``
        (~10x smaller files): the bulk path's import files.
    keep_serving : bool
        Bulk: keep the server serving the old database during the import (slower: the
        server's memory is taken from the page cache the import uses); by default it is
        stopped from the import to the swap.
    notify : callable, optional
        Bulk with ``replace``: called with one line saying what will be deleted, before
        anything is.

    Examples
    --------
    >>> g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3),
    ...                            layers="block1_conv1:block1_pool")
    >>> load(g, "vgg16_block1").line()
    """
    if source is None and isinstance(graph, (str, os.PathLike)):
        source = {"model": os.fspath(graph)}  # what a refused reader's fixing command names
    graph = as_graph(graph, "load")
    settings = settings or Settings()
    name = check_name(name or graph.name)
    if mode not in ("online", "bulk"):
        raise LoadError(f"mode must be online or bulk, not {mode!r}")
    if replace and resume:
        raise LoadError("choose --replace or --resume, not both")
    batch_size = settings.weightgraph_batch_size if batch_size is None else batch_size
    workers = settings.weightgraph_workers if workers is None else workers
    if batch_size <= 0 or workers <= 0:
        raise LoadError("batch size and workers must be positive")
    try:
        with using(driver, database) as db:
            if mode == "bulk":
                return _load_bulk(db, graph, name, replace=replace, progress=progress,
                                  source=source, server=server_control(server), csv_dir=csv_dir,
                                  notify=notify, input_type=bulk_format,
                                  keep_serving=keep_serving)
            return _load_online(db, graph, name, batch_size=batch_size, workers=workers,
                                replace=replace, resume=resume, progress=progress,
                                source=source)
    except neo4j.exceptions.ServiceUnavailable as exc:
        raise Neo4jUnavailable(f"lost the connection to Neo4j during the load ({exc}); "
                               "when it is back, finish with --resume") from None
    except neo4j.exceptions.AuthError:
        raise Neo4jUnavailable("Neo4j refused the credentials (check NEO4J_PASSWORD)") from None


def _model_props(graph, mode: str, batch_size: int, checksums: dict,
                 source: dict | None) -> dict:
    return {"graph_data": json.dumps(graph.graph_data()), "plan": graph.plan().model_dump_json(),
            "granularity": labels_for(graph).granularity,
            "mode": mode, "batch_size": batch_size, "selection": graph.selection,
            "nodes": graph.n_nodes, "edges": graph.n_edges, "checksums": json.dumps(checksums),
            "source": json.dumps(source or {})}


# ---------------------------------------------------------------------------- online
def _load_online(db: Database, graph, name: str, *, batch_size, workers, replace,
                 resume, progress, source) -> LoadSummary:
    """States (see :mod:`loader.neo4j.models`): a new load creates its Model node ``loading``
    before the first neuron; ``--replace`` first rewrites the existing node to describe the
    new graph in state ``replacing`` (one transaction), deletes the old graph, then marks it
    ``loading``; ``complete`` is written after the last batch committed. ``--resume`` of a
    ``replacing`` model finishes the delete, then loads everything."""
    create_schema(db)
    labels = labels_for(graph)
    existing = model_node(db, name)
    if existing is not None and not (replace or resume):
        raise LoadError(f"model {name!r} is already in Neo4j ({state_of(existing)}): "
                        "use --replace to load it again or --resume to finish it")
    start = time.perf_counter()
    if resume:
        if existing is None:
            raise LoadError(f"nothing to resume: no model {name!r} in Neo4j")
        state = state_of(existing)
        if state == "complete":
            return LoadSummary(name, existing.get("mode", "online"), graph.n_nodes, 0, 0.0,
                               extra={"note": "already complete"}, unit=labels.unit)
        if state == "deleting":
            raise LoadError(f"model {name!r} is being deleted: finish with `weightgraph delete "
                            f"--name {name}`, then load it, or load with --replace")
        if existing.get("mode") == "bulk":
            raise LoadError(f"model {name!r} came from a bulk load, which does not resume: "
                            "load it again with --replace")
        if (existing.get("selection") != graph.selection
                or existing.get("edges") != graph.n_edges
                or existing.get("granularity", "neuron") != labels_for(graph).granularity):
            raise LoadError(f"model {name!r} in Neo4j was loaded from a different graph "
                            f"({existing.get('granularity', 'neuron')} granularity, "
                            f"{existing.get('selection')}, {existing.get('edges')} edges); "
                            "resume with the same model and options, or use --replace")
        # The interrupted load's batch size: the same batches, so the same keys.
        batch_size = int(existing["batch_size"])
        if not same_checksums(json.loads(existing["checksums"]), layer_checksums(graph)):
            raise LoadError(f"model {name!r}: these weights differ from the interrupted "
                            "load's (random initialisation?); resume from the same model "
                            "file, or use --replace")
        if state == "replacing":
            delete_graph(db, name)
        if state != "loading":
            set_model_state(db, name, state="loading", error=None)
        done = {r["key"] for r in db.read("MATCH (b:LoadBatch {model: $name}) "
                                          "RETURN b.key AS key", name=name)}
    else:
        props = _model_props(graph, "online", batch_size, layer_checksums(graph), source)
        if existing is None:
            create_model_node(db, name, {**props, "state": "loading", "started_at": time.time()})
        else:
            reset_model_node(db, name, {**props, "state": "replacing",
                                        "started_at": time.time()})
            delete_graph(db, name)
            kill_point("replace.deleted")
            set_model_state(db, name, state="loading")
        done = set()
    if labels is CHANNEL:
        sink = ChannelNeo4jOnlineSink(db, name, graph.total_channels, workers=workers,
                                      done=done)
    else:
        sink = Neo4jOnlineSink(db, name, graph.total_neurons, workers=workers, done=done)
    try:
        with progress_bar(graph.n_nodes, labels.unit, enabled=progress, unit="node") as bar:
            sink.on_rows = bar.update
            for nb in graph.iter_node_batches(NODE_BATCH_SIZE):
                sink.write_nodes(nb)
            sink.flush()
        with progress_bar(graph.n_edges, "relationships", enabled=progress, unit="rel") as bar:
            sink.on_rows = bar.update
            for eb in graph.iter_edge_batches(batch_size):
                sink.write_edges(eb)
                kill_point("online.edges")
            sink.close()
    except BaseException as exc:
        sink.abort()
        _record_failure(db, name, exc)
        raise
    seconds = time.perf_counter() - start
    kill_point("online.before_complete")
    set_model_state(db, name, state="complete", completed_at=time.time(), load_seconds=seconds)
    return LoadSummary(name, "online", graph.n_nodes, graph.n_edges, seconds, sink.skipped,
                       unit=labels.unit)


def _record_failure(db: Database, name: str, exc: BaseException) -> None:
    """Mark the model ``failed`` with the reason, where the error was the load's own (a lost
    server cannot be told, and an interrupted load stays ``loading``: both resume)."""
    if not isinstance(exc, WeightgraphError) or isinstance(exc, Neo4jUnavailable):
        return
    try:
        set_model_state(db, name, state="failed", error=one_line(exc), failed_at=time.time())
    except neo4j.exceptions.Neo4jError:
        pass


# ---------------------------------------------------------------------------- bulk
def _load_bulk(db: Database, graph, name: str, *, replace, progress, source,
               server: ServerControl, csv_dir=None, keep_csv=False, notify=None,
               input_type: str = "csv", keep_serving: bool = False) -> LoadSummary:
    """Rebuild the database with ``graph`` through ``neo4j-admin database import full``.

    The previous database is never at risk before the new one is whole: the import goes to a
    staging database (``wgstaging``) beside it; the import's counts must equal the plan; only
    then are the store directories swapped (renames, the old store kept as
    ``neo4j.previous``), the server started and the database counted again; a difference puts
    the old store back. The ``(:Model)`` node is imported with the graph, in state
    ``complete``, so the swapped-in store is the whole model from its first moment.

    ``input_type`` is the files' format: ``csv`` (default; plain text, the importer's fastest
    input, :mod:`loader.sinks.neo4j_csv`) or ``parquet`` (~10x smaller,
    :mod:`loader.sinks.neo4j_parquet`).
    """
    if input_type not in BULK_INPUT_TYPES:
        raise LoadError(f"bulk input type must be parquet or csv, not {input_type!r}")
    labels = labels_for(graph)
    if labels is CHANNEL:
        sink_class, input_type = ChannelNeo4jCSVSink, "csv"  # kernels are double[] CSV cells
    else:
        sink_class = Neo4jParquetSink if input_type == "parquet" else Neo4jCSVSink
    nodes = _check_replace(db, replace)
    own_dir = csv_dir is None
    directory = _bulk_work_dir(csv_dir)
    try:
        check_disk_space(graph, directory, server.data_dir(), input_type=input_type)
        _notify_replace(db, nodes, notify)
        start = time.perf_counter()
        checksums = LayerChecksums(graph)
        with sink_class(directory, name) as sink, progress_bar(
                graph.n_nodes + graph.n_edges, "import files", enabled=progress,
                unit="row") as bar:
            for nb in graph.iter_node_batches():
                sink.write_nodes(nb)
                bar.update(len(nb))
            for eb in graph.iter_edge_batches(reuse_buffers=True):
                sink.write_edges(eb)
                checksums.add(eb)
                bar.update(len(eb))
        props = _model_props(graph, "bulk", 0, checksums.layers, source)
        sink.write_model({"name": name, **props, "state": "complete",
                          "completed_at": time.time()})
        files_seconds = time.perf_counter() - start
        return _import_and_swap(db, server, name, directory, start, files_seconds,
                                {labels.node: sink.node_files, "Model": sink.model_files},
                                {labels.rel: sink.relationship_files}, graph.n_nodes,
                                graph.n_edges, input_type, labels, id_type=sink.ids.id_type,
                                keep_serving=keep_serving, notify=notify)
    finally:
        if own_dir and not keep_csv:
            shutil.rmtree(directory, ignore_errors=True)


BULK_INPUT_TYPES = ("csv", "parquet")
_WORK_PREFIX = "weightgraph-bulk-"


def _bulk_work_dir(given) -> Path:
    """Where the import files go: ``given``, or a new temporary directory named with this
    process's id. The finally clause that deletes it does not run when the process is killed
    (kill -9, the fault tests), so the temporary directories of loads whose process is gone
    are deleted first."""
    if given is not None:
        directory = Path(given).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    for old in Path(tempfile.gettempdir()).glob(f"{_WORK_PREFIX}*-*"):
        pid = old.name[len(_WORK_PREFIX):].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-")).resolve()


def _check_replace(db: Database, replace: bool) -> int:
    """The database's node count; refuses (one line) to rebuild a non-empty one unasked."""
    counts = db.read_one("MATCH (n) RETURN count(n) AS nodes")
    if counts["nodes"] and not replace:
        raise BulkLoadError(
            f"bulk mode rebuilds the whole database, which holds {counts['nodes']:,} "
            f"nodes{_listing(db)}: use --replace to delete everything in it, or --mode online "
            "to add this model")
    return counts["nodes"]


def _listing(db: Database) -> str:
    models = [r["name"] for r in db.read("MATCH (m:Model) RETURN m.name AS name ORDER BY name")]
    return f" (models: {', '.join(models)})" if models else ""


def _notify_replace(db: Database, nodes: int, notify) -> None:
    if nodes and notify is not None:
        notify(f"bulk mode replaces the whole database: its {nodes:,} nodes{_listing(db)} "
               "are deleted once the new one is imported and counted")


_STAGE = re.compile(r"^(.+?) COMPLETED in (.+)$", re.M)
_DURATION = re.compile(r"(\d+)(ms|h|m|s)")


def import_stages(output: str) -> dict[str, float]:
    """Seconds per stage from the importer's output (``Relationship import COMPLETED in 38s
    197ms`` -> ``{"relationship import": 38.2}``)."""
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return {stage.strip().lower(): round(sum(int(v) * unit[u] for v, u in
                                             _DURATION.findall(text)), 2)
            for stage, text in _STAGE.findall(output)}


def _import_and_swap(db: Database, server: ServerControl, name: str, directory: Path,
                     start: float, files_seconds: float, nodes: dict, rels: dict,
                     n_nodes: int, n_edges: int, input_type: str,
                     labels: GraphLabels = NEURON, *, id_type: str = "integer",
                     keep_serving: bool, notify=None) -> LoadSummary:
    """(Stop the server unless ``keep_serving``,) import the files into the staging database,
    check its counts, swap it in, start, count, create the schema; the summary's ``extra``
    times every step."""
    t_stop = time.perf_counter()
    if not keep_serving:
        if notify is not None:
            notify("the server is stopped from the import to the swap (--keep-serving: serve "
                   "the old database meanwhile, slower)")
        server.stop()
        kill_point("bulk.stopped_for_import")
    stop_seconds = time.perf_counter() - t_stop
    t_import = time.perf_counter()
    try:
        output = server.import_full(nodes, rels, directory / "import.report",
                                    input_type=input_type, id_type=id_type)
        imported = imported_counts(output)
        if imported != (n_nodes + 1, n_edges):
            raise BulkLoadError(
                f"the import counted {imported[0]:,} nodes and {imported[1]:,} relationships, "
                f"the plan {n_nodes + 1:,} and {n_edges:,}: the previous database "
                "is untouched")
    except BaseException:
        if not keep_serving:
            server.start()  # the previous store, untouched
        raise
    import_seconds = time.perf_counter() - t_import
    kill_point("bulk.imported")
    t_swap = time.perf_counter()
    _swap_in(db, server, n_nodes, n_edges, labels)
    swap_seconds = time.perf_counter() - t_swap
    kill_point("bulk.before_schema")
    t_schema = time.perf_counter()
    create_schema(db)
    seconds = time.perf_counter() - start
    return LoadSummary(name, "bulk", n_nodes, n_edges, seconds, unit=labels.unit, extra={
        "input_type": input_type, "id_type": id_type, "keep_serving": keep_serving,
        "files_seconds": round(files_seconds, 2), "stop_seconds": round(stop_seconds, 2),
        "import_seconds": round(import_seconds, 2), "import_stages": import_stages(output),
        "swap_seconds": round(swap_seconds, 2),
        "schema_seconds": round(time.perf_counter() - t_schema, 2),
        "files_bytes": sum(p.stat().st_size for p in directory.iterdir() if p.is_file())})


def load_dataset(path, name: str | None = None, *, replace: bool = False,
                 driver: Database | neo4j.Driver | None = None, database: str | None = None,
                 server: str | ServerControl | None = None, work_dir=None,
                 notify=None, keep_serving: bool = False) -> LoadSummary:
    """Bulk-load a Parquet dataset written by ``weightgraph export --format parquet``
    (:mod:`loader.sinks.parquet`) into Neo4j, rebuilding the database like ``load(...,
    mode="bulk")``.

    The dataset's edge files are imported as they are (``--input-type=parquet``), or
    rewritten with zstd where their codec is one the importer lacks (lz4, the ``fast``
    encoding's ids: :data:`loader.sinks.neo4j_parquet.IMPORTER_CODECS`); its nodes
    are rewritten with the model name (small); the per-layer counts and weight sums that
    ``verify`` compares are read from the files themselves.

    Parameters
    ----------
    path : the dataset directory.
    name : the model's name in Neo4j; default the dataset's (``graph.json`` ``name``).
    work_dir : where the rewritten nodes go (default a temporary directory, deleted after).
    keep_serving : keep the server serving the old database during the import (see
        :func:`load`).

    Examples
    --------
    >>> loader.write_parquet(g, "vgg16_32.parquet")
    >>> load_dataset("vgg16_32.parquet", "vgg16_32", replace=True).line()
    """
    from ..sinks.parquet import is_dataset

    path = Path(path)
    if not is_dataset(path):
        raise LoadError(f"{path} is not a weightgraph Parquet dataset (no graph.json): write "
                        "one with `weightgraph export MODEL -o DIR --format parquet`")
    meta = json.loads((path / "graph.json").read_text())
    name = check_name(name or meta.get("name", ""))
    try:
        with using(driver, database) as db:
            return _load_dataset(db, path, meta, name, replace=replace,
                                 server=server_control(server), work_dir=work_dir,
                                 notify=notify, keep_serving=keep_serving)
    except neo4j.exceptions.ServiceUnavailable as exc:
        raise Neo4jUnavailable(f"lost the connection to Neo4j during the load ({exc})") from None
    except neo4j.exceptions.AuthError:
        raise Neo4jUnavailable("Neo4j refused the credentials (check NEO4J_PASSWORD)") from None


def _load_dataset(db: Database, path: Path, meta: dict, name: str, *, replace, server,
                  work_dir, notify, keep_serving) -> LoadSummary:
    nodes = _check_replace(db, replace)
    own_dir = work_dir is None
    directory = _bulk_work_dir(work_dir)
    try:
        need = int(meta.get("nodes", 0)) * costs.NEO4J_BYTES_PER_NODE \
            + int(meta.get("edges", 0)) * costs.NEO4J_BYTES_PER_REL
        _check_free(server.data_dir(), need, "new store")
        _notify_replace(db, nodes, notify)
        start = time.perf_counter()
        files = dataset_import_files(path, directory, name, meta["layers"])
        if (files["nodes"], files["edges"]) != (meta.get("nodes"), meta.get("edges")):
            raise BulkLoadError(f"the dataset's files hold {files['nodes']:,} nodes and "
                                f"{files['edges']:,} edges, its graph.json says "
                                f"{meta.get('nodes')} and {meta.get('edges')}: nothing was "
                                "changed")
        graph_data = {k: meta[k] for k in ("name", "selection", "layers") if k in meta}
        props = {"graph_data": json.dumps(graph_data), "plan": json.dumps({}),
                 "mode": "bulk", "batch_size": 0, "selection": meta.get("selection", "all"),
                 "nodes": files["nodes"], "edges": files["edges"],
                 "checksums": json.dumps(files["checksums"]),
                 "source": json.dumps({"dataset": str(path.resolve())})}
        model_files = write_model_files(directory, {"name": name, **props, "state": "complete",
                                                    "completed_at": time.time()})
        files_seconds = time.perf_counter() - start
        return _import_and_swap(db, server, name, directory, start, files_seconds,
                                {"Neuron": files["node_files"], "Model": model_files},
                                {"W": files["relationship_files"]}, files["nodes"],
                                files["edges"], "parquet", keep_serving=keep_serving,
                                notify=notify)
    finally:
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)


def _swap_in(db: Database, server: ServerControl, n_nodes: int, n_edges: int,
             labels: GraphLabels = NEURON) -> None:
    """Stop, swap the staged store in, start, count; on any failure put the old one back."""
    server.drop_previous()  # a previous bulk load's, kept until now: its successor was counted
    server.stop()
    kill_point("bulk.stopped")
    try:
        server.swap_in()
        kill_point("bulk.swapped")
        server.start()
        # Two subqueries, each answered from the counts store: 0.2 s on the whole VGG16 at
        # 32x32, where one MATCH after the other's WITH scanned for 24 s.
        got = db.read_one(labels.cypher("CALL { MATCH (n:Neuron) RETURN count(n) AS n } "
                                        "CALL { MATCH ()-[r:W]->() RETURN count(r) AS e } "
                                        "RETURN n, e"))
        if (got["n"], got["e"]) != (n_nodes, n_edges):
            raise BulkLoadError(f"the swapped-in database holds {got['n']:,} {labels.unit} and "
                                f"{got['e']:,} relationships, the plan {n_nodes:,} and "
                                f"{n_edges:,}: the previous database was put back")
    except BaseException:
        _put_back(server)
        raise
    server.drop_previous()


def _put_back(server: ServerControl) -> None:
    try:
        server.stop()
    finally:
        try:
            server.rollback()
        finally:
            server.start()


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


_IMPORTED = re.compile(r"Imported:\s+(\d+) nodes\s+(\d+) relationships")


def imported_counts(output: str) -> tuple[int, int]:
    """(nodes, relationships) from the summary ``neo4j-admin database import`` prints."""
    m = _IMPORTED.search(output)
    if m is None:
        raise BulkLoadError("neo4j-admin import printed no 'Imported:' summary: the previous "
                            "database is untouched")
    return int(m.group(1)), int(m.group(2))


def check_disk_space(graph, csv_dir: Path, data_dir: Path | None, *,
                     input_type: str = "csv") -> dict:
    """Refuse (one line) when the import files and the new store will not fit beside the old
    store, by the plan's size estimates (:mod:`loader.graph.costs`); returns the figures."""
    est = graph.plan().estimates
    per_edge, per_node = ((costs.BULK_PARQUET_BYTES_PER_EDGE, costs.BULK_PARQUET_BYTES_PER_NODE)
                          if input_type == "parquet" else
                          (costs.CSV_BYTES_PER_EDGE, costs.CSV_BYTES_PER_NODE))
    need = {"csv": int(graph.n_edges * per_edge + graph.n_nodes * per_node),
            "store": int(est.get("neo4j_store_bytes", 0))}
    places = {"csv": csv_dir}
    if data_dir is not None and data_dir.exists():
        places["store"] = data_dir
    by_device: dict[int, list] = {}
    for what, path in places.items():
        by_device.setdefault(os.stat(path).st_dev, []).append((what, path))
    for entries in by_device.values():
        wanted = sum(need[what] for what, _ in entries)
        free = shutil.disk_usage(entries[0][1]).free
        if free < wanted:
            what = " and ".join(f"{_WHAT[w]} ({_mb(need[w])}, {p})" for w, p in entries)
            raise BulkLoadError(f"not enough disk space for the bulk load: the {what} need "
                                f"{_mb(wanted)} by the plan's estimate, {_mb(free)} are free "
                                "there; nothing was changed")
    return need


_WHAT = {"csv": "import files", "store": "store files"}


def _check_free(path: Path | None, need: int, what: str) -> None:
    if path is None or not path.exists():
        return
    free = shutil.disk_usage(path).free
    if free < need:
        raise BulkLoadError(f"not enough disk space for the bulk load: the {what} needs "
                            f"{_mb(need)} by the plan's estimate, {_mb(free)} are free at "
                            f"{path}; nothing was changed")
