"""Aggregated traces of loaded models in Neo4j: computed from the stored graph over a set of
inputs, stored in O(neurons + pooling edges), read back, pulled with the effective graph.

An aggregated trace (:mod:`loader.graph.trace_set`) is per-neuron data (``mean_value``,
``active_rate``, ``nonzero_rate``, ``mean_contribution``, ``mean_abs_contribution``,
``padding_rate``) and per max/min edge data (``chosen_rate``). It is stored like a trace
(:mod:`loader.neo4j.traces`), never as a property per W relationship:

* ``(:Trace {name, model, kind: 'aggregate', inputs, n, target, preprocess, chunk, neurons,
  chunks, layers, predicted_layer, predicted_counts, ...})``;
* ``(:TraceChunk {trace, model, layer, layer_index, chunk, mean_value, active_rate,
  nonzero_rate, mean_contribution, mean_abs_contribution})``: for ``chunk`` = ``c`` the lists
  hold the layer's neurons ``c * CHUNK .. c * CHUNK + CHUNK - 1`` (NaN where the trace does not
  hold the neuron); a max/min layer's chunks add ``padding_rate`` and its edges:
  ``choice_src`` (source ids) and ``choice_rate`` (``chosen_rate``), neuron ``k``'s edges at
  ``choice_start[k] .. choice_start[k + 1] - 1`` in source id order (the window's order for a
  pooling window over a layer's output, so the rank is the window position).

So a neuron is one index seek and a list subscript away, and ``pooling_usage``,
``never_active`` and ``top_mean_contributors`` read chunks only, no W edge.
:func:`pull_trace_set` brings back a selection (or the effective graph) with the attributes.

Computing it reads only what it needs: with a target ``LAYER:INDEX``, the target's cone;
with ``predicted`` or none, the whole stored graph; never the Keras model file. The inputs are
read in full before anything is written: a bad input stores nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import neo4j
import numpy as np

from ..errors import WeightgraphError
from ..graph.batches import EdgeBatch, NodeBatch
from ..graph.trace_set import (EDGE_ATTRIBUTES, NODE_ATTRIBUTES, TraceSet, effective_keep,
                               trace_set_arrays)
from .db import Database, using
from .faults import kill_point
from .models import LayerTable, check_name, delete_traces, require_complete, require_neurons
from .pull import PullPlan, _prefetch, iter_pull, plan_pull
from .schema import create_schema
from .traces import (CHUNK, _CHUNKS_PER_TX, _check_upstream_complete, _trace_node,
                     read_for_trace, split_choice_edges, trace_info)

__all__ = ["StoredTraceSetResult", "trace_set_loaded", "store_trace_set", "read_trace_set",
           "pull_trace_set", "is_aggregate"]

_NODE_PROPS = ("mean_value", "active_rate", "nonzero_rate", "mean_contribution",
               "mean_abs_contribution")


def is_aggregate(t: dict) -> bool:
    """Whether a ``(:Trace)`` node's properties describe an aggregated trace."""
    return t.get("kind") == "aggregate"


@dataclass
class StoredTraceSetResult:
    name: str
    model: str
    trace_set: TraceSet
    neurons: int
    edges_read: int
    chunks: int
    seconds: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        ts = self.trace_set
        s = self.seconds
        return [f"trace {self.name} of {self.model}: {ts.n:,} inputs ({ts.info['inputs']}); "
                f"read {self.neurons:,} neurons and {self.edges_read:,} edges in "
                f"{s['read']:.1f} s, computed in {s['compute']:.1f} s, stored {self.chunks:,} "
                f"chunks in {s['store']:.1f} s"]


