"""What the analysis reads: a :class:`~loader.graph.NeuronGraph` (:class:`GraphSource`) or a
model loaded in Neo4j (:class:`Neo4jSource`), behind one interface (:class:`Source`).

Statistics stream, so memory stays bounded whatever the size of the graph:

* Neo4j: every aggregate is computed by the server (:mod:`loader.neo4j.stats`); only
  histogram bins and per-neuron numbers cross the wire, never edges.
* NeuronGraph: edge batches are streamed layer by layer, twice (the range, then the bins),
  into fixed-size histograms and per-neuron accumulators.

A layer with more than ``sample_edges`` edges is sampled by target neuron: a fixed hash of
the neuron id picks the same neurons in both passes and in both sources, so nothing has to
store the sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import networkx as nx
import numpy as np

from ..graph.neuron_graph import NeuronGraph
from ..neo4j import stats as neo4j_stats
from ..neo4j.db import Database
from ..neo4j.models import LayerTable, require_complete, require_neurons
from ..neo4j.pull import plan_pull, pull
from ..neo4j.receptive_field import receptive_field
from ..sinks.networkx import to_networkx

HIST_BINS = 60

# Target neurons are sampled by a multiplicative hash of their id (Knuth's constant): a
# neuron is kept when hash(id) < threshold, the same test in numpy and in Cypher.
_HASH_MULT = 2654435761
_HASH_MOD = 1 << 32
_HASH_PARAMS = {"mult": _HASH_MULT, "mod": _HASH_MOD}

# Edges per batch streamed from a NeuronGraph layer.
_EDGE_BATCH = 1 << 20


@dataclass
class LayerStats:
    """Statistics of one layer: its weights (the edges entering it) and its neurons.

    ``threshold`` is the sampling hash threshold of the weights and in-degrees (see
    :func:`sample_threshold`); the per-neuron arrays are None where a source cannot give them.
    """

    layer: dict
    neurons: int = 0
    edges: int = 0
    threshold: int = _HASH_MOD
    min: float = math.nan
    max: float = math.nan
    mean: float = math.nan
    std: float = math.nan
    bins: np.ndarray | None = None
    counts: np.ndarray | None = None
    in_degree: np.ndarray | None = None
    out_degree: np.ndarray | None = None
    in_strength: np.ndarray | None = None
    out_strength: np.ndarray | None = None

    @property
    def sampled(self) -> float:
        """The fraction of target neurons whose edges were read (1.0: all of them)."""
        return self.threshold / _HASH_MOD

    def set_moments(self, edges: int, lo: float, hi: float, total: float,
                    total_sq: float) -> None:
        """Min, max, mean, std and the histogram bin edges from a layer's weight sums."""
        self.edges = edges
        self.min, self.max, self.mean = lo, hi, total / edges
        self.std = math.sqrt(max(0.0, total_sq / edges - self.mean ** 2))
        self.bins = _histogram_edges(lo, hi)


class Source(Protocol):
    """What the report needs of a neuron graph, wherever it lives."""

    name: str
    graph_data: dict  # the model's graph-level data, with its ``layers`` table

    @property
    def where(self) -> str:
        """One line saying what is analysed, for the report."""

    def layer_stats(self, sample_edges: int) -> tuple[list[LayerStats], str]:
        """Statistics of every neuron layer, and a note on what sampling left out."""

    def receptive_field(self, layer: str, index: int) -> dict[str, np.ndarray]:
        """Paths from every input neuron to (layer, index), per input layer (float64)."""

    def subgraph_size(self, kind: str, spec: str) -> tuple[int, int]:
        """Nodes and edges of a ``layers`` or ``cone`` selection, counted without building it."""

    def subgraph(self, kind: str, spec: str, max_edges: int) -> nx.DiGraph:
        """A ``layers`` or ``cone`` selection as a NetworkX graph."""


def sample_threshold(layer_edges: int, sample_edges: int) -> int:
    """The hash threshold that keeps about ``sample_edges`` of a layer's ``layer_edges``
    (every neuron when the layer is small enough)."""
    if layer_edges <= sample_edges:
        return _HASH_MOD
    return max(1, int(_HASH_MOD * sample_edges / layer_edges))


