"""The demo's steps, one function each, in the order :func:`loader.demo.run_demo` runs them;
each prints its ``N/8`` line and what it found (``echo``), and returns what later steps use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import WeightgraphError
from .digits import trained_digits

if TYPE_CHECKING:
    from . import Network

__all__ = ["plan", "trace_input", "load", "store_trace", "held_out", "skip_held_out",
           "named_queries", "graphml", "report", "held_out_set", "HeldOut"]


def plan(net: Network, echo):
    """1/8: the whole model's graph and its size."""
    from ..graph.neuron_graph import NeuronGraph

    echo(f"1/8 plan: {net.model.name}")
    whole = NeuronGraph.from_model(net.model, name=net.name)
    p = whole.plan()
    echo(f"    {p.neurons:,} neurons, {p.edges:,} edges")
    return whole


def trace_input(whole, net: Network, shown_path: Path, echo):
    """2/8: the input traced through the whole graph towards the predicted class."""
    from ..graph.trace import trace

    echo(f"2/8 trace the input through the whole graph, target {net.target} "
         "(the predicted class)")
    t = trace(whole, net.x, target=net.target, info={"input": str(shown_path)})
    echo(f"    forward {t.seconds['forward']:.1f} s, backward {t.seconds['backward']:.1f} s;"
         f" {t.active.mean():.1%} of the neurons active; {net.target} = "
         f"{t.values[t.target_id]:.4g}")
    for row in t.layer_summary():
        if "chosen_positions" in row:
            counts = np.asarray(row["chosen_positions"]).reshape(-1)
            echo(f"    {row['layer']}: chosen window positions "
                 + " ".join(f"{c:,}" for c in counts) + f" ({row['tied']:,} ties)")
    return t


def load(db, whole, net: Network, t, progress: bool, echo):
    """3/8: load the whole model, or the cone of the ``cone_layer`` neuron contributing most
    to the prediction, and verify it; returns (graph loaded, its neuron, load summary)."""
    from ..graph.neuron_graph import NeuronGraph
    from ..neo4j.load import load as load_graph
    from ..neo4j.models import verify

    if net.cone_layer is None:
        g, neuron, why = whole, net.target, "the whole model"
    else:
        c = t.layer(net.cone_layer, "contribution").reshape(-1)
        index = int(np.argmax(c))
        neuron = f"{net.cone_layer}:{index}"
        g = NeuronGraph.from_model(net.model, name=net.name, cone=neuron)
        why = (f"the cone of {neuron}, the {net.cone_layer} neuron contributing most "
               f"({c[index]:.3g}) to {net.target} (the whole model is too big to load here)")
    p = g.plan()
    echo(f"3/8 load into Neo4j: {why}: {p.selected_neurons:,} neurons, "
         f"{p.selected_edges:,} edges")
    summary = load_graph(g, net.name, driver=db, replace=True, progress=progress)
    echo("    " + summary.line())
    v = verify(net.name, driver=db)
    echo(f"    verify: {'every layer matches the plan' if v.ok else 'MISMATCH'}")
    if not v.ok:
        raise WeightgraphError(f"model {net.name!r} does not match its plan after loading")
    return g, neuron, summary


def store_trace(db, net: Network, shown_path: Path, neuron: str, echo):
    """4/8: the trace computed again from Neo4j and stored as ``<name>_input``; returns
    (its name, what was stored)."""
    from ..neo4j.traces import trace_loaded

    trace_name = f"{net.name}_input"
    echo(f"4/8 the trace, computed from Neo4j and stored as {trace_name!r} (target {neuron})")
    stored = trace_loaded(db, net.name, shown_path, name=trace_name, target=neuron,
                          x=net.x, replace=True)
    for line in stored.lines():
        echo("    " + line)
    return trace_name, stored


def skip_held_out(echo) -> None:
    """5/8 for VGG16: no labelled set ships for it."""
    echo("5/8 the held-out set: only for the digits CNN (no labelled set ships for "
         "VGG16 here)")


