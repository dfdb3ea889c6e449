"""Forward equivalence for every supported layer kind and configuration.

Each case builds a small model around one layer kind; the oracle executes the neuron graph and
compares every layer with Keras (relative error <= 1e-4), and checks each layer's planned and
enumerated neurons and edges against the counts from Keras's shapes (tests/keras_graph.py).
"""

import keras
import numpy as np
import pytest
from keras import layers

from oracle import assert_equivalent, randomise_weights


def seq(input_shape, *ls):
    inp = keras.Input(input_shape)
    x = inp
    for layer in ls:
        x = layer(x)
    return randomise_weights(keras.Model(inp, x))


CONV_CASES = {
    # rank 2: odd input, stride 2, same padding (the extra padding goes at the end)
    "conv2d_same_stride2_odd": ((9, 7, 3), lambda: layers.Conv2D(4, 3, strides=2, padding="same")),
    "conv2d_same_stride2_even_k4": ((8, 10, 2), lambda: layers.Conv2D(3, 4, strides=2, padding="same")),
    "conv2d_valid_stride3": ((11, 10, 2), lambda: layers.Conv2D(3, (3, 2), strides=(3, 2))),
    "conv2d_dilation2_same": ((9, 9, 2), lambda: layers.Conv2D(3, 3, dilation_rate=2, padding="same")),
    "conv2d_dilation_valid": ((10, 9, 2), lambda: layers.Conv2D(2, (2, 3), dilation_rate=(3, 2))),
    "conv2d_groups": ((7, 7, 4), lambda: layers.Conv2D(6, 3, groups=2, padding="same")),
    "conv2d_activation_relu_nobias": ((6, 6, 2), lambda: layers.Conv2D(3, 3, use_bias=False, activation="relu")),
    "conv2d_1x1": ((5, 5, 3), lambda: layers.Conv2D(4, 1)),
    "conv1d_causal": ((11, 3), lambda: layers.Conv1D(4, 3, padding="causal")),
    "conv1d_causal_dilated": ((13, 2), lambda: layers.Conv1D(3, 3, padding="causal", dilation_rate=3)),
    "conv1d_same_stride2": ((9, 2), lambda: layers.Conv1D(3, 4, strides=2, padding="same")),
    "conv1d_groups": ((8, 6), lambda: layers.Conv1D(9, 2, groups=3)),
    "conv3d_same_stride2": ((5, 6, 7, 2), lambda: layers.Conv3D(3, 3, strides=2, padding="same")),
    "conv3d_valid_dilated": ((6, 6, 5, 2), lambda: layers.Conv3D(2, 2, dilation_rate=2)),
    "depthwise2d_dm2_same_stride2": ((9, 8, 3), lambda: layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same")),
    "depthwise2d_dilated": ((9, 9, 2), lambda: layers.DepthwiseConv2D(3, dilation_rate=2)),
    "depthwise1d_dm3": ((10, 2), lambda: layers.DepthwiseConv1D(3, depth_multiplier=3, padding="same")),
    "separable2d_same": ((8, 7, 3), lambda: layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=2)),
    "separable2d_stride2_relu": ((9, 9, 2), lambda: layers.SeparableConv2D(3, 3, strides=2, activation="relu")),
    "separable1d": ((10, 3), lambda: layers.SeparableConv1D(4, 3, padding="same")),
    "conv2d_transpose_same_s2": ((4, 5, 3), lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same")),
    "conv2d_transpose_valid_s2": ((4, 3, 2), lambda: layers.Conv2DTranspose(3, 3, strides=2)),
    "conv2d_transpose_k4_s2_same": ((3, 4, 2), lambda: layers.Conv2DTranspose(2, 4, strides=2, padding="same")),
    "conv2d_transpose_dilated": ((4, 4, 2), lambda: layers.Conv2DTranspose(2, 3, dilation_rate=2)),
    "conv1d_transpose_s3": ((5, 2), lambda: layers.Conv1DTranspose(3, 4, strides=3, padding="same")),
    "conv1d_transpose_valid": ((5, 2), lambda: layers.Conv1DTranspose(2, 3, strides=2)),
}

POOL_CASES = {
    "maxpool2d_overlapping": ((9, 8, 2), lambda: layers.MaxPooling2D(3, strides=2)),
    "maxpool2d_same_odd": ((7, 9, 2), lambda: layers.MaxPooling2D(2, padding="same")),
    "maxpool2d_same_overlapping": ((9, 7, 3), lambda: layers.MaxPooling2D(3, strides=2, padding="same")),
    "avgpool2d_same": ((7, 9, 2), lambda: layers.AveragePooling2D(2, padding="same")),
    "avgpool2d_same_overlapping": ((9, 8, 2), lambda: layers.AveragePooling2D(3, strides=1, padding="same")),
    "avgpool2d_valid_rect": ((9, 8, 2), lambda: layers.AveragePooling2D((3, 2), strides=(2, 3))),
    "maxpool1d_same": ((11, 3), lambda: layers.MaxPooling1D(3, strides=2, padding="same")),
    "avgpool1d_same": ((11, 3), lambda: layers.AveragePooling1D(4, strides=3, padding="same")),
    "maxpool3d": ((5, 6, 5, 2), lambda: layers.MaxPooling3D(2, padding="same")),
    "avgpool3d_same": ((5, 5, 4, 2), lambda: layers.AveragePooling3D(3, strides=2, padding="same")),
    "global_max2d": ((5, 6, 3), lambda: layers.GlobalMaxPooling2D()),
    "global_avg2d_keepdims": ((5, 6, 3), lambda: layers.GlobalAveragePooling2D(keepdims=True)),
    "global_avg1d": ((7, 3), lambda: layers.GlobalAveragePooling1D()),
    "global_max1d_keepdims": ((7, 3), lambda: layers.GlobalMaxPooling1D(keepdims=True)),
    "global_avg3d": ((3, 4, 5, 2), lambda: layers.GlobalAveragePooling3D()),
    "global_max3d": ((3, 4, 5, 2), lambda: layers.GlobalMaxPooling3D()),
}

ELEMENTWISE_CASES = {
    "batchnorm": ((5, 5, 3), lambda: layers.BatchNormalization()),
    "batchnorm_no_scale_center": ((5, 4), lambda: layers.BatchNormalization(center=False, scale=False)),
    "batchnorm_axis1": ((3, 4, 5), lambda: layers.BatchNormalization(axis=1)),
    "activation_sigmoid": ((4, 4, 2), lambda: layers.Activation("sigmoid")),
    "activation_tanh": ((4, 4, 2), lambda: layers.Activation("tanh")),
    "activation_softmax": ((4, 3, 5), lambda: layers.Activation("softmax")),
    "activation_silu": ((4, 4, 2), lambda: layers.Activation("silu")),
    "activation_gelu": ((4, 4, 2), lambda: layers.Activation("gelu")),
    "activation_elu": ((4, 4, 2), lambda: layers.Activation("elu")),
    "activation_selu": ((4, 4, 2), lambda: layers.Activation("selu")),
    "activation_softplus": ((4, 4, 2), lambda: layers.Activation("softplus")),
    "activation_softsign": ((4, 4, 2), lambda: layers.Activation("softsign")),
    "activation_hard_sigmoid": ((4, 4, 2), lambda: layers.Activation("hard_sigmoid")),
    "activation_hard_silu": ((4, 4, 2), lambda: layers.Activation("hard_silu")),
    "activation_relu6": ((4, 4, 2), lambda: layers.Activation("relu6")),
    "activation_leaky_relu": ((4, 4, 2), lambda: layers.Activation("leaky_relu")),
    "activation_mish": ((4, 4, 2), lambda: layers.Activation("mish")),
    "activation_exponential": ((4, 4, 2), lambda: layers.Activation("exponential")),
    "activation_linear": ((4, 4, 2), lambda: layers.Activation("linear")),
    "relu_plain": ((4, 4, 2), lambda: layers.ReLU()),
    "relu_max_value": ((4, 4, 2), lambda: layers.ReLU(max_value=0.7)),
    "relu6": ((4, 4, 2), lambda: layers.ReLU(6.0)),
    "relu_negative_slope": ((4, 4, 2), lambda: layers.ReLU(negative_slope=0.1)),
    "relu_threshold_all": ((4, 4, 2), lambda: layers.ReLU(max_value=1.2, negative_slope=0.2, threshold=0.3)),
    "leaky_relu": ((4, 4, 2), lambda: layers.LeakyReLU(negative_slope=0.05)),
    "prelu": ((4, 4, 2), lambda: layers.PReLU()),
    "prelu_shared": ((4, 4, 3), lambda: layers.PReLU(shared_axes=[1, 2])),
    "elu_alpha": ((4, 4, 2), lambda: layers.ELU(alpha=0.5)),
    "softmax_layer": ((4, 6), lambda: layers.Softmax()),
    "rescaling": ((4, 4, 3), lambda: layers.Rescaling(1 / 127.5, offset=-1)),
    "normalization": ((4, 4, 3), lambda: _normalization()),
    "dense_rank3": ((4, 5, 3), lambda: layers.Dense(6, activation="tanh")),
    "dense_vector": ((7,), lambda: layers.Dense(4)),
}

SHAPE_CASES = {
    "flatten_dense": ((3, 4, 2), lambda: layers.Flatten(), lambda: layers.Dense(3)),
    "reshape_conv": ((24,), lambda: layers.Reshape((4, 3, 2)), lambda: layers.Conv2D(2, 2)),
    "permute_dense": ((3, 4, 2), lambda: layers.Permute((2, 1, 3)), lambda: layers.Dense(3)),
    "dropout_dense": ((5,), lambda: layers.Dropout(0.5), lambda: layers.Dense(2)),
    "spatial_dropout": ((4, 4, 2), lambda: layers.SpatialDropout2D(0.5), lambda: layers.Conv2D(2, 1)),
    "gaussian_noise": ((4, 4, 2), lambda: layers.GaussianNoise(0.3), lambda: layers.Conv2D(2, 1)),
    "zeropad2d_conv": ((5, 4, 2), lambda: layers.ZeroPadding2D(((1, 2), (0, 1))), lambda: layers.Conv2D(3, 3)),
    "zeropad2d_maxpool": ((5, 4, 2), lambda: layers.ZeroPadding2D(1), lambda: layers.MaxPooling2D(3, strides=2)),
    "zeropad2d_avgpool": ((5, 4, 2), lambda: layers.ZeroPadding2D(1), lambda: layers.AveragePooling2D(2)),
    "zeropad_wide_maxpool": ((3, 3, 2), lambda: layers.ZeroPadding2D(3), lambda: layers.MaxPooling2D(2)),
    "zeropad1d_conv": ((6, 2), lambda: layers.ZeroPadding1D((2, 1)), lambda: layers.Conv1D(2, 3)),
    "zeropad3d_conv": ((3, 3, 3, 1), lambda: layers.ZeroPadding3D(1), lambda: layers.Conv3D(2, 2)),
    "cropping2d_conv": ((7, 6, 2), lambda: layers.Cropping2D(((1, 2), (2, 0))), lambda: layers.Conv2D(2, 2)),
    "cropping1d": ((8, 2), lambda: layers.Cropping1D((1, 3)), lambda: layers.Conv1D(2, 2)),
    "cropping3d": ((5, 5, 4, 1), lambda: layers.Cropping3D(1), lambda: layers.Conv3D(2, 2)),
    "upsampling2d_nearest": ((3, 4, 2), lambda: layers.UpSampling2D(2), lambda: layers.Conv2D(2, 3)),
    "upsampling2d_bilinear": ((3, 4, 2), lambda: layers.UpSampling2D((2, 3), interpolation="bilinear"), lambda: layers.Conv2D(2, 1)),
    "upsampling2d_bicubic": ((4, 3, 2), lambda: layers.UpSampling2D(2, interpolation="bicubic"), lambda: layers.Conv2D(2, 1)),
    "upsampling1d": ((4, 2), lambda: layers.UpSampling1D(3), lambda: layers.Conv1D(2, 2)),
    "upsampling3d": ((2, 3, 2, 1), lambda: layers.UpSampling3D(2), lambda: layers.Conv3D(2, 2)),
}


def _normalization():
    n = layers.Normalization(axis=-1)
    n.adapt(np.random.default_rng(1).normal(2.0, 3.0, size=(50, 4, 4, 3)).astype("float32"))
    return n


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution_matches_keras(case):
    shape, make = CONV_CASES[case]
    assert_equivalent(seq(shape, make()))


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pooling_matches_keras(case):
    shape, make = POOL_CASES[case]
    # A conv first, so pooling windows see negative values too (max over real inputs).
    assert_equivalent(seq(shape, make()))


@pytest.mark.parametrize("case", sorted(ELEMENTWISE_CASES))
def test_elementwise_layer_matches_keras(case):
    shape, make = ELEMENTWISE_CASES[case]
    assert_equivalent(seq(shape, make()))


@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_shape_only_layer_matches_keras(case):
    shape, *makes = SHAPE_CASES[case]
    assert_equivalent(seq(shape, *(m() for m in makes)))


@pytest.mark.parametrize("merge", ["Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply"])
def test_merge_layers_match_keras(merge):
    inp = keras.Input((5, 4, 3))
    a = layers.Conv2D(3, 3, padding="same")(inp)
    b = layers.Conv2D(3, 1)(inp)
    out = getattr(layers, merge)()([a, b])
    assert_equivalent(randomise_weights(keras.Model(inp, out)))


def test_three_way_add_and_average():
    inp = keras.Input((4, 4, 2))
    xs = [layers.Conv2D(2, k, padding="same")(inp) for k in (1, 2, 3)]
    out = layers.Average()([layers.Add()(xs), xs[0], xs[2]])
    assert_equivalent(randomise_weights(keras.Model(inp, out)))


def test_broadcast_multiply_squeeze_excite():
    inp = keras.Input((5, 5, 4))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(4, 1, activation="sigmoid")(s)
    out = layers.Multiply()([x, s])
    assert_equivalent(randomise_weights(keras.Model(inp, out)))


def test_concatenate_axes():
    inp = keras.Input((4, 4, 2))
    a = layers.Conv2D(3, 1)(inp)
    b = layers.Conv2D(2, 1)(inp)
    c = layers.Concatenate()([a, b])
    d = layers.Concatenate(axis=1)([c, layers.Conv2D(5, 1)(inp)])
    out = layers.Conv2D(2, 3)(d)
    assert_equivalent(randomise_weights(keras.Model(inp, out)))


def test_keras_ops_with_constants():
    """MobileNetV3's hard_sigmoid is written as ops on tensors: ``relu6(x + 3) * (1 / 6)``."""
    inp = keras.Input((4, 4, 2))
    x = layers.Conv2D(3, 1)(inp)
    y = layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    z = layers.Multiply()([x, y]) - 0.5
    z = 2.0 - z
    out = z / 4.0
    assert_equivalent(randomise_weights(keras.Model(inp, out)))


def test_residual_block_with_batchnorm():
    inp = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    s = layers.Conv2D(4, 1)(inp)
    x = layers.Add()([x, s])
    x = layers.MaxPooling2D(2, padding="same")(x)
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(x))
    assert_equivalent(randomise_weights(keras.Model(inp, out)))


