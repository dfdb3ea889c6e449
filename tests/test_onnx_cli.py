"""Every command takes an ONNX file: plan, export (GraphML, Parquet, channel granularity),
load (online; bulk is slow), trace (.npy and image inputs, contributions), analyze; a model
with dynamic dimensions takes --input-shape C,H,W; bad ONNX input is one line on stderr, a
non-zero exit and nothing written; and none of it imports TensorFlow.

The model is a small PyTorch-style graph written with ``onnx.helper`` (NCHW, padded Conv,
ceil-mode MaxPool, Flatten, Gemm with transB, Softmax). The oracle is onnxruntime (every
tensor, tests/onnx_oracle.py), PIL for the image, and finite differences of onnxruntime's
output for the contributions; what the commands wrote is read back with networkx, pyarrow
and plain Cypher.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from loader.analysis.dataset import read_arrays
from loader.cli import main
from loader.graph.forward import execute_arrays
from neo4j_helpers import read_back
from onnx_oracle import all_tensor_values

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (3, 7, 7)


def tiny_onnx(*, dynamic=False, extra=None) -> onnx.ModelProto:
    """x (N, 3, 7, 7) -> Conv 3x3 pad 1 + Relu -> MaxPool 2x2 ceil_mode -> Flatten ->
    Gemm(transB) -> Softmax. ``dynamic``: H and W are symbolic; ``extra``: a node appended
    after the Softmax (its output becomes the graph's)."""
    rng = np.random.default_rng(0)
    inits = {"W": rng.normal(0, 0.4, (4, 3, 3, 3)), "B": rng.normal(0, 0.2, 4),
             "G": rng.normal(0, 0.3, (5, 64)), "C": rng.normal(0, 0.2, 5)}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2],
                              strides=[2, 2], ceil_mode=1),
             helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "G", "C"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["prob"], axis=-1)]
    out = "prob"
    if extra is not None:
        nodes.append(extra)
        out = extra.output[0]
    dims = ["N", 3, "H", "W"] if dynamic else ["N", *SHAPE]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx_cli")
    onnx.save(tiny_onnx(), d / "tiny.onnx")
    onnx.save(tiny_onnx(dynamic=True), d / "dynamic.onnx")
    onnx.save(tiny_onnx(extra=helper.make_node("LRN", ["prob"], ["lrn"], size=3)),
              d / "unsupported.onnx")
    (d / "corrupt.onnx").write_bytes(b"\x08\x07not a protobuf at all" * 40)
    rng = np.random.default_rng(3)
    x = rng.normal(size=SHAPE).astype(np.float32)
    np.save(d / "x.npy", x)
    Image.fromarray((rng.random((20, 16, 3)) * 255).astype(np.uint8)).save(d / "img.png")
    return d


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def reference(files, x) -> dict:
    """onnxruntime's value of every tensor of tiny.onnx, batch axis dropped."""
    ref = all_tensor_values(onnx.load(files / "tiny.onnx"), {"x": np.asarray(x, np.float32)[None]})
    return {k: v[0].astype(np.float64) for k, v in ref.items()}


def assert_layers_match(ours: dict, ref: dict, layers: list[dict]):
    """Every neuron layer's values (batched, from execute_arrays) equal onnxruntime's."""
    checked = 0
    for layer in layers:
        if layer["kind"] == "input" or layer["op"] is None:  # shape-only layers hold none
            continue
        want = ref[layer["name"]]
        got = np.asarray(ours[layer["name"]])[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max(),
                                   err_msg=layer["name"])
        checked += 1
    assert checked == 3  # relu, pool, prob


def graphml_arrays(path):
    G = nx.read_graphml(path, node_type=int)
    layers = json.loads(G.graph["layers"])
    ids = sorted(G.nodes)
    nodes = {"id": np.array(ids)}
    for key in ("layer_index", "index", "bias", "activation"):
        nodes[key] = np.array([G.nodes[n][key] for n in ids])
    src, dst, w = zip(*G.edges(data="weight"))
    return G, layers, nodes, {"src": np.array(src), "dst": np.array(dst), "weight": np.array(w)}


# ---------------------------------------------------------------------------- plan
def _in_bounds(n, k, stride, pad_lo, n_out):
    """Per output position along one axis: how many kernel taps land inside the input."""
    return [sum(0 <= o * stride - pad_lo + t < n for t in range(k)) for o in range(n_out)]


