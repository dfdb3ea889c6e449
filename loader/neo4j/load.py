"""Load a neuron graph into Neo4j: online over Bolt, or offline with ``neo4j-admin import``.

Exactly once, whatever happens: every batch (of nodes or of relationships) is written in one
transaction together with a ``(:LoadBatch {model, key})`` node, and ``key`` is unique. A batch
whose transaction committed is skipped on ``resume``; a batch replayed after an ambiguous
commit (server died between commit and acknowledgement) fails on the constraint and is counted
as done. Batch boundaries are a pure function of the graph and the batch size, which the
``(:Model)`` node records, so a resumed load cuts the same batches.

Why the online path is fast (bench/bench_load.py: VGG16 block 1 at 32x32, 37,954,304
relationships, 2-core machine with the server beside it): 238k rels/s against 63k for the
textbook UNWIND of 10,000 row maps matching both ends by (model, id) with one writer (3.8x),
and 620 rels/s for one CREATE per edge (384x); 160k vs 68k (2.4x) in a run where another
benchmark shared the two cores.

- Relationships travel as three parallel lists (``$s``, ``$d``, ``$w``): no per-row maps to
  pack on the client or unpack on the server.
- Both ends are found by internal node id (``NodeByIdSeek``), fetched once per model after the
  nodes exist, instead of two index seeks per row: 37k -> 53k rels/s on the same 200k edges.
- Four writers: the server's commit path is serial, so one writer leaves it idle while the
  next batch is packed and sent; 1 writer measured ~100k rels/s, 4 writers 130-190k.
- 30,000 relationships per transaction: large enough to amortise the commit, small enough to
  keep transaction state far below the 2.8 GiB pool; 100k-row batches were slower (GC).
The server's CPU is the limit here (client ~5% of a core): more server cores, more rels/s.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import neo4j
import numpy as np
from neo4j.exceptions import ConstraintError

from ..config import Settings
from .db import Neo4jUnavailable, connect
from ..errors import WeightgraphError
from ..graph.neuron_graph import NeuronGraph
from .schema import create_schema

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
DEFAULT_BATCH_SIZE = Settings.model_fields["weightgraph_batch_size"].default
DEFAULT_WORKERS = Settings.model_fields["weightgraph_workers"].default
NODE_BATCH_SIZE = 20_000

CREATE_NODES = """
UNWIND range(0, size($ids) - 1) AS i
CREATE (:Neuron {model: $model, id: $ids[i], layer: $layer, layer_index: $layer_index,
                 index: $index[i], op: $op, bias: $bias[i], activation: $activation[i]})