def test_nested_models_are_inlined():
    inner = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                              layers.MaxPooling2D()], name="features")
    inp = keras.Input((6, 6, 2))
    x = inner(inp)
    f_in = keras.Input((2, 2, 3))
    f = keras.Model(f_in, layers.Dense(2)(layers.Flatten()(f_in)), name="head")
    out = f(x)
    model = randomise_weights(keras.Model(inp, out))
    g = assert_equivalent(model)
    names = [e.name for e in g.entries]
    assert "conv2d" in " ".join(names) and "dense" in " ".join(names)


@pytest.mark.slow  # builds a whole keras.applications model
def test_application_backbone_nested_in_an_outer_model():
    backbone = keras.applications.MobileNetV2(weights=None, include_top=False,
                                              input_shape=(32, 32, 3), alpha=0.35)
    inp = keras.Input((32, 32, 3))
    out = layers.Dense(3)(layers.GlobalAveragePooling2D()(backbone(inp)))
    assert_equivalent(randomise_weights(keras.Model(inp, out)), distinct_edges=False)


def test_shared_layer_calls_are_compared_one_by_one():
    """A layer called twice (siamese): its second call is ``name@1`` on both sides."""
    left, right = keras.Input((5, 5, 2), name="left"), keras.Input((5, 5, 2), name="right")
    encoder = layers.Conv2D(3, 3, activation="tanh", name="encoder")
    out = layers.Dense(2)(layers.Flatten()(layers.Subtract()([encoder(left), encoder(right)])))
    model = randomise_weights(keras.Model([left, right], out))
    g = assert_equivalent(model)
    assert {"encoder", "encoder@1"} <= {e.name for e in g.entries}