def test_plan_sizes_match_onnxruntime_shapes_and_counted_edges(files):
    plan = json.loads(cli("plan", files / "tiny.onnx", "--json"))
    ref = reference(files, np.zeros(SHAPE))
    layers = {l["name"]: l for l in plan["layers"]}
    assert tuple(plan["input_shape"]) == SHAPE
    for name in ("relu", "pool", "flat", "prob"):
        assert tuple(layers[name]["output_shape"]) == ref[name].shape
    assert layers["relu"]["neurons"] == 4 * 7 * 7 and layers["prob"]["neurons"] == 5
    conv_taps = np.outer(_in_bounds(7, 3, 1, 1, 7), _in_bounds(7, 3, 1, 1, 7)).sum()
    pool_taps = np.outer(_in_bounds(7, 2, 2, 0, 4), _in_bounds(7, 2, 2, 0, 4)).sum()
    assert layers["relu"]["edges"] == conv_taps * 3 * 4
    assert layers["pool"]["edges"] == pool_taps * 4
    assert layers["prob"]["edges"] == 64 * 5
    assert layers["flat"]["neurons"] == 0  # shape only: it shows the pool's neurons
    assert plan["edges"] == conv_taps * 12 + pool_taps * 4 + 320


def test_dynamic_dimensions_take_input_shape_in_chw(files):
    fixed = json.loads(cli("plan", files / "tiny.onnx", "--json"))
    dyn = json.loads(cli("plan", files / "dynamic.onnx", "--input-shape", "3,7,7", "--json"))
    assert [(l["output_shape"], l["neurons"], l["edges"]) for l in dyn["layers"]] == \
        [(l["output_shape"], l["neurons"], l["edges"]) for l in fixed["layers"]]
    # A larger input: Conv keeps H, W; ceil-mode pool gives 4 x 5 x 5 = 100 values; the
    # Gemm's 64 inputs no longer fit, which is the Gemm's one-line refusal.
    r = CliRunner().invoke(main, ["plan", str(files / "dynamic.onnx"), "--input-shape", "3,9,9"])
    assert r.exit_code != 0
    assert "(Gemm)" in r.output and "(100)" in r.output
    assert "C,H,W" in CliRunner().invoke(main, ["plan", "--help"]).output


# ---------------------------------------------------------------------------- export
def test_export_graphml_executes_to_onnxruntime(files, tmp_path):
    out = tmp_path / "tiny.graphml.gz"
    cli("export", files / "tiny.onnx", "-o", out, "--quiet")
    G, layers, nodes, edges = graphml_arrays(out)
    x = np.load(files / "x.npy")
    assert_layers_match(execute_arrays(layers, nodes, edges, x[None]), reference(files, x),
                        layers)
    assert {l["name"]: l.get("channel_axis") for l in layers}["relu"] == 0


def test_export_parquet_executes_to_onnxruntime(files, tmp_path):
    out = tmp_path / "tiny.parquet"
    cli("export", files / "tiny.onnx", "-o", out, "--format", "parquet", "--quiet")
    layers, nodes, edges = read_arrays(out)
    x = np.load(files / "x.npy")
    assert_layers_match(execute_arrays(layers, nodes, edges, x[None]), reference(files, x),
                        layers)


def test_export_channel_graph_kernels_are_the_onnx_weights(files, tmp_path):
    out = tmp_path / "tiny.channels.graphml"
    cli("export", files / "tiny.onnx", "--granularity", "channel", "-o", out, "--quiet")
    G = nx.read_graphml(out, node_type=int)
    W = numpy_helper.to_array(next(i for i in onnx.load(files / "tiny.onnx").graph.initializer
                                   if i.name == "W"))
    node = {(d["layer"], d["channel"]): n for n, d in G.nodes(data=True)}
    assert sum(d["layer"] == "x" for _, d in G.nodes(data=True)) == 3
    assert sum(d["layer"] == "relu" for _, d in G.nodes(data=True)) == 4
    for ci in range(3):
        for co in range(4):
            e = G.edges[node["x", ci], node["relu", co]]
            kernel = np.array(json.loads(e["kernel"]))
            np.testing.assert_array_equal(kernel, W[co, ci].ravel().astype(np.float64))
            assert e["weight"] == pytest.approx(np.abs(W[co, ci].astype(np.float64)).sum(),
                                                rel=1e-12)
    for c in range(4):  # pooling: channel c feeds channel c only
        assert set(G.successors(node["relu", c])) == {node["pool", c]}