WITH count(*) AS written
CREATE (:LoadBatch {model: $model, key: $key, rows: written})
"""

CREATE_RELATIONSHIPS = """
UNWIND range(0, size($s) - 1) AS i
MATCH (a) WHERE id(a) = $s[i]
MATCH (b) WHERE id(b) = $d[i]
CREATE (a)-[:W {weight: $w[i]}]->(b)
WITH count(*) AS written
CREATE (:LoadBatch {model: $model, key: $key, rows: written})
"""


class LoadError(WeightgraphError):
    """A load that cannot start or go on (name taken, nothing to resume, bad option...)."""


@dataclass
class LoadSummary:
    name: str
    mode: str
    neurons: int
    relationships: int
    seconds: float
    skipped_batches: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.relationships / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"loaded {self.name!r} ({self.mode}): {self.neurons:,} neurons, "
                f"{self.relationships:,} relationships in {self.seconds:.1f} s "
                f"({self.rate:,.0f} rel/s)")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise LoadError(f"model name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' "
                        "or '-', starting with a letter or digit")
    return name


class LayerChecksums:
    """Per layer (by index): neurons, edges, their weight sum and |weight| sum.

    What ``verify`` compares Neo4j with. Accumulated from the enumeration itself (by the
    online load up front, by the bulk load while it writes its CSV files), so it needs no
    second look at the model: random weights would not come back the same.
    """

    def __init__(self, graph: NeuronGraph):
        self.layers: dict[str, dict] = {}
        for i, mask in graph.node_masks.items():
            n = graph.entries[i].op.n_neurons if mask is None else int(mask.sum())
            self.layers[str(i)] = {"layer": graph.entries[i].name, "neurons": n, "edges": 0,
                                   "weight_sum": 0.0, "abs_sum": 0.0}

    def add(self, batch) -> None:
        c = self.layers[str(batch.layer_index)]
        w = batch.weight.astype(np.float64)
        c["edges"] += len(batch)
        c["weight_sum"] += float(w.sum())
        c["abs_sum"] += float(np.abs(w).sum())


def layer_checksums(graph: NeuronGraph, batch_size: int = 1 << 20) -> dict[str, dict]:
    """:class:`LayerChecksums` of the whole (selected) graph, as a JSON-able dict."""
    sums = LayerChecksums(graph)
    for b in graph.iter_edge_batches(batch_size, reuse_buffers=True):
        sums.add(b)
    return sums.layers


def sums_agree(got: float, want: float, abs_sum: float) -> bool:
    """Two sums of the same float32 weights, added in different orders, agree."""
    return abs(got - want) <= 1e-9 * max(1.0, abs_sum)


def _same_checksums(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if x["edges"] != y["edges"] or x["neurons"] != y["neurons"]:
            return False
        if not sums_agree(y["weight_sum"], x["weight_sum"], x["abs_sum"]):
            return False
    return True


# ------------------------------------------------------------------------------ helpers
def _model_node(session, name):
    rec = session.run("MATCH (m:Model {name: $name}) RETURN m", name=name).single()
    return None if rec is None else dict(rec["m"])


def model_exists(driver, name, database=None) -> dict | None:
    with driver.session(database=database) as s:
        return _model_node(s, name)


def delete_model(driver, name: str, database: str | None = None, *, chunk: int = 50_000,
                 progress: bool = False) -> int:
    """Delete a model's graph in bounded transactions; returns what was deleted.

    Relationships go first, ``chunk`` at a time, walking the neurons in id order from a cursor
    (the (model, id) index provides the order, so each transaction reads only what it deletes).
    ``CALL {...} IN TRANSACTIONS`` over a MATCH of the relationships is *not* bounded: the
    planner makes the MATCH eager before deleting what it matched, and 55M relationships
    exceeded the 2.8 GiB transaction memory pool.
    """
    rel_step = """
    MATCH (n:Neuron {model: $name}) WHERE n.id >= $cursor
    WITH n ORDER BY n.id
    MATCH (n)-[r:W]->()
    WITH n, r LIMIT $chunk
    DELETE r
    RETURN max(n.id) AS last, count(r) AS deleted
    """
    node_step = """
    MATCH (n:Neuron {model: $name}) WITH n LIMIT $chunk
    DETACH DELETE n
    RETURN count(*) AS deleted
    """
    batch_step = """
    MATCH (b:LoadBatch {model: $name}) WITH b LIMIT $chunk
    DELETE b
    RETURN count(*) AS deleted
    """
    deleted = 0
    with driver.session(database=database) as s:
        cursor = 0
        while True:
            rec = s.execute_write(lambda tx: tx.run(rel_step, name=name, cursor=cursor,
                                                    chunk=chunk).single())
            if not rec["deleted"]:
                break
            deleted += rec["deleted"]
            cursor = rec["last"]
        for step in (node_step, batch_step):
            while True:
                n = s.execute_write(lambda tx: tx.run(step, name=name,
                                                      chunk=chunk).single()["deleted"])
                if not n:
                    break
                deleted += n
        s.run("MATCH (m:Model {name: $name}) DETACH DELETE m", name=name).consume()
    return deleted


def _done_keys(driver, name, database) -> set[str]:
    with driver.session(database=database) as s:
        return {r["key"] for r in s.run(
            "MATCH (b:LoadBatch {model: $name}) RETURN b.key AS key", name=name)}


def _internal_ids(driver, name, database, total: int, chunk: int = 200_000) -> np.ndarray:
    """Internal node id of every loaded neuron, as an array indexed by neuron id (-1: absent).

    Paged over neuron id ranges by the (model, id) constraint's index, so memory stays one
    array of 8 bytes per neuron.
    """
    internal = np.full(total, -1, dtype=np.int64)
    query = ("MATCH (n:Neuron {model: $name}) WHERE n.id >= $lo AND n.id < $hi "
             "RETURN n.id AS i, id(n) AS nid")
    with driver.session(database=database) as s:
        for lo in range(0, total, chunk):
            rows = s.run(query, name=name, lo=lo, hi=lo + chunk).values()
            if rows:
                a = np.array(rows, dtype=np.int64)
                internal[a[:, 0]] = a[:, 1]
    return internal


def _progress(total, desc, enabled, unit):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled,
                dynamic_ncols=True, smoothing=0.05)


# ------------------------------------------------------------------------------ online
class _Writer:
    """Runs batch transactions on a few threads, at most ``2 * workers`` in flight."""

    def __init__(self, driver, database, workers, name):
        self.driver, self.database, self.name = driver, database, name
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="wg-writer")
        self.limit = 2 * max(1, workers)
        self.pending: deque[Future] = deque()
        self.local = threading.local()

    def _session(self):
        # One session per thread, reused across its batches: sessions are cheap but not free.
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = self.driver.session(database=self.database)
        return s

    def _run(self, cypher, params, rows):
        try:
            self._session().execute_write(lambda tx: tx.run(cypher, params).consume())
        except ConstraintError:
            # Replayed after an ambiguous commit: the LoadBatch key proves it committed.
            with self.driver.session(database=self.database) as s:
                if s.run("MATCH (b:LoadBatch {model: $m, key: $k}) RETURN count(b) AS c",
                         m=self.name, k=params["key"]).single()["c"] != 1:
                    raise
        return rows

    def submit(self, cypher, params, rows, on_done):
        while len(self.pending) >= self.limit:
            on_done(self.pending.popleft().result())
        self.pending.append(self.pool.submit(self._run, cypher, params, rows))

    def drain(self, on_done):
        while self.pending:
            on_done(self.pending.popleft().result())

    def close(self):
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True)


def _load_online(driver, graph, name, database, batch_size, workers, progress, resume):
    done = _done_keys(driver, name, database) if resume else set()
    skipped = 0
    writer = _Writer(driver, database, workers, name)
    neurons = graph.n_nodes
    try:
        bar = _progress(neurons, "neurons", progress, "node")
        for k, nb in enumerate(graph.iter_node_batches(NODE_BATCH_SIZE)):
            key = f"n:{nb.layer_index}:{k}"
            if key in done:
                skipped += 1
                bar.update(len(nb))
                continue
            params = {"model": name, "key": key, "ids": nb.id.tolist(), "layer": nb.layer,
                      "layer_index": nb.layer_index, "op": nb.op, "index": nb.index.tolist(),
                      "bias": nb.bias.astype(np.float64).tolist(),
                      "activation": nb.activations().tolist()}
            writer.submit(CREATE_NODES, params, len(nb), bar.update)
        writer.drain(bar.update)
        bar.close()

        internal = _internal_ids(driver, name, database, graph.total_neurons)
        bar = _progress(graph.n_edges, "relationships", progress, "rel")
        counters: dict[int, int] = {}
        for eb in graph.iter_edge_batches(batch_size):
            k = counters.get(eb.layer_index, 0)
            counters[eb.layer_index] = k + 1
            key = f"e:{eb.layer_index}:{k}"
            if key in done:
                skipped += 1
                bar.update(len(eb))
                continue
            s, d = internal[eb.src], internal[eb.dst]
            if (s < 0).any() or (d < 0).any():
                raise LoadError(f"model {name!r}: neurons missing in Neo4j for layer "
                                f"{graph.entries[eb.layer_index].name}; reload with --replace")
            params = {"model": name, "key": key, "s": s.tolist(), "d": d.tolist(),
                      "w": eb.weight.astype(np.float64).tolist()}
            writer.submit(CREATE_RELATIONSHIPS, params, len(eb), bar.update)
        writer.drain(bar.update)
        bar.close()
    finally:
        writer.close()
    return skipped


# ------------------------------------------------------------------------------ entry point
def load(graph: NeuronGraph, name: str | None = None, *, mode: str = "online",
         batch_size: int | None = None, workers: int | None = None, replace: bool = False,
         resume: bool = False, driver: neo4j.Driver | None = None, database: str | None = None,
         progress: bool = False, source: dict | None = None, server=None,
         csv_dir=None) -> LoadSummary:
    """Load ``graph`` into Neo4j under ``name``.

    Parameters
    ----------
    mode : ``online`` (Bolt, batched transactions) or ``bulk`` (neo4j-admin import; rebuilds
        the database, see :mod:`loader.bulk`).
    replace : delete an existing graph of that name first (bulk: the whole database).
    resume : finish an interrupted load of that name; batches already committed are skipped.

    Examples
    --------
    >>> g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3),
    ...                            layers="block1_conv1:block1_pool")
    >>> load(g, "vgg16_block1").line()
    """
    name = check_name(name or graph.name)
    if mode not in ("online", "bulk"):
        raise LoadError(f"mode must be online or bulk, not {mode!r}")
    if replace and resume:
        raise LoadError("choose --replace or --resume, not both")
    if batch_size is not None and batch_size <= 0:
        raise LoadError("batch size must be positive")
    own_driver = driver is None
    driver = driver or connect()
    try:
        if mode == "bulk":
            from .bulk import load_bulk

            return load_bulk(graph, name, driver=driver, database=database, replace=replace,
                             progress=progress, source=source, server=server, csv_dir=csv_dir)
        create_schema(driver, database)
        existing = model_exists(driver, name, database)
        if existing is not None and not (replace or resume):
            raise LoadError(f"model {name!r} is already in Neo4j ({existing.get('state')}): "
                            "use --replace to load it again or --resume to finish it")
        if resume:
            if existing is None:
                raise LoadError(f"nothing to resume: no model {name!r} in Neo4j")
            if existing.get("state") == "complete":
                return LoadSummary(name, existing.get("mode", "online"), graph.n_nodes, 0, 0.0,
                                   extra={"note": "already complete"})
            if existing.get("selection") != graph.selection or existing.get(
                    "edges") != graph.n_edges:
                raise LoadError(f"model {name!r} in Neo4j was loaded from a different graph "
                                f"({existing.get('selection')}, {existing.get('edges')} edges); "
                                "resume with the same model and options, or use --replace")
            batch_size = int(existing["batch_size"])
            if not _same_checksums(json.loads(existing["checksums"]), layer_checksums(graph)):
                raise LoadError(f"model {name!r}: these weights differ from the interrupted "
                                "load's (random initialisation?); resume from the same model "
                                "file, or use --replace")
        elif existing is not None:
            delete_model(driver, name, database)
        batch_size = batch_size or DEFAULT_BATCH_SIZE
        workers = workers or DEFAULT_WORKERS
        start = time.perf_counter()
        if not resume:
            checksums = layer_checksums(graph)
            data = graph.graph_data()
            with driver.session(database=database) as s:
                s.run("CREATE (m:Model {name: $name}) SET m += $props", name=name, props={
                    "graph_data": json.dumps(data), "plan": graph.plan().model_dump_json(),
                    "mode": "online", "state": "loading", "batch_size": batch_size,
                    "selection": graph.selection, "nodes": graph.n_nodes,
                    "edges": graph.n_edges, "checksums": json.dumps(checksums),
                    "source": json.dumps(source or {}), "started_at": time.time()}).consume()
        skipped = _load_online(driver, graph, name, database, batch_size, workers, progress,
                               resume)
        seconds = time.perf_counter() - start
        with driver.session(database=database) as s:
            s.run("MATCH (m:Model {name: $name}) SET m.state = 'complete', "
                  "m.completed_at = $t, m.load_seconds = $sec", name=name, t=time.time(),
                  sec=seconds).consume()
        return LoadSummary(name, "online", graph.n_nodes, graph.n_edges, seconds, skipped)
    except neo4j.exceptions.ServiceUnavailable as exc:
        raise Neo4jUnavailable(f"lost the connection to Neo4j during the load ({exc}); "
                               "when it is back, finish with --resume") from None
    except neo4j.exceptions.AuthError:
        raise Neo4jUnavailable("Neo4j refused the credentials (check NEO4J_PASSWORD)") from None
    finally:
        if own_driver:
            driver.close()


# ------------------------------------------------------------------------------ verify
@dataclass
class Verification:
    name: str
    ok: bool
    rows: list[dict]

    def lines(self) -> list[str]:
        out = []
        for r in self.rows:
            mark = "ok " if r["ok"] else "BAD"
            out.append(f"{mark} {r['layer'][:32]:<32} neurons {r['neurons']:>10,}/"
                       f"{r['want_neurons']:<10,} edges {r['edges']:>12,}/{r['want_edges']:<12,} "
                       f"weight sum {r['weight_sum']:.6g}/{r['want_weight_sum']:.6g}")
        return out


def verify(name: str, *, driver: neo4j.Driver | None = None,
           database: str | None = None) -> Verification:
    """Compare Neo4j with the load's plan: neurons, edges and weight sums per layer.

    The expected figures were computed from the enumeration when the load started.
    """
    check_name(name)
    own = driver is None
    driver = driver or connect()
    try:
        m = model_exists(driver, name, database)
        if m is None:
            raise LoadError(f"no model {name!r} in Neo4j")
        want = json.loads(m["checksums"])
        rows, ok = [], True
        with driver.session(database=database) as s:
            for idx, w in sorted(want.items(), key=lambda kv: int(kv[0])):
                got = s.run(
                    "MATCH (n:Neuron {model: $name, layer_index: $li}) "
                    "CALL (n) { OPTIONAL MATCH (n)<-[r:W]-() "
                    "RETURN count(r) AS e, coalesce(sum(r.weight), 0.0) AS ws } "
                    "RETURN count(n) AS n, coalesce(sum(e), 0) AS e, coalesce(sum(ws), 0.0) AS ws",
                    name=name, li=int(idx)).single()
                good = (got["n"] == w["neurons"] and got["e"] == w["edges"]
                        and sums_agree(got["ws"], w["weight_sum"], w["abs_sum"]))
                ok &= good
                rows.append({"layer": w["layer"], "ok": good, "neurons": got["n"],
                             "want_neurons": w["neurons"], "edges": got["e"],
                             "want_edges": w["edges"], "weight_sum": got["ws"],
                             "want_weight_sum": w["weight_sum"]})
        total_nodes = sum(r["want_neurons"] for r in rows)
        with driver.session(database=database) as s:
            extra = s.run("MATCH (n:Neuron {model: $name}) RETURN count(n) AS c",
                          name=name).single()["c"]
        if extra != total_nodes:
            ok = False
            rows.append({"layer": "(all layers)", "ok": False, "neurons": extra,
                         "want_neurons": total_nodes, "edges": 0, "want_edges": 0,
                         "weight_sum": 0.0, "want_weight_sum": 0.0})
        if m.get("state") != "complete":
            ok = False
        return Verification(name, ok, rows)
    finally:
        if own:
            driver.close()
