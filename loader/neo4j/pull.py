"""Neo4j -> NetworkX / GraphML: pull a loaded model (or part of it) back out of the database.

What comes out follows the neuron-graph contract, exactly as :func:`loader.sinks.to_networkx`
builds it from Keras: node keys are the neuron ids, node attributes ``layer``, ``layer_index``,
``index``, ``op``, ``bias``, ``activation``, edge attribute ``weight``, graph attributes
``name`` and ``layers`` (JSON, from ``Model.graph_data``). So a pulled graph can be executed
(:func:`loader.graph.forward.execute_networkx`) and compared with Keras.

Selections, resolved in the database:

* ``layers="FIRST:LAST"`` - every neuron of the layers FIRST..LAST (by name, inclusive), every
  edge entering them, and the neurons outside the range that feed it (as sources), like
  ``NeuronGraph(layers=...)``.
* ``cone="LAYER:INDEX[:DEPTH]"`` - every neuron upstream of one neuron (within DEPTH hops),
  and the edges entering the neurons less than DEPTH hops away, like ``NeuronGraph(cone=...)``.
* ``cypher=`` - a ``.cypher`` file or statement text returning one row per edge with columns
  ``src``, ``dst`` (neuron ids) and ``weight``; ``$model`` is the model name. The neurons at
  both ends are fetched by id. The statement runs read-only (see :mod:`loader.neo4j.queries`).

Everything streams in bounded pages: neurons by id range, edges by ranges of their target
neurons (a page is sized from the layer's mean in-degree to hold ~``PAGE_EDGES`` edges and comes
back as one record of three lists, which the driver decodes far faster than one record per
edge). Sizes are counted *before* any edge is pulled, and :func:`pull` refuses a selection
above ``max_edges`` with the estimate and what to do instead.

Examples
--------
>>> G = pull("vgg16_32", cone="block3_conv3:1000:2")
>>> pull_to_graphml("vgg16_32", "block1.graphml.gz", layers="block1_conv1:block1_pool")
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import neo4j
import networkx as nx
import numpy as np

from ..graph import costs
from ..graph.batches import EdgeBatch, NodeBatch
from ..errors import SelectionError, TooLargeError, WeightgraphError
from ..graph.channels import ChannelEdgeBatch, ChannelNodeBatch
from ..graph.selection import IdSpace, UpstreamWalk, layer_range, parse_cone
from ..sinks.neo4j_labels import CHANNEL, NEURON, GraphLabels, labels_of
from ..terminal import human, progress as progress_bar
from .cypher import bind_params, load_query, parse_query, read_only_check, statement_of
from .db import Database, using
from .models import (LayerTable, ModelNotFound, loaded_models, model_info,
                     require_complete)

__all__ = ["ModelNotFound", "PullPlan", "loaded_models", "model_info", "plan_pull", "pull",
           "pull_to_graphml", "pull_to_parquet", "iter_pull"]

# Edges per page: one record of three lists (~2.5 MB of PackStream per 100k edges). Fetching
# alone ran at 0.8-1.3M edges/s for pages of 50k to 1M edges (2-core machine shared with the
# server; 1M was the slowest), far above what NetworkX inserts (~0.5M/s), so the page only
# has to be big enough to amortise a round trip and small enough to bound memory.
PAGE_EDGES = 100_000
# Neurons per page (node pages and the id lists sent to the server in cone expansion).
PAGE_NODES = 50_000
# A layer range's sources outside the range are counted before pulling only up to this many
# edges in the range (~10 s of server time); above, they are found while the edges stream.
OUTSIDE_COUNT_EDGES = 20_000_000


# ---------------------------------------------------------------------------- plans
@dataclass
class PullPlan:
    """What a pull will fetch, counted before any edge is pulled.

    ``node_ranges`` are ``[lo, hi)`` id ranges, ``node_ids`` explicit ids (sorted); ``edge_pages``
    are the units the edges are fetched in: ``("range", lo, hi)`` (edges entering ids lo..hi-1)
    or ``("ids", array)`` (edges entering these ids) or ``("cypher", statement)``.
    """

    model: str
    graph_data: dict
    selection: str
    n_nodes: int
    n_edges: int
    node_ranges: list[tuple[int, int]] = field(default_factory=list)
    node_ids: np.ndarray | None = None
    edge_pages: list[tuple] = field(default_factory=list)
    # Layers mode: sources below this id are outside the range and are found while pulling.
    outside_below: int | None = None
    cypher_params: dict = field(default_factory=dict)
    # False when n_nodes leaves out the outside sources of a layer range (not counted above
    # OUTSIDE_COUNT_EDGES: counting them reads every edge of the range).
    nodes_exact: bool = True
    # Neurons or channels (the Model node's granularity): which labels the pages read.
    labels: GraphLabels = NEURON

    @property
    def networkx_bytes(self) -> int:
        return self.n_edges * costs.NX_BYTES_PER_EDGE + self.n_nodes * costs.NX_BYTES_PER_NODE


def plan_pull(name: str, layers: str | None = None, cone: str | None = None,
              cypher: str | os.PathLike | None = None, *, driver: neo4j.Driver | None = None,
              params: dict | None = None, database: str | None = None,
              allow_incomplete: bool = False, max_edges: int | None = None) -> PullPlan:
    """Resolve a selection in the database and count its neurons and edges.

    ``max_edges`` stops a cone expansion as soon as the cone is known to exceed it (the count
    is then a lower bound and :class:`TooLargeError` is raised).
    """
    if sum(x is not None for x in (layers, cone, cypher)) > 1:
        raise SelectionError("choose one of layers=, cone= or cypher=")
    with using(driver, database) as db:
        info = require_complete(db, name, allow_incomplete)
        gd = dict(info["graph_data"])
        gd["name"] = name
        labels = labels_of(info.get("granularity"))
        if labels is CHANNEL:
            if cypher is not None:
                raise SelectionError("cypher= selections return neuron edges (src, dst, "
                                     f"weight); {name!r} is a channel model: select it with "
                                     "layers= or cone=")
            # The lookups count channels: a layer's nodes are its channels, from its offset.
            model = LayerTable([{**l, "neurons": l.get("channels") or 0}
                                for l in gd["layers"]])
        else:
            model = LayerTable(gd["layers"])
        with db.session(read=True, fetch_size=10_000) as session:
            if cypher is not None:
                plan = _plan_cypher(session, db, name, gd, cypher, params)
            elif cone is not None:
                plan = _plan_cone(_Relabelled(session, labels), name, gd, model, cone,
                                  max_edges)
            else:
                plan = _plan_layers(_Relabelled(session, labels), name, gd, model, layers,
                                    info, page_edges=labels_page(labels))
        plan.labels = labels
        return plan


def labels_page(labels: GraphLabels) -> int:
    # A channel edge carries its kernel (up to a few dozen floats): smaller pages, same bytes.
    return PAGE_EDGES // 10 if labels is CHANNEL else PAGE_EDGES


class _Relabelled:
    """A session whose statements, written for neurons, run in the model's vocabulary."""

    def __init__(self, session, labels: GraphLabels):
        self.session, self.labels = session, labels

    def run(self, statement, *args, **kwargs):
        return self.session.run(self.labels.cypher(statement), *args, **kwargs)


