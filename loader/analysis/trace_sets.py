"""What an analysis report shows of an aggregated trace (a set of inputs), from a file-based
:class:`~loader.graph.trace_set.TraceSet` or one stored in Neo4j.

:class:`SetView` holds, per max/min pooling layer, the share of (neuron, input) choices at
each window position (a heat map per layer) and the share a padding zero took; per neuron
layer the active rates (a histogram per layer); per layer the effective graph's neurons and
edges against the whole; per input layer the mean contribution map beside the mean input.

Window positions are exact for a file-based trace set (the pooling window's shape, C order:
:meth:`~loader.graph.trace_set.TraceSet.window_rates`). From Neo4j, where no window geometry
is stored, a position is the entry's rank among the neuron's inputs in id order: the window
position for every window that lies wholly inside its input, shifted at padded borders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import plots

__all__ = ["SetView", "from_trace_set", "from_neo4j", "write_section"]


@dataclass
class SetView:
    title: str
    n: int
    target: str | None
    min_rate: float = 0.0
    inputs: dict = field(default_factory=dict)  # name -> {contribution, shown}
    layers: list = field(default_factory=list)  # {layer, neurons, never_active, rates}
    pools: list = field(default_factory=list)  # {layer, shares, padding, edges, never, how}
    effective: list = field(default_factory=list)  # {layer, neurons, kept_neurons, ...}


def _scaled(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def _title(n: int, inputs, target) -> str:
    return f"{n:,} inputs of {inputs}" + (f" -> {target}" if target else "")


def from_trace_set(ts, min_rate: float = 0.0) -> SetView:
    """The view of a file-based :class:`~loader.graph.trace_set.TraceSet`."""
    view = SetView(_title(ts.n, ts.info.get("inputs"), ts.target), ts.n, ts.target, min_rate)
    for st in ts.steps:
        if st.kind == "input":
            mean = ts.layer(st.name, "mean_value")
            c = ts.layer(st.name, "mean_contribution") if ts.mean_contribution is not None \
                else None
            view.inputs[st.name] = {"contribution": c, "shown": _scaled(mean)}
            continue
        rates = ts.active_rate[st.lo:st.hi]
        view.layers.append({"layer": st.name, "neurons": st.hi - st.lo,
                            "never_active": int((rates == 0).sum()), "rates": rates})
        if st.index in ts.choices:
            c = ts.choices[st.index]
            view.pools.append({"layer": st.name, "shares": ts.window_rates(st.name),
                               "padding": ts.padding_share(st.name), "edges": len(c.key),
                               "never": int((c.counts == 0).sum()), "how": "window position"})
    if ts.graph is not None:
        view.effective = [r for r in ts.effective_sizes(min_rate) if r["op"] != "input"]
    return view


def from_neo4j(db, trace: str, min_rate: float = 0.0) -> SetView:
    """The view of an aggregated trace stored in Neo4j (``trace --model M --inputs SET
    --aggregate --name T``)."""
    from ..neo4j.models import LayerTable, model_info
    from ..neo4j.pull import iter_pull, plan_pull
    from ..neo4j.trace_sets import _effective_ids, read_trace_set
    from ..graph.batches import EdgeBatch

    arrays = read_trace_set(db, trace)
    t = arrays["trace"]
    table = LayerTable(model_info(db, t["model"])["graph_data"]["layers"])
    view = SetView(_title(int(t.get("n", 0)), t.get("inputs"), t.get("target")),
                   int(t.get("n", 0)), t.get("target"), min_rate)
    ids, owner = arrays["id"], arrays["layer_index"]
    ch = arrays["choices"]
    kept = _effective_ids(db, t["model"], arrays, table, min_rate)
    for li in np.unique(owner):
        layer = table.by_index[int(li)]
        sel = owner == li
        if layer.get("kind") == "input":
            shape = layer["output_shape"]
            index = ids[sel] - layer["offset"]
            mean = np.zeros(layer["neurons"])
            mean[index] = arrays["mean_value"][sel]
            entry = {"shown": _scaled(mean.reshape(shape)), "contribution": None}
            if arrays["mean_contribution"] is not None:
                c = np.zeros(layer["neurons"])
                c[index] = arrays["mean_contribution"][sel]
                entry["contribution"] = c.reshape(shape)
            view.inputs[layer["name"]] = entry
            continue
        rates = arrays["active_rate"][sel]
        view.layers.append({"layer": layer["name"], "neurons": int(sel.sum()),
                            "never_active": int((rates == 0).sum()), "rates": rates})
        if layer.get("op") in ("max", "min"):
            lo, hi = layer["offset"], layer["offset"] + layer["neurons"]
            mine = (ch["dst"] >= lo) & (ch["dst"] < hi)
            n = int(sel.sum())
            rank = ch["rank"][mine].astype(np.int64)
            shares = np.bincount(rank, weights=ch["rate"][mine]) / max(1, n)
            view.pools.append({"layer": layer["name"], "shares": shares,
                               "padding": float(np.nansum(arrays["padding_rate"][sel])) / max(1, n),
                               "edges": int(mine.sum()),
                               "never": int((ch["rate"][mine] == 0).sum()),
                               "how": "rank among the window's inputs"})
    # The effective graph's size: every edge of what the trace holds, streamed once.
    plan = plan_pull(t["model"], driver=db, cone=t["target"] if t.get("target") not in
                     (None, "predicted") else None)
    key_mod = int(ids.max(initial=0)) + 1
    choice_keys = np.sort(ch["dst"] * key_mod + ch["src"]) if len(ch["dst"]) else None
    dropped_choice = (np.sort((ch["dst"] * key_mod + ch["src"])[ch["rate"] <= min_rate])
                      if len(ch["dst"]) else np.zeros(0, np.int64))
    edges, kept_edges = {}, {}
    for b in iter_pull(plan, driver=db):
        if not isinstance(b, EdgeBatch):
            continue
        li = owner[np.minimum(np.searchsorted(ids, b.dst), len(ids) - 1)]
        ok = np.isin(b.src, kept) & np.isin(b.dst, kept)
        if choice_keys is not None:
            ok &= ~np.isin(b.dst * key_mod + b.src, dropped_choice)
        for k in np.unique(li):
            edges[int(k)] = edges.get(int(k), 0) + int((li == k).sum())
            kept_edges[int(k)] = kept_edges.get(int(k), 0) + int((ok & (li == k)).sum())
    for li in np.unique(owner):
        layer = table.by_index[int(li)]
        if layer.get("kind") == "input":
            continue
        sel = owner == li
        view.effective.append({"layer": layer["name"], "neurons": int(sel.sum()),
                               "kept_neurons": int(np.isin(ids[sel], kept).sum()),
                               "edges": edges.get(int(li), 0),
                               "kept_edges": kept_edges.get(int(li), 0)})
    return view


def write_section(report, view: SetView, out_dir) -> None:
    """The aggregated trace's section of an analysis report (``report``: the report writer of
    :mod:`loader.analysis.report`)."""
    report.heading(f"Aggregated trace: {view.title}")
    report.para(f"The graph resolved for each of {view.n:,} inputs and aggregated: per neuron "
                "the fraction of inputs where it is active (its activation's slope is not 0), "
                "per pooling edge the fraction of inputs for which it is the chosen entry (the "
                "first maximal one in window order), and with a target each neuron's mean "
                "contribution (value x gradient)"
                + (" to each input's own predicted class." if view.target == "predicted"
                   else f" to {view.target}." if view.target else "."))
    for name, entry in view.inputs.items():
        c = entry.get("contribution")
        if c is None:
            continue
        report.para(f"Input {name}: mean contributions sum to {float(c.sum()):.4g} (positive "
                    f"{float(c[c > 0].sum()):.4g}, negative {float(c[c < 0].sum()):.4g}); "
                    "shown beside the mean input.")
        suffix = "" if len(view.inputs) == 1 else f"_{name}"
        report.image(plots.plot_contribution_map(entry["shown"], c, f"mean over {view.title}",
                                                 out_dir, f"mean_contribution{suffix}"),
                     "mean contribution map beside the mean input")
    if view.pools:
        report.para("Chosen rate by window position per pooling layer ("
                    + view.pools[0]["how"] + "): the share of all (neuron, input) choices at "
                    "each position; a padding zero takes the rest.")
        report.table(["layer", "pooling edges", "never chosen", "padding share"],
                     [[p["layer"], p["edges"], p["never"], p["padding"]] for p in view.pools])
        report.image(plots.plot_chosen_rate_heatmaps(view.pools, view.n, out_dir),
                     "chosen rate by window position")
    report.table(["layer", "neurons", "never active", "mean active rate"],
                 [[r["layer"], r["neurons"], r["never_active"],
                   float(np.mean(r["rates"])) if len(r["rates"]) else 0.0]
                  for r in view.layers])
    p = plots.plot_active_rate_histograms(view.layers, out_dir)
    if p is not None:
        report.image(p, "active-rate histograms per layer")
    if view.effective:
        report.para(f"The effective graph (pooling edges with chosen_rate > {view.min_rate:g}, "
                    "without the neurons never active and 0 on every input): "
                    + ("with this rate it executes to the model's values on every input of "
                       "the set." if view.min_rate == 0 else "an approximation at this rate."))
        report.table(["layer", "neurons", "kept", "edges", "kept edges", "edges kept"],
                     [[r["layer"], r["neurons"], r["kept_neurons"], r["edges"],
                       r["kept_edges"], r["kept_edges"] / r["edges"] if r["edges"] else 1.0]
                      for r in view.effective])
        p = plots.plot_effective_sizes(view.effective, out_dir)
        if p is not None:
            report.image(p, "effective graph size per layer")
