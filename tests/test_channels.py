"""The channel graph equals the neuron graph aggregated by (layer, channel), and its kernels are
Keras's weights.

Oracles: the neuron graph's own edges (which the forward-equivalence tests check against Keras)
summed per (source channel, target channel) with plain numpy here, never with the channel
code; the kernels come from ``layer.get_weights()`` directly. Every layer configuration of the
forward oracle (tests/test_forward_equivalence.py, each case's model captured as it is built)
and the 14 application models at small inputs.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

import test_applications as apps
import test_forward_equivalence as fe
from loader.graph.channels import ChannelGraph
from loader.graph.neuron_graph import NeuronGraph

RTOL = 1e-5


# ----------------------------------------------------------------------------- oracles
def aggregate_neuron_edges(ng: NeuronGraph):
    """Every neuron edge summed per (source channel, target channel), a neuron's channel
    being its index modulo its layer's last axis.

    Returns ``(codes, src, dst, edges, total)``: ``codes`` maps a layer name to the code of its
    channel 0 (layers in the neuron graph's order); the arrays list the channel pairs that
    have edges, sorted by (src, dst). Sums go into one dense (source channels x target
    channels) table per pair of layers with ``np.bincount`` per batch (~10 ns per edge).
    """
    layers = [(e.op.offset, e.name, e.op.out_shape[-1] if e.op.out_shape else 1)
              for e in ng.entries if e.op is not None]
    offsets = np.array([o for o, _, _ in layers])
    channels = [c for _, _, c in layers]
    base = np.concatenate([[0], np.cumsum(channels)[:-1]]).astype(np.int64)
    tables: dict = {}
    for b in ng.iter_edge_batches(reuse_buffers=True):
        dst_layer = int(np.searchsorted(offsets, b.dst[0], side="right") - 1)
        c_dst = channels[dst_layer]
        dst = (b.dst - offsets[dst_layer]) % c_dst
        src_layer = np.searchsorted(offsets, b.src, side="right") - 1
        for a in np.unique(src_layer).tolist():
            sel = src_layer == a
            c_src = channels[a]
            key = ((b.src[sel] - offsets[a]) % c_src) * c_dst + dst[sel]
            n, t = tables.setdefault((a, dst_layer), (np.zeros(c_src * c_dst, np.int64),
                                                      np.zeros(c_src * c_dst)))
            n += np.bincount(key, minlength=len(n))
            t += np.bincount(key, weights=b.weight[sel].astype(np.float64), minlength=len(t))
    parts = []
    for (a, d), (n, t) in tables.items():
        k = np.flatnonzero(n)
        parts.append((base[a] + k // channels[d], base[d] + k % channels[d], n[k], t[k]))
    src, dst, n, t = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((dst, src))
    codes = {name: int(b0) for (_, name, _), b0 in zip(layers, base)}
    return codes, src[order], dst[order], n[order], t[order]


def keras_layers(model) -> dict:
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.update(keras_layers(layer))
        out.setdefault(layer.name, layer)
    return out


def keras_kernels(layer, stage: str):
    """(kernel as (taps, cin, cout) float32 in Keras's order, groups) of a Keras layer."""
    cls = type(layer).__name__
    ws = {w.path.split("/")[-1]: w.numpy() for w in layer.weights}
    if cls.startswith("BatchNormalization"):
        eps = layer.epsilon
        gamma = ws.get("gamma", np.ones_like(ws["moving_variance"]))
        return gamma / np.sqrt(ws["moving_variance"] + eps), "bn"
    if cls == "Normalization":
        # Keras computes with layer.variance (set from the adapted state), not the weights list
        var = keras.ops.convert_to_numpy(layer.variance).reshape(-1)
        return 1.0 / np.maximum(np.sqrt(var), keras.backend.epsilon()), "bn"
    if cls.startswith("SeparableConv"):
        k = ws["depthwise_kernel"] if stage == "depthwise" else ws["pointwise_kernel"]
        kind = "depthwise" if stage == "depthwise" else "conv"
    elif cls.startswith("DepthwiseConv"):
        k, kind = ws["kernel"], "depthwise"
    elif "Transpose" in cls:
        k, kind = np.swapaxes(ws["kernel"], -1, -2), "conv"
    else:
        k, kind = ws["kernel"], "conv"
    return k.reshape(-1, k.shape[-2], k.shape[-1]), kind


def check_kernels(cg: ChannelGraph, model):
    """Every channel edge's kernel is the Keras weights between the two channels."""
    by_name = keras_layers(model)
    rows_of: dict = {}
    for b in cg.iter_edge_batches():
        entry = cg.entries[b.layer_index]
        base = entry.name.split("@")[0]
        stage = "depthwise" if base.endswith("/depthwise") else ""
        layer = by_name.get(base.removesuffix("/depthwise"))
        has_weights = layer is not None and type(layer).__name__ in (
            "BatchNormalization", "Normalization") or (layer is not None and any(
                "kernel" in w.path for w in layer.weights))
        if not has_weights:
            assert b.kernel is None, entry.name
            np.testing.assert_array_equal(b.weight, 1.0)
            continue
        k, kind = keras_kernels(layer, stage)
        assert b.kernel is not None, entry.name
        np.testing.assert_allclose(b.weight, np.abs(b.kernel.astype(np.float64)).sum(1),
                                   rtol=1e-6)
        j = b.dst - cg.channel_offset(b.layer_index)
        if kind == "bn":
            w = np.asarray(k, dtype=np.float32).reshape(-1)
            flat = w[j] if w.size == cg.n_channels(b.layer_index) else None
            if flat is not None and b.kernel.shape[1] == 1:
                np.testing.assert_allclose(b.kernel[:, 0], flat, rtol=1e-6)
            else:  # BN over another axis: the channel's neurons use every entry
                np.testing.assert_allclose(b.kernel, np.tile(w, (len(b), 1)), rtol=1e-6)
            continue
        taps, cin, cout = k.shape
        if kind == "depthwise":  # output j = input channel (j // dm), multiplier j % dm
            dm = cout
            expect = k[:, j // dm, j % dm].T
            np.testing.assert_array_equal(b.kernel, expect)
            continue
        width = b.kernel.shape[1]
        order = np.argsort(b.src, kind="stable")
        sources, starts = np.unique(b.src[order], return_index=True)
        for src, es in zip(sources.tolist(), np.split(order, starts[1:])):
            got = b.kernel[es].reshape(len(es), taps, width // taps)
            if width == taps:
                # One input channel: kernel[..., ci, j] for one ci per source channel, the
                # same ci for every target channel.
                first = got[0, :, 0]
                cands = np.flatnonzero((k[:, :, j[es[0]]].T == first).all(axis=1)).tolist()
                ok = [ci for ci in cands
                      if np.array_equal(got[:, :, 0], k[:, ci, j[es]].T)]
                assert ok, (entry.name, src)
                known = rows_of.setdefault((b.layer_index, src), set(ok))
                known &= set(ok)
                assert known, (entry.name, src)
            else:
                # Dense after Flatten: the rows of the flattened input that hold channel i
                # of the source layer (i, i + C, i + 2C, ... for a (..., C) source).
                m = width // taps
                rows = list(range(_local_channel(cg, src), cin, cin // m))
                expect = k[:, rows, :][:, :, j[es]].transpose(2, 0, 1)
                np.testing.assert_array_equal(got, expect)


def _local_channel(cg: ChannelGraph, channel_id: int) -> int:
    starts = sorted((cg.channel_offset(i), i) for i in cg.node_masks)
    offset = max(o for o, _ in starts if o <= channel_id)
    return channel_id - offset


def assert_channel_graph_exact(model, **kwargs):
    ng = NeuronGraph.from_model(model, **kwargs)
    cg = ChannelGraph(ng)
    codes, src, dst, n, total = aggregate_neuron_edges(ng)
    # The product's channel id -> the oracle's code, through the layer names.
    to_code = np.full(cg.total_channels, -1, dtype=np.int64)
    for i, e in enumerate(cg.entries):
        if e.op is not None:
            c = cg.n_channels(i)
            to_code[cg.channel_offset(i):cg.channel_offset(i) + c] = codes[e.name] + np.arange(c)
    assert (to_code >= 0).all() and len(np.unique(to_code)) == len(to_code)
    got = [(to_code[b.src], to_code[b.dst], b.edges, b.total) for b in cg.iter_edge_batches()]
    g_src, g_dst, g_n, g_total = (np.concatenate(x) for x in zip(*got))
    order = np.lexsort((g_dst, g_src))
    np.testing.assert_array_equal(g_src[order], src)
    np.testing.assert_array_equal(g_dst[order], dst)
    np.testing.assert_array_equal(g_n[order], n)
    np.testing.assert_allclose(g_total[order], total, rtol=RTOL,
                               atol=RTOL * max(1e-3, float(np.abs(total).max())))
    assert cg.n_edges == len(src)
    assert cg.n_nodes == cg.total_channels == sum(len(b) for b in cg.iter_node_batches())
    check_kernels(cg, model)
    return cg


# ----------------------------------------------------------------------------- cases
def _forward_cases():
    """(test function, kwargs) of every forward-oracle case."""
    cases = []
    for fn_name, table in (("test_convolution_matches_keras", fe.CONV_CASES),
                           ("test_pooling_matches_keras", fe.POOL_CASES),
                           ("test_elementwise_layer_matches_keras", fe.ELEMENTWISE_CASES),
                           ("test_shape_only_layer_matches_keras", fe.SHAPE_CASES)):
        cases += [pytest.param(fn_name, {"case": c}, id=c) for c in sorted(table)]
    cases += [pytest.param("test_merge_layers_match_keras", {"merge": m}, id=m)
              for m in ("Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply")]
    for name, fn in sorted(vars(fe).items()):
        if name.startswith("test_") and callable(fn) and not inspect.signature(fn).parameters:
            # A case keeps its test's marks (slow: it builds a keras.applications model).
            cases.append(pytest.param(name, {}, id=name.removeprefix("test_"),
                                      marks=getattr(fn, "pytestmark", [])))
    return cases


@pytest.mark.parametrize("fn_name,kwargs", _forward_cases())
def test_channel_graph_equals_aggregated_neuron_graph(fn_name, kwargs, monkeypatch):
    seen = []

    def check_instead(model, x=None, **_):
        seen.append(model)
        return assert_channel_graph_exact(model).neurons

    monkeypatch.setattr(fe, "assert_equivalent", check_instead)
    getattr(fe, fn_name)(**kwargs)
    assert seen


# VGG's 3e8 neuron edges at 32x32 cost the numpy oracle a minute with the dense top; the top
# (Dense after Flatten) is covered by the forward cases and by the 224x224 figures test.
NO_TOP = {"VGG16", "VGG19"}


@pytest.mark.slow  # builds a whole keras.applications model
@pytest.mark.parametrize("name", sorted(apps.SUPPORTED))
def test_application_channel_graph_equals_aggregated_neuron_graph(name):
    model = getattr(keras.applications, name)(weights=None, input_shape=apps.SUPPORTED[name],
                                              include_top=name not in NO_TOP)
    fe.randomise_weights(model)
    assert_channel_graph_exact(model)


@pytest.mark.slow  # builds a whole keras.applications model
def test_vgg16_at_224_figures_without_enumerating():
    g = ChannelGraph.from_model("vgg16", weights=None)
    assert (g.n_nodes, g.n_edges) == (14_891, 24_606_336)
    top = g.plan()
    assert top.granularity == "channel" and top.nodes == 14_891 and top.edges == 24_606_336
    assert top.layer("fc2").edges == 4096 * 4096
    assert top.layer("block1_conv2").edges == 64 * 64


def test_channel_cone_and_layer_range():
    model = fe.seq((8, 8, 2), keras.layers.Conv2D(3, 3, padding="same"),
                   keras.layers.MaxPooling2D(2), keras.layers.Conv2D(4, 1))
    full = assert_channel_graph_exact(model)
    last = [e.name for e in full.entries if e.op is not None][-1]
    cone = ChannelGraph(NeuronGraph.from_model(model), cone=f"{last}:2")
    # conv(4,1) channel 2 reads the 3 pooled channels, each one conv channel, which reads
    # the 2 input channels: 1 + 3 + 3 + 2 nodes, 3 + 3 + 6 edges.
    assert (cone.n_nodes, cone.n_edges) == (9, 12)
    assert sum(len(b) for b in cone.iter_edge_batches()) == 12
    shallow = ChannelGraph(NeuronGraph.from_model(model), cone=f"{last}:2:1")
    assert (shallow.n_nodes, shallow.n_edges) == (4, 3)
    pooled = [e.name for e in full.entries if e.op is not None][2]
    rng = ChannelGraph(NeuronGraph.from_model(model), layers=f"{pooled}:{last}")
    assert (rng.n_nodes, rng.n_edges) == (3 + 4 + 3, 3 + 12)


def test_channel_graphml_and_networkx_carry_the_same_graph(tmp_path):
    import json

    import networkx as nx

    from loader.sinks.graphml import write_graphml
    from loader.sinks.networkx import to_networkx

    model = fe.seq((6, 6, 2), keras.layers.Conv2D(3, 3, padding="same"),
                   keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(2),
                   keras.layers.Flatten(), keras.layers.Dense(2))
    cg = ChannelGraph(NeuronGraph.from_model(model))
    G = to_networkx(cg)
    path = tmp_path / "c.graphml.gz"
    stats = write_graphml(cg, path, progress=False)
    H = nx.read_graphml(path, node_type=int)
    assert (stats["nodes"], stats["edges"]) == (cg.n_nodes, cg.n_edges)
    assert G.number_of_edges() == H.number_of_edges() == cg.n_edges
    assert H.graph["granularity"] == G.graph["granularity"] == "channel"
    for u, v, d in G.edges(data=True):
        h = H.edges[u, v]
        assert (h["edges"], h["total"], h["weight"]) == (d["edges"], d["total"], d["weight"])
        assert json.loads(h["kernel"]) == d["kernel"] if "kernel" in d else "kernel" not in h
    for n, d in G.nodes(data=True):
        assert H.nodes[n] == d
    conv = next(e.name for e in cg.entries if e.class_name == "Conv2D")
    k = model.get_layer(conv).get_weights()[0]
    ids = {(d["layer"], d["channel"]): n for n, d in G.nodes(data=True)}
    src = ids[(cg.entries[0].name, 1)]
    assert G.edges[src, ids[(conv, 2)]]["kernel"] == k[..., 1, 2].reshape(-1).tolist()


@pytest.mark.slow  # builds a whole keras.applications model
def test_plan_command_at_channel_granularity():
    from click.testing import CliRunner

    from loader.cli import main

    out = CliRunner().invoke(main, ["plan", "vgg16", "--weights", "none", "--no-top",
                                    "--input-shape", "224,224,3", "--granularity", "channel",
                                    "--json"])
    assert out.exit_code == 0, out.output
    import json

    p = json.loads(out.output[out.output.index("{"):])
    assert (p["granularity"], p["nodes"], p["edges"]) == ("channel", 5_699, 1_635_968)