def held_out(db, whole, net: Network, out: Path, progress: bool, echo) -> HeldOut:
    """5/8 for the digits CNN: the held-out set, aggregated, checked, stored, reported."""
    from ..analysis.report import analyze
    from ..neo4j.queries import run_query
    from ..neo4j.trace_sets import trace_set_loaded

    _, split = trained_digits(0)
    x = split.x_test.astype(np.float64)
    echo(f"5/8 the held-out set: {len(x)} digits through the graph in batches, contributions "
         "to each one's predicted class")
    h = held_out_set(whole, net.model, x, progress=progress)
    ts = h.trace_set
    echo(f"    {ts.seconds['total']:.2f} s ({ts.n / ts.seconds['total']:,.0f} digits/s, "
         f"batches of {ts.batch_size})")
    chosen = sum(v[0] for v in h.never_chosen.values())
    edges = sum(v[1] for v in h.never_chosen.values())
    echo(f"    pooling edges never chosen: {chosen:,} of {edges:,} ("
         + ", ".join(f"{k} {a:,} of {b:,}" for k, (a, b) in h.never_chosen.items()) + ")")
    never = sum(v[0] for v in h.never_active.values())
    echo(f"    neurons never firing (active_rate 0): {never:,} of {whole.total_neurons:,} ("
         + ", ".join(f"{k} {a:,} of {b:,}" for k, (a, b) in h.never_active.items()) + ")")
    kn, ke, n, e = h.effective
    echo(f"    effective graph (chosen_rate > 0): {kn:,} of {n:,} neurons, {ke:,} of {e:,} "
         f"edges; executed on the {ts.n} digits it gives Keras's prediction for {h.agree} "
         f"of {ts.n}")
    if h.agree != ts.n:
        raise WeightgraphError(f"the effective graph's predictions differ from Keras's on "
                               f"{ts.n - h.agree} held-out digits")
    set_name = f"{net.name}_held_out"
    stored = trace_set_loaded(db, net.name, x, name=set_name, target="predicted", replace=True)
    echo(f"    stored in Neo4j as {set_name!r} ({stored.chunks} chunks); named queries:")
    usage: dict = {}
    for row in run_query(db, "pooling_usage", {"model": net.name, "trace": set_name}).records():
        usage.setdefault(row["layer"], []).append(row)
    for layer, rows in usage.items():
        echo(f"    pooling_usage({layer}): share of choices by window position "
             + " ".join(f"{r['share']:.1%}" for r in rows) + "; never chosen "
             + " ".join(str(r["never_chosen"]) for r in rows))
    for row in run_query(db, "never_active", {"model": net.name, "trace": set_name,
                                              "k": 5}).records():
        if row["never_active"]:
            echo(f"    never_active({row['layer']}): {row['never_active']} of "
                 f"{row['neurons']}, first {row['indexes']}")
    path = analyze(net.name, out / "report_held_out", trace=set_name, metrics=(), gds=False,
                   driver=db)
    echo(f"    report of the set: {path}")
    h.report = path
    return h


def named_queries(db, g, net: Network, neuron: str, trace_name: str, echo) -> None:
    """6/8: named queries (queries/*.cypher) on the loaded model and its stored trace."""
    from ..neo4j.queries import run_query

    echo("6/8 named queries (queries/*.cypher)")
    for row in run_query(db, "model_summary", {"model": net.name}).records()[:4]:
        echo("    model_summary: " + ", ".join(f"{k}={row[k]}" for k in list(row)[:4]))
    layer, index = neuron.rsplit(":", 1)
    for row in run_query(db, "top_inputs", {"model": net.name, "layer": layer,
                                            "index": int(index), "k": 3}).records():
        echo(f"    top_inputs({neuron}): {row}")
    for row in run_query(db, "top_contributors", {"model": net.name, "trace": trace_name,
                                                  "layer": None, "k": 3}).records():
        echo(f"    top_contributors: {row}")
    pool = _pool_neuron(db, g, net.name, trace_name)
    if pool is not None:
        rows = run_query(db, "pooling_choices", {"model": net.name, "layer": pool[0],
                                                 "index": pool[1],
                                                 "trace": trace_name}).records()
        picked = [r for r in rows if r["chosen"]]
        echo(f"    pooling_choices({pool[0]}:{pool[1]}): {len(rows)} candidates, chose "
             + (f"{picked[0]['layer']}:{picked[0]['index']} = {picked[0]['value']:.4g}"
                if picked else "none"))