def _plan_layers(session, name, gd, model: LayerTable, spec, info,
                 page_edges: int = PAGE_EDGES) -> PullPlan:
    if spec is None:
        chosen = model.neuron_layers
        selection = "all"
    else:
        chosen = [model.by_index[i] for i in layer_range(
            spec, index_of=lambda n: model.get(n)["index"], last=model.layers[-1]["index"],
            holds_nodes=model.by_index.__contains__)]
        selection = f"layers {spec}"
    ranges = [(l["offset"], l["offset"] + l["neurons"]) for l in chosen]
    edge_pages = [("range", a, b) for l in chosen if l.get("kind") != "input"
                  for a, b in model.pages(l, page_edges)]
    first_id = ranges[0][0]
    if info.get("selection", "all") in ("all", None):
        # The database holds the whole graph: graph_data's counts are exact.
        n_edges = sum(l.get("edges", 0) for l in chosen)
        n_nodes = sum(l["neurons"] for l in chosen)
    else:
        n_nodes, n_edges = _count_ranges(session, name, ranges)
    exact = not spec or first_id == 0 or n_edges <= OUTSIDE_COUNT_EDGES
    if spec and exact:
        n_nodes += _count_outside_sources(session, name, chosen, first_id)
    return PullPlan(model=name, graph_data=gd, selection=selection, n_nodes=n_nodes,
                    n_edges=n_edges, node_ranges=ranges, edge_pages=edge_pages,
                    outside_below=first_id if spec else None, nodes_exact=exact)


