"""The report's figures, written as PNG files: weight histograms, degree and strength box
plots, the receptive-field map and the metrics' summary.

Every function takes what the sources computed (:class:`~loader.analysis.sources.LayerStats`,
path maps, a metrics result) and returns the files it wrote. Matplotlib runs headless
(``Agg``), so reports can be written on a server.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import networkx as nx
import numpy as np

from .sources import LayerStats

_MAX_PANELS = 24  # layers per figure before a second figure starts
_BLUE, _ORANGE, _GREEN = "#3b75af", "#e1812c", "#55a868"


def _pyplot():
    import matplotlib

    # Before pyplot is imported: no display is needed, whatever the environment says.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int) -> tuple[int, int]:
    """Rows and columns (at most 4) for ``n`` panels."""
    cols = min(4, max(1, n))
    return math.ceil(n / cols), cols


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


def plot_weight_histograms(stats: Sequence[LayerStats], out_dir: Path) -> list[Path]:
    """One histogram panel per layer with weights, :data:`_MAX_PANELS` panels per figure.

    Returns
    -------
    list of Path
        ``weights.png``, then ``weights_2.png``... when there are more layers.
    """
    plt = _pyplot()
    layers = [s for s in stats if s.counts is not None]
    paths = []
    for page, start in enumerate(range(0, len(layers), _MAX_PANELS)):
        chunk = layers[start:start + _MAX_PANELS]
        rows, cols = _grid(len(chunk))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
        for ax, s in zip(axes.flat, chunk):
            centers = (s.bins[:-1] + s.bins[1:]) / 2
            ax.bar(centers, s.counts, width=s.bins[1] - s.bins[0], color=_BLUE)
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
    """Box plots per layer of the in- and out-values of ``what``.

    Parameters
    ----------
    what : "degree" or "strength"
        Edges per neuron, or their sum of ``|weight|``. Out-values are left out when a layer
        has none (see the sources).

    Returns
    -------
    Path or None
        ``degree.png`` / ``strength.png``; None when no layer has the values.
    """
    plt = _pyplot()
    layers = [s for s in stats if getattr(s, f"in_{what}") is not None and s.neurons]
    if not layers:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(layers) + 2), 4.5))
    pos = np.arange(len(layers), dtype=float)
    for shift, direction, color in ((-0.18, "in", _BLUE), (0.18, "out", _ORANGE)):
        data = [getattr(s, f"{direction}_{what}") for s in layers]
        if any(d is None for d in data):
            continue
        # A fully sampled-out layer has no values; boxplot needs at least one.
        data = [d if len(d) else np.zeros(1) for d in data]
        bp = ax.boxplot(data, positions=pos + shift, widths=0.32, patch_artist=True,
                        showfliers=False, manage_ticks=False)
        for patch in bp["boxes"]:
            patch.set_facecolor(color)
        # boxplot makes no legend entry: draw an empty thick line for one.
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


def plot_per_layer(values: Sequence[tuple[dict, np.ndarray]], path: Path, title: str,
                   ylabel: str) -> Path:
    """Box plots of one value per node, a box per layer (``(layer entry, values)`` pairs, in
    layer order), log scale: e.g. the PageRank of every channel per layer."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(values) + 2), 4.5))
    data = [v if len(v) else np.zeros(1) for _, v in values]
    bp = ax.boxplot(data, widths=0.6, patch_artist=True, showfliers=True,
                    flierprops={"markersize": 2})
    for patch in bp["boxes"]:
        patch.set_facecolor(_GREEN)
    ax.set_xticks(np.arange(1, len(values) + 1))
    ax.set_xticklabels([l["name"] for l, _ in values], rotation=60, ha="right", fontsize=7)
    if all((v > 0).all() for v in data):
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_receptive_field(maps: dict[str, np.ndarray], layers: list[dict], neuron: str,
                         out_dir: Path) -> list[Path]:
    """A heat map of ``log10(1 + paths)`` per input position, summed over channels.

    Parameters
    ----------
    maps : dict
        Input layer name -> paths per input neuron (see
        :func:`loader.analysis.receptive_field_paths`).
    layers : list of dict
        The model's layers table (for the input shapes).
    neuron : str
        ``"LAYER:INDEX"``, for the title.

    Returns
    -------
    list of Path
        ``receptive_field.png``, or ``receptive_field_<input>.png`` per input when there are
        several.
    """
    plt = _pyplot()
    paths = []
    shapes = {l["name"]: l["output_shape"] for l in layers}
    first = {l["name"] for l in layers if l.get("channel_axis") == 0}
    for name, values in maps.items():
        shape = list(shapes[name])
        arr = values.reshape(shape)
        if name in first and arr.ndim >= 2:  # (C, rows, columns) -> (rows, columns, C)
            arr = np.moveaxis(arr, 0, -1)
            shape = list(arr.shape)
        if arr.ndim >= 3:  # (..., rows, columns, channels): an image per position
            image = arr.reshape(-1, shape[-3], shape[-2], shape[-1]).sum(axis=(0, 3))
        elif arr.ndim == 2:  # (steps, channels): one row
            image = arr.sum(axis=1)[None, :]
        else:
            image = arr[None, :]
        fig, ax = plt.subplots(figsize=(5.5, 4.8))
        im = ax.imshow(np.log10(1.0 + image), cmap="magma", interpolation="nearest")
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