# ---------------------------------------------------------------------------- trace
def _finite_difference_contributions(files, x, target, eps):
    """x * d prob[target] / dx by central differences of onnxruntime's output."""
    model = onnx.load(files / "tiny.onnx")
    xs = np.repeat(x[None], 2 * x.size, axis=0).astype(np.float64)
    flat = xs.reshape(2 * x.size, -1)
    k = np.arange(x.size)
    flat[2 * k, k] += eps
    flat[2 * k + 1, k] -= eps
    prob = all_tensor_values(model, {"x": xs.astype(np.float32)})["prob"][:, target]
    return (x.ravel() * (prob[0::2] - prob[1::2]) / (2 * eps)).reshape(x.shape)


def test_trace_npy_values_and_contributions(files, tmp_path):
    out = tmp_path / "trace.graphml"
    text = cli("trace", files / "tiny.onnx", "--input", files / "x.npy", "--target", "prob:2",
               "--layers", "x:prob", "-o", out, "--quiet")
    assert "target prob:2" in text
    x = np.load(files / "x.npy").astype(np.float64)
    ref = reference(files, x)
    G = nx.read_graphml(out, node_type=int)
    by_layer = {}
    for _, d in G.nodes(data=True):
        by_layer.setdefault(d["layer"], []).append(d)
    for name in ("x", "relu", "pool", "prob"):
        rows = sorted(by_layer[name], key=lambda d: d["index"])
        want = (x if name == "x" else ref[name]).ravel()
        values = np.array([d["value"] for d in rows])
        np.testing.assert_allclose(values, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
        assert [d["index"] for d in rows] == list(range(want.size))
    relu = sorted(by_layer["relu"], key=lambda d: d["index"])
    np.testing.assert_array_equal([d["active"] for d in relu], ref["relu"].ravel() > 0)
    # chosen: each pool neuron's one chosen in-edge comes from the first maximal input
    # (inputs in id order, the window's order), whose value is onnxruntime's max.
    pools = [n for n, d in G.nodes(data=True) if d["layer"] == "pool"]
    assert len(pools) == 64
    for n in pools:
        into = sorted(G.predecessors(n))
        values = [G.nodes[u]["value"] for u in into]
        chosen = [u for u in into if G.edges[u, n]["chosen"]]
        assert chosen == [into[int(np.argmax(values))]]
        assert G.nodes[chosen[0]]["value"] == pytest.approx(
            ref["pool"].ravel()[G.nodes[n]["index"]], rel=1e-5, abs=1e-7)
    got = np.array([d["contribution"] for d in sorted(by_layer["x"], key=lambda d: d["index"])])
    a = _finite_difference_contributions(files, x, 2, 1e-2).ravel()
    b = _finite_difference_contributions(files, x, 2, 5e-3).ravel()
    smooth = np.abs(a - b) <= 1e-3 * np.abs(a).max()  # no kink crossed within eps
    assert smooth.mean() > 0.9
    np.testing.assert_allclose(got[smooth], b[smooth], atol=3e-3 * np.abs(b).max())


def test_trace_image_is_resized_and_moved_channels_first(files, tmp_path):
    out = tmp_path / "img.graphml"
    cli("trace", files / "tiny.onnx", "--input", files / "img.png", "--layers", "x:relu",
        "-o", out, "--quiet")
    img = Image.open(files / "img.png").convert("RGB").resize((7, 7), Image.BILINEAR)
    want = np.asarray(img, dtype=np.float64).transpose(2, 0, 1)  # (C, H, W), 0..255
    G = nx.read_graphml(out, node_type=int)
    rows = sorted((d for _, d in G.nodes(data=True) if d["layer"] == "x"),
                  key=lambda d: d["index"])
    np.testing.assert_array_equal(np.array([d["value"] for d in rows]), want.ravel())
    relu = {d["index"]: d["value"] for _, d in G.nodes(data=True) if d["layer"] == "relu"}
    ref = reference(files, want)["relu"].ravel()
    np.testing.assert_allclose([relu[i] for i in range(ref.size)], ref, rtol=1e-5,
                               atol=1e-6 * np.abs(ref).max())


# ---------------------------------------------------------------------------- analyze
def test_analyze_onnx_with_trace_writes_every_section(files, tmp_path):
    out = tmp_path / "report"
    cli("analyze", files / "tiny.onnx", "--neuron", "prob:2", "--trace", files / "x.npy",
        "--metrics", "pagerank", "-o", out)
    text = (out / "report.md").read_text()
    for png in ("receptive_field.png", "contribution.png", "active_fraction.png",
                "chosen_positions.png", "metrics.png"):
        assert (out / png).is_file(), png
        assert png in text


def _captured_image(monkeypatch, draw):
    """The array the first imshow of ``draw()`` showed (plots save and close their figures)."""
    from loader.analysis import plots

    shown = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: shown.append(
        [np.asarray(im.get_array()) for ax in fig.axes for im in ax.images]) or path)
    draw()
    return shown[0]