_COUNT_RANGE = """
MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
RETURN count(n) AS nodes, sum(COUNT { (n)<-[:W]-() }) AS edges
"""

_OUTSIDE_SOURCES = """
MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
MATCH (n)<-[:W]-(s) WHERE s.id < $first
RETURN count(DISTINCT s) AS sources
"""


def _count_ranges(session, name, ranges) -> tuple[int, int]:
    nodes = edges = 0
    for lo, hi in ranges:
        rec = session.run(_COUNT_RANGE, model=name, lo=lo, hi=hi).single()
        nodes += rec["nodes"]
        edges += rec["edges"] or 0
    return nodes, edges


def _count_outside_sources(session, name, chosen, first_id) -> int:
    # graph_data does not say which layers read from below the range (the first one does, and
    # so may a skip connection further in), so every edge of the range is looked at once.
    lo = chosen[0]["offset"]
    hi = chosen[-1]["offset"] + chosen[-1]["neurons"]
    if lo == 0:
        return 0
    return session.run(_OUTSIDE_SOURCES, model=name, lo=lo, hi=hi, first=first_id
                       ).single()["sources"]


_EXPAND = """
UNWIND $frontier AS f
MATCH (n:Neuron {model: $model, id: f[0]})<-[:W]-(s)
WITH s, min(f[1]) AS depth
RETURN collect(s.id) AS ids, collect(depth) AS depths, collect(COUNT { (s)<-[:W]-() }) AS degrees
"""

_TARGET = """
MATCH (n:Neuron {model: $model, id: $id})
RETURN n.layer AS layer, n.index AS index, COUNT { (n)<-[:W]-() } AS degree
"""


def _plan_cone(session, name, gd, model: LayerTable, spec, max_edges) -> PullPlan:
    """Upstream of one neuron: :class:`~loader.graph.selection.UpstreamWalk` over the loaded
    graph, layer by layer (highest layer_index first).

    Only neuron ids and depths cross the wire, never edges; the edge count is the sum of the
    in-degrees of the neurons that get expanded.
    """
    layer_name, index, max_depth = parse_cone(spec)
    layer = model.get(layer_name)
    if layer.get("offset") is None:
        raise SelectionError(
            f"{layer_name!r} is a shape-only layer ({layer.get('class_name')}): it has no "
            "neurons of its own; name the layer that produces the value")
    if index >= layer["neurons"]:
        raise SelectionError(f"layer {layer_name!r} has {layer['neurons']} neurons; index "
                             f"{index} is out of range")
    top = layer["offset"] + index
    rec = session.run(_TARGET, model=name, id=top).single()
    if rec is None:
        raise SelectionError(f"neuron {layer_name}:{index} (id {top}) is not in the database "
                             "(was the model loaded with a selection?)")
    space = IdSpace([l["index"] for l in model.neuron_layers],
                    [l["offset"] for l in model.neuron_layers],
                    [l["neurons"] for l in model.neuron_layers])
    walk = UpstreamWalk(space, top, max_depth)
    # In-degree of every neuron the walk has reached (it comes back with the neuron's id).
    degree = {layer["index"]: np.zeros(layer["neurons"], dtype=np.int64)}
    degree[layer["index"]][index] = rec["degree"]
    edges = 0
    pages: list[tuple] = []

    def sources_of(li, d, expand):
        nonlocal edges
        lay = model.by_index[li]
        local = np.flatnonzero(expand)
        edges += int(degree[li][local].sum())
        if max_edges is not None and edges > max_edges:
            raise _too_large(name, f"cone {spec}", edges, walk.n_reached(), max_edges,
                             lower_bound=True)
        if lay.get("kind") == "input":
            return None
        pages.extend(_id_pages(local + lay["offset"], degree[li][local]))
        return _expand(session, name, space, degree, local + lay["offset"], d[local])

    walk.run(sources_of)
    node_ids = np.concatenate([np.flatnonzero(reached) + space.first[li]
                               for li, reached in sorted(walk.reached().items())])
    return PullPlan(model=name, graph_data=gd, selection=f"cone {spec}", n_nodes=len(node_ids),
                    n_edges=edges, node_ids=np.sort(node_ids), edge_pages=pages)