def _kept(ids: np.ndarray, threshold: int) -> np.ndarray:
    """Which neuron ids the hash sample keeps."""
    return (ids.astype(np.int64) * _HASH_MULT) % _HASH_MOD < threshold


def _histogram_edges(lo: float, hi: float) -> np.ndarray:
    """``HIST_BINS`` equal bins over ``[lo, hi]``, widened when the weights are all equal."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = max(abs(lo) * 0.05, 0.5)
        lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, HIST_BINS + 1)


def _input_layers(graph_data: dict) -> list[dict]:
    return [lay for lay in graph_data["layers"] if lay["kind"] == "input"]


# ---------------------------------------------------------------------------- NeuronGraph
class GraphSource(Source):
    """Statistics of a NeuronGraph, streamed from its edge batches.

    Out-degrees and out-strengths are only reported when no layer is sampled: a sampled layer
    leaves out edges that leave the layer below it.
    """

    def __init__(self, graph: NeuronGraph):
        self.graph = graph
        self.name = graph.name
        self.graph_data = graph.graph_data()
        # The receptive field and the metrics work on the whole model's geometry.
        self.whole = (graph if graph.selection == "all"
                      else graph.same_model())
        self._sub_key: tuple[str, str] | None = None
        self._sub: NeuronGraph | None = None

    @property
    def where(self) -> str:
        return f"Keras model {self.name} (selection: {self.graph.selection})"

    def layer_stats(self, sample_edges: int) -> tuple[list[LayerStats], str]:
        g = self.graph
        sums = _NeuronSums(g.total_neurons)
        stats = [LayerStats(layer=self.graph_data["layers"][i]) for i in sorted(g.node_masks)]
        for s in stats:
            if s.layer["index"] in g.edge_masks:
                self._read_weights(s, sample_edges, sums)
        sampled_any = any(s.threshold < _HASH_MOD for s in stats)
        for s in stats:
            if s.layer.get("offset") is not None:
                self._read_neurons(s, sums, with_out=not sampled_any)
        note = ("" if not sampled_any else
                "Out-degree and out-strength are left out: some layers were sampled, so the "
                "streamed edges do not hold every outgoing edge.")
        return stats, note

    def _read_weights(self, s: LayerStats, sample_edges: int, sums: _NeuronSums) -> None:
        """Weight statistics of one layer, adding its edges to the per-neuron sums."""
        i = s.layer["index"]
        op = self.graph.entries[i].op
        s.threshold = sample_threshold(self.graph.selected_edge_count(i), sample_edges)
        mask = self.graph.edge_masks[i]
        if s.threshold < _HASH_MOD:
            keep = _kept(np.arange(op.n_neurons, dtype=np.int64) + op.offset, s.threshold)
            mask = keep if mask is None else (mask & keep)
        count, total, total_sq = 0, 0.0, 0.0
        lo, hi = math.inf, -math.inf
        for src, dst, w in op.iter_edges(_EDGE_BATCH, mask):
            if not len(w):
                continue
            w64 = w.astype(np.float64)
            count += len(w64)
            lo, hi = min(lo, float(w64.min())), max(hi, float(w64.max()))
            total += float(w64.sum())
            total_sq += float(np.dot(w64, w64))
            sums.add(src, dst, np.abs(w64))
        if not count:
            return
        s.set_moments(count, lo, hi, total, total_sq)
        # Second pass: the bins are only known once the range is.
        s.counts = np.zeros(HIST_BINS, dtype=np.int64)
        for _, _, w in op.iter_edges(_EDGE_BATCH, mask):
            s.counts += np.histogram(w.astype(np.float64), bins=s.bins)[0]

    def _read_neurons(self, s: LayerStats, sums: _NeuronSums, with_out: bool) -> None:
        """One layer's per-neuron arrays: in-values of its sampled neurons, out-values of all."""
        layer = s.layer
        ids = np.arange(layer["neurons"]) + layer["offset"]
        mask = self.graph.node_masks.get(layer["index"])
        if mask is not None:
            ids = ids[mask]
        s.neurons = len(ids)
        ids_in = ids if s.threshold >= _HASH_MOD else ids[_kept(ids, s.threshold)]
        s.in_degree, s.in_strength = sums.in_degree[ids_in], sums.in_strength[ids_in]
        if with_out:
            s.out_degree, s.out_strength = sums.out_degree[ids], sums.out_strength[ids]

    def receptive_field(self, layer: str, index: int) -> dict[str, np.ndarray]:
        # Paths are pushed down the cone layer by layer, highest first: each edge adds the
        # paths of its target to its source, so no path is ever enumerated.
        cone = self.whole.same_model(cone=f"{layer}:{index}")
        paths = np.zeros(cone.total_neurons, dtype=np.float64)
        top = int(cone.entry(layer).output.take(np.array([index]))[0])
        paths[top] = 1.0
        for i in sorted(cone.edge_masks, reverse=True):
            for b in cone.iter_edge_batches(layers=[i]):
                if not len(b):
                    continue
                lo = int(b.src.min())
                add = np.bincount(b.src - lo, weights=paths[b.dst])
                paths[lo:lo + len(add)] += add
        return {lay["name"]: paths[lay["offset"]:lay["offset"] + lay["neurons"]]
                for lay in _input_layers(self.graph_data)}

    def subgraph_size(self, kind: str, spec: str) -> tuple[int, int]:
        sub = self._subgraph(kind, spec)
        return sub.n_nodes, sub.n_edges

    def subgraph(self, kind: str, spec: str, max_edges: int) -> nx.DiGraph:
        return to_networkx(self._subgraph(kind, spec), max_edges=max_edges)

    def _subgraph(self, kind: str, spec: str) -> NeuronGraph:
        # Kept between subgraph_size and subgraph: resolving a cone walks the whole model.
        if self._sub_key != (kind, spec):
            self._sub = self.whole.same_model(**{kind: spec})
            self._sub_key = (kind, spec)
        return self._sub