# ---------------------------------------------------------------------------- compute
def trace_set_loaded(driver: Database | neo4j.Driver | None, model: str, inputs, *,
                     name: str, target: str | None = None, preprocess: str = "auto",
                     replace: bool = False, batch_size: int | None = None,
                     workers: int | None = None, progress: bool = False,
                     database: str | None = None) -> StoredTraceSetResult:
    """Aggregate a set of inputs over a model loaded in Neo4j and store it as ``name``.

    Parameters
    ----------
    model : the loaded model's name.
    inputs : a path (``.npy`` array of N inputs, a directory of images or ``.npy`` files, a
        ``.parquet`` / ``.csv`` file of rows; :func:`loader.input_sets.read_input_set`)
        or an array ``(N, *input shape)``.
    name : the trace's name (unique in the database).
    target : ``"LAYER:INDEX"`` (read only its cone) or ``"predicted"`` (each input's own
        largest output: the whole model is read).

    Examples
    --------
    >>> trace_set_loaded(None, "digits_cnn", "digits_test.npy", name="held_out",
    ...                  target="predicted")
    """
    from ..input_sets import array_set, read_input_set
    from ..inputs import application_family

    check_name(name)
    with using(driver, database) as db:
        info = require_neurons(require_complete(db, model), "a trace")
        existing = _trace_node(db, name)
        if existing is not None and not replace:
            raise WeightgraphError(f"trace {name!r} exists (of model {existing['model']!r}): "
                                   "use --replace to compute it again")
        _check_upstream_complete(info, model, target if target != "predicted" else None)
        layers = info["graph_data"]["layers"]
        table = LayerTable(layers)
        in_layers = [l for l in layers if l.get("kind") == "input"]
        if len(in_layers) != 1:
            raise WeightgraphError(f"model {model!r} has {len(in_layers)} inputs: aggregate it "
                                   "from Python with one array per input")
        shape = tuple(in_layers[0]["output_shape"])
        source = json.loads(info.get("source") or "{}")
        if isinstance(inputs, np.ndarray):
            input_set = array_set(inputs, shape)
        else:
            input_set = read_input_set(inputs, shape, mode=preprocess,
                                       family=application_family(source.get("model")))
        cone = target if target not in (None, "predicted") else None
        t0 = time.perf_counter()
        nodes, edges, n_edges, selection = read_for_trace(db, model, cone, table, in_layers)
        t1 = time.perf_counter()
        ts = trace_set_arrays(layers, nodes, edges, {in_layers[0]["name"]: input_set},
                              target=target, batch_size=batch_size, workers=workers,
                              progress=progress,
                              info={"preprocess": preprocess, "model": model})
        t2 = time.perf_counter()
        if existing is not None:
            delete_traces(db, trace=name)
        meta = {"model": model, "kind": "aggregate", "target": target,
                "target_id": ts.target_id, "inputs": str(input_set.source), "n": ts.n,
                "preprocess": preprocess, "selection": selection,
                "batch_size": ts.batch_size, "seconds": ts.seconds["total"],
                "predicted_layer": ts.predicted_layer,
                "predicted_counts": None if ts.predicted is None else json.dumps(
                    np.bincount(ts.predicted).tolist()),
                "created_at": time.time()}
        chunks = store_trace_set(db, name, model, ts, meta, layers)
        t3 = time.perf_counter()
    return StoredTraceSetResult(name, model, ts, len(ts.ids), n_edges, chunks,
                                {"read": t1 - t0, "compute": t2 - t1, "store": t3 - t2})


