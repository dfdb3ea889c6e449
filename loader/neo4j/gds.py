"""Graph Data Science inside Neo4j: graph algorithms over a loaded model, or a selection of it,
without pulling its edges out of the database.

How to call it
--------------
One algorithm, projected, run and dropped in one call::

    from loader.neo4j import gds
    r = gds.run("pagerank", "vgg16_32", weight="abs", top=10)    # GdsResult
    r.columns["id"], r.columns["score"]                            # numpy arrays, by neuron id

Several algorithms on one projection (projecting is the slow part: ~1M relationships/s)::

    with Database.connect() as db, gds.project("vgg16_32", weight="abs", driver=db,
                                               algorithms=("pagerank", "wcc")) as g:
        g.stats("pagerank")                    # dict: ranIterations, didConverge, computeMillis...
        g.stats("wcc")                         # dict: componentCount, componentDistribution...
        g.stream("pagerank", top=10)           # GdsResult (top K computed by the server)
        g.layer_summary("pagerank")            # per layer: neurons, mean, min, max, sum
        g.write("pagerank", "pagerank")        # neuron property `pagerank` (the only write)

``project(model, layers="A:B" | cone="L:I[:D]" | cypher=FILE, weight="none"|"weight"|"abs",
undirected=False, algorithms=(), config=None, max_memory=None, driver=None, database=None)``;
``run(algorithm, model, *, ..., config=None, top=None, write_property=None)``. Algorithms:
:data:`ALGORITHMS` (``pagerank articlerank degree betweenness eigenvector wcc louvain leiden
hits``); ``config`` is the GDS configuration map, passed as a parameter (``dampingFactor``,
``maxIterations``, ``tolerance``, ``samplingSize``, ``samplingSeed``, ``orientation``, ...;
``relationshipWeightProperty: None`` runs unweighted on a weighted projection).

What it does
------------
* The projection is a Cypher projection (``gds.graph.project`` as an aggregation) of one
  model's neurons: native projections choose nodes by label, and every model shares
  ``:Neuron``. The node set is the selection's, as :func:`loader.neo4j.pull.pull` would return
  it (the neurons chosen, every edge entering them, and their sources), isolated neurons
  included. ``weight``: ``none`` (unweighted), ``weight`` (the signed weight), ``abs``
  (``|weight|``), projected as relationship property ``weight``. Louvain and Leiden run on an
  undirected view (``run`` projects one; ``project(undirected=True)``).
* Before anything is built, the sizes are counted (:func:`loader.neo4j.pull.plan_pull`) and the
  ``.estimate`` procedures priced on a graph of that size; above what the server's heap has
  available (``gds.debug.sysInfo``'s ``availableHeapInBytes``, or ``max_memory``) it is a
  one-line :class:`~loader.errors.TooLargeError`.
* The projection has a unique name and is always dropped (``try/finally``, so also on an error
  and on Ctrl-C).
* Read-only: projecting, streaming and stats run in READ sessions; only :meth:`Projection.write`
  (``--write-property``) writes, a property on the projected neurons.

Why hand-written ``CALL`` statements and not the official ``graphdatascience`` client: the
client (2.2 supports GDS >= 2.13 and driver 6, so it would run here) returns frames keyed by
GDS's internal node ids and streams every row to the client; here results are keyed by neuron
id, and ``top`` and per-layer summaries are computed in the same statement by the server
(``gds.util.asNode``, ``ORDER BY ... LIMIT``, aggregation), which matters for a 15M-neuron
model. It also opens its own sessions through its own query runner, where every statement of
weightgraph goes through :class:`~loader.neo4j.db.Database` (database choice, access mode);
and it brings pandas, requests, tenacity, textdistance and multimethod for a dozen procedure
calls. Projection cleanup is the ten lines of :func:`project`.

GDS semantics worth knowing (tests/test_gds.py checks each against NetworkX or the formula):

* PageRank: ``x(v) = (1 - d) + d * sum_{u -> v} x(u) * w(u, v) / W(u)`` (``W(u)`` u's
  out-weight), not divided by the node count, and a dangling node's score goes nowhere.
  NetworkX spreads dangling mass uniformly, which only adds to the uniform teleport term, so at
  convergence GDS's scores divided by their sum *are* ``nx.pagerank`` (same damping).
* ArticleRank: ``x(v) = (1 - d) + d * sum_{u -> v} x(u) * w(u, v) / (W(u) + mean degree)``,
  where the mean is the unweighted out-degree (relationships / nodes) even when weighted.
* Degree, weighted, sums only the positive weights: signed weights are refused.
* Sampled betweenness (``samplingSize``, ``samplingSeed``) runs on one thread unless told
  otherwise: with several, one seed gave different scores here.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import neo4j
import numpy as np

from ..errors import SelectionError, TooLargeError, WeightgraphError, one_line
from ..terminal import human
from .db import Database, using
from .pull import PullPlan, plan_pull

__all__ = ["ALGORITHMS", "Algorithm", "GdsError", "GdsResult", "Projection", "estimate_memory",
           "list_algorithms", "project", "run", "server_memory"]

WEIGHTS = ("none", "weight", "abs")
# Neuron properties of the contract (docs/CONTRACT.md); --write-property may not replace them.
CONTRACT_PROPERTIES = frozenset({"model", "id", "layer", "layer_index", "index", "op", "bias",
                                 "activation"})
_PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Rows per page of a streamed result (one record each; ~40 bytes on the wire).
STREAM_FETCH = 10_000


class GdsError(WeightgraphError):
    """A Graph Data Science call failed (the one-line reason from the server)."""


@dataclass(frozen=True)
class Algorithm:
    """One GDS algorithm as weightgraph runs it.

    ``procedure`` is the GDS name (``gds.pageRank``); ``columns`` the stream mode's yielded
    value columns and the names they get here; ``kind`` is ``centrality`` (a score per neuron)
    or ``community`` (an id per neuron); ``undirected``: it needs an undirected projection;
    ``weighted``: it reads ``relationshipWeightProperty``; ``signed``: negative weights are
    meaningful to it (PageRank, eigenvector, betweenness, Louvain and Leiden need weights
    >= 0: ``--weight abs``).
    """

    name: str
    procedure: str
    columns: tuple[tuple[str, str], ...]
    kind: str
    description: str
    undirected: bool = False
    weighted: bool = True
    signed: bool = False

    @property
    def value(self) -> str:
        """The column ``top`` sorts by and ``layer_summary`` aggregates."""
        return self.columns[0][1]


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("pagerank", "gds.pageRank", (("score", "score"),), "centrality",
              "PageRank (dampingFactor 0.85, maxIterations 20, tolerance 1e-7)"),
    Algorithm("articlerank", "gds.articleRank", (("score", "score"),), "centrality",
              "ArticleRank: PageRank damped by the mean out-degree"),
    # GDS's weighted degree sums only the positive weights: signed weights are refused.
    Algorithm("degree", "gds.degree", (("score", "score"),), "centrality",
              "degree (orientation NATURAL = out, REVERSE = in); weighted: sum of weights"),
    Algorithm("betweenness", "gds.betweenness", (("score", "score"),), "centrality",
              "betweenness, exact or sampled (samplingSize, samplingSeed)"),
    Algorithm("eigenvector", "gds.eigenvector", (("score", "score"),), "centrality",
              "eigenvector centrality (power iteration, L2-normalised)"),
    Algorithm("hits", "gds.hits", (("values.auth", "auth"), ("values.hub", "hub")), "centrality",
              "HITS authority and hub scores", weighted=False),
    Algorithm("wcc", "gds.wcc", (("componentId", "component"),), "community",
              "weakly connected components", signed=True),
    Algorithm("louvain", "gds.louvain", (("communityId", "community"),), "community",
              "Louvain communities (undirected view)", undirected=True),
    Algorithm("leiden", "gds.leiden", (("communityId", "community"),), "community",
              "Leiden communities (undirected view)", undirected=True),
)}


def list_algorithms() -> list[Algorithm]:
    """The algorithms :func:`run` knows, in a stable order."""
    return list(ALGORITHMS.values())


def algorithm(name: str) -> Algorithm:
    """The :class:`Algorithm` called ``name`` (case-insensitive), or a one-line error."""
    key = str(name).lower().replace("_", "").replace("-", "")
    if key not in ALGORITHMS:
        raise SelectionError(f"unknown GDS algorithm {name!r}; choose one of "
                             + ", ".join(ALGORITHMS))
    return ALGORITHMS[key]


@dataclass
class GdsResult:
    """An algorithm's answer: ``columns`` of equal length (numpy arrays), ``key`` naming the
    column that identifies a row (``id``: a neuron id; ``community`` for the largest
    communities of ``top``), plus what was projected and how long it took."""

    algorithm: str
    model: str
    selection: str
    weight: str
    key: str
    columns: dict[str, np.ndarray]
    nodes: int = 0
    relationships: int = 0
    estimate_bytes: int = 0
    project_seconds: float = 0.0
    compute_seconds: float = 0.0
    written: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def rows(self) -> list[dict[str, Any]]:
        """The columns as a list of dicts (Python numbers)."""
        names = list(self.columns)
        return [dict(zip(names, vals)) for vals in zip(*(self.columns[n].tolist()
                                                         for n in names))]

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{neuron id: value}`` of the first value column (``score``, ``component``...)."""
        if self.key != "id":
            raise GdsError("as_dict() needs a per-neuron result (not the top communities)")
        value = [c for c in self.columns if c != "id"][0]
        return dict(zip(self.columns["id"].tolist(), self.columns[value].tolist()))