def _expand(session, name, space: IdSpace, degree: dict, ids: np.ndarray, depth: np.ndarray):
    """The sources of neurons ``ids`` at ``depth``, a page of ids per query, as chunks of
    (source ids, 1 + the least depth they feed); records their in-degrees in ``degree``."""
    for a in range(0, len(ids), PAGE_NODES):
        frontier = np.stack([ids[a:a + PAGE_NODES], depth[a:a + PAGE_NODES]], axis=1).tolist()
        r = session.run(_EXPAND, model=name, frontier=frontier).single()
        src = np.asarray(r["ids"], dtype=np.int64)
        if not len(src):
            continue
        src_degree = np.asarray(r["degrees"], dtype=np.int64)
        for li, sel, local in space.split(src):
            if li not in degree:
                degree[li] = np.zeros(space.size[li], dtype=np.int64)
            degree[li][local] = src_degree[sel]
        yield src, np.asarray(r["depths"], dtype=np.int32) + 1


def _id_pages(ids: np.ndarray, degrees: np.ndarray) -> list[tuple]:
    """Split target ids into pages of about PAGE_EDGES incoming edges."""
    pages, start, total = [], 0, 0
    for i, deg in enumerate(degrees.tolist()):
        if total and total + deg > PAGE_EDGES:
            pages.append(("ids", ids[start:i]))
            start, total = i, 0
        total += deg
    if start < len(ids):
        pages.append(("ids", ids[start:]))
    return pages


def _plan_cypher(session, db: Database, name, gd, cypher, params) -> PullPlan:
    text = str(cypher)
    is_file = text.endswith(".cypher") or (len(text) < 4096 and "\n" not in text
                                           and Path(text).is_file())
    query = load_query(text) if is_file else parse_query(text, name="cypher")
    bound = bind_params(query, {"model": name, **(params or {})})
    statement = statement_of(query.text)
    read_only_check(db, statement, bound, label=query.name)
    columns = db.explain(statement, bound).columns
    missing = [c for c in ("src", "dst", "weight") if c not in columns]
    if missing:
        raise SelectionError(
            f"the cypher selection must return one row per edge with columns src, dst, weight "
            f"(neuron ids and the weight); it returns {', '.join(columns) or 'nothing'}. "
            "Example: MATCH (s:Neuron {model: $model})-[w:W]->(t:Neuron {model: $model}) "
            "WHERE t.layer = 'fc1' RETURN s.id AS src, t.id AS dst, w.weight AS weight")
    rec = session.run(f"CALL {{\n{statement}\n}}\n"
                      "RETURN count(*) AS edges, collect(DISTINCT src) AS srcs, "
                      "collect(DISTINCT dst) AS dsts", bound).single()
    node_ids = np.union1d(np.asarray(rec["srcs"], dtype=np.int64),
                          np.asarray(rec["dsts"], dtype=np.int64))
    return PullPlan(model=name, graph_data=gd, selection="cypher", n_nodes=len(node_ids),
                    n_edges=rec["edges"], node_ids=node_ids,
                    edge_pages=[("cypher", statement)], cypher_params=bound)


# ---------------------------------------------------------------------------- streaming
_NEURON_NODES_RANGE = """
MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
WITH n ORDER BY n.id
RETURN n.layer_index AS layer_index, n.layer AS layer, n.op AS op, collect(n.id) AS ids,
       collect(n.index) AS idx, collect(n.bias) AS bias, collect(n.activation) AS activation
"""

_NEURON_NODES_IDS = """
UNWIND $ids AS i
MATCH (n:Neuron {model: $model, id: i})
WITH n ORDER BY n.id
RETURN n.layer_index AS layer_index, n.layer AS layer, n.op AS op, collect(n.id) AS ids,
       collect(n.index) AS idx, collect(n.bias) AS bias, collect(n.activation) AS activation
"""

_NEURON_EDGES_RANGE = """
MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
MATCH (n)<-[w:W]-(s)
RETURN collect(s.id) AS src, collect(n.id) AS dst, collect(w.weight) AS weight
"""

