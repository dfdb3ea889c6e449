"""Traces of loaded models in Neo4j: computed from the stored graph, stored in O(neurons).

A trace (:mod:`loader.graph.trace`) is per-neuron data: value, active, contribution to a
target, and for max/min neurons the chosen source. Stored per W edge it would cost as much as
the model (1.1 TB for VGG16 at 224x224); so it is stored per *neuron*, packed into property
lists:

* ``(:Trace {name, model, target, target_id, input, preprocess, chunk, neurons, layers, ...})``
  one node per trace (``name`` unique);
* ``(:TraceChunk {trace, model, layer, layer_index, chunk, value, active, contribution,
  chosen})``: for ``chunk`` = ``c``, the lists hold neurons ``index`` = ``c * CHUNK .. c *
  CHUNK + CHUNK - 1`` of the layer: ``value`` (float, NaN where the trace does not hold the
  neuron), ``active`` (bool), ``contribution`` (float, with a target), ``chosen`` (int: the
  chosen source's id, -1 for none; max/min layers only). A neuron is found with one index
  seek on ``(trace, layer, chunk)`` and a list subscript ``index % CHUNK``.

No property or relationship is written per W edge; the chunks cost ~18 bytes per neuron
(measured in bench/bench_trace.py). Named queries read them: ``trace_value``,
``pooling_choices`` (its ``chosen`` column), ``trace_active_subgraph``,
``top_contributors``; :func:`pull_trace` brings back (the active part of) a selection with
the trace's attributes.

Computing a trace reads only what it needs from the database: with a target, the target's
cone (:func:`loader.neo4j.pull.plan_pull`), without one the whole stored graph; never the
Keras model file. The model must hold everything upstream of what is traced (loaded whole,
as a cone without a depth, or as a layer range from the input).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import neo4j
import numpy as np

from ..errors import SelectionError, WeightgraphError
from ..graph.batches import EdgeBatch, NodeBatch
from ..graph.selection import parse_cone, parse_layer_range, parse_neuron
from ..graph.trace import ArrayTrace, trace_arrays
from .db import Database, using
from .faults import kill_point
from .models import (LayerTable, ModelStateError, check_name, delete_traces, require_complete,
                     require_neurons)
from .pull import PullPlan, _prefetch, iter_pull, plan_pull
from .schema import create_schema

__all__ = ["CHUNK", "TraceNotFound", "StoredTraceResult", "trace_loaded", "store_trace",
           "read_trace", "pull_trace", "list_traces", "delete_trace"]

CHUNK = 1024  # neurons per TraceChunk: 8 KB per float list, one seek per neuron lookup
_CHUNKS_PER_TX = 64


class TraceNotFound(WeightgraphError):
    """No ``(:Trace)`` of that name."""


@dataclass
class StoredTraceResult:
    name: str
    model: str
    trace: ArrayTrace
    target: str | None
    neurons: int
    edges_read: int
    chunks: int
    seconds: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        t = self.trace
        out = [f"trace {self.name} of {self.model}: read {self.neurons:,} neurons and "
               f"{self.edges_read:,} edges in {self.seconds['read']:.1f} s, computed in "
               f"{self.seconds['compute']:.1f} s, stored {self.chunks:,} chunks in "
               f"{self.seconds['store']:.1f} s; {t.active.mean():.1%} active"]
        if self.target is not None:
            top = int(t.pos(t.target_id))
            out.append(f"target {self.target} = {t.values[top]:.6g}")
        return out


# ---------------------------------------------------------------------------- compute
def _check_upstream_complete(info: dict, name: str, target: str | None) -> None:
    """Refuse a model that lacks neurons the trace's values depend on."""
    sel = info.get("selection") or "all"
    if sel == "all":
        return
    if sel.startswith("cone "):
        if parse_cone(sel[5:]).depth is None:
            return
        raise ModelStateError(f"model {name!r} was loaded as a depth-limited {sel}: its values "
                              "need the neurons beyond the depth; load the cone without one")
    if sel.startswith("layers "):
        first, _ = parse_layer_range(sel[7:])
        layers = LayerTable(info["graph_data"]["layers"])
        if not first or layers.get(first)["index"] <= min(
                l["index"] for l in layers.layers if l.get("kind") == "input") + 1:
            return
        raise ModelStateError(f"model {name!r} holds only {sel}: a trace needs everything "
                              "from the input up; load the model from its input layer")
    raise ModelStateError(f"model {name!r} was loaded as {sel!r}: cannot tell whether it "
                          "holds everything upstream")