def plot_metrics(G: nx.DiGraph, results: dict, out_dir: Path) -> Path | None:
    """One panel per metric: PageRank and betweenness summed per layer, community sizes.

    Parameters
    ----------
    G : networkx.DiGraph
        The subgraph (its nodes carry ``layer`` and ``layer_index``).
    results : dict
        :func:`loader.analysis.metrics.run_metrics`'s results.

    Returns
    -------
    Path or None
        ``metrics.png``; None when no metric ran.
    """
    plt = _pyplot()
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
            ax.bar(range(len(sizes)), sizes, color=_GREEN)
            ax.set_title(f"{len(sizes)} communities (Louvain): sizes")
            ax.set_xlabel("community")
            ax.set_ylabel("neurons")
        else:
            total = {n: 0.0 for n in names}
            for node, value in results[key].items():
                total[layer_of[node]] += value
            ax.bar(range(len(names)), [total[n] for n in names], color=_BLUE)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{key}: sum per layer")
    fig.tight_layout()
    return _save(fig, out_dir / "metrics.png")


def plot_gds_layers(layers: list[dict], out_dir: Path) -> Path | None:
    """Whole-model GDS results per layer: mean and max PageRank (log scale), mean in- and
    out-degree, communities (Louvain) among each layer's neurons.

    Parameters
    ----------
    layers : list of dict
        :attr:`loader.analysis.gds.GdsSummary.layers`.

    Returns
    -------
    Path or None
        ``gds_layers.png``; None without layers.
    """
    if not layers:
        return None
    plt = _pyplot()
    names = [r["layer"] for r in layers]
    x = np.arange(len(names))
    panels = 3 if any("communities" in r for r in layers) else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    ax = axes[0, 0]
    ax.bar(x - 0.2, [r.get("pagerank_mean", 0) for r in layers], 0.4, color=_BLUE, label="mean")
    ax.bar(x + 0.2, [r.get("pagerank_max", 0) for r in layers], 0.4, color=_ORANGE, label="max")
    ax.set_yscale("log")
    ax.set_title("PageRank per layer (GDS, whole model)")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    ax.bar(x - 0.2, [r.get("in_degree_mean", 0) for r in layers], 0.4, color=_BLUE,
           label="in")
    ax.bar(x + 0.2, [r.get("out_degree_mean", 0) for r in layers], 0.4, color=_GREEN,
           label="out")
    ax.set_title("mean degree per layer")
    ax.legend(fontsize=8)
    if panels == 3:
        ax = axes[0, 2]
        ax.bar(x, [r.get("communities", 0) for r in layers], color=_GREEN)
        ax.set_title("communities (Louvain) among the layer's neurons")
    for ax in axes.flat:
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir / "gds_layers.png")