_NEURON_EDGES_IDS = """
UNWIND $ids AS i
MATCH (n:Neuron {model: $model, id: i})<-[w:W]-(s)
RETURN collect(s.id) AS src, collect(i) AS dst, collect(w.weight) AS weight
"""

# Channel pages: ``[value]`` lists keep the nulls that collect() would drop (bias, activation
# and kernel are absent where the contract leaves them out).
_CHANNEL_NODES_RANGE = """
MATCH (n:Channel) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
WITH n ORDER BY n.id
RETURN n.layer_index AS layer_index, n.layer AS layer, n.op AS op, collect(n.id) AS ids,
       collect(n.channel) AS channel, collect(n.neurons) AS neurons,
       collect([n.bias, n.activation]) AS attrs
"""

_CHANNEL_NODES_IDS = """
UNWIND $ids AS i
MATCH (n:Channel {model: $model, id: i})
WITH n ORDER BY n.id
RETURN n.layer_index AS layer_index, n.layer AS layer, n.op AS op, collect(n.id) AS ids,
       collect(n.channel) AS channel, collect(n.neurons) AS neurons,
       collect([n.bias, n.activation]) AS attrs
"""

_CHANNEL_EDGES_RANGE = """
MATCH (n:Channel) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
MATCH (n)<-[w:CW]-(s)
RETURN collect(s.id) AS src, collect(n.id) AS dst, collect(w.weight) AS weight,
       collect(w.edges) AS edges, collect(w.total) AS total, collect([w.kernel]) AS kernel
"""

_CHANNEL_EDGES_IDS = """
UNWIND $ids AS i
MATCH (n:Channel {model: $model, id: i})<-[w:CW]-(s)
RETURN collect(s.id) AS src, collect(i) AS dst, collect(w.weight) AS weight,
       collect(w.edges) AS edges, collect(w.total) AS total, collect([w.kernel]) AS kernel
"""


def iter_pull(plan: PullPlan, *, driver: Database | neo4j.Driver | None = None,
              database: str | None = None) -> Iterator[NodeBatch | EdgeBatch]:
    """The node and edge batches of a plan, in bounded pages: nodes, then edges, then (layers
    selections) the neurons outside the range that feed it. A channel model's pages are
    :class:`ChannelNodeBatch` and :class:`ChannelEdgeBatch` (``layer_index`` -1)."""
    channel = plan.labels is CHANNEL
    node_batches = _channel_node_batches if channel else _neuron_node_batches
    nodes_by_ids = _CHANNEL_NODES_IDS if channel else _NEURON_NODES_IDS
    nodes_by_range = _CHANNEL_NODES_RANGE if channel else _NEURON_NODES_RANGE
    edges_by_ids = _CHANNEL_EDGES_IDS if channel else _NEURON_EDGES_IDS
    edges_by_range = _CHANNEL_EDGES_RANGE if channel else _NEURON_EDGES_RANGE
    edge_batches = _channel_edge_batches if channel else _neuron_edge_batches
    with using(driver, database) as db:
        # One read transaction: a consistent view, and no automatic retry that would hand a
        # sink the same batch twice.
        with db.snapshot() as tx:
            name = plan.model
            if plan.node_ids is not None:
                for a in range(0, len(plan.node_ids), PAGE_NODES):
                    yield from node_batches(tx.run(nodes_by_ids, model=name,
                                                    ids=plan.node_ids[a:a + PAGE_NODES].tolist()))
            for lo, hi in plan.node_ranges:
                for a in range(lo, hi, PAGE_NODES):
                    yield from node_batches(tx.run(nodes_by_range, model=name, lo=a,
                                                    hi=min(hi, a + PAGE_NODES)))
            outside: list[np.ndarray] = []
            for page in plan.edge_pages:
                if page[0] == "cypher":
                    yield from _cypher_edges(tx, page[1], plan.cypher_params)
                    continue
                if page[0] == "range":
                    rec = tx.run(edges_by_range, model=name, lo=page[1], hi=page[2]).single()
                else:
                    rec = tx.run(edges_by_ids, model=name, ids=page[1].tolist()).single()
                for batch in edge_batches(rec):
                    if not len(batch):
                        continue
                    if plan.outside_below is not None:
                        below = batch.src[batch.src < plan.outside_below]
                        if len(below):
                            outside.append(np.unique(below))
                    yield batch
            if outside:
                ids = np.unique(np.concatenate(outside))
                for a in range(0, len(ids), PAGE_NODES):
                    yield from node_batches(tx.run(nodes_by_ids, model=name,
                                                    ids=ids[a:a + PAGE_NODES].tolist()))


