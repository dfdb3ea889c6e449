"""Analysis report of a neuron graph: weight, degree and strength distributions per layer, the
receptive-field map of one neuron, and NetworkX metrics on a subgraph, as Markdown or HTML
with PNG plots.

The source is a model loaded in Neo4j (its name, with a driver) or a
:class:`~loader.graph.NeuronGraph`. Statistics stream, so memory stays bounded whatever the
size of the graph:

* Neo4j: every aggregate is computed by the server (histogram bins, per-neuron degrees and
  strengths); only bins and per-neuron numbers cross the wire, never edges.
* NeuronGraph: edge batches are streamed layer by layer, twice (the range, then the bins),
  into fixed-size histograms and per-neuron accumulators.

A layer with more than ``sample_edges`` edges is sampled by target neuron (a fixed hash of
the neuron id picks the same neurons in both passes and in both sources), and the report says
so. Out-degree and out-strength count every edge of the model (in Neo4j they are read from the
graph; from a NeuronGraph they are only reported when no layer is sampled).

NetworkX metrics run on a subgraph the user picks (a layer range or a cone). Their cost is
estimated from its nodes and edges *before* anything is pulled or computed, and the report is
refused above ``max_cost`` (estimated seconds).

Examples
--------
>>> g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3))
>>> analyze(g, "out/vgg16", neuron="block3_conv3:1000", subgraph="cone=block3_conv3:1000:2")
PosixPath('out/vgg16/report.md')
"""

from __future__ import annotations

import html
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import SelectionError, TooLargeError, WeightgraphError

__all__ = ["analyze", "receptive_field_paths", "estimate_costs", "parse_subgraph", "METRICS"]

METRICS = ("pagerank", "betweenness", "communities")

# Seconds per unit of work of each NetworkX algorithm, measured on the 2-core development
# machine (100k-edge random digraph: pagerank 0.46 s incl. the scipy conversion; betweenness
# with k=50 sources 1.6 s; Louvain on the undirected graph 4.7 s). Estimates, not promises.
_PAGERANK_S_PER_EDGE = 5e-6
_BETWEENNESS_S_PER_SOURCE_STEP = 3.2e-7  # per source, per (node + edge) of a BFS
_LOUVAIN_S_PER_EDGE = 5e-5
_NETWORKX_S_PER_EDGE = 1.0 / 1.0e6      # building the DiGraph (loader.costs)
# Betweenness is exact up to this many nodes; above, it samples this many source nodes
# (networkx's k=), which keeps the cost linear in the graph (Brandes is O(V*E) exact).
BETWEENNESS_EXACT_NODES = 1000
BETWEENNESS_SAMPLES = 256

# Target neurons are sampled by a multiplicative hash of their id (Knuth's constant), so both
# sources and both passes pick the same neurons without storing the sample.
_HASH_MULT = 2654435761
_HASH_MOD = 1 << 32

HIST_BINS = 60
_MAX_PANELS = 24  # layers per figure before a second figure starts


# ---------------------------------------------------------------------------- costs
def estimate_costs(n_nodes: int, n_edges: int, metrics: Iterable[str] = METRICS) -> dict:
    """Estimated seconds of each metric (and of building the graph) on a subgraph.

    Examples
    --------
    >>> estimate_costs(10_000, 200_000)["pagerank"]
    1.0
    """
    out = {"build": n_edges * _NETWORKX_S_PER_EDGE}
    for m in metrics:
        if m == "pagerank":
            out[m] = n_edges * _PAGERANK_S_PER_EDGE
        elif m == "betweenness":
            k = n_nodes if n_nodes <= BETWEENNESS_EXACT_NODES else BETWEENNESS_SAMPLES
            out[m] = k * (n_nodes + n_edges) * _BETWEENNESS_S_PER_SOURCE_STEP
        elif m == "communities":
            out[m] = n_edges * _LOUVAIN_S_PER_EDGE
        else:
            raise WeightgraphError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
    return out


def parse_subgraph(spec: str | None) -> tuple[str, str] | None:
    """``"layers=conv1:pool"``, ``"cone=add:5:2"``, or bare ``"conv1:pool"`` / ``"add:5:2"``
    (a cone when the second part is a number) -> ``(kind, value)``."""
    if spec is None or not str(spec).strip():
        return None
    spec = str(spec).strip()
    m = re.fullmatch(r"(layers|cone)\s*[=:]\s*(.+)", spec)
    if m and (m.group(1) == "layers" or re.fullmatch(r".+:\d+(:\d+)?", m.group(2))):
        return m.group(1), m.group(2).strip()
    if re.fullmatch(r".+:\d+(:\d+)?", spec):
        return "cone", spec
    if spec.count(":") == 1:
        return "layers", spec
    raise SelectionError(f"subgraph wants layers=FIRST:LAST or cone=LAYER:INDEX[:DEPTH], "
                         f"got {spec!r}")


