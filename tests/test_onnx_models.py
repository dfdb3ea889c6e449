"""Real exported networks through the ONNX front end: Keras models exported with
``model.export(path, format="onnx")`` (tf2onnx).

Two oracles, both independent of weightgraph: onnxruntime's value of every named tensor of
the export (tests/onnx_oracle.py), and Keras itself. For each model:

* the graph of the ``.onnx`` file executes to onnxruntime's value of every tensor that names
  one of its layers;
* the graph of the Keras model and the graph of its export agree: the same final outputs for
  the same input (both also equal to Keras's own), and the same neurons and edges per layer
  kind, but for the differences the exporter makes, asserted here exactly (see
  :func:`assert_sizes_agree`).

Exporting keras.applications models takes a while on a small machine, so each export is
made once per session (``exported``); those tests are slow.
"""

from __future__ import annotations

from collections import defaultdict

import keras
import numpy as np
import onnx
import pytest

from loader.graph.forward import execute
from loader.graph.neuron_graph import NeuronGraph
from onnx_oracle import all_tensor_values, input_names

APPLICATIONS = {"ResNet50": (32, 32, 3), "MobileNetV2": (32, 32, 3), "VGG16": (32, 32, 3)}


def small_cnn():
    """A hand-built CNN with what the applications mix: Conv -> BN -> ReLU (tf2onnx folds
    the BN into the Conv), a residual Add, DepthwiseConv -> BN -> ReLU6 (the BN stays, as a
    per-channel Mul), MaxPooling, GlobalAveragePooling and a softmax Dense."""
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = keras.layers.BatchNormalization(name="bn_dw")(y)
    y = keras.layers.ReLU(6.0, name="relu6")(y)
    y = keras.layers.Conv2D(8, 1, name="pw")(y)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, padding="valid", activation="relu",
                            name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(5, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out, name="small_cnn")
    # BN with statistics that are not the identity, so that folding it matters.
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.3, c), rng.uniform(0.5, 2.0, c)])
    return model


def _export(model, path, shape):
    x = np.random.default_rng(0).normal(size=(1,) + shape).astype(np.float32)
    model(x)  # build it: export traces the called model
    model.export(str(path), format="onnx", verbose=False)
    return x


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """name -> (keras model, path of its .onnx export, a batched NHWC input), made once."""
    made = {}
    where = tmp_path_factory.mktemp("onnx_exports")

    def get(name):
        if name not in made:
            keras.utils.set_random_seed(0)
            if name == "small_cnn":
                model, shape = small_cnn(), (16, 16, 3)
            else:
                shape = APPLICATIONS[name]
                model = getattr(keras.applications, name)(weights=None, input_shape=shape)
            path = where / f"{name}.onnx"
            x = _export(model, path, shape)
            made[name] = (model, path, x)
        return made[name]

    return get


# ---------------------------------------------------------------------------- oracles
def assert_matches_onnxruntime(path, x):
    """Every layer of the .onnx graph (but the input) names a tensor; its values equal
    onnxruntime's. Returns the graph and its values."""
    proto = onnx.load(str(path))
    (name,) = input_names(proto)
    ref = all_tensor_values(proto, {name: x})
    g = NeuronGraph.from_model(path)
    ours = execute(g, x)
    layers = [e.name for e in g.entries if e.kind != "input"]
    assert layers and set(layers) <= set(ref), sorted(set(layers) - set(ref))[:5]
    for layer in layers:
        want = ref[layer].astype(np.float64)
        scale = max(1e-6, float(np.abs(want).max()))
        np.testing.assert_allclose(ours[layer], want, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=layer)
    return g, ours, proto


# Layer kinds shared by both front ends. Shape-only layers (no neurons) are left out.
KERAS_KIND = {"InputLayer": "input", "Conv2D": "conv", "DepthwiseConv2D": "conv",
              "Dense": "dense", "Add": "add", "MaxPooling2D": "max_pool",
              "GlobalAveragePooling2D": "global_average",
              "BatchNormalization": "elementwise", "Activation": "elementwise",
              "ReLU": "elementwise"}
ONNX_KIND = {"Input": "input", "Conv": "conv", "MatMul": "dense", "Gemm": "dense",
             "Add": "add", "MaxPool": "max_pool", "GlobalAveragePool": "global_average",
             "Mul": "elementwise"}


def kind_sizes(g, kinds) -> dict:
    """kind -> [layers, neurons, edges] over the graph's neuron layers."""
    out = defaultdict(lambda: [0, 0, 0])
    for s in g.plan().layers:
        if s.op is None:  # shape only (Flatten, Reshape, Transpose, ZeroPadding, Pad...)
            assert s.neurons == 0 and s.edges == 0
            continue
        kind = kinds[s.class_name]
        if kind == "add" and s.edges == s.neurons:  # an Add of a constant: a bias
            kind = "elementwise"
        if kind == "elementwise":  # one input per neuron: a scale, a shift, an activation
            assert s.edges == s.neurons, s.name
        row = out[kind]
        row[0] += 1
        row[1] += s.neurons
        row[2] += s.edges
    return dict(out)