def _channel_node_batches(result) -> Iterator[ChannelNodeBatch]:
    for rec in result:
        ids = np.asarray(rec["ids"], dtype=np.int64)
        if not len(ids):
            continue
        bias = np.array([np.nan if b is None else b for b, _ in rec["attrs"]], dtype=np.float64)
        activation = np.array([a for _, a in rec["attrs"]], dtype=object)
        yield ChannelNodeBatch(id=ids, layer=rec["layer"], layer_index=int(rec["layer_index"]),
                               channel=np.asarray(rec["channel"], dtype=np.int64),
                               op=rec["op"], activation=activation, bias=bias,
                               neurons=np.asarray(rec["neurons"], dtype=np.int64))


def _channel_edge_batches(rec) -> Iterator[ChannelEdgeBatch]:
    """One page of channel edges, cut by kernel length (a batch holds one (n, k) kernel)."""
    kernels = [k for (k,) in rec["kernel"]]
    cols = (np.asarray(rec["src"], dtype=np.int64), np.asarray(rec["dst"], dtype=np.int64),
            np.asarray(rec["edges"], dtype=np.int64), np.asarray(rec["total"], dtype=np.float64),
            np.asarray(rec["weight"], dtype=np.float64))
    lengths = np.array([-1 if k is None else len(k) for k in kernels])
    for length in np.unique(lengths).tolist():
        sel = np.flatnonzero(lengths == length)
        kernel = None if length < 0 else np.array([kernels[i] for i in sel],
                                                   dtype=np.float64).reshape(len(sel), length)
        src, dst, edges, total, weight = (c[sel] for c in cols)
        yield ChannelEdgeBatch(src, dst, edges, total, weight, kernel, -1)


def _neuron_node_batches(result) -> Iterator[NodeBatch]:
    for rec in result:
        ids = np.asarray(rec["ids"], dtype=np.int64)
        if not len(ids):
            continue
        acts = rec["activation"]
        activation = acts[0] if all(a == acts[0] for a in acts) else np.array(acts, dtype=object)
        yield NodeBatch(id=ids, layer=rec["layer"], layer_index=int(rec["layer_index"]),
                        index=np.asarray(rec["idx"], dtype=np.int64), op=rec["op"],
                        bias=np.asarray(rec["bias"], dtype=np.float64), activation=activation)


def _neuron_edge_batches(rec) -> Iterator[EdgeBatch]:
    yield _edge_batch(rec["src"], rec["dst"], rec["weight"])


def _edge_batch(src, dst, weight) -> EdgeBatch:
    # Weights are float32 values widened exactly (Neo4j stores float64): keep the float64 so
    # the pulled graph holds exactly the value that was loaded.
    return EdgeBatch(np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64),
                     np.asarray(weight, dtype=np.float64), -1)


def _cypher_edges(tx, statement, params, batch: int = PAGE_EDGES) -> Iterator[EdgeBatch]:
    result = tx.run(statement, params)
    src, dst, w = [], [], []
    for rec in result:
        src.append(rec["src"])
        dst.append(rec["dst"])
        w.append(rec["weight"])
        if len(src) >= batch:
            yield _edge_batch(src, dst, w)
            src, dst, w = [], [], []
    if src:
        yield _edge_batch(src, dst, w)