def test_maps_of_a_channels_first_input_are_rows_by_columns(monkeypatch, tmp_path):
    from loader.analysis import plots

    c, h, w = 3, 5, 8
    paths = np.arange(c * h * w, dtype=np.float64)
    layers = [{"name": "x", "output_shape": [c, h, w], "channel_axis": 0}]
    (image,) = _captured_image(monkeypatch, lambda: plots.plot_receptive_field(
        {"x": paths}, layers, "y:0", tmp_path))
    want = np.log10(1 + paths.reshape(c, h, w).sum(axis=0))
    np.testing.assert_allclose(image, want)
    contribution = paths.reshape(c, h, w)
    shown = np.zeros((h, w, 3))
    _, cmap = _captured_image(monkeypatch, lambda: plots.plot_contribution_map(
        shown, contribution, "t", tmp_path, channels_first=True))
    np.testing.assert_allclose(cmap, contribution.sum(axis=0))


# ---------------------------------------------------------------------------- load
def test_load_online_then_trace_and_analyze_from_neo4j(files, driver, model_name, tmp_path):
    name = model_name("onnx")
    text = cli("load", files / "dynamic.onnx", "--input-shape", "3,7,7", "--name", name,
               "--quiet")
    assert f"loaded '{name}'" in text
    layers, nodes, edges = read_back(driver, name)
    x = np.load(files / "x.npy")
    assert_layers_match(execute_arrays(layers, nodes, edges, x[None]), reference(files, x),
                        layers)
    assert "every layer matches" in cli("verify", "--name", name)
    trace = f"{name}_t"
    cli("trace", "--model", name, "--input", files / "x.npy", "--name", trace,
        "--target", "prob:2", "--quiet")
    try:
        out = tmp_path / "report"
        cli("analyze", "--name", name, "--neuron", "prob:2", "--trace", trace, "--metrics", "",
            "--no-gds", "-o", out)
        assert (out / "contribution.png").is_file() and (out / "receptive_field.png").is_file()
    finally:
        cli("trace", "delete", "--name", trace)


@pytest.mark.slow
@pytest.mark.rebuilds_database
def test_load_bulk_reads_back_to_onnxruntime(files, tmp_path):
    from loader.neo4j.db import connect

    name = "onnx_bulk"
    cli("load", files / "tiny.onnx", "--mode", "bulk", "--replace", "--name", name, "--quiet")
    d = connect()  # the database was rebuilt under any earlier driver
    try:
        layers, nodes, edges = read_back(d, name)
        x = np.load(files / "x.npy")
        assert_layers_match(execute_arrays(layers, nodes, edges, x[None]),
                            reference(files, x), layers)
        assert "every layer matches" in cli("verify", "--name", name)
        cli("delete", "--name", name)
    finally:
        d.close()


