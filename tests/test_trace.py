"""Traces against TensorFlow: values, pooling choices and contributions.

For every layer kind the forward oracle covers (tests/test_forward_equivalence.py) and for
VGG16, ResNet50 and MobileNetV2 at small inputs, a trace's ``value`` equals Keras's layer
outputs; every max (min) neuron's chosen source is the entry TensorFlow's gradient takes, the
first maximal (minimal) entry in window order, computed from Keras's layer outputs by
:func:`keras_graph.window_choices` (``tf.nn.max_pool_with_argmax`` for 1-d and 2-d max
pooling), ties included; and ``contribution`` equals value x the gradient ``tf.GradientTape``
gives on that layer's output (:mod:`tf_gradients`). Values and contributions agree within 1e-4
of the layer's largest magnitude. The oracles share no code with ``loader``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from oracle import SHAPE_ONLY, randomise_weights
from keras_graph import window_choices
from keras_oracle import layer_calls
from test_forward_equivalence import (CONV_CASES, ELEMENTWISE_CASES, POOL_CASES, SHAPE_CASES,
                                      seq)
from tf_gradients import gradients
from loader.graph.forward import execute
from loader.graph.neuron_graph import NeuronGraph
from loader.graph.trace import trace

TOLERANCE = 1e-4


def _close(got, want, what, tol=TOLERANCE):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(got - want).max()) / scale
    assert err <= tol, f"{what}: relative error {err:.3g} (largest |.| {scale:.3g})"


def check_trace(model, x=None, targets=None, *, graph=None, seed=0):
    """Values, chosen edges and contributions of a trace == Keras / TensorFlow, per layer."""
    g = graph or NeuronGraph.from_model(model)
    if x is None:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=tuple(model.inputs[0].shape[1:]))
    last = [c.name for c in layer_calls(model)][-1]
    out_size = int(np.prod(g.entry(last).output.shape))
    if targets is None:
        plain = trace(g, x)
        vals = np.abs(plain.layer(last)).reshape(-1)
        targets = sorted({int(np.argmax(vals)), out_size // 2})
    classes = {c.name: c.class_name for c in layer_calls(model)}
    checked = 0
    for index in targets:
        t = trace(g, x, target=f"{last}:{index}")
        values, grads = gradients(model, x, last, index)
        for name, want in values.items():
            _close(t.layer(name), want, f"value of {name}")
            if classes.get(name) in SHAPE_ONLY and name not in grads:
                continue
            _close(t.layer(name, "contribution"), want * grads[name],
                   f"contribution of {name} to {last}:{index}")
            checked += 1
        check_chosen(t, model, values)
    assert checked
    return g


def check_chosen(t, model, values):
    """Every max/min neuron's chosen source is the one TensorFlow picks from Keras's values
    (``values``: layer name -> Keras's output): the first extreme entry in window order, ties
    included (:func:`keras_graph.window_choices`, with the contract's rule for padding
    zeros). Where nothing is chosen the neuron is inactive. Keras's positions are turned into
    neuron ids by the graph's id map of the input layer (the contract's ids, which the value
    comparison checks)."""
    expected = window_choices(model, values)
    assert set(expected) == {t.graph.entries[i].name for i in t.chosen}
    for name, (inputs, k, p) in expected.items():
        ids = [t.graph.entry(n).output.array() for n in inputs]  # -1: a padding zero
        want = np.array([ids[a][b] if b >= 0 else -1 for a, b in zip(k.tolist(), p.tolist())],
                        dtype=np.int64)
        got = t.layer(name, "chosen").reshape(-1)
        wrong = np.flatnonzero(got != want)
        assert not len(wrong), (f"{name}: {len(wrong)} of {len(want)} neurons chose another "
                                f"entry than TensorFlow, first at {wrong[0]}: "
                                f"{got[wrong[0]]} instead of {want[wrong[0]]}")
        assert not t.layer(name, "active").reshape(-1)[want < 0].any(), name


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution_trace_matches_tensorflow(case):
    shape, make = CONV_CASES[case]
    check_trace(seq(shape, make()))


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pooling_trace_matches_tensorflow(case):
    shape, make = POOL_CASES[case]
    check_trace(seq(shape, layers.Conv2D(shape[-1], 1) if len(shape) == 3 else
                    layers.Conv1D(shape[-1], 1) if len(shape) == 2 else
                    layers.Conv3D(shape[-1], 1), make()))


@pytest.mark.parametrize("case", sorted(ELEMENTWISE_CASES))
def test_elementwise_trace_matches_tensorflow(case):
    shape, make = ELEMENTWISE_CASES[case]
    check_trace(seq(shape, make()))


@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_shape_only_trace_matches_tensorflow(case):
    shape, *makes = SHAPE_CASES[case]
    check_trace(seq(shape, *(m() for m in makes)))


@pytest.mark.parametrize("merge", ["Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply"])
def test_merge_trace_matches_tensorflow(merge):
    inp = keras.Input((5, 4, 3))
    a = layers.Conv2D(3, 3, padding="same")(inp)
    b = layers.Conv2D(3, 1)(inp)
    out = layers.Conv2D(2, 1)(getattr(layers, merge)()([a, b]))
    check_trace(randomise_weights(keras.Model(inp, out)))


def test_three_way_add_and_average_trace():
    inp = keras.Input((4, 4, 2))
    xs = [layers.Conv2D(2, k, padding="same")(inp) for k in (1, 2, 3)]
    out = layers.Average()([layers.Add()(xs), xs[0], xs[2]])
    check_trace(randomise_weights(keras.Model(inp, out)))


def test_squeeze_excite_trace():
    """A broadcast Multiply: the scale neuron feeds every position of its channel."""
    inp = keras.Input((5, 5, 4))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(4, 1, activation="sigmoid")(s)
    out = layers.Conv2D(2, 1)(layers.Multiply()([x, s]))
    check_trace(randomise_weights(keras.Model(inp, out)))


def test_concatenate_trace():
    inp = keras.Input((4, 4, 2))
    a = layers.Conv2D(3, 1)(inp)
    b = layers.Conv2D(2, 1)(inp)
    c = layers.Concatenate()([a, b])
    d = layers.Concatenate(axis=1)([c, layers.Conv2D(5, 1)(inp)])
    out = layers.Conv2D(2, (3, 1))(layers.MaxPooling2D(2)(d))
    check_trace(randomise_weights(keras.Model(inp, out)))


def test_keras_ops_with_constants_trace():
    inp = keras.Input((4, 4, 2))
    x = layers.Conv2D(3, 1)(inp)
    y = layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    z = layers.Multiply()([x, y]) - 0.5
    out = (2.0 - z) / 4.0
    check_trace(randomise_weights(keras.Model(inp, out)))


def test_residual_block_with_batchnorm_trace():
    inp = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    s = layers.Conv2D(4, 1)(inp)
    x = layers.Add()([x, s])
    x = layers.MaxPooling2D(2, padding="same")(x)
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(x))
    # An input small enough that the softmax is not saturated: a saturated softmax's gradient
    # in float32 (TensorFlow's side) is mostly rounding.
    x = np.random.default_rng(0).normal(scale=0.05, size=(6, 6, 3))
    check_trace(randomise_weights(keras.Model(inp, out)), x, targets=[0, 1, 2])


def test_two_inputs_trace():
    a = keras.Input((4, 4, 2), name="left")
    b = keras.Input((4, 4, 2), name="right")
    out = layers.Conv2D(2, 3)(layers.Add()([a, b]))
    model = randomise_weights(keras.Model([a, b], out))
    rng = np.random.default_rng(3)
    x = {"left": rng.normal(size=(4, 4, 2)), "right": rng.normal(size=(4, 4, 2))}
    check_trace(model, x, targets=[0, 5])


@pytest.mark.slow  # builds a whole keras.applications model
@pytest.mark.parametrize("name, shape", [("VGG16", (32, 32, 3)), ("ResNet50", (32, 32, 3)),
                                         ("MobileNetV2", (32, 32, 3))])
def test_application_trace_matches_tensorflow(name, shape):
    # Keras's initialisers draw from the global seed. Unseeded, one draw in CI left VGG16's
    # contributions to a class at ~2e-8, where TensorFlow's float32 gradient (the oracle) is
    # mostly rounding: relative error 0.03 against the bound of 1e-4.
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=shape)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=shape)
    check_trace(model, x, targets=[7, 500])


def test_block_pass_equals_the_edge_pass():
    """The block passes compute what a pass over the enumerated edges computes."""
    inp = keras.Input((7, 6, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    y = layers.MaxPooling2D(2, padding="same")(x)
    z = layers.AveragePooling2D(2, padding="same")(x)
    x = layers.Multiply()([layers.Add()([y, z]), layers.Activation("sigmoid")(z)])
    x = layers.Dense(3, activation="softmax")(layers.Flatten()(x))
    g = NeuronGraph.from_model(randomise_weights(keras.Model(inp, x)))
    xin = np.random.default_rng(2).normal(size=(7, 6, 3))
    a = trace(g, xin, target=f"{g.entries[-1].name}:1")
    b = trace(g, xin, target=f"{g.entries[-1].name}:1", method="edges")
    np.testing.assert_allclose(a.values, b.values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.contribution, b.contribution, rtol=1e-9, atol=1e-15)
    assert np.array_equal(a.active, b.active)
    assert a.chosen.keys() == b.chosen.keys()
    for i in a.chosen:
        assert np.array_equal(a.chosen[i], b.chosen[i])
    # ... and the values are what loader.graph.forward.execute gives, layer by layer.
    for name, want in execute(g, xin).items():
        np.testing.assert_allclose(a.layer(name), want[0], rtol=1e-12, atol=1e-12)


def _tie_gradients(shape, pooling):
    """A pooling layer on inputs of 0s and 1s (ties everywhere): per pooling neuron, our
    chosen input and the inputs TensorFlow's gradient of that neuron reaches."""
    inp = keras.Input(shape)
    model = keras.Model(inp, pooling(inp))
    g = NeuronGraph.from_model(model)
    x = np.random.default_rng(0).integers(0, 2, size=shape).astype(float)
    pool, first = model.layers[-1].name, g.entries[0].op.offset
    chosen = trace(g, x).layer(pool, "chosen").reshape(-1) - first
    for index in range(len(chosen)):
        _, grads = gradients(model, x, pool, index)
        yield chosen[index], np.flatnonzero(grads[model.layers[0].name].reshape(-1)).tolist()