def test_shared_layer_first_called_deeper_in_the_graph():
    """Calls of a shared layer are numbered in Keras's call order, wherever they sit."""
    inp = keras.Input((6,))
    shared = layers.Dense(4, name="shared")
    deep = shared(layers.Dense(6, name="pre")(inp))  # Keras's first call of "shared"
    shallow = shared(inp)  # its second: shared@1
    out = layers.Concatenate()([shallow, layers.Dense(4, name="post")(deep)])
    assert_equivalent(randomise_weights(keras.Model(inp, out)))


def test_sequential_model():
    model = keras.Sequential([keras.Input((6, 5, 2)), layers.Conv2D(3, 3, padding="same"),
                              layers.AveragePooling2D(2, padding="same"), layers.Flatten(),
                              layers.Dense(2)])
    assert_equivalent(randomise_weights(model))


def test_two_inputs():
    a = keras.Input((4, 4, 2), name="left")
    b = keras.Input((4, 4, 2), name="right")
    out = layers.Conv2D(2, 3)(layers.Add()([a, b]))
    model = randomise_weights(keras.Model([a, b], out))
    rng = np.random.default_rng(3)
    x = {"left": rng.normal(size=(2, 4, 4, 2)).astype("float32"),
         "right": rng.normal(size=(2, 4, 4, 2)).astype("float32")}
    assert_equivalent(model, x)
