"""Analysis report of a neuron graph: weight, degree and strength distributions per layer, the
receptive-field map of one neuron, and NetworkX metrics on a subgraph, as Markdown or HTML
with PNG plots.

The source is a model loaded in Neo4j (its name) or a :class:`~loader.graph.NeuronGraph`;
:mod:`loader.analysis.sources` reads both with bounded memory. Layers above ``sample_edges``
edges are sampled by target neuron, and the report says so.

NetworkX metrics run on a subgraph the user picks (a layer range or a cone). Their cost is
estimated from its nodes and edges *before* anything is pulled, computed or written, and the
report is refused above ``max_cost`` (estimated seconds); see :mod:`loader.analysis.metrics`.

Examples
--------
>>> g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3))
>>> analyze(g, "out/vgg16", neuron="block3_conv3:1000", subgraph="cone=block3_conv3:1000:2")
PosixPath('out/vgg16/report.md')
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, Sequence

import networkx as nx
import numpy as np

from ..errors import SelectionError, TooLargeError, WeightgraphError
from ..graph.coerce import as_graph
from ..graph.selection import parse_neuron, parse_subgraph
from ..neo4j.db import using
from ..neo4j.gds import GdsError
from . import plots
from .metrics import METRICS, check_costs, check_metrics, run_metrics
from .sources import GraphSource, LayerStats, Neo4jSource, Source

__all__ = ["analyze", "report_trace", "receptive_field_paths"]

_TOP_NODES = 10  # rows of the PageRank / betweenness / community tables
_DEFAULT_CONE_DEPTH = 2  # the metrics' subgraph when only a neuron is given


# ---------------------------------------------------------------------------- entry points
def analyze(source, out_dir: str | os.PathLike, *, neuron: str | None = None,
            subgraph: str | None = None, fmt: str = "md",
            metrics: Sequence[str] = METRICS, max_cost: float = 60.0,
            max_edges: int = 5_000_000, sample_edges: int = 20_000_000, driver=None,
            database: str | None = None, allow_incomplete: bool = False, trace=None,
            gds: bool | None = None, gds_max_memory: int | None = None) -> Path:
    """Write an analysis report of a neuron graph and its PNG plots into ``out_dir``.

    Parameters
    ----------
    source : str, NeuronGraph, pathlib.Path or keras.Model
        A model name loaded in Neo4j (uses ``driver``, or connects), or a NeuronGraph; a
        model file (a ``Path``: a str is a name) or a Keras model is converted whole
        (:func:`loader.graph.coerce.as_graph`).
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
        See :func:`loader.analysis.metrics.run_metrics`.
    max_cost : float
        Refuse (before pulling or computing anything) when the estimated seconds of building
        the subgraph plus the metrics exceed this.
    max_edges : int
        The subgraph's edge limit (NetworkX memory), as in :func:`loader.neo4j.pull.pull`.
    sample_edges : int
        Layers with more edges are sampled by target neuron for the statistics.
    driver : Database or neo4j.Driver, optional
        For a model name; default: a connection from the settings, closed at the end.
    database : str, optional
        The Neo4j database; default ``NEO4J_DATABASE``.
    allow_incomplete : bool
        Analyse a Neo4j model whose state is not ``complete`` (a partial graph); refused
        otherwise (:func:`loader.neo4j.models.require_complete`).
    trace : Trace, TraceSet or str, optional
        A :class:`loader.graph.trace.Trace` of ``source``, or the name of a trace stored in
        Neo4j (for a model name): adds the contribution map beside the input image, the
        active fraction per layer and the chosen pooling positions. An aggregated trace (a
        :class:`loader.graph.trace_set.TraceSet`, or the name of one stored in Neo4j) adds
        instead the chosen rate by window position per pooling layer (heat maps), the
        active-rate histograms per layer, the effective graph's size per layer and the mean
        contribution map over the input (:mod:`loader.analysis.trace_sets`).
    gds : bool, optional
        Whole-model sections from Graph Data Science inside Neo4j (PageRank and degree per
        layer, components, Louvain communities per layer, with a plot): default on for a
        model in Neo4j; a projection over the server's heap (or ``gds_max_memory``) is
        reported in the section instead. NetworkX keeps the subgraph metrics.

    Returns
    -------
    Path
        The report file.

    Raises
    ------
    loader.errors.TooLargeError
        The metrics' estimated cost is over ``max_cost`` (or the subgraph over ``max_edges``).
    loader.errors.SelectionError
        A malformed or unknown ``neuron`` or ``subgraph``, or metrics with neither.

    Examples
    --------
    >>> analyze("small", "out", neuron="dense:1", subgraph="layers=conv2:dense", fmt="html")
    """
    if fmt not in ("md", "html"):
        raise WeightgraphError(f"format must be md or html, got {fmt!r}")
    metrics = check_metrics(metrics)
    with _opened(source, driver, database, allow_incomplete) as src:
        view = None
        if trace is not None:
            from . import trace_sets, traces
            from ..graph.trace_set import TraceSet

            if isinstance(trace, str):
                if not isinstance(src, Neo4jSource):
                    raise WeightgraphError("a stored trace (a name) goes with a model loaded in "
                                           "Neo4j; for a Keras model pass the Trace")
                from ..neo4j.trace_sets import is_aggregate
                from ..neo4j.traces import trace_info

                if is_aggregate(trace_info(src.db, trace)):
                    view = trace_sets.from_neo4j(src.db, trace)
                else:
                    view = traces.from_neo4j(src.db, trace)
            elif isinstance(trace, TraceSet):
                view = trace_sets.from_trace_set(trace)
            else:
                view = traces.from_trace(trace)
        use_gds = isinstance(src, Neo4jSource) if gds is None else gds
        if use_gds and not isinstance(src, Neo4jSource):
            raise WeightgraphError("gds=True needs a model loaded in Neo4j (its name)")
        return _write_report(src, Path(out_dir), neuron, subgraph, fmt, metrics, max_cost,
                             max_edges, sample_edges, view,
                             gds_memory=gds_max_memory if use_gds else False)


def report_trace(graph, model: str | os.PathLike, *,
                 trace_input: str | os.PathLike | None = None,
                 inputs: str | os.PathLike | None = None, target: str | None = None,
                 neuron: str | None = None, preprocess: str = "auto"):
    """The trace a report of ``graph`` shows (:func:`analyze`'s ``trace``): one input file
    traced, or a set of inputs aggregated; None without either.

    Parameters
    ----------
    graph : NeuronGraph
        The model ``model`` (a file or a ``keras.applications`` name: its preprocessing
        family), converted whole.
    trace_input : path, optional
        An input (``.npy`` or image, read by :func:`loader.inputs.read_input` with
        ``preprocess``), traced towards ``target`` (default: ``neuron``).
    inputs : path, optional
        A set of inputs aggregated towards ``target`` (:func:`loader.graph.trace_set.trace_set`;
        ``"predicted"`` allowed), when there is no ``trace_input``.

    Examples
    --------
    >>> t = report_trace(g, "digits.keras", trace_input="digit.npy", neuron="logits:6")
    >>> analyze(g, "out", neuron="logits:6", trace=t)
    """
    from ..inputs import application_family

    if trace_input is not None:
        from ..graph.trace import trace
        from ..inputs import read_input

        shape = next(e.output.shape for e in graph.entries if e.kind == "input")
        x = read_input(trace_input, shape, mode=preprocess, family=application_family(model))
        return trace(graph, x, target=target or neuron,
                     info={"model": model, "input": trace_input, "preprocess": preprocess})
    if inputs is not None:
        from ..graph.trace_set import trace_set

        return trace_set(graph, inputs, target=target, preprocess=preprocess,
                         family=application_family(model), progress=True,
                         info={"model": model})
    return None


def receptive_field_paths(source, neuron: str, *, driver=None,
                          database: str | None = None) -> dict[str, np.ndarray]:
    """Paths from every input neuron to ``neuron`` (``"LAYER:INDEX"``), per input layer.

    Parameters
    ----------
    source : str or NeuronGraph
        As in :func:`analyze`; so are ``driver`` and ``database``.

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
    with _opened(source, driver, database, who="receptive_field_paths") as src:
        return src.receptive_field(*_neuron(neuron, src.graph_data["layers"]))


@contextlib.contextmanager
def _opened(source, driver, database, allow_incomplete=False, who="analyze"
            ) -> Iterator[Source]:
    """The source of a model name (connected for the block) or of a NeuronGraph (or of a
    model file given as a ``Path``, or a Keras model: converted whole)."""
    if isinstance(source, str):
        with using(driver, database) as db:
            yield Neo4jSource(source, db, allow_incomplete)
    else:
        yield GraphSource(as_graph(source, who, channel=False, takes=_TAKES))


# A str is a model loaded in Neo4j here, so a model file comes as a Path.
_TAKES = ("the name of a model loaded in Neo4j (str), a NeuronGraph, a model file "
          "(pathlib.Path), a Keras model or an ONNX ModelProto")


def _neuron(spec: str, layers: list[dict]) -> tuple[str, int]:
    """``"LAYER:INDEX"`` of a layer the model has."""
    layer, index = parse_neuron(spec)
    names = [l["name"] for l in layers]
    if layer not in names:
        raise SelectionError(f"no layer named {layer!r}; layers: " + ", ".join(names))
    return layer, index


def _metrics_subgraph(subgraph: str | None, target: tuple[str, int] | None,
                      metrics: Sequence[str]) -> tuple[str, str] | None:
    """Where the metrics run, as ``(kind, spec)``; None when none are asked for."""
    sub = parse_subgraph(subgraph)  # parsed even without metrics: a bad spec is an error
    if not metrics:
        return None
    if sub is None:
        if target is None:
            raise SelectionError("metrics need a subgraph: pass subgraph= (layers=FIRST:LAST or "
                                 "cone=LAYER:INDEX[:DEPTH]) or a neuron (its cone, depth 2)")
        sub = ("cone", f"{target[0]}:{target[1]}:{_DEFAULT_CONE_DEPTH}")
    return sub


# ---------------------------------------------------------------------------- the report
def _write_report(src: Source, out_dir: Path, neuron, subgraph, fmt, metrics, max_cost,
                  max_edges, sample_edges, view=None, gds_memory: int | None | bool = False
                  ) -> Path:
    started = time.perf_counter()
    layers = src.graph_data["layers"]
    target = _neuron(neuron, layers) if neuron else None
    sub = _metrics_subgraph(subgraph, target, metrics)
    # Cost check first: nothing is pulled, computed or written above the limits.
    estimates = None
    if sub is not None:
        estimates = check_costs(f"{sub[0]}={sub[1]}", *src.subgraph_size(*sub), metrics,
                                max_cost=max_cost, max_edges=max_edges)

    out_dir.mkdir(parents=True, exist_ok=True)
    report = _Report(f"weightgraph analysis: {src.name}")
    report.para(f"Source: {src.where}. Generated by weightgraph.")
    _layers_section(report, layers)
    stats, note = src.layer_stats(sample_edges)
    _weights_section(report, stats, out_dir)
    _degree_section(report, stats, note, out_dir)
    if target is not None:
        _receptive_field_section(report, src, target, out_dir)
    if view is not None:
        from . import trace_sets

        if isinstance(view, trace_sets.SetView):
            trace_sets.write_section(report, view, out_dir)
        else:
            _trace_section(report, view, out_dir)
    if gds_memory is not False:
        _gds_section(report, src, gds_memory, out_dir)
    if sub is not None:
        _metrics_section(report, src, sub, metrics, estimates, max_cost, max_edges, out_dir)
    report.para(f"Report written in {time.perf_counter() - started:.1f} s.")
    return _write(report, out_dir, fmt)


def _layers_section(report: _Report, layers: list[dict]) -> None:
    report.heading("Layers")
    report.table(["#", "layer", "class", "op", "output shape", "neurons", "edges"],
                 [[l["index"], l["name"], l.get("class_name", ""), l.get("op") or "-",
                   "x".join(str(d) for d in l.get("output_shape", [])), l.get("neurons", 0),
                   l.get("edges", 0)] for l in layers])


def _weights_section(report: _Report, stats: list[LayerStats], out_dir: Path) -> None:
    report.heading("Weights per layer")
    report.para("Statistics of the weights on the edges entering each layer (max-pooling edges "
                "all weigh 1.0). Layers above the sampling limit use the edges of a fixed "
                "hashed sample of their neurons; the column 'sampled' gives the fraction.")
    report.table(["layer", "edges", "sampled", "min", "max", "mean", "std"],
                 [[s.layer["name"], s.edges, f"{s.sampled:.0%}", s.min, s.max, s.mean, s.std]
                  for s in stats if s.counts is not None])
    for p in plots.plot_weight_histograms(stats, out_dir):
        report.image(p, "weight histograms")


def _degree_section(report: _Report, stats: list[LayerStats], note: str, out_dir: Path) -> None:
    report.heading("Degree and strength per layer")
    report.para("In-degree: edges entering a neuron; out-degree: edges leaving it; strength: "
                "the sum of |weight| over those edges. " + note)
    report.table(["layer", "neurons", "mean in-degree", "max in-degree", "mean out-degree",
                  "mean in-strength"],
                 [[s.layer["name"], s.neurons, _summary(np.mean, s.in_degree),
                   _summary(np.max, s.in_degree), _summary(np.mean, s.out_degree),
                   _summary(np.mean, s.in_strength)]
                  for s in stats if s.in_degree is not None and s.neurons])
    for what in ("degree", "strength"):
        p = plots.plot_distributions(stats, out_dir, what)
        if p is not None:
            report.image(p, f"{what} distributions")


def _summary(statistic: Callable, values: np.ndarray | None) -> float:
    """``statistic(values)``, NaN (shown as "-") where there are no values."""
    return float(statistic(values)) if values is not None and len(values) else math.nan


def _receptive_field_section(report: _Report, src: Source, target: tuple[str, int],
                             out_dir: Path) -> None:
    neuron = f"{target[0]}:{target[1]}"
    report.heading(f"Receptive field of {neuron}")
    maps = src.receptive_field(*target)
    report.para("Number of paths from each input position to the neuron, summed over the "
                "input channels (log scale): counted layer by layer, never enumerated.")
    report.table(["input", "neurons reached", "paths", "max paths from one neuron"],
                 [[name, int((v > 0).sum()), float(v.sum()), float(v.max()) if len(v) else 0.0]
                  for name, v in maps.items()])
    for p in plots.plot_receptive_field(maps, src.graph_data["layers"], neuron, out_dir):
        report.image(p, "receptive field map")


def _trace_section(report: _Report, view, out_dir: Path) -> None:
    report.heading(f"Trace: {view.title}")
    report.para("The graph resolved for one input: each neuron's value, which entry each "
                "max-pooling neuron takes (the first maximal one in window order, where "
                "TensorFlow's gradient goes), which neurons are active (their activation's "
                "slope is not 0), and each input's contribution (value x gradient) to the "
                "target, from one backward pass over the graph's edges.")
    for name, entry in view.inputs.items():
        if entry.get("contribution") is None:
            continue
        c = entry["contribution"]
        report.para(f"Input {name}: contributions sum to {float(c.sum()):.4g} "
                    f"(positive {float(c[c > 0].sum()):.4g}, negative "
                    f"{float(c[c < 0].sum()):.4g}).")
        suffix = "" if len(view.inputs) == 1 else f"_{name}"
        report.image(plots.plot_contribution_map(entry["shown"], c, view.title, out_dir,
                                                 f"contribution{suffix}",
                                                 channels_first=entry.get("channels_first",
                                                                          False)),
                     "contribution map beside the input")
    report.table(["layer", "neurons", "active", "active fraction"],
                 [[r["layer"], r["neurons"], r["active"], r["fraction"]] for r in view.layers])
    p = plots.plot_active_fraction(view.layers, out_dir)
    if p is not None:
        report.image(p, "active fraction per layer")
    if view.pools:
        report.para("Chosen entries of the max/min pooling layers, by " + view.pools[0]["how"]
                    + ": a max-pooling neuron passes on one entry of its window, and these "
                    "are the shares of neurons that took each position.")
        report.image(plots.plot_chosen_positions(view.pools, out_dir), "chosen positions")


def _metrics_section(report: _Report, src: Source, sub: tuple[str, str], metrics, estimates,
                     max_cost: float, max_edges: int, out_dir: Path) -> None:
    report.heading(f"NetworkX metrics on {sub[0]} {sub[1]}")
    G = src.subgraph(sub[0], sub[1], max_edges)
    est = ", ".join(f"{k} ~{v:.2g} s" for k, v in estimates.items())
    report.para(f"{G.number_of_nodes():,} nodes, {G.number_of_edges():,} edges. "
                f"Estimated cost before running: {est} (limit {max_cost:g} s).")
    results, timings = run_metrics(G, metrics)
    report.para("Measured: " + ", ".join(f"{k} {v:.2g} s" for k, v in timings.items()))
    for key in ("pagerank", "betweenness"):
        if key in results:
            _top_nodes_table(report, G, key, results[key])
    if "communities" in results:
        _communities_table(report, G, results["communities"])
    p = plots.plot_metrics(G, results, out_dir)
    if p is not None:
        report.image(p, "metrics")


def _gds_section(report: _Report, src: Neo4jSource, max_memory: int | None,
                 out_dir: Path) -> None:
    from .gds import whole_model

    report.heading("Whole model, inside Neo4j (Graph Data Science)")
    try:
        s = whole_model(src.db, src.name, max_memory=max_memory,
                        allow_incomplete=src.allow_incomplete)
    except (TooLargeError, GdsError) as exc:
        report.para(f"Not computed: {exc}")
        return
    took = ", ".join(f"{k} {v:.2g} s" for k, v in s.seconds.items())
    report.para(f"Every neuron and relationship of the model ({s.nodes:,} and "
                f"{s.relationships:,}), projected into GDS with |weight| as the weight "
                f"(estimated {s.estimate_bytes / 1e6:.3g} MB of heap before projecting) and "
                f"dropped after. PageRank: damping 0.85, 20 iterations, not normalised (GDS "
                f"scores; divided by their sum they are NetworkX's). Degrees count "
                f"relationships. Times: {took}.")
    report.table(["layer", "neurons", "PageRank mean", "PageRank max", "in-degree mean",
                  "in-degree max", "out-degree mean", "communities"],
                 [[r["layer"], r["neurons"], r.get("pagerank_mean", math.nan),
                   r.get("pagerank_max", math.nan), r.get("in_degree_mean", math.nan),
                   r.get("in_degree_max", math.nan), r.get("out_degree_mean", math.nan),
                   r.get("communities", "-")] for r in s.layers])
    owners = [l for l in src.graph_data["layers"] if l.get("offset") is not None
              and l.get("neurons") and l.get("kind") != "alias"]
    rows = []
    for r in s.top:
        layer = max((l for l in owners if l["offset"] <= r["id"]), key=lambda l: l["offset"])
        rows.append([r["id"], layer["name"], r["id"] - layer["offset"], r["score"]])
    report.para("Highest PageRank in the whole model:")
    report.table(["id", "layer", "index", "PageRank"], rows)
    report.para(f"Weakly connected components: {s.components:,} (largest: "
                f"{', '.join(f'{n:,}' for n in s.component_sizes)} neurons). Louvain "
                f"communities on the undirected view: {s.communities:,}, modularity "
                f"{s.modularity:.3f}.")
    p = plots.plot_gds_layers(s.layers, out_dir)
    if p is not None:
        report.image(p, "GDS results per layer")


def _top_nodes_table(report: _Report, G: nx.DiGraph, key: str, values: dict) -> None:
    """The highest-scoring nodes (ties by id)."""
    top = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP_NODES]
    report.table(["id", "layer", "index", key],
                 [[n, G.nodes[n].get("layer"), G.nodes[n].get("index"), v] for n, v in top])