# ---------------------------------------------------------------------------- public
def pull(name: str, layers: str | None = None, cone: str | None = None,
         cypher: str | os.PathLike | None = None, *, driver: neo4j.Driver | None = None,
         max_edges: int = 5_000_000, params: dict | None = None,
         database: str | None = None, allow_incomplete: bool = False) -> nx.DiGraph:
    """A loaded model, or a selection of it, as an ``nx.DiGraph`` (the contract's attributes).

    Parameters
    ----------
    name : str
        The model's name in Neo4j (``(:Model {name})``).
    layers : str, optional
        ``"FIRST:LAST"`` layer names, inclusive; the neurons feeding FIRST come along.
    cone : str, optional
        ``"LAYER:INDEX[:DEPTH]"``: upstream of one neuron, within DEPTH hops.
    cypher : str or path, optional
        A ``.cypher`` file or statement text returning ``src, dst, weight`` per edge
        (``$model`` is set to ``name``; other parameters from ``params``).
    driver : neo4j.Driver, optional
        Defaults to :func:`loader.neo4j.db.connect` (closed again afterwards).
    max_edges : int
        Refuse, after counting and before pulling any edge, a selection with more edges.
    params : dict, optional
        Parameters of the ``cypher`` statement.

    Returns
    -------
    networkx.DiGraph
        A channel model (``Model.granularity = 'channel'``) comes back as the channel graph:
        node keys the channel ids, the attributes of
        :class:`~loader.sinks.networkx.ChannelNetworkXSink` (``cone`` is then
        ``LAYER:CHANNEL[:DEPTH]``).

    Raises
    ------
    ModelNotFound
        Unknown model; the message lists the loaded ones.
    loader.errors.TooLargeError
        Over ``max_edges``: the message gives the count, the memory it would take, and what
        to do instead.

    Examples
    --------
    >>> G = pull("small", layers="conv1:pool")
    >>> G.graph["name"], G.number_of_edges()
    """
    from ..sinks.networkx import ChannelNetworkXSink, NetworkXSink

    with using(driver, database) as db:
        plan = plan_pull(name, layers, cone, cypher, driver=db, params=params,
                         allow_incomplete=allow_incomplete, max_edges=max_edges)
        if plan.n_edges > max_edges:
            raise _too_large(name, plan.selection, plan.n_edges, plan.n_nodes, max_edges)
        sink = (ChannelNetworkXSink if plan.labels is CHANNEL else NetworkXSink)(plan.graph_data)
        for batch in _prefetch(iter_pull(plan, driver=db)):
            sink.write(batch)
        return sink.close()


def pull_to_graphml(name: str, path: str | os.PathLike, layers: str | None = None,
                    cone: str | None = None, cypher: str | os.PathLike | None = None, *,
                    driver: neo4j.Driver | None = None, params: dict | None = None,
                    database: str | None = None, allow_incomplete: bool = False,
                    max_edges: int | None = None, progress: bool = False) -> dict:
    """Stream a loaded model (or a selection) from Neo4j straight into a GraphML file.

    No graph is built in memory: pages of nodes and edges go to
    :class:`loader.sinks.graphml.GraphMLWriter` as they arrive. Neurons come first, then
    edges; for a ``layers`` selection the neurons outside the range that feed it are found
    while the edges stream and written after them (GraphML allows any order).

    Returns
    -------
    dict
        ``path``, ``nodes``, ``edges``, ``seconds``, ``edges_per_s``.

    Examples
    --------
    >>> pull_to_graphml("vgg16_32", "cone.graphml.gz", cone="block3_conv3:1000")
    """
    from ..sinks.graphml import ChannelGraphMLWriter, GraphMLWriter

    return _pull_to_sink(name, path, "GraphML",
                         lambda plan: (ChannelGraphMLWriter if plan.labels is CHANNEL
                                       else GraphMLWriter)(path, plan.graph_data),
                         layers=layers, cone=cone, cypher=cypher, driver=driver, params=params,
                         database=database, allow_incomplete=allow_incomplete,
                         max_edges=max_edges, progress=progress)