def graphml(db, net: Network, out: Path, trace_name: str, progress: bool, echo):
    """7/8: GraphML of the loaded graph and of the input's active subgraph, both pulled back
    from Neo4j; returns their paths."""
    from ..neo4j.pull import pull_to_graphml
    from ..neo4j.traces import pull_trace

    echo("7/8 GraphML, pulled back from Neo4j")
    path = out / f"{net.name}.graphml.gz"
    pull_to_graphml(net.name, path, driver=db, progress=progress)
    active = out / f"{net.name}_active.graphml.gz"
    stats = pull_trace(trace_name, active_only=True, path=active, driver=db)
    echo(f"    {path}; the active subgraph ({stats['nodes']:,} neurons, "
         f"{stats['edges']:,} edges, with values): {active}")
    return path, active


def report(db, net: Network, out: Path, neuron: str, t, echo) -> Path:
    """8/8: the analysis report, with the trace's contribution map."""
    from ..analysis.report import analyze

    echo("8/8 analysis report")
    path = analyze(net.name, out / "report", neuron=neuron, trace=t, driver=db)
    echo(f"    {path}")
    return path


@dataclass
class HeldOut:
    """What the demo found on the held-out set (:func:`held_out_set`).

    Attributes
    ----------
    trace_set : the aggregated trace (contributions to each digit's predicted class).
    never_chosen : layer -> (pooling edges never chosen, pooling edges).
    never_active : layer -> (neurons never firing, neurons).
    effective : (neurons, edges) of the effective graph (chosen_rate > 0) and of the whole.
    predictions : the effective graph's prediction for each input (executed), and Keras's.
    """

    trace_set: object
    never_chosen: dict
    never_active: dict
    effective: tuple
    predictions: np.ndarray
    keras_predictions: np.ndarray
    report: object = None

    @property
    def agree(self) -> int:
        return int((self.predictions == self.keras_predictions).sum())


def held_out_set(graph, model, x: np.ndarray, *, progress: bool = False) -> HeldOut:
    """Aggregate the held-out inputs ``x`` over ``graph`` (the digits CNN's), with each input's
    contributions to its own predicted class; execute the effective graph (chosen_rate > 0)
    on every input and compare its predictions with Keras's.

    Examples
    --------
    >>> model, split = trained_digits(0)
    >>> h = held_out_set(NeuronGraph.from_model(model), model, split.x_test)
    >>> h.agree                      # of 360
    360
    """
    from ..graph.forward import execute_networkx
    from ..graph.trace_set import trace_set
    from ..sinks.networkx import to_networkx

    ts = trace_set(graph, x, target="predicted", progress=progress,
                   info={"inputs": f"the {len(x)} held-out digits", "model": graph.name})
    rows = ts.layer_summary(0.0)
    never_chosen = {r["layer"]: (r["never_chosen"], r["pooling_edges"]) for r in rows
                    if "pooling_edges" in r}
    never_active = {r["layer"]: (r["never_active"], r["neurons"]) for r in rows
                    if r["never_active"]}
    effective = (sum(r["kept_neurons"] for r in rows), sum(r["kept_edges"] for r in rows),
                 sum(r["neurons"] for r in rows), sum(r["edges"] for r in rows))
    outputs = execute_networkx(to_networkx(ts.subgraph(effective=True)), x)
    last = ts.predicted_layer
    mine = outputs[last].reshape(len(x), -1).argmax(axis=1)
    theirs = np.asarray(model.predict(np.asarray(x, np.float32), batch_size=512, verbose=0))
    return HeldOut(ts, never_chosen, never_active, effective, mine,
                   theirs.reshape(len(x), -1).argmax(axis=1))


def _pool_neuron(db, g, model: str, trace_name: str) -> tuple[str, int] | None:
    """The max-pooling neuron that contributes most to the stored trace's target, in the
    deepest max-pooling layer the trace holds (named query ``top_contributors``)."""
    from ..neo4j.queries import run_query

    pools = [e.name for e in g.entries if e.op is not None and e.op.op == "max"]
    for layer in reversed(pools):
        rows = run_query(db, "top_contributors", {"model": model, "trace": trace_name,
                                                  "layer": layer, "k": 1}).records()
        if rows:
            return layer, int(rows[0]["index"])
    return None