# ---------------------------------------------------------------------------- memory
def server_memory(db: Database) -> dict[str, int]:
    """The server's heap as GDS sees it: ``available`` (what a projection may still take:
    GDS's own guard compares with it), ``max``, ``free`` (bytes)."""
    rows = {r["key"]: r["value"] for r in _call(db.read,
        "CALL gds.debug.sysInfo() YIELD key, value "
        "WHERE key IN ['availableHeapInBytes', 'heapMaxInBytes', 'heapFreeInBytes'] "
        "RETURN key, value")}
    return {"available": int(rows["availableHeapInBytes"]), "max": int(rows["heapMaxInBytes"]),
            "free": int(rows["heapFreeInBytes"])}


def _relationship_projection(weighted: bool, undirected: bool) -> dict:
    spec: dict[str, Any] = {"type": "W", "orientation": "UNDIRECTED" if undirected else "NATURAL"}
    if weighted:
        spec["properties"] = "weight"
    return {"W": spec}


def estimate_memory(db: Database, nodes: int, relationships: int, *, weight: str = "none",
                    undirected: bool = False, algorithms: tuple[str, ...] = (),
                    config: dict | None = None) -> int:
    """Bytes of heap (the estimate's upper bound) to project a graph of this size and run each
    of ``algorithms`` on it: the largest of ``gds.graph.project.estimate`` and every
    ``gds.<algorithm>.stream.estimate`` on a fictitious graph of the same size (those include
    the graph). Nothing is built."""
    weighted = weight != "none"
    rel = _relationship_projection(weighted, undirected)
    # A fictitious graph's relationshipCount is what is stored: an undirected view stores
    # every relationship twice (the orientation alone does not change the estimate).
    counts = {"nodeCount": int(nodes),
              "relationshipCount": int(relationships) * (2 if undirected else 1)}
    best = _call(db.read_one, "CALL gds.graph.project.estimate('*', $rel, $counts) "
                 "YIELD bytesMax RETURN bytesMax", rel=rel, counts=counts)["bytesMax"]
    for name in algorithms:
        algo = algorithm(name)
        cfg = _algorithm_config(algo, weighted, config)
        graph = {**counts, "nodeProjection": "*", "relationshipProjection": rel}
        rec = _call(db.read_one, f"CALL {algo.procedure}.stream.estimate($graph, $config) "
                    "YIELD bytesMax RETURN bytesMax", graph=graph, config=cfg)
        best = max(best, rec["bytesMax"])
    return int(best)