class _NeuronSums:
    """In/out degree and strength (sum of ``|weight|``) of every neuron of a model."""

    def __init__(self, n_neurons: int):
        self.in_degree = np.zeros(n_neurons, dtype=np.int64)
        self.out_degree = np.zeros(n_neurons, dtype=np.int64)
        self.in_strength = np.zeros(n_neurons, dtype=np.float64)
        self.out_strength = np.zeros(n_neurons, dtype=np.float64)

    def add(self, src: np.ndarray, dst: np.ndarray, abs_weight: np.ndarray) -> None:
        """Count a batch of edges ``src -> dst`` with weights ``|w|``."""
        _accumulate(self.in_degree, self.in_strength, dst, abs_weight)
        _accumulate(self.out_degree, self.out_strength, src, abs_weight)


def _accumulate(degree: np.ndarray, strength: np.ndarray, ids: np.ndarray, absw: np.ndarray):
    """degree[ids] += 1 and strength[ids] += absw, with bincounts over the batch's id span only
    (a whole-model bincount per batch would cost O(neurons) each time)."""
    lo = int(ids.min())
    local = ids - lo
    counts = np.bincount(local)
    degree[lo:lo + len(counts)] += counts
    strength[lo:lo + len(counts)] += np.bincount(local, weights=absw)