def _collect(batches) -> tuple[dict, dict, int]:
    nodes = {k: [] for k in ("id", "layer_index", "index", "op", "bias", "activation")}
    edges = {"src": [], "dst": [], "weight": []}
    for b in batches:
        if isinstance(b, EdgeBatch):
            edges["src"].append(b.src)
            edges["dst"].append(b.dst)
            edges["weight"].append(b.weight)
        else:
            nodes["id"].append(b.id)
            nodes["layer_index"].append(np.full(len(b), b.layer_index, dtype=np.int64))
            nodes["index"].append(b.index)
            nodes["op"].append(np.full(len(b), b.op, dtype=object))
            nodes["bias"].append(np.asarray(b.bias, dtype=np.float64))
            nodes["activation"].append(b.activations())
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in nodes.items()}
    e = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in edges.items()}
    return cat, e, int(len(e["src"]))


def trace_loaded(driver: Database | neo4j.Driver | None, model: str, input_path, *,
                 name: str, target: str | None = None, preprocess: str = "auto",
                 replace: bool = False, progress: bool = False, x=None,
                 database: str | None = None) -> StoredTraceResult:
    """Trace an input through a model loaded in Neo4j and store the trace as ``name``.

    Parameters
    ----------
    model : the loaded model's name.
    input_path : ``.npy`` or image file (see :func:`loader.inputs.read_input`);
        ``--preprocess auto`` uses the application family the model was loaded from.
    name : the trace's name (unique in the database).
    target : ``"LAYER:INDEX"``: read only its cone, and store contributions to it.
    x : an array instead of ``input_path`` (then ``input_path`` is only recorded).

    Examples
    --------
    >>> trace_loaded(None, "vgg16_demo", "cat.jpg", name="cat", target="block2_pool:1000")
    """
    from ..inputs import application_family, read_input

    check_name(name)
    with using(driver, database) as db:
        info = require_neurons(require_complete(db, model), "a trace")  # not a partial graph
        existing = _trace_node(db, name)
        if existing is not None and not replace:
            raise WeightgraphError(f"trace {name!r} exists (of model {existing['model']!r}): "
                                   "use --replace to compute it again")
        _check_upstream_complete(info, model, target)
        layers = info["graph_data"]["layers"]
        table = LayerTable(layers)
        inputs = [l for l in layers if l.get("kind") == "input"]
        if len(inputs) != 1 and x is None:
            raise WeightgraphError(f"model {model!r} has {len(inputs)} inputs: trace it from "
                                   "Python with one array per input")
        source = json.loads(info.get("source") or "{}")
        family = application_family(source.get("model"))
        if x is None:
            x = {inputs[0]["name"]: read_input(input_path, inputs[0]["output_shape"],
                                               mode=preprocess, family=family)}
        elif not isinstance(x, dict):
            x = {inputs[0]["name"]: np.asarray(x, dtype=np.float64)}
        target_id = None
        if target is not None:
            lname, index = parse_neuron(target)
            layer = table.get(lname)
            if layer.get("offset") is None:
                raise SelectionError(f"{lname!r} is a shape-only layer: name the layer that "
                                     "produces the value")
            if index >= layer["neurons"]:
                raise SelectionError(f"layer {lname!r} has {layer['neurons']} neurons; index "
                                     f"{index} is out of range")
            target_id = layer["offset"] + index
        t0 = time.perf_counter()
        nodes, edges, n_edges, selection = read_for_trace(db, model, target, table, inputs)
        t1 = time.perf_counter()
        result = trace_arrays(layers, nodes, edges, x, target_id=target_id)
        t2 = time.perf_counter()
        meta = {"model": model, "target": target, "target_id": target_id,
                "input": str(input_path), "preprocess": preprocess, "selection":
                selection, "created_at": time.time()}
        if existing is not None:
            delete_trace(db, name)
        chunks = store_trace(db, name, model, result, meta, layers)
        t3 = time.perf_counter()
    return StoredTraceResult(name, model, result, target, len(result.ids), n_edges, chunks,
                             {"read": t1 - t0, "compute": t2 - t1, "store": t3 - t2})