# ---------------------------------------------------------------------------- sources
@dataclass
class LayerStats:
    """Streaming results of one layer."""

    layer: dict
    neurons: int = 0
    edges: int = 0
    sampled: float = 1.0
    threshold: int = 1 << 32  # target neurons kept: hash(id) < threshold (see _kept)
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


def _sample_threshold(layer_edges: int, sample_edges: int) -> int:
    """Hash threshold: a target neuron is kept when hash(id) < threshold."""
    if layer_edges <= sample_edges:
        return _HASH_MOD
    return max(1, int(_HASH_MOD * sample_edges / layer_edges))


def _kept(ids: np.ndarray, threshold: int) -> np.ndarray:
    return (ids.astype(np.int64) * _HASH_MULT) % _HASH_MOD < threshold


def _histogram_range(lo: float, hi: float) -> np.ndarray:
    if not np.isfinite(lo) or not np.isfinite(hi):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = max(abs(lo) * 0.05, 0.5)
        lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, HIST_BINS + 1)


class _GraphSource:
    """Statistics from a NeuronGraph, streamed from its edge batches."""

    def __init__(self, graph):
        from ..graph.neuron_graph import NeuronGraph

        self.graph = graph
        self.name = graph.name
        self.graph_data = graph.graph_data()
        # The receptive field and the metrics work on the whole model's geometry.
        self.whole = (graph if graph.selection == "all"
                      else NeuronGraph(graph.keras_model, graph.entries, name=graph.name))

    @property
    def where(self) -> str:
        return f"Keras model {self.name} (selection: {self.graph.selection})"

    def layer_stats(self, sample_edges: int) -> tuple[list[LayerStats], str]:
        g = self.graph
        n = g.total_neurons
        in_deg = np.zeros(n, dtype=np.int64)
        out_deg = np.zeros(n, dtype=np.int64)
        in_str = np.zeros(n, dtype=np.float64)
        out_str = np.zeros(n, dtype=np.float64)
        stats, sampled_any = [], False
        for i in sorted(g.node_masks):
            entry = g.entries[i]
            layer = self.graph_data["layers"][i]
            s = LayerStats(layer=layer)
            stats.append(s)
            if i not in g.edge_masks:
                continue
            edges = g.selected_edge_count(i)
            threshold = s.threshold = _sample_threshold(edges, sample_edges)
            s.sampled = threshold / _HASH_MOD
            sampled_any |= threshold < _HASH_MOD
            mask = g.edge_masks[i]
            if threshold < _HASH_MOD:
                ids = np.arange(entry.op.n_neurons, dtype=np.int64) + entry.op.offset
                keep = _kept(ids, threshold)
                mask = keep if mask is None else (mask & keep)
            count, total, total_sq = 0, 0.0, 0.0
            lo, hi = math.inf, -math.inf
            for src, dst, w in entry.op.iter_edges(1 << 20, mask):
                w64 = w.astype(np.float64)
                count += len(w64)
                if len(w64):
                    lo, hi = min(lo, float(w64.min())), max(hi, float(w64.max()))
                    total += float(w64.sum())
                    total_sq += float(np.dot(w64, w64))
                    a = np.abs(w64)
                    _accumulate(in_deg, in_str, dst, a)
                    _accumulate(out_deg, out_str, src, a)
            s.edges = count
            if count:
                s.min, s.max, s.mean = lo, hi, total / count
                s.std = math.sqrt(max(0.0, total_sq / count - s.mean ** 2))
                s.bins = _histogram_range(lo, hi)
                s.counts = np.zeros(HIST_BINS, dtype=np.int64)
                for _, _, w in entry.op.iter_edges(1 << 20, mask):
                    s.counts += np.histogram(w.astype(np.float64), bins=s.bins)[0]
        for s in stats:
            layer = s.layer
            if layer.get("offset") is None:
                continue
            i = layer["index"]
            mask = g.node_masks.get(i)
            ids = np.arange(layer["neurons"]) + layer["offset"]
            if mask is not None:
                ids = ids[mask]
            s.neurons = len(ids)
            ids_in = ids if s.threshold >= _HASH_MOD else ids[_kept(ids, s.threshold)]
            s.in_degree, s.in_strength = in_deg[ids_in], in_str[ids_in]
            if not sampled_any:
                s.out_degree, s.out_strength = out_deg[ids], out_str[ids]
        note = ("" if not sampled_any else
                "Out-degree and out-strength are left out: some layers were sampled, so the "
                "streamed edges do not hold every outgoing edge.")
        return stats, note

    def receptive_field(self, layer: str, index: int) -> dict[str, np.ndarray]:
        """Paths from every input neuron to (layer, index), per input layer (float64)."""
        from ..graph.neuron_graph import NeuronGraph

        cone = NeuronGraph(self.whole.keras_model, self.whole.entries, name=self.name,
                           cone=f"{layer}:{index}")
        paths = np.zeros(cone.total_neurons, dtype=np.float64)
        entry = cone.entry(layer)
        top = int(entry.output.take(np.array([index]))[0])
        paths[top] = 1.0
        for i in sorted(cone.edge_masks, reverse=True):
            for b in cone.iter_edge_batches(layers=[i]):
                if not len(b):
                    continue
                lo = int(b.src.min())
                add = np.bincount(b.src - lo, weights=paths[b.dst])
                paths[lo:lo + len(add)] += add
        out = {}
        for lay in self.graph_data["layers"]:
            if lay["kind"] == "input":
                out[lay["name"]] = paths[lay["offset"]:lay["offset"] + lay["neurons"]]
        return out

    def subgraph_size(self, kind: str, spec: str) -> tuple[int, int]:
        sub = self._subgraph(kind, spec)
        return sub.n_nodes, sub.n_edges

    def subgraph(self, kind: str, spec: str, max_edges: int):
        from ..sinks.networkx import to_networkx

        return to_networkx(self._subgraph(kind, spec), max_edges=max_edges)

    def _subgraph(self, kind, spec):
        from ..graph.neuron_graph import NeuronGraph

        key = (kind, spec)
        if getattr(self, "_sub_key", None) != key:
            self._sub = NeuronGraph(self.whole.keras_model, self.whole.entries, name=self.name,
                                    **{kind: spec})
            self._sub_key = key
        return self._sub