# ---------------------------------------------------------------------------- bad input
def _weightgraph(*args, cwd):
    return subprocess.run([sys.executable, "-m", "loader", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case, args, words", [
    ("corrupt", ["corrupt.onnx"], ["not a readable ONNX model"]),
    ("unsupported", ["unsupported.onnx"], ["(LRN)", "cannot be expressed"]),
    ("dynamic", ["dynamic.onnx"], ["dynamic dimensions", "--input-shape"]),
    ("wrong rank", ["dynamic.onnx", "--input-shape", "7,7"], ["--input-shape 7,7"]),
])
def test_bad_onnx_input_is_one_line_and_writes_nothing(files, driver, tmp_path, case, args,
                                                       words):
    name = f"bad_{case.replace(' ', '_')}"
    for command, target in (["plan"], None), (["export", "-o", "g.graphml"], "g.graphml"), \
            (["export", "-o", "p.parquet", "--format", "parquet"], "p.parquet"), \
            (["load", "--name", name], None):
        args_ = [files / a if a.endswith(".onnx") else a for a in args]
        r = _weightgraph(*command[:1], *args_, *command[1:], cwd=tmp_path)
        assert r.returncode != 0, (command, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, (command, r.stderr)
        assert all(w in lines[0] for w in words), lines[0]
        assert "Traceback" not in r.stderr and r.stdout == ""
        if target:
            assert not (tmp_path / target).exists()
        assert list(tmp_path.iterdir()) == []
    assert not driver.execute_query("MATCH (m:Model {name: $n}) RETURN m", n=name).records


# ---------------------------------------------------------------------------- no TensorFlow
NO_TF = """
import importlib.abc, json, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
from loader.cli import main

model, out, name = sys.argv[1:4]
for args in (["plan", "--json"],
             ["export", "-o", out + "/g.graphml.gz", "--quiet"],
             ["export", "-o", out + "/d.parquet", "--format", "parquet", "--quiet"],
             ["export", "--granularity", "channel", "-o", out + "/c.graphml", "--quiet"],
             ["load", "--name", name, "--quiet"]):
    main([args[0], model, "--input-shape", "3,7,7", *args[1:]], standalone_mode=False)
from loader.graph.neuron_graph import NeuronGraph
NeuronGraph.from_model(model, input_shape=(3, 7, 7)).plan()
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))))
"""


def test_onnx_needs_no_tensorflow(files, driver, model_name, tmp_path):
    name = model_name("notf")
    script = tmp_path / "no_tf.py"
    script.write_text(textwrap.dedent(NO_TF))
    r = subprocess.run([sys.executable, str(script), str(files / "dynamic.onnx"),
                        str(tmp_path), name], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
    # ... and it did the work: the files are there and the model is loaded, whole.
    assert (tmp_path / "g.graphml.gz").stat().st_size > 0
    assert (tmp_path / "d.parquet" / "graph.json").is_file()
    assert (tmp_path / "c.graphml").stat().st_size > 0
    layers, nodes, edges = read_back(driver, name)
    assert len(edges["src"]) == sum(l["edges"] for l in layers) > 0


# ---------------------------------------------------------------------------- Python API
def test_python_api_takes_an_onnx_path_or_model_proto(files, tmp_path):
    import loader

    path = files / "tiny.onnx"
    proto = onnx.load(path)
    x = np.load(files / "x.npy")
    ref = reference(files, x)
    for model in (path, str(path), proto):
        g = loader.NeuronGraph.from_model(model)
        G = loader.to_networkx(g)
        assert G.number_of_edges() == g.plan().edges
        layers = G.graph["layers"]
        layers = json.loads(layers) if isinstance(layers, str) else layers
        assert_layers_match(loader.execute_networkx(G, x[None]), ref, layers)
    edges = list(loader.keras_edges(path))  # the streaming door takes any model file
    assert len(edges) == G.number_of_edges()
    ch = loader.ChannelGraph.from_model(proto)
    assert ch.plan().granularity == "channel" and ch.plan().nodes == 3 + 4 + 4 + 5
    t = loader.trace(loader.NeuronGraph.from_model(path), x, target="prob:2")
    np.testing.assert_allclose(t.layer("prob"), ref["prob"], rtol=1e-5)
    loader.write_parquet(g, tmp_path / "api.parquet", progress=False)
    layers, nodes, arrays = loader.read_arrays(tmp_path / "api.parquet")
    assert_layers_match(execute_arrays(layers, nodes, arrays, x[None]), ref, layers)
    report = loader.analyze(g, tmp_path / "report", neuron="prob:2", metrics=(), trace=t)
    assert (tmp_path / "report" / "contribution.png").is_file() and Path(report).is_file()