# ---------------------------------------------------------------------------- traces
def plot_contribution_map(shown: np.ndarray, contribution: np.ndarray, title: str,
                          out_dir: Path, name: str = "contribution", *,
                          channels_first: bool = False) -> Path:
    """The input (an image, or values scaled to 0..1) beside its contribution map: value x
    gradient per input position, summed over channels, on a diverging scale around 0.

    ``channels_first``: the contribution is ``(C, rows, columns)``, as in ONNX's NCHW;
    otherwise channels are last, as in Keras. ``shown`` is rows x columns (x channels)."""
    plt = _pyplot()
    c = np.asarray(contribution, dtype=np.float64)
    if channels_first and c.ndim >= 2:
        c = np.moveaxis(c, 0, -1)
    if c.ndim >= 3:
        c = c.reshape(-1, *c.shape[-3:]).sum(axis=(0, 3))
    elif c.ndim == 2:
        c = c.sum(axis=1)[None, :]
    else:
        c = c[None, :]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    img = np.asarray(shown)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[-1] not in (3, 4):
        img = img.mean(axis=-1)
    if img.ndim == 2 and img.shape[0] != c.shape[0]:
        img = img.reshape(c.shape)
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
    axes[0].set_title("input", fontsize=9)
    vmax = float(np.abs(c).max()) or 1.0
    im = axes[1].imshow(c, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    axes[1].set_title("contribution (value x gradient), summed over channels", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / f"{name}.png")


def plot_active_fraction(rows: list[dict], out_dir: Path) -> Path | None:
    """The fraction of active neurons in each neuron layer, in layer order."""
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.28 * len(rows)), 4))
    ax.bar(range(len(rows)), [r["fraction"] for r in rows], color=_BLUE)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["layer"] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("active fraction")
    ax.set_title("Active neurons per layer (the activation's slope is not 0)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "active_fraction.png")


def plot_chosen_positions(pools: list[dict], out_dir: Path) -> Path | None:
    """Per max/min pooling layer: the share of its neurons that chose each window position
    (a grid for 2-d windows, bars otherwise)."""
    if not pools:
        return None
    plt = _pyplot()
    rows, cols = _grid(len(pools))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax, p in zip(axes.flat, pools):
        counts = np.asarray(p["counts"], dtype=np.float64)
        share = counts / max(1.0, counts.sum())
        _draw_window_shares(fig, ax, share, p.get("how"), "share of neurons")
        tied = p.get("tied")
        ax.set_title(f"{p['layer']}: {int(counts.sum()):,} choices"
                     + (f" (+{tied:,} ties)" if tied else ""), fontsize=9)
    for ax in list(axes.flat)[len(pools):]:
        ax.axis("off")
    fig.suptitle("Where max pooling takes its value: chosen window entries (ties, which go to "
                 "the first entry, left out)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "chosen_positions.png")


def _draw_window_shares(fig, ax, share: np.ndarray, how: str | None, ylabel: str) -> None:
    """One pooling layer's shares by window position: a heat map with percentages for a 2-d
    window, bars otherwise."""
    if share.ndim == 2:
        im = ax.imshow(share, cmap="viridis", vmin=0, interpolation="nearest")
        if share.size <= 49:
            for (r, c), v in np.ndenumerate(share):
                ax.text(c, r, f"{v:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if v < share.max() * 0.6 else "black")
        ax.set_xticks(range(share.shape[1]))
        ax.set_yticks(range(share.shape[0]))
        ax.set_xlabel("window column")
        ax.set_ylabel("window row")
        fig.colorbar(im, ax=ax, fraction=0.046)
    else:
        share = share.reshape(-1)
        ax.bar(range(len(share)), share, color=_ORANGE)
        ax.set_xlabel(how or "window position")
        ax.set_ylabel(ylabel)


def plot_chosen_rate_heatmaps(pools: list[dict], n_inputs: int, out_dir: Path) -> Path:
    """Per max/min pooling layer of an aggregated trace: the share of (neuron, input) choices
    at each window position (a heat map for 2-d windows, bars otherwise)."""
    plt = _pyplot()
    rows, cols = _grid(len(pools))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax, p in zip(axes.flat, pools):
        share = np.asarray(p["shares"], dtype=np.float64)
        if share.ndim == 3:  # a 3-d window: the shares of each (row, column), over depth
            share = share.sum(axis=0)
        _draw_window_shares(fig, ax, share, p.get("how"), "share of choices")
        ax.set_title(f"{p['layer']}: {p['never']:,} of {p['edges']:,} edges never chosen"
                     + (f"; padding {p['padding']:.1%}" if p.get("padding") else ""),
                     fontsize=8)
    for ax in list(axes.flat)[len(pools):]:
        ax.axis("off")
    fig.suptitle(f"Chosen rate by window position over {n_inputs:,} inputs", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "chosen_rate_positions.png")


def plot_active_rate_histograms(layers: list[dict], out_dir: Path) -> Path | None:
    """Per neuron layer of an aggregated trace: a histogram of its neurons' active rates
    (the bar at 0 is the neurons never active on the set)."""
    if not layers:
        return None
    plt = _pyplot()
    shown = layers[:_MAX_PANELS]
    rows, cols = _grid(len(shown))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    bins = np.linspace(0, 1, 21)
    for ax, r in zip(axes.flat, shown):
        ax.hist(np.asarray(r["rates"]), bins=bins, color=_BLUE)
        ax.set_title(f"{r['layer']}: {r['never_active']:,} of {r['neurons']:,} never active",
                     fontsize=8)
        ax.set_xlabel("active rate", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle("Active rate per neuron (fraction of the inputs where its slope is not 0)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "active_rates.png")


def plot_effective_sizes(rows: list[dict], out_dir: Path) -> Path | None:
    """Per layer: the share of neurons and of edges the effective graph keeps."""
    if not rows:
        return None
    plt = _pyplot()
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.35 * len(rows)), 4))
    neurons = [r["kept_neurons"] / r["neurons"] if r["neurons"] else 1.0 for r in rows]
    edges = [r["kept_edges"] / r["edges"] if r["edges"] else 1.0 for r in rows]
    ax.bar(x - 0.2, neurons, 0.4, color=_BLUE, label="neurons kept")
    ax.bar(x + 0.2, edges, 0.4, color=_GREEN, label="edges kept")
    ax.set_xticks(x)
    ax.set_xticklabels([r["layer"] for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("The effective graph per layer", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "effective_graph.png")