@pytest.mark.parametrize("shape, make", [
    ((5, 6, 2), lambda: layers.MaxPooling2D(2)),
    ((7, 7, 2), lambda: layers.MaxPooling2D(3, strides=2, padding="same")),
    ((9, 2), lambda: layers.MaxPooling1D(3, strides=2, padding="same")),
    ((6, 5, 2), lambda: layers.MaxPooling2D((2, 3), strides=(1, 2))),
])
def test_ties_go_where_tensorflow_sends_the_gradient(shape, make):
    """With ties everywhere, TensorFlow's gradient of each 1-d/2-d max-pooling neuron is
    one-hot at the first maximal entry in window order: the chosen one."""
    for chosen, hot in _tie_gradients(shape, make()):
        assert hot == [chosen]


@pytest.mark.parametrize("shape, make", [((4, 4, 4, 2), lambda: layers.MaxPooling3D(2)),
                                         ((3, 4, 2), lambda: layers.GlobalMaxPooling2D())])
def test_ties_in_3d_and_global_pooling(shape, make):
    """MaxPooling3D's and GlobalMaxPooling's gradients in TensorFlow go to every tied maximum
    (3D: each the whole gradient; global: shared); the chosen entry is the first of them."""
    for chosen, hot in _tie_gradients(shape, make()):
        assert hot[0] == chosen


def test_maximum_ties_go_to_the_first_input():
    inp = keras.Input((3, 3, 2))
    a, b = layers.Conv2D(2, 1, name="a"), layers.Conv2D(2, 1, name="b")
    out = layers.Maximum(name="m")([a(inp), b(inp)])
    model = randomise_weights(keras.Model(inp, out))
    b.set_weights(a.get_weights())  # equal inputs everywhere: every neuron is a tie
    g = NeuronGraph.from_model(model)
    t = trace(g, np.random.default_rng(0).normal(size=(3, 3, 2)), target="m:4")
    assert (t.layer("m", "chosen").reshape(-1) == g.entry("a").op.offset + np.arange(18)).all()
    _, grads = gradients(model, np.random.default_rng(0).normal(size=(3, 3, 2)), "m", 4)
    assert np.flatnonzero(grads["a"]).tolist() == [4] and not grads["b"].any()
    assert t.layer("a", "gradient").reshape(-1)[4] == 1 and not t.layer("b", "gradient").any()
