"""What Neo4j holds about a model: its ``(:Model)`` node (graph data, plan, load state and
checksums), the per-layer checksums a load records and ``verify`` compares, and deleting it.

**States.** ``Model.state`` is always true of the graph in the database, because every state is
written (one transaction) *before* the work it announces, and the state that says the work is
done is written after its last transaction:

=============  ==========================================================================
``loading``    an online load is writing the graph, or was interrupted
``complete``   every neuron and relationship is there (what ``verify`` checks)
``deleting``   a delete is removing the graph, or was interrupted
``replacing``  ``--replace`` is removing the previous graph before loading the new one (the
               Model node already describes the new one), or was interrupted
``failed``     a load stopped on an error it could record (``Model.error``)
=============  ==========================================================================

Every reader calls :func:`require_complete`, which refuses any other state with one line
naming the state and the command that fixes it (:func:`fix_command`).

A model's graph-level data (``graph_data``) carries a ``layers`` table; :class:`LayerTable`
answers the lookups every reader needs (a layer by name, by index, the id range of its
neurons).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import neo4j
import numpy as np

from ..errors import SelectionError, WeightgraphError
from ..sinks.neo4j_labels import ALL as ALL_LABELS, CHANNEL, labels_for, labels_of
from .db import Database, using
from .faults import kill_point

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class ModelNotFound(WeightgraphError):
    """No ``(:Model)`` of that name in Neo4j."""


class ModelStateError(WeightgraphError):
    """A model that cannot be used as asked in its present state (not loaded completely...)."""


class ModelIncomplete(ModelStateError):
    """A reader was asked for a model whose state is not ``complete``."""

    def __init__(self, name: str, state: str, message: str):
        self.name, self.state = name, state
        super().__init__(message)


#: What each state means, in the words of the one-line errors.
STATES = {
    "loading": "a load is writing it or was interrupted",
    "complete": "every neuron and relationship is loaded",
    "deleting": "a delete was interrupted",
    "replacing": "a --replace was interrupted while deleting the previous graph",
    "failed": "the load failed",
}


def check_name(name: str) -> str:
    """``name`` if it is a valid model name, else a one-line :class:`ModelStateError`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ModelStateError(f"model name {name!r} is not allowed: use 1-64 letters, digits, "
                              "'_', '.' or '-', starting with a letter or digit")
    return name


# ---------------------------------------------------------------------------- the Model node
def model_node(db: Database, name: str) -> dict | None:
    """The raw properties of ``(:Model {name})``, or None."""
    rec = db.read_one("MATCH (m:Model {name: $name}) RETURN properties(m) AS m", name=name)
    return None if rec is None else dict(rec["m"])


def model_exists(driver, name: str, database: str | None = None) -> dict | None:
    """The ``(:Model)`` properties of ``name`` (None when there is no such model)."""
    with using(driver, database) as db:
        return model_node(db, name)


def create_model_node(db: Database, name: str, props: dict) -> None:
    db.write("CREATE (m:Model {name: $name}) SET m += $props", name=name, props=props)


def set_model_state(db: Database, name: str, **props) -> None:
    db.write("MATCH (m:Model {name: $name}) SET m += $props", name=name, props=props)


def reset_model_node(db: Database, name: str, props: dict) -> None:
    """Replace every property of ``(:Model {name})`` with ``props`` (one transaction)."""
    db.write("MATCH (m:Model {name: $name}) SET m = $props SET m.name = $name",
             name=name, props=props)


def load_command(name: str, props: dict, flag: str = "--resume") -> str:
    """The ``weightgraph load`` command line that made this model, with ``flag``: what a
    one-line error tells the user to run (``MODEL`` where the source is not recorded)."""
    try:
        source = json.loads(props.get("source") or "{}")
    except (TypeError, json.JSONDecodeError):
        source = {}
    args = ["weightgraph load", source.get("model") or "MODEL"]
    if source.get("weights") not in (None, "default"):
        args += ["--weights", str(source["weights"])]
    if source.get("input_shape"):
        args += ["--input-shape", ",".join(str(v) for v in source["input_shape"])]
    if source.get("no_top"):
        args.append("--no-top")
    if props.get("granularity") == "channel":
        args += ["--granularity", "channel"]
    for key in ("layers", "cone"):
        if source.get(key):
            args += [f"--{key}", str(source[key])]
    if props.get("mode") == "bulk":
        args += ["--mode", "bulk"]
    return " ".join(args + ["--name", name, flag])