def _accumulate(degree: np.ndarray, strength: np.ndarray, ids: np.ndarray, absw: np.ndarray):
    """degree[ids] += 1 and strength[ids] += absw, with bincounts over the batch's id span only
    (a whole-model bincount per batch would cost O(neurons) each time)."""
    lo = int(ids.min())
    local = ids - lo
    counts = np.bincount(local)
    degree[lo:lo + len(counts)] += counts
    strength[lo:lo + len(counts)] += np.bincount(local, weights=absw)


class _Neo4jSource:
    """Statistics computed by the Neo4j server for a loaded model."""

    _RANGE_STATS = """
    MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
      AND (n.id * $mult) % $mod < $threshold
    MATCH (n)<-[w:W]-()
    RETURN count(w) AS edges, min(w.weight) AS min, max(w.weight) AS max,
           sum(w.weight) AS total, sum(w.weight * w.weight) AS total_sq
    """
    _RANGE_HIST = """
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
    _RANGE_SIZES = """
    MATCH (n:Neuron) WHERE n.model = $model AND n.id >= $lo AND n.id < $hi
    RETURN count(n) AS nodes, sum(COUNT { (n)<-[:W]-() }) AS edges_in,
           sum(COUNT { (n)-[:W]->() }) AS edges_out
    """

    def __init__(self, name: str, driver, database: str | None = None):
        from ..neo4j.pull import model_info

        self.name = name
        self.driver = driver
        self.database = database
        self.info = model_info(driver, name, database=database)
        self.graph_data = dict(self.info["graph_data"])
        self.graph_data["name"] = name

    @property
    def where(self) -> str:
        return f"Neo4j model {self.name} (state {self.info.get('state', '?')})"

    def _session(self):
        from ..neo4j.pull import _default_database, _session

        return _session(self.driver, self.database or _default_database())

    def layer_stats(self, sample_edges: int) -> tuple[list[LayerStats], str]:
        from ..neo4j.pull import PAGE_NODES, _LayerTable

        table = _LayerTable(self.graph_data["layers"])
        stats, sampled_out = [], False
        with self._session() as session:
            for layer in table.neuron_layers:
                s = LayerStats(layer=layer)
                lo, hi = layer["offset"], layer["offset"] + layer["neurons"]
                # Degrees are free (Neo4j keeps them per node): count first, so the sampling
                # rates follow what the database holds (a model loaded as a cone holds a
                # fraction of each layer).
                sizes = session.run(self._RANGE_SIZES, model=self.name, lo=lo, hi=hi).single()
                s.neurons = sizes["nodes"]
                if not s.neurons:
                    continue
                stats.append(s)
                threshold = s.threshold = _sample_threshold(sizes["edges_in"], sample_edges)
                out_threshold = _sample_threshold(sizes["edges_out"], sample_edges)
                sampled_out |= out_threshold < _HASH_MOD
                s.sampled = threshold / _HASH_MOD
                common = dict(model=self.name, lo=lo, hi=hi, mult=_HASH_MULT, mod=_HASH_MOD,
                              threshold=threshold)
                if sizes["edges_in"]:
                    r = session.run(self._RANGE_STATS, common).single()
                    s.edges = r["edges"]
                    if s.edges:
                        s.min, s.max = r["min"], r["max"]
                        s.mean = r["total"] / s.edges
                        s.std = math.sqrt(max(0.0, r["total_sq"] / s.edges - s.mean ** 2))
                        s.bins = _histogram_range(s.min, s.max)
                        width = float(s.bins[1] - s.bins[0])
                        s.counts = np.zeros(HIST_BINS, dtype=np.int64)
                        for rec in session.run(self._RANGE_HIST, common, first=float(s.bins[0]),
                                               width=width, bins=HIST_BINS):
                            s.counts[rec["bin"]] += rec["n"]
                parts = {k: [] for k in ("ids", "din", "sin", "dout", "sout")}
                for a in range(lo, hi, PAGE_NODES):
                    r = session.run(self._NODE_STATS, common, lo=a, hi=min(hi, a + PAGE_NODES),
                                    out_threshold=out_threshold).single()
                    for k in parts:
                        parts[k].append(np.asarray(r[k], dtype=np.float64))
                ids = np.concatenate(parts["ids"]).astype(np.int64)
                kept_in = _kept(ids, threshold)
                kept_out = _kept(ids, out_threshold)
                s.in_degree = np.concatenate(parts["din"])[kept_in]
                s.in_strength = np.concatenate(parts["sin"])[kept_in]
                s.out_degree = np.concatenate(parts["dout"])[kept_out]
                s.out_strength = np.concatenate(parts["sout"])[kept_out]
        note = ("" if not sampled_out else "Layers with many outgoing edges show the "
                "out-degree and out-strength of a hashed sample of their neurons.")
        return stats, note

    def receptive_field(self, layer: str, index: int) -> dict[str, np.ndarray]:
        from ..neo4j.queries import receptive_field

        rf = receptive_field(self.driver, self.name, layer, index, database=self.database)
        out = {}
        ids = np.asarray(rf.column("id"), dtype=np.int64)
        paths = np.asarray([float(p) for p in rf.column("paths")], dtype=np.float64)
        for lay in self.graph_data["layers"]:
            if lay["kind"] == "input":
                values = np.zeros(lay["neurons"], dtype=np.float64)
                sel = (ids >= lay["offset"]) & (ids < lay["offset"] + lay["neurons"])
                values[ids[sel] - lay["offset"]] = paths[sel]
                out[lay["name"]] = values
        return out

    def subgraph_size(self, kind: str, spec: str) -> tuple[int, int]:
        from ..neo4j.pull import plan_pull

        plan = plan_pull(self.name, **{kind: spec}, driver=self.driver, database=self.database)
        return plan.n_nodes, plan.n_edges

    def subgraph(self, kind: str, spec: str, max_edges: int):
        from ..neo4j.pull import pull

        return pull(self.name, **{kind: spec}, driver=self.driver, database=self.database,
                    max_edges=max_edges)


# ---------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, max(1, n))
    return math.ceil(n / cols), cols


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def plot_weight_histograms(stats: Sequence[LayerStats], out_dir: Path) -> list[Path]:
    plt = _plt()
    layers = [s for s in stats if s.counts is not None]
    paths = []
    for page, start in enumerate(range(0, len(layers), _MAX_PANELS)):
        chunk = layers[start:start + _MAX_PANELS]
        rows, cols = _grid(len(chunk))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
        for ax, s in zip(axes.flat, chunk):
            centers = (s.bins[:-1] + s.bins[1:]) / 2
            ax.bar(centers, s.counts, width=s.bins[1] - s.bins[0], color="#3b75af")
            nonzero = s.counts[s.counts > 0]
            # Log scale only where bins differ by 100x (conv weights are few distinct values).
            if len(nonzero) and nonzero.max() > 100 * nonzero.min():
                ax.set_yscale("log")
            sampled = "" if s.sampled >= 1 else f", {s.sampled:.0%} sample"
            ax.set_title(f"{s.layer['name']} ({s.edges:,} edges{sampled})", fontsize=9)
            ax.set_xlabel("weight", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(chunk):]:
            ax.axis("off")
        fig.suptitle("Weight histogram per layer (edges entering the layer)")
        fig.tight_layout()
        suffix = "" if page == 0 else f"_{page + 1}"
        paths.append(_save(fig, out_dir / f"weights{suffix}.png"))
    return paths


def plot_distributions(stats: Sequence[LayerStats], out_dir: Path, what: str) -> Path | None:
    """Box plots per layer of in/out degree (``what='degree'``) or strength (sum of |w|)."""
    plt = _plt()
    layers = [s for s in stats if getattr(s, f"in_{what}") is not None and s.neurons]
    if not layers:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(layers) + 2), 4.5))
    pos = np.arange(len(layers), dtype=float)
    for shift, direction, color in ((-0.18, "in", "#3b75af"), (0.18, "out", "#e1812c")):
        data = [getattr(s, f"{direction}_{what}") for s in layers]
        if any(d is None for d in data):
            continue
        data = [d if len(d) else np.zeros(1) for d in data]
        bp = ax.boxplot(data, positions=pos + shift, widths=0.32, patch_artist=True,
                        showfliers=False, manage_ticks=False)
        for patch in bp["boxes"]:
            patch.set_facecolor(color)
        ax.plot([], [], color=color, linewidth=8, label=f"{direction}-{what}")
    ax.set_xticks(pos)
    ax.set_xticklabels([s.layer["name"] for s in layers], rotation=45, ha="right", fontsize=8)
    ax.set_yscale("symlog")
    label = "edges" if what == "degree" else "sum of |weight|"
    ax.set_ylabel(label)
    ax.set_title(f"{what.capitalize()} distribution per layer ({label})")
    ax.legend()
    fig.tight_layout()
    return _save(fig, out_dir / f"{what}.png")


def plot_receptive_field(maps: dict[str, np.ndarray], layers: list[dict], neuron: str,
                         out_dir: Path) -> list[Path]:
    plt = _plt()
    paths = []
    shapes = {l["name"]: l["output_shape"] for l in layers}
    for name, values in maps.items():
        shape = list(shapes[name])
        arr = values.reshape(shape)
        if arr.ndim >= 3:
            image = arr.reshape(-1, shape[-3], shape[-2], shape[-1]).sum(axis=(0, 3))
        elif arr.ndim == 2:
            image = arr.sum(axis=1)[None, :]
        else:
            image = arr[None, :]
        fig, ax = plt.subplots(figsize=(5.5, 4.8))
        shown = np.log10(1.0 + image)
        im = ax.imshow(shown, cmap="magma", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="log10(1 + paths)")
        reached = int((values > 0).sum())
        ax.set_title(f"Receptive field of {neuron}\n{name}: {reached:,} input neurons reached, "
                     f"{values.sum():.3g} paths", fontsize=9)
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        fig.tight_layout()
        suffix = "" if len(maps) == 1 else f"_{name}"
        paths.append(_save(fig, out_dir / f"receptive_field{suffix}.png"))
    return paths


def plot_metrics(G, results: dict, out_dir: Path) -> Path | None:
    plt = _plt()
    panels = [k for k in ("pagerank", "betweenness", "communities") if k in results]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    layer_of = {n: d.get("layer", "?") for n, d in G.nodes(data=True)}
    order = sorted({(d.get("layer_index", 0), d.get("layer", "?")) for _, d in G.nodes(data=True)})
    names = [name for _, name in order]
    for ax, key in zip(axes.flat, panels):
        if key == "communities":
            sizes = sorted((len(c) for c in results[key]), reverse=True)
            ax.bar(range(len(sizes)), sizes, color="#55a868")
            ax.set_title(f"{len(sizes)} communities (Louvain): sizes")
            ax.set_xlabel("community")
            ax.set_ylabel("neurons")
        else:
            total = {n: 0.0 for n in names}
            for node, value in results[key].items():
                total[layer_of[node]] += value
            ax.bar(range(len(names)), [total[n] for n in names], color="#3b75af")
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{key}: sum per layer")
    fig.tight_layout()
    return _save(fig, out_dir / "metrics.png")


# ---------------------------------------------------------------------------- report
class _Report:
    """Sections of paragraphs, tables and images, rendered as Markdown or HTML."""

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple] = []

    def heading(self, text):
        self.blocks.append(("h", text))

    def para(self, text):
        self.blocks.append(("p", text))

    def table(self, header, rows):
        self.blocks.append(("t", header, [[_cell(v) for v in r] for r in rows]))

    def image(self, path: Path, alt: str):
        self.blocks.append(("i", path.name, alt))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            if b[0] == "h":
                out += [f"## {b[1]}", ""]
            elif b[0] == "p":
                out += [b[1], ""]
            elif b[0] == "t":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "|".join("---" for _ in b[1]) + "|")
                out += ["| " + " | ".join(r) + " |" for r in b[2]]
                out.append("")
            else:
                out += [f"![{b[2]}]({b[1]})", ""]
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        out = ["<!doctype html>", "<html><head><meta charset='utf-8'>",
               f"<title>{e(self.title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
               "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
               "padding:2px 6px;text-align:right}img{max-width:100%}</style>",
               "</head><body>", f"<h1>{e(self.title)}</h1>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h2>{e(b[1])}</h2>")
            elif b[0] == "p":
                out.append(f"<p>{e(b[1])}</p>")
            elif b[0] == "t":
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2]]
                out.append("</table>")
            else:
                out.append(f"<p><img src='{e(b[1])}' alt='{e(b[2])}'></p>")
        out.append("</body></html>")
        return "\n".join(out)


def _cell(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v).replace("|", "\\|")


# ---------------------------------------------------------------------------- entry point
def _source(source, driver, database):
    if isinstance(source, str):
        if driver is None:
            raise WeightgraphError("a model name needs a Neo4j driver (loader.db.connect())")
        return _Neo4jSource(source, driver, database)
    return _GraphSource(source)


def _parse_neuron(neuron: str, layers: list[dict]) -> tuple[str, int]:
    m = re.fullmatch(r"(.+):(\d+)", neuron.strip())
    if not m:
        raise SelectionError(f"neuron wants LAYER:INDEX, got {neuron!r}")
    names = [l["name"] for l in layers]
    if m.group(1) not in names:
        raise SelectionError(f"no layer named {m.group(1)!r}; layers: " + ", ".join(names))
    return m.group(1), int(m.group(2))


def receptive_field_paths(source, neuron: str, *, driver=None,
                          database: str | None = None) -> dict[str, np.ndarray]:
    """Paths from every input neuron to ``neuron`` ("LAYER:INDEX"), per input layer.

    Returns
    -------
    dict
        Input layer name -> float64 array over its neurons (flat index order); reshape with
        the layer's ``output_shape`` for the map.

    Examples
    --------
    >>> maps = receptive_field_paths(g, "block3_conv3:1000")
    >>> maps["input_layer"].reshape(32, 32, 3).sum(axis=2)  # paths per pixel
    """
    src = _source(source, driver, database)
    return src.receptive_field(*_parse_neuron(neuron, src.graph_data["layers"]))


def analyze(source, out_dir: str | os.PathLike, *, neuron: str | None = None,
            subgraph: str | None = None, fmt: str = "md",
            metrics: Sequence[str] = METRICS, max_cost: float = 60.0,
            max_edges: int = 5_000_000, sample_edges: int = 20_000_000, driver=None,
            database: str | None = None) -> Path:
    """Write an analysis report of a neuron graph and its PNG plots into ``out_dir``.

    Parameters
    ----------
    source : str or NeuronGraph
        A model name loaded in Neo4j (uses ``driver``, or connects), or a NeuronGraph.
    out_dir : path
        Created if needed; receives ``report.md`` / ``report.html`` and the PNG files.
    neuron : str, optional
        ``"LAYER:INDEX"``: the neuron whose receptive field is mapped (paths per input
        position, summed over channels); its cone (depth 2) is the default subgraph.
    subgraph : str, optional
        Where the NetworkX metrics run: ``"layers=FIRST:LAST"`` or
        ``"cone=LAYER:INDEX[:DEPTH]"``.
    fmt : "md" or "html"
    metrics : sequence of "pagerank", "betweenness", "communities"
        Betweenness is unweighted (hops; weights may be negative) and samples
        ``BETWEENNESS_SAMPLES`` sources above ``BETWEENNESS_EXACT_NODES`` nodes; communities
        are Louvain communities of the undirected graph weighted by ``|weight|``.
    max_cost : float
        Refuse (before pulling or computing anything) when the estimated seconds of building
        the subgraph plus the metrics exceed this.
    max_edges : int
        The subgraph's edge limit (NetworkX memory), as in :func:`loader.bridge.pull`.
    sample_edges : int
        Layers with more edges are sampled by target neuron for the statistics.

    Returns
    -------
    Path
        The report file.

    Raises
    ------
    loader.errors.TooLargeError
        The metrics' estimated cost is over ``max_cost`` (or the subgraph over ``max_edges``).

    Examples
    --------
    >>> analyze("small", "out", neuron="dense:1", subgraph="layers=conv2:dense", fmt="html")
    """
    if fmt not in ("md", "html"):
        raise WeightgraphError(f"format must be md or html, got {fmt!r}")
    metrics = tuple(metrics or ())
    for m in metrics:
        if m not in METRICS:
            raise WeightgraphError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
    own_driver = None
    if isinstance(source, str) and driver is None:
        from ..neo4j.db import connect

        driver = own_driver = connect()
    try:
        src = _source(source, driver, database)
        return _analyze(src, Path(out_dir), neuron, subgraph, fmt, metrics, max_cost,
                        max_edges, sample_edges)
    finally:
        if own_driver is not None:
            own_driver.close()


def _analyze(src, out_dir: Path, neuron, subgraph, fmt, metrics, max_cost, max_edges,
             sample_edges) -> Path:
    started = time.perf_counter()
    layers = src.graph_data["layers"]
    target = _parse_neuron(neuron, layers) if neuron else None
    sub = parse_subgraph(subgraph)
    if sub is None and metrics:
        if target is None:
            raise SelectionError("metrics need a subgraph: pass subgraph= (layers=FIRST:LAST or "
                                 "cone=LAYER:INDEX[:DEPTH]) or a neuron (its cone, depth 2)")
        sub = ("cone", f"{target[0]}:{target[1]}:2")

    # Cost check first: nothing is pulled, computed or written above the limits.
    sub_size = costs = None
    if sub is not None and metrics:
        sub_size = src.subgraph_size(*sub)
        n_nodes, n_edges = sub_size
        if n_edges > max_edges:
            raise TooLargeError(
                f"subgraph {sub[0]}={sub[1]} has {n_edges:,} edges, over max_edges="
                f"{max_edges:,}: pick a smaller subgraph (a cone with a DEPTH, a shorter layer "
                "range) or raise max_edges")
        costs = estimate_costs(n_nodes, n_edges, metrics)
        total = sum(costs.values())
        if total > max_cost:
            detail = ", ".join(f"{k} ~{v:.3g} s" for k, v in costs.items())
            raise TooLargeError(
                f"metrics on subgraph {sub[0]}={sub[1]} ({n_nodes:,} nodes, {n_edges:,} edges) "
                f"would take about {total:.3g} s ({detail}), over max_cost={max_cost:g} s: pick "
                "a smaller subgraph (a cone with a DEPTH, a shorter layer range), fewer metrics, "
                "or raise max_cost")

    out_dir.mkdir(parents=True, exist_ok=True)
    report = _Report(f"weightgraph analysis: {src.name}")
    report.para(f"Source: {src.where}. Generated by weightgraph.")

    report.heading("Layers")
    report.table(["#", "layer", "class", "op", "output shape", "neurons", "edges"],
                 [[l["index"], l["name"], l.get("class_name", ""), l.get("op") or "-",
                   "x".join(str(d) for d in l.get("output_shape", [])), l.get("neurons", 0),
                   l.get("edges", 0)] for l in layers])

    stats, note = src.layer_stats(sample_edges)
    report.heading("Weights per layer")
    report.para("Statistics of the weights on the edges entering each layer (max-pooling edges "
                "all weigh 1.0). Layers above the sampling limit use the edges of a fixed "
                "hashed sample of their neurons; the column 'sampled' gives the fraction.")
    report.table(["layer", "edges", "sampled", "min", "max", "mean", "std"],
                 [[s.layer["name"], s.edges, f"{s.sampled:.0%}", s.min, s.max, s.mean, s.std]
                  for s in stats if s.counts is not None])
    for p in plot_weight_histograms(stats, out_dir):
        report.image(p, "weight histograms")

    report.heading("Degree and strength per layer")
    report.para("In-degree: edges entering a neuron; out-degree: edges leaving it; strength: "
                "the sum of |weight| over those edges. " + note)
    rows = []
    for s in stats:
        if s.in_degree is None or not s.neurons:
            continue
        rows.append([s.layer["name"], s.neurons,
                     float(np.mean(s.in_degree)) if len(s.in_degree) else math.nan,
                     float(np.max(s.in_degree)) if len(s.in_degree) else math.nan,
                     float(np.mean(s.out_degree)) if s.out_degree is not None and len(
                         s.out_degree) else math.nan,
                     float(np.mean(s.in_strength)) if len(s.in_strength) else math.nan])
    report.table(["layer", "neurons", "mean in-degree", "max in-degree", "mean out-degree",
                  "mean in-strength"], rows)
    for what in ("degree", "strength"):
        p = plot_distributions(stats, out_dir, what)
        if p is not None:
            report.image(p, f"{what} distributions")

    if target is not None:
        report.heading(f"Receptive field of {target[0]}:{target[1]}")
        maps = src.receptive_field(*target)
        report.para("Number of paths from each input position to the neuron, summed over the "
                    "input channels (log scale): counted layer by layer, never enumerated.")
        rows = [[name, int((v > 0).sum()), float(v.sum()), float(v.max()) if len(v) else 0.0]
                for name, v in maps.items()]
        report.table(["input", "neurons reached", "paths", "max paths from one neuron"], rows)
        for p in plot_receptive_field(maps, layers, f"{target[0]}:{target[1]}", out_dir):
            report.image(p, "receptive field map")

    if sub is not None and metrics:
        report.heading(f"NetworkX metrics on {sub[0]} {sub[1]}")
        G = src.subgraph(sub[0], sub[1], max_edges)
        est = ", ".join(f"{k} ~{v:.2g} s" for k, v in costs.items())
        report.para(f"{G.number_of_nodes():,} nodes, {G.number_of_edges():,} edges. "
                    f"Estimated cost before running: {est} (limit {max_cost:g} s).")
        results, timings = _run_metrics(G, metrics)
        report.para("Measured: " + ", ".join(f"{k} {v:.2g} s" for k, v in timings.items()))
        for key in ("pagerank", "betweenness"):
            if key in results:
                top = sorted(results[key].items(), key=lambda kv: (-kv[1], kv[0]))[:10]
                report.table(["id", "layer", "index", key],
                             [[n, G.nodes[n].get("layer"), G.nodes[n].get("index"), v]
                              for n, v in top])
        if "communities" in results:
            comms = results["communities"]
            rows = []
            for i, c in enumerate(sorted(comms, key=len, reverse=True)[:10]):
                layers_in = Counter(G.nodes[n].get("layer") for n in c)
                rows.append([i, len(c), ", ".join(f"{k}: {v}" for k, v in
                                                  layers_in.most_common())])
            report.table(["community", "neurons", "layers"], rows)
        p = plot_metrics(G, results, out_dir)
        if p is not None:
            report.image(p, "metrics")

    report.para(f"Report written in {time.perf_counter() - started:.1f} s.")
    path = out_dir / ("report.md" if fmt == "md" else "report.html")
    path.write_text(report.markdown() if fmt == "md" else report.html(), encoding="utf-8")
    return path


def _run_metrics(G, metrics) -> tuple[dict, dict]:
    import networkx as nx

    results, timings = {}, {}
    for m in metrics:
        t = time.perf_counter()
        if m == "pagerank":
            # Unweighted: PageRank needs non-negative weights and ours are signed.
            results[m] = nx.pagerank(G, weight=None)
        elif m == "betweenness":
            n = G.number_of_nodes()
            k = None if n <= BETWEENNESS_EXACT_NODES else BETWEENNESS_SAMPLES
            results[m] = nx.betweenness_centrality(G, k=k, seed=0 if k else None)
        elif m == "communities":
            U = nx.Graph()
            U.add_nodes_from(G.nodes)
            U.add_weighted_edges_from((u, v, abs(d["weight"])) for u, v, d in G.edges(data=True))
            results[m] = nx.community.louvain_communities(U, weight="weight", seed=0)
        timings[m] = time.perf_counter() - t
    return results, timings