def assert_sizes_agree(gk, go, onnx_elementwise) -> tuple[dict, dict]:
    """Equal neurons, edges and layer counts per kind (input, conv, dense, add, pooling),
    but for element-wise layers (one edge per neuron: BatchNormalization, ReLU/Activation),
    which tf2onnx folds: a BN into the Conv before it, an activation into the layer before
    it. ``onnx_elementwise`` is what must remain of them in the export ([layers, neurons])."""
    k, o = kind_sizes(gk, KERAS_KIND), kind_sizes(go, ONNX_KIND)
    shared = set(k) - {"elementwise"}
    assert set(o) - {"elementwise"} == shared
    for kind in shared:
        assert k[kind] == o[kind], (kind, k[kind], o[kind])
    left = o.get("elementwise", [0, 0, 0])
    assert left[:2] == list(onnx_elementwise)
    folded = k.get("elementwise", [0, 0, 0])[1] - left[1]
    pk, po = gk.plan(), go.plan()
    assert pk.neurons - po.neurons == folded
    assert pk.edges - po.edges == folded
    return k, o


def final_outputs_agree(model, gk, go, proto, x, ours_onnx):
    """The Keras graph, the ONNX graph and Keras itself give the same final output."""
    want = np.asarray(model(x), dtype=np.float64)
    keras_graph = execute(gk, x)[gk.entries[-1].name]
    onnx_graph = ours_onnx[proto.graph.output[0].name]
    scale = max(1e-6, float(np.abs(want).max()))
    np.testing.assert_allclose(keras_graph, want, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(onnx_graph, want, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(onnx_graph, keras_graph, rtol=1e-5, atol=1e-6 * scale)


def _check(exported, name, onnx_elementwise):
    model, path, x = exported(name)
    go, ours, proto = assert_matches_onnxruntime(path, x)
    gk = NeuronGraph.from_model(model)
    # Layout: tf2onnx keeps the Keras input (N, H, W, C) and transposes it to NCHW; every
    # layer after that is channels-first, so a conv layer's shape is Keras's moved.
    ik, io = gk.entries[0], go.entries[0]
    assert ik.output.shape == io.output.shape == x.shape[1:]
    assert not io.op.channels_first
    conv_k = [s for s in gk.plan().layers if KERAS_KIND.get(s.class_name) == "conv"]
    conv_o = [s for s in go.plan().layers if s.class_name == "Conv"]
    assert [tuple(s.output_shape) for s in conv_o] == \
        [(s.output_shape[-1], *s.output_shape[:-1]) for s in conv_k]
    assert all(s.channel_axis == 0 for s in conv_o)
    final_outputs_agree(model, gk, go, proto, x, ours)
    return assert_sizes_agree(gk, go, onnx_elementwise(gk))


def _neurons_of(gk, class_name):
    layers = [s for s in gk.plan().layers if s.class_name == class_name]
    return [len(layers), sum(s.neurons for s in layers)]


# ---------------------------------------------------------------------------- tests
def test_small_keras_cnn_export(exported):
    # conv1's BN folds into conv1 and relu1 into it; the depthwise conv's BN stays a
    # per-channel Mul (relu6 folds into it).
    k, o = _check(exported, "small_cnn", lambda gk: [1, 16 * 16 * 8])
    assert k["elementwise"][0] == 4  # bn1, relu1, bn_dw, relu6


@pytest.mark.slow
def test_resnet50_export(exported):
    # Every BatchNormalization folds into the Conv before it, every Activation into the
    # layer before it (Conv or Add): nothing element-wise remains.
    k, o = _check(exported, "ResNet50", lambda gk: [0, 0])
    assert k["elementwise"][0] == 53 + 49


@pytest.mark.slow
def test_mobilenet_v2_export(exported):
    # The BatchNormalization after each DepthwiseConv2D stays, as a Mul of its scale (its
    # shift and the ReLU6 fold into that Mul's neurons); every other BN folds into its Conv.
    _check(exported, "MobileNetV2", lambda gk: _neurons_of(gk, "DepthwiseConv2D"))


@pytest.mark.slow
def test_vgg16_export(exported):
    # Conv2D and Dense carry their activations in Keras too: the two graphs are the same
    # size kind by kind, with no element-wise layer on either side.
    k, o = _check(exported, "VGG16", lambda gk: [0, 0])
    assert "elementwise" not in k
