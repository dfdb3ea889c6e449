"""Statistics of a loaded model's layers, computed by the server: sizes, weight moments and
histograms, and per-neuron degrees and strengths. Only aggregates and per-neuron numbers
cross the wire, never edges.

Every query works on one id range ``[lo, hi)`` of neurons (a layer, or a page of one). Those
that read edges can keep a fixed hashed sample of the target neurons: a neuron is kept when
``(id * mult) % mod < threshold``. The caller picks ``mult``, ``mod`` and ``threshold`` (see
:mod:`loader.analysis.sources`), so a sample drawn here is the same one drawn from a
:class:`~loader.graph.NeuronGraph`.

Examples
--------
>>> with Database.connect() as db:
...     range_sizes(db, "small", 0, 72)
{'nodes': 72, 'edges_in': 0, 'edges_out': 1536}
"""

from __future__ import annotations

import numpy as np

from .db import Database
from .pull import PAGE_NODES

_RANGE_SIZES = """
MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
RETURN count(n) AS nodes, sum(COUNT { (n)<-[:W]-() }) AS edges_in,
       sum(COUNT { (n)-[:W]->() }) AS edges_out
"""
_WEIGHT_MOMENTS = """
MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
  AND (n.id * $mult) % $mod < $threshold
MATCH (n)<-[w:W]-()
RETURN count(w) AS edges, min(w.weight) AS min, max(w.weight) AS max,
       sum(w.weight) AS total, sum(w.weight * w.weight) AS total_sq
"""
_WEIGHT_HISTOGRAM = """
MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
  AND (n.id * $mult) % $mod < $threshold
MATCH (n)<-[w:W]-()
WITH toInteger(floor((w.weight - $first) / $width)) AS bin
WITH CASE WHEN bin < 0 THEN 0 WHEN bin >= $bins THEN $bins - 1 ELSE bin END AS bin
RETURN bin, count(*) AS n
"""
# Strengths read edges, so only sampled neurons get them (the others' sums are never
# computed: the filter comes before the MATCH); degrees are read from the node store.
_NODE_STATS = """
MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
WITH n, (n.id * $mult) % $mod AS hash
CALL { WITH n, hash WITH n WHERE hash < $threshold
       MATCH (n)<-[w:W]-() RETURN sum(abs(w.weight)) AS sin }
CALL { WITH n, hash WITH n WHERE hash < $out_threshold
       MATCH (n)-[w:W]->() RETURN sum(abs(w.weight)) AS sout }
RETURN collect(n.id) AS ids, collect(COUNT { (n)<-[:W]-() }) AS din, collect(sin) AS sin,
       collect(COUNT { (n)-[:W]->() }) AS dout, collect(sout) AS sout
"""
_NODE_COLUMNS = {"ids": "ids", "din": "in_degree", "sin": "in_strength",
                 "dout": "out_degree", "sout": "out_strength"}


def range_sizes(db: Database, model: str, lo: int, hi: int) -> dict:
    """Neurons of ``model`` with ids in ``[lo, hi)`` and the edges entering and leaving them.

    Degrees are kept per node by Neo4j, so this reads no relationship.

    Returns
    -------
    dict
        ``nodes``, ``edges_in``, ``edges_out`` (ints). A model loaded as a selection holds
        fewer than the layer's neurons.
    """
    r = db.read_one(_RANGE_SIZES, model=model, lo=lo, hi=hi)
    return {"nodes": r["nodes"], "edges_in": r["edges_in"], "edges_out": r["edges_out"]}


def weight_moments(db: Database, model: str, lo: int, hi: int, *, mult: int, mod: int,
                   threshold: int) -> dict:
    """Count, extremes and sums of the weights entering the sampled neurons of ``[lo, hi)``.

    Returns
    -------
    dict
        ``edges`` (int), ``min``, ``max``, ``total`` (sum of the weights) and ``total_sq`` (sum
        of their squares); ``min`` and ``max`` are None when no edge was read.
    """
    r = db.read_one(_WEIGHT_MOMENTS, model=model, lo=lo, hi=hi, mult=mult, mod=mod,
                    threshold=threshold)
    return {k: r[k] for k in ("edges", "min", "max", "total", "total_sq")}


def weight_histogram(db: Database, model: str, lo: int, hi: int, bins: np.ndarray, *,
                     mult: int, mod: int, threshold: int) -> np.ndarray:
    """Histogram of the weights entering the sampled neurons of ``[lo, hi)``.

    Parameters
    ----------
    bins : numpy.ndarray
        Equally spaced bin edges. Weights outside them count in the first or last bin.

    Returns
    -------
    numpy.ndarray
        ``len(bins) - 1`` counts (int64).
    """
    n_bins = len(bins) - 1
    counts = np.zeros(n_bins, dtype=np.int64)
    for rec in db.read(_WEIGHT_HISTOGRAM, model=model, lo=lo, hi=hi, mult=mult, mod=mod,
                       threshold=threshold, first=float(bins[0]),
                       width=float(bins[1] - bins[0]), bins=n_bins):
        counts[rec["bin"]] += rec["n"]
    return counts


def node_stats(db: Database, model: str, lo: int, hi: int, *, mult: int, mod: int,
               threshold: int, out_threshold: int,
               page_nodes: int = PAGE_NODES) -> dict[str, np.ndarray]:
    """Degrees and strengths (sums of ``|weight|``) of every neuron of ``[lo, hi)``.

    Reads ``page_nodes`` neurons per query (each query returns five lists that long).
    In-strengths are summed only for the neurons kept by ``threshold``, out-strengths only
    for those kept by ``out_threshold``; the others read 0.

    Returns
    -------
    dict
        ``ids`` (int64) and ``in_degree``, ``in_strength``, ``out_degree``, ``out_strength``
        (float64), one entry per neuron found, in the same order.
    """
    parts: dict[str, list[np.ndarray]] = {k: [] for k in _NODE_COLUMNS}
    for a in range(lo, hi, page_nodes):
        r = db.read_one(_NODE_STATS, model=model, lo=a, hi=min(hi, a + page_nodes), mult=mult,
                        mod=mod, threshold=threshold, out_threshold=out_threshold)
        for k in parts:
            parts[k].append(np.asarray(r[k], dtype=np.float64))
    out = {name: np.concatenate(parts[k]) for k, name in _NODE_COLUMNS.items()}
    out["ids"] = out["ids"].astype(np.int64)
    return out