def fix_command(name: str, props: dict) -> str:
    """The command that brings a model in state ``props['state']`` back to ``complete``."""
    state = props.get("state")
    if state == "deleting":
        return f"weightgraph delete --name {name}"
    if state == "failed":
        return f"{load_command(name, props)} (or weightgraph delete --name {name})"
    return load_command(name, props)


def state_of(props: dict) -> str:
    # Models loaded before states existed carry none: they were written complete or not at all.
    return props.get("state") or "complete"


def require_complete(db: Database, name: str, allow_incomplete: bool = False) -> dict:
    """The parsed ``(:Model)`` node of ``name`` (see :func:`model_info`) if its state is
    ``complete``; the check every reader of a model makes first.

    Parameters
    ----------
    db : Database
        The connection.
    name : str
        The model.
    allow_incomplete : bool
        Return the model in any state (``--allow-incomplete``: look at a partial graph).

    Raises
    ------
    ModelNotFound
        No such model (the message lists the loaded ones).
    ModelIncomplete
        One line naming the state and the command that fixes it.

    Examples
    --------
    >>> with Database.connect() as db:
    ...     info = require_complete(db, "vgg16_b1")
    """
    check_name(name)
    info = model_info(db, name)
    state = state_of(info)
    if state != "complete" and not allow_incomplete:
        why = STATES.get(state, "unknown state")
        error = f": {info['error']}" if state == "failed" and info.get("error") else ""
        raise ModelIncomplete(
            name, state, f"model {name!r} is {state} ({why}{error}): run `{fix_command(name, info)}`"
            ", or pass --allow-incomplete to read the partial graph anyway")
    return info


def require_neurons(info: dict, what: str) -> dict:
    """``info`` (a parsed Model node) if it is a neuron model; a one-line
    :class:`ModelStateError` for a channel model, which ``what`` cannot read."""
    if info.get("granularity") == "channel":
        raise ModelStateError(f"model {info['name']!r} is a channel graph (--granularity "
                              f"channel): {what} works on neuron models; load the model at "
                              "neuron granularity for it")
    return info


def loaded_models(driver: Database | neo4j.Driver | None = None, *,
                  database: str | None = None) -> list[str]:
    """Names of the models in the database, sorted."""
    with using(driver, database) as db:
        return [r["name"] for r in db.read("MATCH (m:Model) RETURN m.name AS name ORDER BY name")]


def model_info(driver: Database | neo4j.Driver | None, name: str, *,
               database: str | None = None) -> dict:
    """The ``(:Model)`` node of a loaded model with ``graph_data`` parsed.

    Raises
    ------
    ModelNotFound
        The message lists the loaded models.
    """
    with using(driver, database) as db:
        props = model_node(db, name)
        known = loaded_models(db) if props is None else []
    if props is None:
        raise ModelNotFound(f"no model {name!r} in Neo4j; loaded models: "
                            + (", ".join(known) if known else "(none; load one with "
                               "`weightgraph load`)"))
    raw = props.get("graph_data")
    try:
        props["graph_data"] = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise WeightgraphError(f"model {name!r}: Model.graph_data is not valid JSON") from None
    if not props["graph_data"] or "layers" not in props["graph_data"]:
        raise WeightgraphError(f"model {name!r} has no graph_data layers table; reload it")
    return props


