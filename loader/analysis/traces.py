"""What an analysis report shows of a trace, from a file-based trace or one stored in Neo4j.

:class:`TraceView` holds, per input layer, the contribution map (value x gradient of every
input neuron to the trace's target) and something to show beside it (the input image when the
trace was made from an image file that is still there, else the input values scaled to
0..1); per neuron layer the fraction of active neurons; per max/min pooling layer how the
chosen entries spread over the window.

The spread is exact for a file-based trace: counts per window position (the window's shape,
positions outside the input count nowhere; :meth:`loader.graph.trace.Trace.window_positions`).
From Neo4j, where no window geometry is stored, it is the chosen entry's rank among the
neuron's in-bounds inputs in id order (the window's order): the same as the window position
for every window that lies wholly inside the input, shifted at borders with padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..inputs import IMAGE_SUFFIXES, image_layout, read_image
from ..neo4j.db import Database
from ..neo4j.models import LayerTable, model_info
from ..neo4j.pull import iter_pull, plan_pull
from ..neo4j.traces import read_trace, trace_info


@dataclass
class TraceView:
    title: str  # "cat.jpg -> predictions:281 = 0.71"
    target: str | None
    inputs: dict = field(default_factory=dict)  # name -> {contribution, shown, shape}
    layers: list = field(default_factory=list)  # {layer, neurons, active, fraction}
    pools: list = field(default_factory=list)  # {layer, counts (array), how}


def _shown_image(path, values: np.ndarray, channels_first: bool = False) -> np.ndarray:
    """The input image file resized to the input (uint8 RGB / gray), or the values scaled;
    rows x columns x channels either way (a channels-first input's values are moved)."""
    layout = image_layout(values.shape)
    if layout is not None and layout[2] != channels_first:  # the input knows its layout
        layout = None
    if (path and Path(str(path)).suffix.lower() in IMAGE_SUFFIXES and Path(str(path)).is_file()
            and layout is not None and layout[1] in (1, 3)):
        img = read_image(path, layout[0], layout[1])
        return np.clip(img, 0, 255).astype(np.uint8)
    if channels_first:
        values = np.moveaxis(values, 0, -1)
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def from_trace(t) -> TraceView:
    """The view of a :class:`loader.graph.trace.Trace`."""
    g = t.graph
    info = t.info
    title = Path(str(info.get("input", "input"))).name
    if t.target is not None:
        title += f" -> {t.target} = {t.values[t.target_id]:.4g}"
    view = TraceView(title, t.target)
    for e in g.entries:
        if e.kind == "input":
            values = t.layer(e.name)
            contribution = t.layer(e.name, "contribution") if t.contribution is not None else None
            first = bool(getattr(e.op, "channels_first", False)) and values.ndim >= 2
            view.inputs[e.name] = {"contribution": contribution, "values": values,
                                   "channels_first": first,
                                   "shown": _shown_image(info.get("input"), values, first)}
    for row in t.layer_summary():
        if row["op"] == "input":
            continue
        view.layers.append({"layer": row["layer"], "neurons": row["neurons"],
                            "active": row["active"], "fraction": row["active_fraction"]})
        if "chosen_positions" in row:
            view.pools.append({"layer": row["layer"],
                               "counts": np.asarray(row["chosen_positions"]),
                               "tied": row["tied"], "how": "window position"})
    return view


def from_neo4j(db: Database, trace: str) -> TraceView:
    """The view of a trace stored in Neo4j (``weightgraph trace --model ... --name``)."""
    t = trace_info(db, trace)
    info = model_info(db, t["model"])
    table = LayerTable(info["graph_data"]["layers"])
    arrays = read_trace(db, trace)
    ids = arrays["id"]
    title = Path(str(t.get("input", "input"))).name
    if t.get("target_id") is not None:
        pos = int(np.searchsorted(ids, t["target_id"]))
        title += f" -> {t['target']} = {arrays['value'][pos]:.4g}"
    view = TraceView(title, t.get("target"))
    for layer in table.neuron_layers:
        lo, hi = layer["offset"], layer["offset"] + layer["neurons"]
        sel = (ids >= lo) & (ids < hi)
        if not sel.any():
            continue
        if layer.get("kind") == "input":
            shape = layer["output_shape"]
            values = np.zeros(layer["neurons"])
            values[ids[sel] - lo] = arrays["value"][sel]
            first = layer.get("channel_axis") == 0 and len(shape) >= 2
            entry = {"values": values.reshape(shape), "contribution": None,
                     "channels_first": first}
            if arrays["contribution"] is not None:
                c = np.zeros(layer["neurons"])
                c[ids[sel] - lo] = arrays["contribution"][sel]
                entry["contribution"] = c.reshape(shape)
            entry["shown"] = _shown_image(t.get("input"), entry["values"], first)
            view.inputs[layer["name"]] = entry
            continue
        n, active = int(sel.sum()), int(arrays["active"][sel].sum())
        view.layers.append({"layer": layer["name"], "neurons": n, "active": active,
                            "fraction": active / n})
        if layer.get("op") in ("max", "min"):
            counts, tied = _chosen_ranks(db, t["model"], layer, arrays, sel)
            view.pools.append({"layer": layer["name"], "how": "rank among the window's inputs",
                               "counts": counts, "tied": tied})
    return view


def _chosen_ranks(db: Database, model: str, layer: dict, arrays: dict, sel) -> tuple:
    """Per rank r: how many neurons with a unique extreme chose their r-th input (inputs in
    id order); and how many neurons are ties."""
    plan = plan_pull(model, layers=f"{layer['name']}:{layer['name']}", driver=db)
    src, dst = [], []
    for b in iter_pull(plan, driver=db):
        if hasattr(b, "src"):
            src.append(b.src)
            dst.append(b.dst)
    src, dst = np.concatenate(src), np.concatenate(dst)
    order = np.lexsort((src, dst))
    src, dst = src[order], dst[order]
    starts = np.searchsorted(dst, dst, side="left")
    rank = np.arange(len(dst)) - starts
    ids = arrays["id"]
    held = np.isin(dst, ids[sel]) & np.isin(src, ids)
    src, dst, rank = src[held], dst[held], rank[held]
    dpos, spos = np.searchsorted(ids, dst), np.searchsorted(ids, src)
    equal = arrays["value"][spos] == arrays["value"][dpos]
    n_max = np.bincount(dpos, weights=equal, minlength=len(ids))
    unique = n_max[dpos] == 1
    hit = (arrays["chosen"][dpos] == src) & unique
    size = int(rank.max()) + 1 if len(rank) else 0
    tied = int(((n_max > 1) & sel & (arrays["chosen"] >= 0)).sum())
    return np.bincount(rank[hit], minlength=size), tied