def _communities_table(report: _Report, G: nx.DiGraph, communities: list[set]) -> None:
    """The largest communities and the layers their neurons come from."""
    rows = []
    for i, c in enumerate(sorted(communities, key=len, reverse=True)[:_TOP_NODES]):
        layers_in = Counter(G.nodes[n].get("layer") for n in c)
        rows.append([i, len(c), ", ".join(f"{k}: {v}" for k, v in layers_in.most_common())])
    report.table(["community", "neurons", "layers"], rows)


def _write(report: _Report, out_dir: Path, fmt: str) -> Path:
    path = out_dir / f"report.{fmt}"
    path.write_text(report.markdown() if fmt == "md" else report.html(), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- the writer
class _Report:
    """Sections of paragraphs, tables and images, rendered as Markdown or HTML.

    Blocks are kept as tuples: ``("h", text)``, ``("p", text)``, ``("t", header, rows)`` with
    the cells already formatted, and ``("i", file name, alt text)``.
    """

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple] = []

    def heading(self, text: str) -> None:
        self.blocks.append(("h", text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list]) -> None:
        self.blocks.append(("t", header, [[_cell(v) for v in r] for r in rows]))

    def image(self, path: Path, alt: str) -> None:
        # The PNG files sit next to the report: link them by name.
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
    """A table cell: floats to 4 significant digits (NaN as "-"), ints with thousands
    separators, and text with ``|`` escaped for Markdown tables."""
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v).replace("|", "\\|")