class LayerTable:
    """Layer lookups over ``graph_data['layers']``: neuron layers carry their id ``offset``."""

    def __init__(self, layers: list[dict]):
        self.layers = sorted(layers, key=lambda l: l["index"])
        self.by_name = {l["name"]: l for l in self.layers}
        self.neuron_layers = [l for l in self.layers if l.get("offset") is not None
                              and l.get("neurons", 0) > 0]
        self.by_index = {l["index"]: l for l in self.neuron_layers}

    def get(self, name: str) -> dict:
        try:
            return self.by_name[name]
        except KeyError:
            names = ", ".join(l["name"] for l in self.layers)
            raise SelectionError(f"no layer named {name!r}; layers: {names}") from None

    def pages(self, layer: dict, page_edges: int, lo: int | None = None, hi: int | None = None):
        """``(lo, hi)`` id ranges of a layer, each holding about ``page_edges`` incoming edges."""
        lo = layer["offset"] if lo is None else lo
        hi = layer["offset"] + layer["neurons"] if hi is None else hi
        degree = max(1, math.ceil(layer.get("edges", 0) / max(1, layer["neurons"])))
        step = max(1, page_edges // degree)
        return [(a, min(hi, a + step)) for a in range(lo, hi, step)]


# ---------------------------------------------------------------------------- checksums
class LayerChecksums:
    """Per layer (by index): nodes, edges, their weight sum and |weight| sum.

    What ``verify`` compares Neo4j with. Accumulated from the enumeration itself (by the
    online load up front, by the bulk load while it writes its CSV files), so it needs no
    second look at the model: random weights would not come back the same. A layer's node
    count is under ``neurons`` (``channels`` for a channel graph); a channel graph's layers
    also carry the sums of the edges' ``edges`` (``neuron_edges``), ``total`` and ``kernel``
    values, so that verify sees every property a relationship holds.
    """

    def __init__(self, graph):
        labels = labels_for(graph)
        self.channel = labels is CHANNEL
        self.layers: dict[str, dict] = {}
        for i, mask in graph.node_masks.items():
            full = graph.n_channels(i) if self.channel else graph.entries[i].op.n_neurons
            entry = {"layer": graph.entries[i].name,
                     labels.unit: full if mask is None else int(mask.sum()),
                     "edges": 0, "weight_sum": 0.0, "abs_sum": 0.0}
            if self.channel:
                entry.update(neuron_edges=0, total_sum=0.0, total_abs=0.0, kernel_sum=0.0,
                             kernel_abs=0.0)
            self.layers[str(i)] = entry

    def add(self, batch) -> None:
        c = self.layers[str(batch.layer_index)]
        w = batch.weight.astype(np.float64)
        c["edges"] += len(batch)
        c["weight_sum"] += float(w.sum())
        c["abs_sum"] += float(np.abs(w).sum())
        if self.channel:
            c["neuron_edges"] += int(batch.edges.sum())
            c["total_sum"] += float(batch.total.sum())
            c["total_abs"] += float(np.abs(batch.total).sum())
            if batch.kernel is not None:
                k = batch.kernel.astype(np.float64)
                c["kernel_sum"] += float(k.sum())
                c["kernel_abs"] += float(np.abs(k).sum())


# (sum, the |sum| that bounds its rounding) pairs a checksum table may hold.
_SUMS = (("weight_sum", "abs_sum"), ("total_sum", "total_abs"), ("kernel_sum", "kernel_abs"))
# Counts a checksum table may hold: compared exactly.
_COUNTS = ("neurons", "channels", "edges", "neuron_edges")


def layer_checksums(graph, batch_size: int = 1 << 20) -> dict[str, dict]:
    """:class:`LayerChecksums` of the whole (selected) graph, as a JSON-able dict."""
    sums = LayerChecksums(graph)
    for b in graph.iter_edge_batches(batch_size, reuse_buffers=True):
        sums.add(b)
    return sums.layers


def sums_agree(got: float, want: float, abs_sum: float) -> bool:
    """Two sums of the same float32 weights, added in different orders, agree."""
    return abs(got - want) <= 1e-9 * max(1.0, abs_sum)


def same_checksums(a: dict, b: dict) -> bool:
    """Two checksum tables of the same graph (counts equal, sums within float tolerance)."""
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if any(x.get(c) != y.get(c) for c in _COUNTS):
            return False
        if any(not sums_agree(y.get(s, 0.0), x.get(s, 0.0), x.get(t, 0.0)) for s, t in _SUMS):
            return False
    return True



# ---------------------------------------------------------------------------- delete
def delete_model(driver, name: str, database: str | None = None, *, chunk: int = 50_000,
                 progress: bool = False) -> int:
    """Delete a model in bounded transactions; returns how many nodes and relationships went.

    Resumable: the state ``deleting`` is written first (its own transaction, before any
    change), so a delete that was killed leaves a model every reader refuses, and running
    ``delete_model`` again finishes it. The ``(:Model)`` node goes last. A name with no
    ``(:Model)`` node deletes whatever neurons carry it (nothing, usually) and returns 0.
    """
    with using(driver, database) as db:
        db.write("MATCH (m:Model {name: $name}) SET m.state = 'deleting', "
                 "m.deleting_since = coalesce(m.deleting_since, timestamp())", name=name)
        deleted = delete_graph(db, name, chunk=chunk)
        kill_point("delete.before_model")
        db.write("MATCH (m:Model {name: $name}) DETACH DELETE m", name=name)
    return deleted


def delete_graph(db: Database, name: str, *, chunk: int = 50_000) -> int:
    """Delete a model's relationships, nodes (neurons or channels) and load records, keeping its ``(:Model)``
    node (whose state the caller has set to ``deleting`` or ``replacing`` first).

    Relationships go first, ``chunk`` at a time, walking the neurons in id order from a cursor
    (the (model, id) index provides the order, so each transaction reads only what it deletes).
    ``CALL {...} IN TRANSACTIONS`` over a MATCH of the relationships is *not* bounded: the
    planner makes the MATCH eager before deleting what it matched, and 55M relationships
    exceeded the 2.8 GiB transaction memory pool. A rerun after a kill starts again at cursor
    0 and finds the neurons whose relationships are gone at no cost but the index walk.
    """
    deleted = 0
    # A model is of one granularity; both are walked so that a delete never depends on a
    # Model node (an unknown one costs one empty index seek).
    for labels in ALL_LABELS:
        cursor = 0
        while True:
            rec = db.write_one(labels.cypher(_DELETE_RELATIONSHIPS), name=name, cursor=cursor,
                               chunk=chunk)
            if not rec["deleted"]:
                break
            deleted += rec["deleted"]
            cursor = rec["last"]
            kill_point("delete.relationships")
        step = labels.cypher(_DELETE_NEURONS)
        while n := db.write_one(step, name=name, chunk=chunk)["deleted"]:
            deleted += n
    while n := db.write_one(_DELETE_BATCHES, name=name, chunk=chunk)["deleted"]:
        deleted += n
    # Traces describe this graph: they go with it (on replace too).
    deleted += delete_traces(db, model=name)
    return deleted


def delete_traces(db: Database, *, trace: str | None = None, model: str | None = None,
                  chunk: int = 2_000) -> int:
    """Delete one stored trace (``trace``) or every trace of a model (``model``): its
    ``(:TraceChunk)`` nodes in bounded transactions, then its ``(:Trace)`` node."""
    if (trace is None) == (model is None):
        raise ValueError("name a trace or a model")
    deleted = 0
    names = [trace] if trace is not None else [
        r["name"] for r in db.read("MATCH (t:Trace {model: $model}) RETURN t.name AS name",
                                   model=model)]
    for name in names:
        while n := db.write_one(_DELETE_CHUNKS, trace=name, chunk=chunk)["deleted"]:
            deleted += n
        deleted += db.write_one("MATCH (t:Trace {name: $name}) DETACH DELETE t "
                                "RETURN count(*) AS deleted", name=name)["deleted"]
    return deleted


_DELETE_RELATIONSHIPS = """
MATCH (n:Neuron {model: $name}) WHERE n.id >= $cursor
WITH n ORDER BY n.id
MATCH (n)-[r:W]->()
WITH n, r LIMIT $chunk
DELETE r
RETURN max(n.id) AS last, count(r) AS deleted
"""
_DELETE_NEURONS = """
MATCH (n:Neuron {model: $name}) WITH n LIMIT $chunk
DETACH DELETE n
RETURN count(*) AS deleted
"""
_DELETE_CHUNKS = """
MATCH (c:TraceChunk {trace: $trace}) WITH c LIMIT $chunk
DELETE c
RETURN count(*) AS deleted
"""
_DELETE_BATCHES = """
MATCH (b:LoadBatch {model: $name}) WITH b LIMIT $chunk
DELETE b
RETURN count(*) AS deleted
"""


# ---------------------------------------------------------------------------- verify
@dataclass
class Verification:
    name: str
    ok: bool
    rows: list[dict]

    def lines(self) -> list[str]:
        out = []
        for r in self.rows:
            mark = "ok " if r["ok"] else "BAD"
            unit = r.get("unit", "neurons")
            out.append(f"{mark} {r['layer'][:32]:<32} {unit} {r['neurons']:>10,}/"
                       f"{r['want_neurons']:<10,} edges {r['edges']:>12,}/{r['want_edges']:<12,} "
                       f"weight sum {r['weight_sum']:.6g}/{r['want_weight_sum']:.6g}"
                       + (f" ({r['detail']})" if r.get("detail") else ""))
        return out


def verify(name: str, *, driver: Database | neo4j.Driver | None = None,
           database: str | None = None) -> Verification:
    """Compare Neo4j with the load's plan: nodes, edges and weight sums per layer (and, for a
    channel model, the sums of the relationships' ``edges``, ``total`` and ``kernel``).

    The expected figures were computed from the enumeration when the load started.
    """
    check_name(name)
    with using(driver, database) as db:
        m = model_node(db, name)
        if m is None:
            raise ModelNotFound(f"no model {name!r} in Neo4j")
        labels = labels_of(m.get("granularity"))
        want = json.loads(m["checksums"])
        rows, ok = [], True
        statement = _CHANNEL_LAYER_SUMS if labels is CHANNEL else _LAYER_SUMS
        for idx, w in sorted(want.items(), key=lambda kv: int(kv[0])):
            got = db.read_one(statement, name=name, li=int(idx))
            good = (got["n"] == w[labels.unit] and got["e"] == w["edges"]
                    and sums_agree(got["ws"], w["weight_sum"], w["abs_sum"]))
            detail = ""
            if labels is CHANNEL:
                bad = [what for what, fine in (
                    ("edges", got["ne"] == w["neuron_edges"]),
                    ("total", sums_agree(got["ts"], w["total_sum"], w["total_abs"])),
                    ("kernel", sums_agree(got["ks"], w["kernel_sum"], w["kernel_abs"])))
                    if not fine]
                good &= not bad
                detail = "differs: " + ", ".join(bad) if bad else ""
            ok &= good
            rows.append({"layer": w["layer"], "ok": good, "unit": labels.unit,
                         "neurons": got["n"], "want_neurons": w[labels.unit], "edges": got["e"],
                         "want_edges": w["edges"], "weight_sum": got["ws"],
                         "want_weight_sum": w["weight_sum"], "detail": detail})
        total_nodes = sum(r["want_neurons"] for r in rows)
        found = db.read_one(labels.cypher("MATCH (n:Neuron {model: $name}) RETURN count(n) AS c"),
                            name=name)["c"]
    if found != total_nodes:
        ok = False
        rows.append({"layer": "(all layers)", "ok": False, "unit": labels.unit,
                     "neurons": found, "want_neurons": total_nodes, "edges": 0,
                     "want_edges": 0, "weight_sum": 0.0, "want_weight_sum": 0.0})
    if m.get("state") != "complete":
        ok = False
    return Verification(name, ok, rows)


_LAYER_SUMS = """
MATCH (n:Neuron {model: $name, layer_index: $li})
CALL (n) { OPTIONAL MATCH (n)<-[r:W]-()
           RETURN count(r) AS e, coalesce(sum(r.weight), 0.0) AS ws }
RETURN count(n) AS n, coalesce(sum(e), 0) AS e, coalesce(sum(ws), 0.0) AS ws
"""

_CHANNEL_LAYER_SUMS = """
MATCH (n:Channel {model: $name, layer_index: $li})
CALL (n) { OPTIONAL MATCH (n)<-[r:CW]-()
           RETURN count(r) AS e, coalesce(sum(r.weight), 0.0) AS ws,
                  coalesce(sum(r.edges), 0) AS ne, coalesce(sum(r.total), 0.0) AS ts,
                  coalesce(sum(reduce(s = 0.0, x IN coalesce(r.kernel, []) | s + x)), 0.0) AS ks }
RETURN count(n) AS n, coalesce(sum(e), 0) AS e, coalesce(sum(ws), 0.0) AS ws,
       coalesce(sum(ne), 0) AS ne, coalesce(sum(ts), 0.0) AS ts, coalesce(sum(ks), 0.0) AS ks
"""