# ---------------------------------------------------------------------------- Neo4j
class Neo4jSource(Source):
    """Statistics of a model loaded in Neo4j, computed by the server.

    Out-degrees and out-strengths count every edge in the database; layers with many
    outgoing edges give them for a hashed sample of their neurons.

    Parameters
    ----------
    name : str
        The model's name in Neo4j.
    db : Database
        The connection every query goes through.

    Raises
    ------
    loader.neo4j.models.ModelNotFound
        No such model.
    loader.neo4j.models.ModelIncomplete
        The model's state is not ``complete`` and ``allow_incomplete`` is False.
    """

    def __init__(self, name: str, db: Database, allow_incomplete: bool = False):
        self.name = name
        self.db = db
        self.allow_incomplete = allow_incomplete
        self.info = require_neurons(require_complete(db, name, allow_incomplete),
                                    "the neuron report (for a channel model: analyze_channels)")
        self.graph_data = dict(self.info["graph_data"])
        self.graph_data["name"] = name

    @property
    def where(self) -> str:
        return f"Neo4j model {self.name} (state {self.info.get('state', '?')})"

    def layer_stats(self, sample_edges: int) -> tuple[list[LayerStats], str]:
        stats, sampled_out = [], False
        for layer in LayerTable(self.graph_data["layers"]).neuron_layers:
            lo, hi = layer["offset"], layer["offset"] + layer["neurons"]
            # Count first (degrees are free: Neo4j keeps them per node), so the sampling rates
            # follow what the database holds: a model loaded as a cone holds a fraction of
            # each layer.
            sizes = neo4j_stats.range_sizes(self.db, self.name, lo, hi)
            if not sizes["nodes"]:
                continue
            s = LayerStats(layer=layer, neurons=sizes["nodes"],
                           threshold=sample_threshold(sizes["edges_in"], sample_edges))
            out_threshold = sample_threshold(sizes["edges_out"], sample_edges)
            sampled_out |= out_threshold < _HASH_MOD
            stats.append(s)
            if sizes["edges_in"]:
                self._read_weights(s, lo, hi)
            self._read_neurons(s, lo, hi, out_threshold)
        note = ("" if not sampled_out else "Layers with many outgoing edges show the "
                "out-degree and out-strength of a hashed sample of their neurons.")
        return stats, note

    def _read_weights(self, s: LayerStats, lo: int, hi: int) -> None:
        m = neo4j_stats.weight_moments(self.db, self.name, lo, hi, threshold=s.threshold,
                                       **_HASH_PARAMS)
        s.edges = m["edges"]
        if s.edges:
            s.set_moments(m["edges"], m["min"], m["max"], m["total"], m["total_sq"])
            s.counts = neo4j_stats.weight_histogram(self.db, self.name, lo, hi, s.bins,
                                                    threshold=s.threshold, **_HASH_PARAMS)

    def _read_neurons(self, s: LayerStats, lo: int, hi: int, out_threshold: int) -> None:
        n = neo4j_stats.node_stats(self.db, self.name, lo, hi, threshold=s.threshold,
                                   out_threshold=out_threshold, **_HASH_PARAMS)
        kept_in, kept_out = _kept(n["ids"], s.threshold), _kept(n["ids"], out_threshold)
        s.in_degree, s.in_strength = n["in_degree"][kept_in], n["in_strength"][kept_in]
        s.out_degree, s.out_strength = n["out_degree"][kept_out], n["out_strength"][kept_out]

    def receptive_field(self, layer: str, index: int) -> dict[str, np.ndarray]:
        rf = receptive_field(self.db, self.name, layer, index)
        ids = np.asarray(rf.column("id"), dtype=np.int64)
        # Counts past 2^63 arrive as floats, smaller ones as ints: make them all float64.
        paths = np.asarray([float(p) for p in rf.column("paths")], dtype=np.float64)
        out = {}
        for lay in _input_layers(self.graph_data):
            values = np.zeros(lay["neurons"], dtype=np.float64)
            sel = (ids >= lay["offset"]) & (ids < lay["offset"] + lay["neurons"])
            values[ids[sel] - lay["offset"]] = paths[sel]
            out[lay["name"]] = values
        return out

    def subgraph_size(self, kind: str, spec: str) -> tuple[int, int]:
        plan = plan_pull(self.name, **{kind: spec}, driver=self.db,
                         allow_incomplete=self.allow_incomplete)
        return plan.n_nodes, plan.n_edges

    def subgraph(self, kind: str, spec: str, max_edges: int) -> nx.DiGraph:
        return pull(self.name, **{kind: spec}, driver=self.db, max_edges=max_edges,
                    allow_incomplete=self.allow_incomplete)