# ---------------------------------------------------------------------------- store
def store_trace_set(db: Database, name: str, model: str, ts: TraceSet, meta: dict,
                    layers: list[dict]) -> int:
    """Write an aggregated trace of a graph held as arrays as ``(:Trace {name})`` and its
    ``(:TraceChunk)`` nodes; returns the number of chunks. The Trace node comes last, so a
    trace that exists is complete."""
    create_schema(db)
    delete_traces(db, trace=name)  # chunks a killed store left (no Trace node) go first
    by_index = {l["index"]: l for l in layers}
    ids = ts.ids
    values = {k: ts.array(k) for k in _NODE_PROPS if getattr(ts, k) is not None}
    records = []
    for st in ts.steps:
        layer = by_index[st.index]
        rows = np.arange(st.lo, st.hi)
        idx = ids[rows] - layer["offset"]
        c = ts.choices.get(st.index)
        if c is not None:
            # This layer's edges by (neuron row, source id): the source order is the rank.
            e_dst, e_src = c.dst_local, ids[c.src]
            order = np.lexsort((e_src, e_dst))
            e_dst, e_src, e_rate = e_dst[order], e_src[order], (c.counts / ts.n)[order]
            first = np.searchsorted(e_dst, np.arange(st.hi - st.lo + 1))
        for ch in np.unique(idx // CHUNK):
            size = min(CHUNK, layer["neurons"] - ch * CHUNK)
            sel = np.flatnonzero((idx >= ch * CHUNK) & (idx < ch * CHUNK + size))
            k = idx[sel] - ch * CHUNK
            rec = {"layer": layer["name"], "layer_index": int(st.index), "chunk": int(ch)}
            for prop, arr in values.items():
                col = np.full(size, np.nan)
                col[k] = arr[rows[sel]]
                rec[prop] = col.tolist()
            for prop in ("mean_contribution", "mean_abs_contribution"):
                rec.setdefault(prop, None)
            rec.update(padding_rate=None, choice_start=None, choice_src=None, choice_rate=None)
            if c is not None:
                pad = np.full(size, np.nan)
                pad[k] = c.none[sel] / ts.n
                counts = np.zeros(size, np.int64)
                counts[k] = first[sel + 1] - first[sel]
                # Neurons in index order; each one's edges in source order.
                in_order = sel[np.argsort(k)]
                picked = _spans(first[in_order], first[in_order + 1] - first[in_order])
                rec.update(padding_rate=pad.tolist(),
                           choice_start=np.r_[0, np.cumsum(counts)].tolist(),
                           choice_src=e_src[picked].tolist(),
                           choice_rate=e_rate[picked].tolist())
            records.append(rec)
    for a in range(0, len(records), _CHUNKS_PER_TX):
        db.write(_CREATE_CHUNKS, trace=name, model=model, chunks=records[a:a + _CHUNKS_PER_TX])
        kill_point("trace.chunks")
    props = {k: v for k, v in meta.items() if v is not None}
    props.update({"chunk": CHUNK, "neurons": int(len(ids)), "chunks": len(records),
                  "layers": json.dumps(sorted({r["layer"] for r in records}))})
    db.write("CREATE (t:Trace {name: $name}) SET t += $props", name=name, props=props)
    return len(records)


def _spans(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised."""
    total = int(counts.sum())
    out_start = np.cumsum(counts) - counts
    return np.arange(total) - np.repeat(out_start, counts) + np.repeat(starts, counts)


_CREATE_CHUNKS = """
UNWIND $chunks AS c
CREATE (:TraceChunk {trace: $trace, model: $model, layer: c.layer, layer_index: c.layer_index,
                     chunk: c.chunk, mean_value: c.mean_value, active_rate: c.active_rate,
                     nonzero_rate: c.nonzero_rate, mean_contribution: c.mean_contribution,
                     mean_abs_contribution: c.mean_abs_contribution,
                     padding_rate: c.padding_rate, choice_start: c.choice_start,
                     choice_src: c.choice_src, choice_rate: c.choice_rate})
"""


# ---------------------------------------------------------------------------- read
def read_trace_set(driver, name: str, *, layers: list[str] | None = None,
                   database: str | None = None) -> dict:
    """A stored aggregated trace as arrays over the neurons it holds, sorted by id: ``id``,
    ``layer_index``, ``mean_value``, ``active_rate``, ``nonzero_rate``, ``mean_contribution``
    and ``mean_abs_contribution`` (None without a target), ``padding_rate`` (NaN off max/min
    layers); ``choices``: arrays ``dst``, ``src``, ``rate``, ``rank`` of every max/min edge;
    ``trace``: the Trace node's properties. ``layers`` restricts it to those layers."""
    with using(driver, database) as db:
        t = trace_info(db, name)
        if not is_aggregate(t):
            raise WeightgraphError(f"trace {name!r} is a trace of one input: read it with "
                                   "read_trace")
        info = require_complete(db, t["model"])
        table = LayerTable(info["graph_data"]["layers"])
        cols = {k: [] for k in ("id", "layer_index", *_NODE_PROPS, "padding_rate")}
        choice = {k: [] for k in ("dst", "src", "rate", "rank")}
        with db.snapshot() as tx:
            for rec in tx.run(_READ_CHUNKS, trace=name, layers=layers):
                layer = table.get(rec["layer"])
                v = np.asarray(rec["mean_value"], np.float64)
                held = np.flatnonzero(~np.isnan(v))
                base = layer["offset"] + rec["chunk"] * t["chunk"]
                cols["id"].append(base + held)
                cols["layer_index"].append(np.full(len(held), layer["index"], np.int64))
                for prop in _NODE_PROPS:
                    if rec[prop] is not None:
                        cols[prop].append(np.asarray(rec[prop], np.float64)[held])
                pad = rec["padding_rate"]
                cols["padding_rate"].append(np.full(len(held), np.nan) if pad is None else
                                            np.asarray(pad, np.float64)[held])
                if rec["choice_start"] is not None:
                    start = np.asarray(rec["choice_start"], np.int64)
                    count = np.diff(start)
                    dst = np.repeat(base + np.arange(len(count)), count)
                    choice["dst"].append(dst)
                    choice["src"].append(np.asarray(rec["choice_src"], np.int64))
                    choice["rate"].append(np.asarray(rec["choice_rate"], np.float64))
                    choice["rank"].append(np.arange(len(dst)) - np.repeat(start[:-1], count))
    out = {k: (np.concatenate(v) if v else None) for k, v in cols.items()}
    if out["id"] is None:
        out.update(id=np.zeros(0, np.int64), layer_index=np.zeros(0, np.int64))
    order = np.argsort(out["id"])
    out = {k: None if v is None else v[order] for k, v in out.items()}
    out["choices"] = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in choice.items()}
    out["trace"] = t
    return out


_READ_CHUNKS = """
MATCH (c:TraceChunk {trace: $trace})
WHERE $layers IS NULL OR c.layer IN $layers
RETURN c.layer AS layer, c.chunk AS chunk, c.mean_value AS mean_value,
       c.active_rate AS active_rate, c.nonzero_rate AS nonzero_rate,
       c.mean_contribution AS mean_contribution,
       c.mean_abs_contribution AS mean_abs_contribution, c.padding_rate AS padding_rate,
       c.choice_start AS choice_start, c.choice_src AS choice_src, c.choice_rate AS choice_rate
"""


# ---------------------------------------------------------------------------- pull
def _effective_ids(db: Database, model: str, arrays: dict, table: LayerTable,
                   min_rate: float) -> np.ndarray:
    """The ids of the effective graph's neurons (:func:`loader.graph.trace_set.effective_keep`
    over what the trace holds; a product layer's edges are read from the graph)."""
    ids = arrays["id"]
    ch = arrays["choices"]
    row = lambda q: np.searchsorted(ids, q)  # noqa: E731
    owner = arrays["layer_index"]
    choice_edges = {}
    if len(ch["dst"]):
        layer_of = owner[row(ch["dst"])]
        for li in np.unique(layer_of):
            sel = layer_of == li
            choice_edges[int(li)] = (row(ch["dst"][sel]), row(ch["src"][sel]), ch["rate"][sel])
    layers = []
    for li in np.unique(owner):
        rows = np.flatnonzero(owner == li)
        layers.append((int(li), int(rows[0]), int(rows[-1]) + 1, table.by_index[int(li)]["op"]))

    def sources_into(index: int, keep: np.ndarray) -> np.ndarray:
        name = table.by_index[index]["name"]
        plan = plan_pull(model, layers=f"{name}:{name}", driver=db)
        src, dst = [], []
        for b in iter_pull(plan, driver=db):
            if isinstance(b, EdgeBatch):
                src.append(b.src)
                dst.append(b.dst)
        if not src:
            return np.zeros(0, np.int64)
        src, dst = np.concatenate(src), np.concatenate(dst)
        held = np.isin(dst, ids) & np.isin(src, ids)
        src, dst = src[held], dst[held]
        return row(src[keep[row(dst)]])

    keep = effective_keep(layers, arrays["active_rate"], arrays["nonzero_rate"], choice_edges,
                          sources_into, min_rate)
    return ids[keep]


def pull_trace_set(trace: str, *, effective: bool = False, min_rate: float = 0.0,
                   layers: str | None = None, cone: str | None = None, path=None,
                   fmt: str = "graphml", driver=None, database: str | None = None,
                   max_edges: int | None = 5_000_000, progress: bool = False):
    """A selection of a model with a stored aggregated trace's attributes (node
    ``mean_value``, ``active_rate``, ``nonzero_rate``, ``mean_contribution``,
    ``mean_abs_contribution``, ``padding_rate``; edge ``chosen_rate`` into max/min neurons), as
    an ``nx.DiGraph`` or, with ``path``, streamed to GraphML or a Parquet dataset (``fmt``).
    Without a selection: everything the trace holds. ``effective`` keeps the effective graph
    (see :mod:`loader.graph.trace_set`): max/min edges with ``chosen_rate > min_rate``, without
    the neurons that are never active and always 0.

    Examples
    --------
    >>> G = pull_trace_set("held_out", effective=True)
    >>> loader.graph.forward.execute_networkx(G, x_test)     # the model's outputs
    """
    with using(driver, database) as db:
        t = trace_info(db, trace)
        if not is_aggregate(t):
            raise WeightgraphError(f"trace {trace!r} is a trace of one input: pull it with "
                                   "pull_trace (no --effective)")
        model = t["model"]
        info = require_complete(db, model)
        table = LayerTable(info["graph_data"]["layers"])
        if layers is None and cone is None and t.get("target") not in (None, "predicted"):
            cone = t["target"]
        plan = plan_pull(model, layers=layers, cone=cone, driver=db)
        arrays = read_trace_set(db, trace)
        keep = None
        if effective:
            keep = _effective_ids(db, model, arrays, table, min_rate)
            plan = _restrict(plan, keep, min_rate)
        if max_edges is not None and path is None and plan.n_edges > max_edges:
            from .pull import _too_large

            raise _too_large(model, plan.selection, plan.n_edges, plan.n_nodes, max_edges)
        gd = dict(plan.graph_data)
        gd["trace"] = {"name": trace, "aggregate": True, "n": t.get("n"),
                       "target": t.get("target"), "inputs": t.get("inputs"),
                       "effective": effective, "min_rate": min_rate if effective else None}
        node_attrs = [a for a in NODE_ATTRIBUTES
                      if arrays.get(a[0]) is not None or a[0] == "padding_rate"]
        extra = {"node": node_attrs, "edge": list(EDGE_ATTRIBUTES)}
        batches = _with_rates(_prefetch(iter_pull(plan, driver=db)), arrays, keep, min_rate,
                              [a for a, _ in node_attrs])
        start = time.perf_counter()
        if path is None:
            from ..sinks.networkx import NetworkXSink

            sink = NetworkXSink(gd)
            for b in batches:
                sink.write(b)
            return sink.close()
        if fmt == "parquet":
            from ..sinks.parquet import ParquetDatasetWriter

            writer = ParquetDatasetWriter(path, dict(gd, selection=plan.selection),
                                          edge_order="pulled", extra_attributes=extra)
        else:
            from ..sinks.graphml import GraphMLWriter

            writer = GraphMLWriter(path, gd, extra)
        with writer:
            for b in batches:
                writer.write(b)
        return {"path": str(path), "nodes": writer.nodes_written,
                "edges": writer.edges_written, "seconds": time.perf_counter() - start}


def _restrict(plan: PullPlan, keep: np.ndarray, min_rate: float) -> PullPlan:
    """The plan's neurons that the effective graph keeps; edges only into those."""
    ids = plan.node_ids if plan.node_ids is not None else np.concatenate(
        [np.arange(a, b, dtype=np.int64) for a, b in plan.node_ranges] or
        [np.zeros(0, np.int64)])
    kept = ids[np.isin(ids, keep)]
    pages = [("ids", kept[a:a + 20_000]) for a in range(0, len(kept), 20_000)]
    return PullPlan(model=plan.model, graph_data=plan.graph_data,
                    selection=f"{plan.selection}, effective (chosen_rate > {min_rate:g})",
                    n_nodes=len(kept), n_edges=plan.n_edges, node_ids=kept, edge_pages=pages,
                    labels=plan.labels)


def _with_rates(batches, arrays: dict, keep, min_rate: float, node_attrs: list):
    ids = arrays["id"]
    ch = arrays["choices"]
    keys = ch["dst"] * (int(ids.max(initial=0)) + 1) + ch["src"] if len(ch["dst"]) else None
    order = None if keys is None else np.argsort(keys)
    keys = None if keys is None else keys[order]
    rates = None if keys is None else ch["rate"][order]
    modulus = int(ids.max(initial=0)) + 1
    choice_dst = np.unique(ch["dst"]) if len(ch["dst"]) else np.zeros(0, np.int64)

    def look(q):
        pos = np.minimum(np.searchsorted(ids, q), max(0, len(ids) - 1))
        held = ids[pos] == q if len(ids) else np.zeros(len(q), bool)
        return pos, held

    for b in batches:
        if isinstance(b, NodeBatch):
            pos, held = look(b.id)
            extra = {}
            for name in node_attrs:
                arr = arrays.get(name)
                if arr is not None:
                    extra[name] = np.where(held, arr[pos], np.nan)
            yield NodeBatch(b.id, b.layer, b.layer_index, b.index, b.op, b.bias, b.activation,
                            extra)
            continue
        src, dst, w = b.src, b.dst, b.weight
        if keep is not None:
            ok = np.isin(src, keep)
            src, dst, w = src[ok], dst[ok], w[ok]
        is_choice = np.isin(dst, choice_dst)
        rate = np.zeros(len(src))
        if is_choice.any():
            q = dst[is_choice] * modulus + src[is_choice]
            k = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
            found = keys[k] == q
            rate[is_choice] = np.where(found, rates[k], np.nan)
        if keep is not None:
            ok = ~is_choice | (rate > min_rate)
            src, dst, w, rate, is_choice = (a[ok] for a in (src, dst, w, rate, is_choice))
        if not len(src):
            continue
        yield from split_choice_edges(src, dst, w, b.layer_index, is_choice, "chosen_rate", rate)
