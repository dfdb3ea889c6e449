"""Analysis report of a channel graph (``--granularity channel``): weight distributions, degree
and strength per layer, and PageRank per layer, over the *whole* graph.

A channel graph is small by construction (VGG16 at 224x224 with its dense top: 14,891 nodes,
24,606,336 edges), so every statistic here is exact: no sampling. The edges stream once, in
bounded batches, from a :class:`~loader.graph.channels.ChannelGraph` or from a channel model
in Neo4j (:func:`loader.neo4j.pull.iter_pull`); what is kept is one float64 weight and two
int32 ends per edge (16 bytes: 0.4 GB for VGG16 with its top, where an ``nx.DiGraph`` would
take ~6 GB), from which degrees, strengths and PageRank (a sparse power iteration, the same
iteration as :func:`networkx.pagerank`, which the tests compare it with) are computed.

Examples
--------
>>> g = ChannelGraph.from_model("vgg16", weights=None)
>>> analyze_channels(g, "out/vgg16_channels")
PosixPath('out/vgg16_channels/report.md')
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from ..errors import WeightgraphError
from ..neo4j.db import using
from ..neo4j.models import require_complete
from ..neo4j.pull import iter_pull, plan_pull
from . import plots
from .report import _Report, _write
from .sources import LayerStats

__all__ = ["ChannelStatistics", "channel_statistics", "analyze_channels", "pagerank"]

_TOP = 10


@dataclass
class ChannelStatistics:
    """Per channel (indexed by channel id) and per layer, over every edge of the graph."""

    name: str
    graph_data: dict
    layer_of: np.ndarray       # per channel id: its layer's index (-1: no such channel)
    in_degree: np.ndarray
    out_degree: np.ndarray
    in_strength: np.ndarray    # sum of the weights (L1 norms of kernels) entering
    out_strength: np.ndarray
    pagerank: np.ndarray       # NaN for ids without a channel
    layers: list[LayerStats]   # weights of the edges entering each layer, degrees, strengths
    seconds: float

    def layer_values(self, values: np.ndarray) -> list[tuple[dict, np.ndarray]]:
        """(layer entry, the values of its channels) for every layer that has channels."""
        out = []
        for layer in self.graph_data["layers"]:
            ids = np.flatnonzero(self.layer_of == layer["index"])
            if len(ids):
                out.append((layer, values[ids]))
        return out


def pagerank(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n: int, *,
             alpha: float = 0.85, tol: float = 1.0e-6, max_iter: int = 100) -> np.ndarray:
    """Weighted PageRank of a graph given by its edges, as :func:`networkx.pagerank` computes
    it (uniform personalisation and teleport, dangling nodes' rank spread uniformly,
    convergence when the L1 change is below ``n * tol``).

    Raises
    ------
    WeightgraphError
        No convergence within ``max_iter`` iterations (NetworkX raises too).
    """
    if n == 0:
        return np.zeros(0)
    M = sp.csr_matrix((weight.astype(np.float64), (src, dst)), shape=(n, n))
    out = np.asarray(M.sum(axis=1)).ravel()
    inv = np.zeros(n)
    inv[out != 0] = 1.0 / out[out != 0]
    M = sp.diags(inv) @ M  # row-stochastic where a node has out-weight
    dangling = out == 0
    x = np.full(n, 1.0 / n)
    p = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        last = x
        x = alpha * (x @ M + x[dangling].sum() * p) + (1 - alpha) * p
        if np.abs(x - last).sum() < n * tol:
            return x
    raise WeightgraphError(f"PageRank did not converge in {max_iter} iterations")


def channel_statistics(source, *, driver=None, database: str | None = None,
                       allow_incomplete: bool = False) -> ChannelStatistics:
    """Exact per-channel and per-layer statistics of a channel graph.

    Parameters
    ----------
    source : ChannelGraph or str
        A channel graph, or the name of a channel model loaded in Neo4j.
    """
    start = time.perf_counter()
    with _batches(source, driver, database, allow_incomplete) as (name, gd, batches):
        n = 1 + max((int(l["offset"]) + int(l["channels"]) - 1 for l in gd["layers"]
                     if l.get("offset") is not None and l.get("channels")), default=-1)
        present = np.zeros(n, dtype=bool)
        src, dst, w = [], [], []
        for b in batches:
            if not hasattr(b, "src"):  # a node batch
                present[b.id] = True
                continue
            src.append(b.src.astype(np.int32))
            dst.append(b.dst.astype(np.int32))
            w.append(np.asarray(b.weight, dtype=np.float64))
    layer_of = np.full(n, -1, dtype=np.int64)
    for l in gd["layers"]:
        if l.get("offset") is not None and l.get("channels"):
            layer_of[l["offset"]:l["offset"] + l["channels"]] = l["index"]
    layer_of[~present] = -1
    src, dst, w = ((np.concatenate(x) if x else np.zeros(0, t)) for x, t in
                   ((src, np.int32), (dst, np.int32), (w, np.float64)))
    w64 = w
    in_degree = np.bincount(dst, minlength=n)
    out_degree = np.bincount(src, minlength=n)
    in_strength = np.bincount(dst, weights=w64, minlength=n)
    out_strength = np.bincount(src, weights=w64, minlength=n)
    rank = np.full(n, np.nan)
    ids = np.flatnonzero(present)
    local = np.full(n, -1, dtype=np.int64)
    local[ids] = np.arange(len(ids))
    rank[ids] = pagerank(local[src], local[dst], w64, len(ids))
    layers = []
    dst_layer = layer_of[dst]
    order = np.argsort(dst_layer, kind="stable")
    bounds = np.searchsorted(dst_layer[order], [l["index"] for l in gd["layers"]] + [np.inf])
    for k, l in enumerate(gd["layers"]):
        chans = np.flatnonzero(layer_of == l["index"])
        if not len(chans):
            continue
        s = LayerStats(layer=l, neurons=len(chans), in_degree=in_degree[chans],
                       out_degree=out_degree[chans], in_strength=in_strength[chans],
                       out_strength=out_strength[chans])
        lo, hi = bounds[k], np.searchsorted(dst_layer[order], l["index"], side="right")
        ws = w64[order[lo:hi]]
        if len(ws):
            s.edges = len(ws)
            s.min, s.max, s.mean, s.std = (float(ws.min()), float(ws.max()), float(ws.mean()),
                                           float(ws.std()))
            s.bins = np.histogram_bin_edges(ws, bins=40)
            s.counts = np.histogram(ws, bins=s.bins)[0]
        layers.append(s)
    return ChannelStatistics(name, gd, layer_of, in_degree, out_degree, in_strength,
                             out_strength, rank, layers, time.perf_counter() - start)


@contextlib.contextmanager
def _batches(source, driver, database, allow_incomplete) -> Iterator[tuple]:
    """(name, graph data, node and edge batches) of a ChannelGraph or a Neo4j channel model."""
    if not isinstance(source, str):
        if getattr(source, "granularity", "neuron") != "channel":
            raise WeightgraphError("a channel report needs a ChannelGraph (or a channel model "
                                   "in Neo4j)")
        yield (source.name, source.graph_data(),
               itertools.chain(source.iter_node_batches(), source.iter_edge_batches()))
        return
    with using(driver, database) as db:
        info = require_complete(db, source, allow_incomplete)
        if info.get("granularity") != "channel":
            raise WeightgraphError(f"model {source!r} is a neuron model: its channel report "
                                   "comes from the Keras model (analyze MODEL --granularity "
                                   "channel) or from a channel load of it")
        plan = plan_pull(source, driver=db, allow_incomplete=allow_incomplete)
        yield source, dict(plan.graph_data), iter_pull(plan, driver=db)


def analyze_channels(source, out_dir: str | os.PathLike, *, fmt: str = "md", driver=None,
                     database: str | None = None, allow_incomplete: bool = False) -> Path:
    """Write the channel-level report (Markdown or HTML, PNG plots) of a whole channel graph.

    Parameters
    ----------
    source : ChannelGraph or str
        A channel graph, or a channel model loaded in Neo4j (by name).
    out_dir : path
        Receives ``report.md`` / ``report.html`` and ``weights*.png``, ``degree.png``,
        ``strength.png``, ``pagerank.png``.

    Examples
    --------
    >>> analyze_channels(ChannelGraph.from_model("vgg16", weights=None), "report/")
    """
    if fmt not in ("md", "html"):
        raise WeightgraphError(f"format must be md or html, got {fmt!r}")
    stats = channel_statistics(source, driver=driver, database=database,
                               allow_incomplete=allow_incomplete)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_edges = int(stats.in_degree.sum())
    report = _Report(f"weightgraph channel analysis: {stats.name}")
    where = "a channel model in Neo4j" if isinstance(source, str) else "the Keras model"
    report.para(f"Source: {where}. The whole channel graph: {int((stats.layer_of >= 0).sum()):,} "
                f"channels and {n_edges:,} channel edges (each standing for "
                f"the neuron edges between two channels; its weight is the L1 norm of the "
                f"kernel between them, 1.0 for parameter-free layers). Every statistic is "
                f"exact (no sampling); computed in {stats.seconds:.1f} s.")
    report.heading("Layers")
    report.table(["#", "layer", "class", "channels", "neurons", "channel edges in"],
                 [[s.layer["index"], s.layer["name"], s.layer.get("class_name", ""), s.neurons,
                   int(s.layer.get("neurons", 0)), int(s.in_degree.sum())] for s in stats.layers])
    report.heading("Channel-edge weights per layer")
    report.table(["layer", "edges", "min", "max", "mean", "std"],
                 [[s.layer["name"], s.edges, s.min, s.max, s.mean, s.std]
                  for s in stats.layers if s.counts is not None])
    for p in plots.plot_weight_histograms(stats.layers, out):
        report.image(p, "channel-edge weight histograms")
    report.heading("Degree and strength per layer")
    report.para("In-degree: channel edges entering a channel; out-degree: leaving it; strength: "
                "the sum of their weights.")
    report.table(["layer", "channels", "mean in-degree", "max in-degree", "mean out-degree",
                  "mean in-strength", "mean out-strength"],
                 [[s.layer["name"], s.neurons, float(s.in_degree.mean()),
                   float(s.in_degree.max()), float(s.out_degree.mean()),
                   float(s.in_strength.mean()), float(s.out_strength.mean())]
                  for s in stats.layers])
    for what in ("degree", "strength"):
        p = plots.plot_distributions(stats.layers, out, what)
        if p is not None:
            report.image(p, f"{what} distributions")
    report.heading("PageRank per layer")
    report.para("Weighted PageRank (alpha 0.85, weight = the channel edge's weight) over the "
                "whole channel graph, as networkx.pagerank defines it.")
    per_layer = stats.layer_values(stats.pagerank)
    report.table(["layer", "channels", "sum", "mean", "max"],
                 [[l["name"], len(v), float(v.sum()), float(v.mean()), float(v.max())]
                  for l, v in per_layer])
    report.image(plots.plot_per_layer(per_layer, out / "pagerank.png", "PageRank per layer",
                                      "PageRank"), "PageRank per layer")
    top = np.argsort(-np.nan_to_num(stats.pagerank, nan=-1.0), kind="stable")[:_TOP]
    by_index = {l["index"]: l for l in stats.graph_data["layers"]}
    report.table(["id", "layer", "channel", "pagerank"],
                 [[int(i), by_index[int(stats.layer_of[i])]["name"],
                   int(i - by_index[int(stats.layer_of[i])]["offset"]), float(stats.pagerank[i])]
                  for i in top])
    return _write(report, out, fmt)