def _algorithm_config(algo: Algorithm, weighted: bool, config: dict | None) -> dict:
    cfg = dict(config or {})
    if algo.name == "betweenness" and "samplingSeed" in cfg:
        # Sampled betweenness on several threads gave different scores for the same seed
        # (GDS 2.13.9 here); one thread makes the seed mean what it says.
        cfg.setdefault("concurrency", 1)
    if weighted and algo.weighted:
        cfg.setdefault("relationshipWeightProperty", "weight")
    # relationshipWeightProperty=None: unweighted on a weighted projection (degree counts).
    return {k: v for k, v in cfg.items() if v is not None}


def _call(method, statement: str, **params):
    """Run a GDS statement; a server refusal becomes a one-line :class:`GdsError`."""
    try:
        return method(statement, params)
    except neo4j.exceptions.ClientError as exc:
        raise GdsError(f"Graph Data Science: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = one_line(exc)
    # GDS wraps its reason: "Failed to invoke procedure `gds...`: Caused by: java.lang...: X"
    m = re.search(r"Caused by: [\w.$]+(?:Exception|Error): (.*)", text)
    return m.group(1) if m else text


# ---------------------------------------------------------------------------- projections
_WEIGHT_EXPR = {"none": None, "weight": "w.weight", "abs": "abs(w.weight)"}

# Each neuron chosen as a target brings every edge entering it (and so its sources); a target
# without incoming edges (an input neuron) comes as a row without a target, which GDS projects
# as a node alone.
_PROJECT_TARGETS = """
{unwind}
OPTIONAL MATCH (s:Neuron)-[w:W]->(t)
WITH CASE WHEN s IS NULL THEN t ELSE s END AS a, CASE WHEN s IS NULL THEN NULL ELSE t END AS b, w
WITH gds.graph.project($wg_graph, a, b, {data}, $wg_config) AS g
RETURN g.nodeCount AS nodes, g.relationshipCount AS relationships, g.projectMillis AS millis
"""
_TARGET_RANGES = """UNWIND $wg_ranges AS r
MATCH (t:Neuron) WHERE t.model = $model AND t.id >= r[0] AND t.id < r[1]"""
_TARGET_IDS = """UNWIND $wg_ids AS i
MATCH (t:Neuron {model: $model, id: i})"""
_PROJECT_CYPHER = """
CALL {{
{statement}
}}
MATCH (a:Neuron {{model: $model, id: src}}), (b:Neuron {{model: $model, id: dst}})
WITH a, b, weight
WITH gds.graph.project($wg_graph, a, b, {data}, $wg_config) AS g
RETURN g.nodeCount AS nodes, g.relationshipCount AS relationships, g.projectMillis AS millis
"""


def _data_config(weight: str, expression: str | None) -> str:
    # Built from the closed set _WEIGHT_EXPR (never from user input).
    if expression is None:
        return "{relationshipType: 'W'}"
    return f"{{relationshipType: 'W', relationshipProperties: {{weight: coalesce({expression}, 0.0)}}}}"


def _projection_statement(plan: PullPlan, weight: str) -> tuple[str, dict]:
    if plan.edge_pages and plan.edge_pages[0][0] == "cypher":
        expr = {"none": None, "weight": "toFloat(weight)", "abs": "abs(toFloat(weight))"}[weight]
        return (_PROJECT_CYPHER.format(statement=plan.edge_pages[0][1],
                                       data=_data_config(weight, expr)),
                dict(plan.cypher_params))
    data = _data_config(weight, _WEIGHT_EXPR[weight])
    if plan.node_ids is not None:
        # A cone: the targets are the neurons less than DEPTH hops away (the pull's edge
        # pages); the neurons DEPTH hops away come in as their sources.
        targets = [np.asarray(p[1], dtype=np.int64) for p in plan.edge_pages if p[0] == "ids"]
        ids = np.unique(np.concatenate(targets)) if targets else np.zeros(0, np.int64)
        if not len(ids):
            ids = plan.node_ids
        return (_PROJECT_TARGETS.format(unwind=_TARGET_IDS, data=data),
                {"wg_ids": ids.tolist()})
    return (_PROJECT_TARGETS.format(unwind=_TARGET_RANGES, data=data),
            {"wg_ranges": [[int(a), int(b)] for a, b in plan.node_ranges]})


class Projection:
    """A projected graph of one model in the GDS catalog; made by :func:`project`, which drops
    it when its ``with`` block ends. Every algorithm call names it by parameter."""

    def __init__(self, db: Database, name: str, plan: PullPlan, weight: str, undirected: bool):
        self.db = db
        self.name = name
        self.plan = plan
        self.model = plan.model
        self.selection = plan.selection
        self.weight = weight
        self.undirected = undirected
        self.nodes = 0
        self.relationships = 0
        self.estimate_bytes = 0
        self.project_seconds = 0.0

    def __repr__(self) -> str:
        return (f"Projection({self.name!r}, model={self.model!r}, {self.selection}, "
                f"weight={self.weight}, {self.nodes} nodes, {self.relationships} rels)")

    # ------------------------------------------------------------------ checks
    def _prepare(self, name: str, config: dict | None) -> tuple[Algorithm, dict]:
        algo = algorithm(name)
        if algo.undirected and not self.undirected:
            raise SelectionError(f"{algo.name} runs on an undirected view: project with "
                                 "undirected=True (gds.run does it)")
        _check_weight(algo, self.weight)
        return algo, _algorithm_config(algo, self.weight != "none", config)

    def _result(self, algo: Algorithm, key: str, columns: dict, seconds: float,
                **extra) -> GdsResult:
        return GdsResult(algorithm=algo.name, model=self.model, selection=self.selection,
                         weight=self.weight, key=key, columns=columns, nodes=self.nodes,
                         relationships=self.relationships, estimate_bytes=self.estimate_bytes,
                         project_seconds=self.project_seconds, compute_seconds=seconds, **extra)

    # ------------------------------------------------------------------ modes
    def stream(self, name: str, config: dict | None = None, *, top: int | None = None
               ) -> GdsResult:
        """Run an algorithm and bring its values back keyed by neuron id.

        ``top=K`` keeps the K neurons of highest value (the first column: ``score``, ``auth``)
        for a centrality, or the K largest communities (columns ``community``, ``size``) for a
        community algorithm, sorted by the server. Without ``top`` every projected neuron
        comes back, in pages of :data:`STREAM_FETCH` rows.
        """
        algo, cfg = self._prepare(name, config)
        yields = ", ".join(sorted({c.split(".")[0] for c, _ in algo.columns}))
        values = ", ".join(f"{c} AS {n}" for c, n in algo.columns)
        call = f"CALL {algo.procedure}.stream($graph, $config) YIELD nodeId, {yields}\n"
        if top is not None and algo.kind == "community":
            statement = (call + f"WITH {algo.columns[0][0]} AS community, count(*) AS size\n"
                         "RETURN community, size ORDER BY size DESC, community LIMIT $top")
            key, names = "community", ["community", "size"]
        else:
            statement = (call + f"WITH gds.util.asNode(nodeId).id AS id, {values}\n"
                         f"RETURN id, {', '.join(n for _, n in algo.columns)}")
            if top is not None:
                statement += f" ORDER BY {algo.value} DESC, id LIMIT $top"
            key, names = "id", ["id"] + [n for _, n in algo.columns]
        start = time.perf_counter()
        columns = self._stream_columns(statement, names, config=cfg,
                                       top=None if top is None else int(top))
        return self._result(algo, key, columns, time.perf_counter() - start)

    def _stream_columns(self, statement: str, names: list[str], **params) -> dict:
        chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
        buffer: dict[str, list] = {n: [] for n in names}

        def flush():
            for n in names:
                chunks[n].append(np.asarray(buffer[n]))
                buffer[n] = []

        try:
            with self.db.session(read=True, fetch_size=STREAM_FETCH) as s:
                for rec in s.run(statement, {"graph": self.name, **params}):
                    for n in names:
                        buffer[n].append(rec[n])
                    if len(buffer[names[0]]) >= STREAM_FETCH:
                        flush()
        except neo4j.exceptions.ClientError as exc:
            raise GdsError(f"Graph Data Science: {_reason(exc)}") from None
        flush()
        out = {}
        for n in names:
            arr = np.concatenate(chunks[n]) if chunks[n] else np.zeros(0)
            out[n] = arr.astype(np.int64 if n in ("id", "community", "size") else np.float64)
        return out

    def stats(self, name: str, config: dict | None = None) -> dict[str, Any]:
        """The algorithm's ``stats`` mode: its summary (``componentCount``, ``modularity``,
        ``ranIterations``, ``centralityDistribution``, ``computeMillis``...) without a row per
        neuron."""
        algo, cfg = self._prepare(name, config)
        with self.db.session(read=True) as s:
            try:
                rec = s.run(f"CALL {algo.procedure}.stats($graph, $config)",
                            graph=self.name, config=cfg).single()
            except neo4j.exceptions.ClientError as exc:
                raise GdsError(f"Graph Data Science: {_reason(exc)}") from None
        return {k: v for k, v in dict(rec).items() if k != "configuration"}

    def layer_summary(self, name: str, config: dict | None = None) -> list[dict[str, Any]]:
        """Per layer, aggregated by the server: ``layer_index``, ``layer``, ``neurons``, and
        for a centrality ``mean``, ``min``, ``max``, ``sum`` of the first value column, for a
        community algorithm ``communities`` (distinct ids among the layer's neurons)."""
        algo, cfg = self._prepare(name, config)
        column = algo.columns[0][0]
        yields = column.split(".")[0]
        if algo.kind == "community":
            agg = f"count(DISTINCT {column}) AS communities"
        else:
            agg = (f"avg({column}) AS mean, min({column}) AS min, max({column}) AS max, "
                   f"sum({column}) AS sum")
        statement = (f"CALL {algo.procedure}.stream($graph, $config) YIELD nodeId, {yields}\n"
                     f"WITH gds.util.asNode(nodeId) AS n, {yields}\n"
                     f"RETURN n.layer_index AS layer_index, n.layer AS layer, "
                     f"count(*) AS neurons, {agg} ORDER BY layer_index")
        with self.db.session(read=True) as s:
            try:
                return [dict(r) for r in s.run(statement, graph=self.name, config=cfg)]
            except neo4j.exceptions.ClientError as exc:
                raise GdsError(f"Graph Data Science: {_reason(exc)}") from None

    def write(self, name: str, property: str, config: dict | None = None) -> GdsResult:
        """Write the algorithm's value to every projected neuron as property ``property``
        (HITS: ``<property>_auth`` and ``<property>_hub``); the only mode that changes the
        database. Returns the number of properties written in ``written``."""
        algo, cfg = self._prepare(name, config)
        _check_property(property)
        if algo.name == "hits":
            cfg.update(writeProperty="", authProperty=f"{property}_auth", hubProperty=f"{property}_hub")
        else:
            cfg["writeProperty"] = property
        start = time.perf_counter()
        with self.db.session() as s:
            try:
                rec = s.run(f"CALL {algo.procedure}.write($graph, $config) "
                            "YIELD nodePropertiesWritten RETURN nodePropertiesWritten",
                            graph=self.name, config=cfg).single()
            except neo4j.exceptions.ClientError as exc:
                raise GdsError(f"Graph Data Science: {_reason(exc)}") from None
        return self._result(algo, "id", {}, time.perf_counter() - start,
                            written=int(rec["nodePropertiesWritten"]))


def _check_weight(algo: Algorithm, weight: str) -> None:
    if weight not in WEIGHTS:
        raise SelectionError(f"weight must be one of {', '.join(WEIGHTS)}, got {weight!r}")
    if weight == "weight" and algo.weighted and not algo.signed:
        raise SelectionError(f"{algo.name} needs weights >= 0 and the model's are signed: use "
                             "--weight abs (|weight|) or --weight none")


def _check_property(prop: str) -> None:
    if not isinstance(prop, str) or not _PROPERTY.fullmatch(prop):
        raise SelectionError(f"--write-property wants a property name (letters, digits, _), "
                             f"got {prop!r}")
    if prop in CONTRACT_PROPERTIES:
        raise SelectionError(f"--write-property {prop!r} would overwrite the contract's neuron "
                             f"property; choose another name (e.g. gds_{prop})")


@contextlib.contextmanager
def project(model: str, *, layers: str | None = None, cone: str | None = None,
            cypher: str | None = None, params: dict | None = None, weight: str = "none",
            undirected: bool = False, algorithms: tuple[str, ...] | list[str] = (),
            config: dict | None = None, max_memory: int | None = None,
            driver: Database | neo4j.Driver | None = None, database: str | None = None,
            allow_incomplete: bool = False) -> Iterator[Projection]:
    """Project a loaded model (or a selection of it) into the GDS catalog for the ``with``
    block, then drop it, whatever happens inside (an error, Ctrl-C).

    Parameters
    ----------
    model : str
        A model loaded in Neo4j (state ``complete``, unless ``allow_incomplete``).
    layers, cone, cypher, params
        At most one selection, as in :func:`loader.neo4j.pull.pull`.
    weight : {"none", "weight", "abs"}
        The relationship property ``weight`` of the projection.
    undirected : bool
        Project every relationship in both directions (Louvain, Leiden).
    algorithms : sequence of str
        Algorithms whose memory estimate counts too (their estimates include the graph).
    config : dict, optional
        The algorithms' configuration, for their estimates.
    max_memory : int, optional
        Refuse above this many bytes instead of the server's available heap.

    Raises
    ------
    TooLargeError
        The estimate is above the limit (nothing was projected).

    Examples
    --------
    >>> with project("small", weight="abs") as g:
    ...     g.stream("pagerank", top=3).columns["id"]
    """
    if weight not in WEIGHTS:
        raise SelectionError(f"weight must be one of {', '.join(WEIGHTS)}, got {weight!r}")
    for name in algorithms:
        _check_weight(algorithm(name), weight)
    with using(driver, database) as db:
        plan = plan_pull(model, layers=layers, cone=cone, cypher=cypher, driver=db,
                         params=params, allow_incomplete=allow_incomplete)
        need = estimate_memory(db, plan.n_nodes, plan.n_edges, weight=weight,
                               undirected=undirected, algorithms=tuple(algorithms),
                               config=config)
        heap = server_memory(db)
        limit = heap["available"] if max_memory is None else int(max_memory)
        what = f"{plan.selection} of model {model!r}"
        if need > limit:
            algos = f" and running {', '.join(algorithms)}" if algorithms else ""
            raise TooLargeError(
                f"projecting {what} ({plan.n_nodes:,} neurons, {plan.n_edges:,} relationships"
                f", weight {weight}){algos} needs up to {human(need)} of Neo4j heap; "
                + (f"the limit is {human(limit)}" if max_memory is not None else
                   f"the server has {human(limit)} available")
                + f" (heap max {human(heap['max'])}): raise "
                "server.memory.heap.max_size (NEO4J_HEAP_SIZE) or select less (--layers, --cone)")
        statement, extra = _projection_statement(plan, weight)
        graph_name = f"wg-{secrets.token_hex(6)}-{model}"[:120]
        proj = Projection(db, graph_name, plan, weight, undirected)
        proj.estimate_bytes = need
        cfg = {"undirectedRelationshipTypes": ["*"]} if undirected else {}
        try:
            start = time.perf_counter()
            with db.session(read=True) as s:
                try:
                    rec = s.run(statement, {"model": model, "wg_graph": graph_name,
                                            "wg_config": cfg, **extra}).single()
                except neo4j.exceptions.ClientError as exc:
                    raise GdsError(f"Graph Data Science: projecting {what}: "
                                   f"{_reason(exc)}") from None
            proj.project_seconds = time.perf_counter() - start
            if rec is None or rec["nodes"] is None:
                raise SelectionError(f"{what} holds no neurons")
            proj.nodes, proj.relationships = int(rec["nodes"]), int(rec["relationships"])
            yield proj
        finally:
            _drop(db, graph_name)


def _drop(db: Database, graph_name: str) -> None:
    """Drop a projection (no error if it is not there: the projection itself may have failed)."""
    with db.session(read=True) as s:
        s.run("CALL gds.graph.drop($g, false) YIELD graphName RETURN graphName",
              g=graph_name).consume()


def projections(db: Database) -> list[str]:
    """Names of the graphs in the GDS catalog (this module's start with ``wg-``)."""
    return [r["graphName"] for r in db.read("CALL gds.graph.list() YIELD graphName "
                                            "RETURN graphName")]


def run(algorithm_name: str, model: str, *, layers: str | None = None, cone: str | None = None,
        cypher: str | None = None, params: dict | None = None, weight: str = "none",
        config: dict | None = None, top: int | None = None, write_property: str | None = None,
        max_memory: int | None = None, driver: Database | neo4j.Driver | None = None,
        database: str | None = None, allow_incomplete: bool = False) -> GdsResult:
    """Project, run one algorithm and drop: the values keyed by neuron id (``stream``), or
    written as neuron property ``write_property``.

    Examples
    --------
    >>> r = run("pagerank", "vgg16_32", weight="abs", top=10)
    >>> r.rows()[0]
    {'id': 318951, 'score': 3.21}
    """
    algo = algorithm(algorithm_name)
    with project(model, layers=layers, cone=cone, cypher=cypher, params=params, weight=weight,
                 undirected=algo.undirected, algorithms=(algo.name,), config=config,
                 max_memory=max_memory, driver=driver, database=database,
                 allow_incomplete=allow_incomplete) as g:
        if write_property is not None:
            return g.write(algo.name, write_property, config)
        return g.stream(algo.name, config, top=top)