def read_for_trace(db: Database, model: str, cone: str | None, table: LayerTable,
                   in_layers: list[dict]) -> tuple[dict, dict, int, str]:
    """The nodes, edges, edge count and selection a trace runs on: the cone of ``cone``
    (the whole model with None), or everything from the input up to a softmax layer the
    cone holds only part of (a softmax mixes its whole layer)."""
    plan = plan_pull(model, cone=cone, driver=db)
    nodes, edges, n_edges = _collect(_prefetch(iter_pull(plan, driver=db)))
    partial = _partial_softmax_layer(nodes, table)
    if partial is not None:
        first = min(l["index"] for l in in_layers)
        plan = plan_pull(model, layers=f"{table.by_index[first]['name']}:{partial}",
                         driver=db)
        nodes, edges, n_edges = _collect(_prefetch(iter_pull(plan, driver=db)))
    return nodes, edges, n_edges, plan.selection


def _partial_softmax_layer(nodes: dict, table: LayerTable) -> str | None:
    acts = nodes["activation"]
    if not len(acts):
        return None
    soft = np.isin(acts.astype(str), ["softmax", "log_softmax"])
    for li in np.unique(nodes["layer_index"][soft]):
        layer = table.by_index[int(li)]
        if int((nodes["layer_index"] == li).sum()) != layer["neurons"]:
            return layer["name"]
    return None


