"""NetworkX metrics of a subgraph (PageRank, betweenness, Louvain communities) and their cost,
estimated from the subgraph's size before anything is pulled or computed.

Examples
--------
>>> costs = check_costs("cone=dense:1", 200, 2_000, METRICS, max_cost=60, max_edges=10**6)
>>> results, seconds = run_metrics(G, METRICS)
"""

from __future__ import annotations

import time
from typing import Iterable, Sequence

import networkx as nx

from ..errors import TooLargeError, WeightgraphError
from ..graph import costs

METRICS = ("pagerank", "betweenness", "communities")

# Seconds per unit of work of each NetworkX algorithm, measured on the 2-core development
# machine (100k-edge random digraph: pagerank 0.46 s incl. the scipy conversion; betweenness
# with k=50 sources 1.6 s; Louvain on the undirected graph 4.7 s). Estimates, not promises.
_PAGERANK_S_PER_EDGE = 5e-6
_BETWEENNESS_S_PER_SOURCE_STEP = 3.2e-7  # per source, per (node + edge) of a BFS
_LOUVAIN_S_PER_EDGE = 5e-5
_BUILD_S_PER_EDGE = 1.0 / costs.NETWORKX_EDGES_PER_S  # the DiGraph itself (to_networkx)
# Betweenness is exact up to this many nodes; above, it samples this many source nodes
# (networkx's k=), which keeps the cost linear in the graph (Brandes is O(V*E) exact).
BETWEENNESS_EXACT_NODES = 1000
BETWEENNESS_SAMPLES = 256


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """``metrics`` as a tuple, once every name is known.

    Raises
    ------
    loader.errors.WeightgraphError
        A name not in :data:`METRICS`.
    """
    metrics = tuple(metrics or ())
    for m in metrics:
        if m not in METRICS:
            raise WeightgraphError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
    return metrics


def _betweenness_sources(n_nodes: int) -> int | None:
    """Source nodes betweenness samples (None: exact, every node)."""
    return None if n_nodes <= BETWEENNESS_EXACT_NODES else BETWEENNESS_SAMPLES


def estimate_costs(n_nodes: int, n_edges: int, metrics: Iterable[str] = METRICS) -> dict:
    """Estimated seconds of each metric, and of building the graph, on a subgraph.

    Parameters
    ----------
    n_nodes, n_edges : int
        The subgraph's size.
    metrics : iterable of str
        Names from :data:`METRICS`.

    Returns
    -------
    dict
        ``"build"`` and each metric -> seconds.

    Examples
    --------
    >>> estimate_costs(10_000, 200_000)["pagerank"]
    1.0
    """
    out = {"build": n_edges * _BUILD_S_PER_EDGE}
    for m in check_metrics(metrics):
        if m == "pagerank":
            out[m] = n_edges * _PAGERANK_S_PER_EDGE
        elif m == "betweenness":
            k = _betweenness_sources(n_nodes) or n_nodes
            out[m] = k * (n_nodes + n_edges) * _BETWEENNESS_S_PER_SOURCE_STEP
        else:
            out[m] = n_edges * _LOUVAIN_S_PER_EDGE
    return out


def check_costs(subgraph: str, n_nodes: int, n_edges: int, metrics: Sequence[str], *,
                max_cost: float, max_edges: int) -> dict:
    """The cost estimates of ``metrics`` on a subgraph, once they are within the limits.

    Parameters
    ----------
    subgraph : str
        How the subgraph was chosen (``"cone=dense:1:2"``), for the messages.
    n_nodes, n_edges : int
        Its size, counted without building it.
    metrics : sequence of str
    max_cost : float
        The most estimated seconds of building the graph plus the metrics.
    max_edges : int
        The most edges.

    Returns
    -------
    dict
        :func:`estimate_costs`.

    Raises
    ------
    loader.errors.TooLargeError
        Over either limit; the message says what to do instead.
    """
    if n_edges > max_edges:
        raise TooLargeError(
            f"subgraph {subgraph} has {n_edges:,} edges, over max_edges={max_edges:,}: pick a "
            "smaller subgraph (a cone with a DEPTH, a shorter layer range) or raise max_edges")
    estimates = estimate_costs(n_nodes, n_edges, metrics)
    total = sum(estimates.values())
    if total > max_cost:
        detail = ", ".join(f"{k} ~{v:.3g} s" for k, v in estimates.items())
        raise TooLargeError(
            f"metrics on subgraph {subgraph} ({n_nodes:,} nodes, {n_edges:,} edges) would take "
            f"about {total:.3g} s ({detail}), over max_cost={max_cost:g} s: pick a smaller "
            "subgraph (a cone with a DEPTH, a shorter layer range), fewer metrics, or raise "
            "max_cost")
    return estimates


def run_metrics(G: nx.DiGraph, metrics: Sequence[str]) -> tuple[dict, dict]:
    """Compute ``metrics`` on ``G``, timing each.

    PageRank is unweighted (it needs non-negative weights and ours are signed); betweenness
    is unweighted (hops) and samples :data:`BETWEENNESS_SAMPLES` sources (seed 0) above
    :data:`BETWEENNESS_EXACT_NODES` nodes; communities are the Louvain communities (seed 0) of
    the undirected graph weighted by ``|weight|``.

    Returns
    -------
    results : dict
        ``"pagerank"`` and ``"betweenness"`` -> {node: value}; ``"communities"`` -> list of
        node sets.
    timings : dict
        Metric -> seconds it took.
    """
    results, timings = {}, {}
    for m in metrics:
        started = time.perf_counter()
        if m == "pagerank":
            results[m] = nx.pagerank(G, weight=None)
        elif m == "betweenness":
            k = _betweenness_sources(G.number_of_nodes())
            results[m] = nx.betweenness_centrality(G, k=k, seed=0 if k else None)
        elif m == "communities":
            U = nx.Graph()
            U.add_nodes_from(G.nodes)
            U.add_weighted_edges_from((u, v, abs(d["weight"])) for u, v, d in G.edges(data=True))
            results[m] = nx.community.louvain_communities(U, weight="weight", seed=0)
        timings[m] = time.perf_counter() - started
    return results, timings
