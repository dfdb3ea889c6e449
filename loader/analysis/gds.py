"""Whole-model summaries from Graph Data Science, for the analysis report of a model loaded in
Neo4j: PageRank and degree per layer, connected components, communities per layer. Everything
is computed and aggregated by the server (:mod:`loader.neo4j.gds`); only a row per layer and
the top neurons come back, so the size of the model does not matter here (the projection's
memory does, and is checked first).

Examples
--------
>>> with Database.connect() as db:
...     s = whole_model(db, "vgg16_32")
>>> s.layers[0]["pagerank_mean"], s.components, s.communities
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..neo4j import gds
from ..neo4j.db import Database

__all__ = ["GdsSummary", "whole_model"]

TOP_NEURONS = 10


@dataclass
class GdsSummary:
    """What the report's GDS section shows.

    ``layers``: per layer (``layer_index``, ``layer``, ``neurons``, ``pagerank_mean``,
    ``pagerank_max``, ``pagerank_sum``, ``in_degree_mean``, ``in_degree_max``,
    ``out_degree_mean``, ``out_degree_max``, ``communities``); ``top``: the neurons of highest
    PageRank (``id``, ``score``); ``components`` and ``component_sizes`` (WCC, largest first);
    ``communities`` and ``modularity`` (Louvain on the undirected view, weight |w|);
    ``seconds``: per step; ``nodes``, ``relationships``, ``estimate_bytes``.
    """

    model: str
    nodes: int = 0
    relationships: int = 0
    estimate_bytes: int = 0
    layers: list[dict[str, Any]] = field(default_factory=list)
    top: list[dict[str, Any]] = field(default_factory=list)
    components: int = 0
    component_sizes: list[int] = field(default_factory=list)
    communities: int = 0
    modularity: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)


def whole_model(db: Database, model: str, *, weight: str = "abs", max_memory: int | None = None,
                communities: bool = True, allow_incomplete: bool = False) -> GdsSummary:
    """PageRank, in/out degree, WCC and (``communities``) Louvain over the whole model.

    Two projections, one after the other (each estimated first, each dropped): the directed
    graph for PageRank, degree and WCC, the undirected view for Louvain. ``weight`` is the
    projection's weight (``abs`` or ``none``: PageRank and Louvain need weights >= 0);
    degrees are counts of relationships whatever it is.

    Raises
    ------
    loader.errors.TooLargeError
        A projection's estimate is above the server's available heap (or ``max_memory``).
    """
    import time

    out = GdsSummary(model)
    rows: dict[int, dict[str, Any]] = {}

    def merge(summary, **names):
        for r in summary:
            row = rows.setdefault(r["layer_index"], {"layer_index": r["layer_index"],
                                                     "layer": r["layer"],
                                                     "neurons": r["neurons"]})
            for ours, theirs in names.items():
                row[ours] = r[theirs]

    start = time.perf_counter()
    with gds.project(model, weight=weight, algorithms=("pagerank", "degree", "wcc"),
                     max_memory=max_memory, driver=db, allow_incomplete=allow_incomplete) as g:
        out.nodes, out.relationships = g.nodes, g.relationships
        out.estimate_bytes = g.estimate_bytes
        out.seconds["project"] = g.project_seconds
        t = time.perf_counter()
        merge(g.layer_summary("pagerank"), pagerank_mean="mean", pagerank_max="max",
              pagerank_sum="sum")
        out.top = g.stream("pagerank", top=TOP_NEURONS).rows()
        out.seconds["pagerank"] = time.perf_counter() - t
        t = time.perf_counter()
        unweighted = {"relationshipWeightProperty": None}
        merge(g.layer_summary("degree", {**unweighted, "orientation": "REVERSE"}),
              in_degree_mean="mean", in_degree_max="max")
        merge(g.layer_summary("degree", unweighted), out_degree_mean="mean",
              out_degree_max="max")
        out.seconds["degree"] = time.perf_counter() - t
        t = time.perf_counter()
        out.components = int(g.stats("wcc")["componentCount"])
        out.component_sizes = g.stream("wcc", top=TOP_NEURONS).columns["size"].tolist()
        out.seconds["wcc"] = time.perf_counter() - t
    if communities:
        with gds.project(model, weight=weight, undirected=True, algorithms=("louvain",),
                         max_memory=max_memory, driver=db,
                         allow_incomplete=allow_incomplete) as g:
            t = time.perf_counter()
            # One thread: Louvain is then deterministic, so the count and modularity of the
            # stats run describe the same partition as the per-layer run.
            config = {"concurrency": 1}
            stats = g.stats("louvain", config)
            out.communities = int(stats["communityCount"])
            out.modularity = float(stats["modularity"])
            merge(g.layer_summary("louvain", config), communities="communities")
            out.seconds["louvain"] = time.perf_counter() - t
            out.estimate_bytes = max(out.estimate_bytes, g.estimate_bytes)
    out.layers = [rows[k] for k in sorted(rows)]
    out.seconds["total"] = time.perf_counter() - start
    return out