def pull_to_parquet(name: str, path: str | os.PathLike, layers: str | None = None,
                    cone: str | None = None, cypher: str | os.PathLike | None = None, *,
                    driver: neo4j.Driver | None = None, params: dict | None = None,
                    database: str | None = None, allow_incomplete: bool = False,
                    max_edges: int | None = None, encoding: str = "fast",
                    progress: bool = False) -> dict:
    """Stream a loaded model (or a selection) from Neo4j into a Parquet dataset directory.

    The dataset has the layout, columns and ``graph.json`` of
    :func:`loader.sinks.parquet.write_parquet` (``selection`` is the pull's); pages of nodes
    and edges go to :class:`loader.sinks.parquet.ParquetDatasetWriter` as they arrive (one
    row group each, memory bounded by the page size), edges into the partition of the layer
    of their ``dst``. Edges keep the order they were pulled in (``edge_order`` ``pulled``).
    Written to a hidden temporary directory and renamed when every page is in: a failed or
    killed pull leaves nothing at ``path``.

    Returns
    -------
    dict
        ``path``, ``nodes``, ``edges``, ``bytes``, ``seconds``, ``edges_per_s``.

    Examples
    --------
    >>> pull_to_parquet("vgg16_32", "block3.parquet", layers="block3_conv1:block3_pool")
    >>> loader.open_duckdb("block3.parquet").sql("SELECT count(*) FROM edges")
    """
    from ..sinks.parquet import ParquetDatasetWriter, check_target, dataset_bytes

    check_target(path)

    def make(plan: PullPlan):
        if plan.labels is CHANNEL:
            raise WeightgraphError(
                f"model {name!r} is a channel model: pull it to GraphML, or export its channel "
                "dataset from the Keras model (`export --granularity channel --format parquet`)")
        data = dict(plan.graph_data, selection=plan.selection)
        return ParquetDatasetWriter(path, data, edge_order="pulled", encoding=encoding)

    stats = _pull_to_sink(name, path, "Parquet", make, layers=layers, cone=cone,
                          cypher=cypher, driver=driver, params=params, database=database,
                          allow_incomplete=allow_incomplete, max_edges=max_edges,
                          progress=progress)
    stats["bytes"] = dataset_bytes(path)
    return stats


def _pull_to_sink(name, path, label, make_sink, *, layers, cone, cypher, driver, params,
                  database, allow_incomplete, max_edges, progress) -> dict:
    """Plan a pull, then stream its pages into the sink ``make_sink(plan)`` (a context
    manager that finishes its output on a clean exit and abandons it on an error)."""
    start = time.perf_counter()
    with using(driver, database) as db:
        plan = plan_pull(name, layers, cone, cypher, driver=db, params=params,
                         allow_incomplete=allow_incomplete, max_edges=max_edges)
        if max_edges is not None and plan.n_edges > max_edges:
            raise _too_large(name, plan.selection, plan.n_edges, plan.n_nodes, max_edges)
        with make_sink(plan) as writer, progress_bar(
                plan.n_edges, f"{label} {Path(path).name}", enabled=progress,
                unit="edge") as bar:
            for batch in _prefetch(iter_pull(plan, driver=db)):
                writer.write(batch)
                if isinstance(batch, (EdgeBatch, ChannelEdgeBatch)):
                    bar.update(len(batch))
            nodes, edges = writer.nodes_written, writer.edges_written
    seconds = time.perf_counter() - start
    return {"path": str(path), "nodes": nodes, "edges": edges, "seconds": seconds,
            "edges_per_s": edges / seconds if seconds > 0 else float("inf")}


# ---------------------------------------------------------------------------- helpers
def _prefetch(batches: Iterator, depth: int = 2) -> Iterator:
    """Run ``batches`` on a background thread, ``depth`` batches ahead of the consumer.

    The server's work and the socket reads (which release the GIL) then overlap with the
    consumer's (NetworkX inserts ~400k edges/s, the slowest stage of a pull). The queue is
    bounded, so memory stays at ``depth`` pages; an exception is re-raised in the consumer.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="weightgraph-pull", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)
        # Closing the generator ends its read transaction and session now, not at GC time.
        if not thread.is_alive() and hasattr(batches, "close"):
            batches.close()


def _too_large(name, selection, n_edges, n_nodes, max_edges, lower_bound=False) -> TooLargeError:
    need = n_edges * costs.NX_BYTES_PER_EDGE + n_nodes * costs.NX_BYTES_PER_NODE
    what = "at least " if lower_bound else ""
    return TooLargeError(
        f"{name} ({selection}): {what}{n_edges:,} edges and {n_nodes:,} neurons would take "
        f"{what}about {human(need)} as a NetworkX DiGraph, over max_edges={max_edges:,}. "
        "Pull less (a shorter --layers range, a --cone with a DEPTH, a --cypher selection), "
        "raise max_edges if you have the memory, or stream it to a file instead: "
        f"`weightgraph pull --name {name} ... -o FILE.graphml.gz` (pull_to_graphml) has no "
        "size limit.")