# ---------------------------------------------------------------------------- store
def store_trace(db: Database, name: str, model: str, t: ArrayTrace, meta: dict,
                layers: list[dict]) -> int:
    """Write ``t`` as ``(:Trace {name})`` and its ``(:TraceChunk)`` nodes; returns the number
    of chunks. The Trace node is created last, so a trace that exists is complete."""
    create_schema(db)
    # Chunks a killed store left behind (no Trace node: the caller found none) would collide
    # with this store's on the (trace, layer, chunk) constraint: they go first.
    delete_traces(db, trace=name)
    by_index = {l["index"]: l for l in layers}
    records = []
    for li in np.unique(t.layer_index):
        rows = np.flatnonzero(t.layer_index == li)
        layer = by_index[int(li)]
        idx = t.index[rows]
        is_choice = layer.get("op") in ("max", "min")
        for c in np.unique(idx // CHUNK):
            size = min(CHUNK, layer["neurons"] - c * CHUNK)
            sel = rows[(idx >= c * CHUNK) & (idx < c * CHUNK + size)]
            k = t.index[sel] - c * CHUNK
            value = np.full(size, np.nan)
            value[k] = t.values[sel]
            active = np.zeros(size, dtype=bool)
            active[k] = t.active[sel]
            rec = {"layer": layer["name"], "layer_index": int(li), "chunk": int(c),
                   "value": value.tolist(), "active": active.tolist(),
                   "contribution": None, "chosen": None}
            if t.contribution is not None:
                contribution = np.full(size, np.nan)
                contribution[k] = t.contribution[sel]
                rec["contribution"] = contribution.tolist()
            if is_choice:
                chosen = np.full(size, -1, dtype=np.int64)
                chosen[k] = t.chosen[sel]
                rec["chosen"] = chosen.tolist()
            records.append(rec)
    for a in range(0, len(records), _CHUNKS_PER_TX):
        db.write(_CREATE_CHUNKS, trace=name, model=model, chunks=records[a:a + _CHUNKS_PER_TX])
        kill_point("trace.chunks")
    props = {k: v for k, v in meta.items() if v is not None}
    props.update({"chunk": CHUNK, "neurons": int(len(t.ids)), "chunks": len(records),
                  "layers": json.dumps(sorted({r["layer"] for r in records}))})
    db.write("CREATE (t:Trace {name: $name}) SET t += $props", name=name, props=props)
    return len(records)


_CREATE_CHUNKS = """
UNWIND $chunks AS c
CREATE (:TraceChunk {trace: $trace, model: $model, layer: c.layer, layer_index: c.layer_index,
                     chunk: c.chunk, value: c.value, active: c.active,
                     contribution: c.contribution, chosen: c.chosen})
"""


# ---------------------------------------------------------------------------- read
def _trace_node(db: Database, name: str) -> dict | None:
    rec = db.read_one("MATCH (t:Trace {name: $name}) RETURN properties(t) AS t", name=name)
    return None if rec is None else dict(rec["t"])


def trace_info(driver, name: str, *, database: str | None = None) -> dict:
    """The ``(:Trace)`` node's properties; a one-line :class:`TraceNotFound` when missing."""
    with using(driver, database) as db:
        t = _trace_node(db, name)
        if t is None:
            known = [r["name"] for r in db.read("MATCH (t:Trace) RETURN t.name AS name "
                                                "ORDER BY name")]
            raise TraceNotFound(f"no trace {name!r} in Neo4j; traces: "
                                + (", ".join(known) if known else "(none; make one with "
                                   "`weightgraph trace --model NAME --input FILE --name T`)"))
    return t


def read_trace(driver, name: str, *, layers: list[str] | None = None,
               database: str | None = None) -> dict:
    """A stored trace as arrays over the neurons it holds: ``id``, ``value``, ``active``,
    ``contribution`` (or None), ``chosen`` (-1 where none or not a max/min neuron),
    ``choice`` (a max/min neuron), sorted by id; ``layers`` restricts it to those layers."""
    with using(driver, database) as db:
        t = trace_info(db, name)
        if t.get("kind") == "aggregate":
            raise WeightgraphError(f"trace {name!r} aggregates a set of inputs: read it with "
                                   "loader.neo4j.trace_sets.read_trace_set")
        info = require_complete(db, t["model"])
        table = LayerTable(info["graph_data"]["layers"])
        ids, value, active, contribution, chosen, choice = [], [], [], [], [], []
        with db.snapshot() as tx:
            for rec in tx.run(_READ_CHUNKS, trace=name, layers=layers):
                layer = table.get(rec["layer"])
                v = np.asarray(rec["value"], dtype=np.float64)
                held = ~np.isnan(v)
                k = np.flatnonzero(held)
                ids.append(layer["offset"] + rec["chunk"] * t["chunk"] + k)
                value.append(v[held])
                active.append(np.asarray(rec["active"], dtype=bool)[held])
                if rec["contribution"] is not None:
                    contribution.append(np.asarray(rec["contribution"], np.float64)[held])
                c = rec["chosen"]
                chosen.append(np.asarray(c, dtype=np.int64)[held] if c is not None
                              else np.full(len(k), -1, dtype=np.int64))
                choice.append(np.full(len(k), c is not None))
    if not ids:
        empty = np.zeros(0)
        return {"id": empty.astype(np.int64), "value": empty, "active": empty.astype(bool),
                "contribution": None, "chosen": empty.astype(np.int64),
                "choice": empty.astype(bool), "trace": t}
    out = {"id": np.concatenate(ids), "value": np.concatenate(value),
           "active": np.concatenate(active), "chosen": np.concatenate(chosen),
           "choice": np.concatenate(choice),
           "contribution": np.concatenate(contribution) if contribution else None}
    order = np.argsort(out["id"])
    out = {k: None if v is None else v[order] for k, v in out.items()}
    out["trace"] = t
    return out


_READ_CHUNKS = """
MATCH (c:TraceChunk {trace: $trace})
WHERE $layers IS NULL OR c.layer IN $layers
RETURN c.layer AS layer, c.chunk AS chunk, c.value AS value, c.active AS active,
       c.contribution AS contribution, c.chosen AS chosen
"""


# ---------------------------------------------------------------------------- pull
def pull_trace(trace: str, *, layers: str | None = None, cone: str | None = None,
               active_only: bool = False, path=None, driver=None,
               database: str | None = None, max_edges: int | None = 5_000_000,
               progress: bool = False):
    """A selection of a traced model with the trace's attributes (``value``, ``active``,
    ``contribution``; ``chosen`` on edges into max/min neurons), as an ``nx.DiGraph`` or, with
    ``path``, streamed to GraphML. Without a selection: the trace's cone (with a target) or
    everything it holds. ``active_only`` keeps the active neurons, the edges between them and
    only the chosen edge into each max/min neuron; their edges are the only ones read.

    Examples
    --------
    >>> G = pull_trace("cat", active_only=True)
    """
    with using(driver, database) as db:
        t = trace_info(db, trace)
        model = t["model"]
        if layers is None and cone is None and t.get("target"):
            cone = t["target"]
        plan = plan_pull(model, layers=layers, cone=cone, driver=db)
        arrays = read_trace(db, trace)
        plan = _restrict(plan, arrays) if active_only else plan
        if max_edges is not None and path is None and plan.n_edges > max_edges:
            from .pull import _too_large

            raise _too_large(model, plan.selection, plan.n_edges, plan.n_nodes, max_edges)
        gd = dict(plan.graph_data)
        gd["trace"] = {"name": trace, "target": t.get("target"), "input": t.get("input"),
                       "active_only": active_only}
        extra = {"node": [("value", "double"), ("active", "boolean")]
                 + ([("contribution", "double")] if arrays["contribution"] is not None else []),
                 "edge": [("chosen", "boolean")]}
        batches = _with_trace(_prefetch(iter_pull(plan, driver=db)), arrays, active_only)
        if path is None:
            from ..sinks.networkx import NetworkXSink

            sink = NetworkXSink(gd)
            for b in batches:
                sink.write(b)
            return sink.close()
        from ..sinks.graphml import GraphMLWriter

        start = time.perf_counter()
        with GraphMLWriter(path, gd, extra) as writer:
            for b in batches:
                writer.write(b)
        return {"path": str(path), "nodes": writer.nodes_written,
                "edges": writer.edges_written, "seconds": time.perf_counter() - start}


def _restrict(plan: PullPlan, arrays: dict) -> PullPlan:
    """The plan's neurons that are active under the trace; edges only into those."""
    ids = plan.node_ids if plan.node_ids is not None else np.concatenate(
        [np.arange(a, b, dtype=np.int64) for a, b in plan.node_ranges])
    pos = np.searchsorted(arrays["id"], ids)
    pos = np.minimum(pos, max(0, len(arrays["id"]) - 1))
    held = (arrays["id"][pos] == ids) if len(arrays["id"]) else np.zeros(len(ids), bool)
    keep = ids[held & arrays["active"][pos]]
    pages = [("ids", keep[a:a + 20_000]) for a in range(0, len(keep), 20_000)]
    return PullPlan(model=plan.model, graph_data=plan.graph_data,
                    selection=f"{plan.selection}, active only", n_nodes=len(keep),
                    n_edges=plan.n_edges, node_ids=keep, edge_pages=pages)


def _with_trace(batches, arrays: dict, active_only: bool):
    ids = arrays["id"]

    def look(q):
        pos = np.minimum(np.searchsorted(ids, q), max(0, len(ids) - 1))
        held = ids[pos] == q if len(ids) else np.zeros(len(q), bool)
        return pos, held

    for b in batches:
        if isinstance(b, NodeBatch):
            pos, held = look(b.id)
            extra = {"value": np.where(held, arrays["value"][pos], np.nan),
                     "active": held & arrays["active"][pos]}
            if arrays["contribution"] is not None:
                extra["contribution"] = np.where(held, arrays["contribution"][pos], np.nan)
            yield NodeBatch(b.id, b.layer, b.layer_index, b.index, b.op, b.bias, b.activation,
                            extra)
            continue
        dpos, dheld = look(b.dst)
        spos, sheld = look(b.src)
        dchosen = np.where(dheld, arrays["chosen"][dpos], -1)
        is_choice = dheld & arrays["choice"][dpos]  # edges into max/min neurons
        chosen = is_choice & (b.src == dchosen)
        src, dst, w = b.src, b.dst, b.weight
        if active_only:
            keep = sheld & arrays["active"][spos] & (~is_choice | chosen)
            src, dst, w, chosen, is_choice = (a[keep] for a in (src, dst, w, chosen, is_choice))
            if not len(src):
                continue
        yield from split_choice_edges(src, dst, w, b.layer_index, is_choice, "chosen", chosen)


def split_choice_edges(src, dst, w, layer_index: int, is_choice: np.ndarray, name: str,
                       values: np.ndarray):
    """Edge batches of one pulled batch: the edges into max/min neurons (``is_choice``) with
    the attribute ``name`` (``values``), the others without it (a batch carries one set of
    attributes)."""
    if not is_choice.any():
        yield EdgeBatch(src, dst, w, layer_index)
        return
    yield EdgeBatch(src[is_choice], dst[is_choice], w[is_choice], layer_index,
                    {name: values[is_choice]})
    rest = ~is_choice
    if rest.any():
        yield EdgeBatch(src[rest], dst[rest], w[rest], layer_index)


# ---------------------------------------------------------------------------- list, delete
def list_traces(driver, *, model: str | None = None, database: str | None = None) -> list[dict]:
    """The stored traces (name, model, target, input, neurons, chunks)."""
    with using(driver, database) as db:
        rows = db.read("MATCH (t:Trace) WHERE $model IS NULL OR t.model = $model "
                       "RETURN properties(t) AS t ORDER BY t.name", model=model)
    out = []
    for r in rows:
        t = dict(r["t"])
        out.append({"name": t["name"], "model": t["model"], "target": t.get("target"),
                    "input": t.get("input") or t.get("inputs"), "neurons": t.get("neurons", 0),
                    "chunks": t.get("chunks", 0), "kind": t.get("kind", "input"),
                    "n": t.get("n", 1)})
    return out


def delete_trace(driver, name: str, *, database: str | None = None) -> int:
    """Delete a stored trace (its chunks and its Trace node); returns the nodes deleted."""
    with using(driver, database) as db:
        t = _trace_node(db, name)
        if t is None:
            trace_info(db, name)  # raises TraceNotFound listing the traces
        return delete_traces(db, trace=name)
