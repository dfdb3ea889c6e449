"""Every operator of the ONNX front end against onnxruntime (issue 21).

Each test writes a tiny model with ``onnx.helper`` (NCHW, float32 weights drawn from a seeded
generator, a symbolic batch axis), runs the neuron graph and onnxruntime on a batch of two
random inputs, and requires every layer of the graph to equal the ONNX tensor of its name
(:func:`onnx_graphs.assert_matches_ort`). Operators that cannot be expressed exactly must be
refused with one line naming the node, its op type and why.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from loader.errors import ModelLoadError, UnsupportedLayerError
from loader.graph.neuron_graph import NeuronGraph
from onnx_graphs import ModelBuilder, assert_matches_ort


def refusal(model, **options) -> str:
    """The one-line message ``from_model`` refuses ``model`` with."""
    with pytest.raises((UnsupportedLayerError, ModelLoadError)) as info:
        NeuronGraph.from_model(model, **options)
    text = str(info.value)
    assert "\n" not in text, text
    return text


def conv_then(b: ModelBuilder, cin=3, cout=4):
    """A 3x3 same-padded convolution of input ``x`` (a layer of neurons to build on)."""
    return b.node("Conv", ["x", b.weight(cout, cin, 3, 3), b.weight(cout)], pads=[1, 1, 1, 1])


# ----------------------------------------------------------------------------- Conv
CONV_CASES = {
    "1d": ((3, 9), (4, 3, 3), dict(pads=[1, 0])),
    "2d_plain": ((3, 7, 7), (4, 3, 3, 3), {}),
    "2d_pads_asymmetric": ((3, 6, 7), (4, 3, 3, 3), dict(pads=[0, 1, 2, 1])),
    "2d_strides": ((3, 7, 8), (4, 3, 3, 3), dict(strides=[2, 3], pads=[1, 1, 1, 1])),
    "2d_dilations": ((3, 8, 9), (4, 3, 3, 2), dict(dilations=[2, 3], pads=[2, 1, 1, 2])),
    "2d_group2": ((4, 6, 6), (6, 2, 3, 3), dict(group=2, pads=[1, 1, 1, 1])),
    "2d_depthwise": ((3, 6, 6), (3, 1, 3, 3), dict(group=3, pads=[1, 1, 1, 1])),
    "2d_depthwise_multiplier2": ((3, 6, 6), (6, 1, 3, 3), dict(group=3, strides=[2, 2])),
    "3d": ((2, 5, 6, 5), (3, 2, 3, 2, 3), dict(pads=[1, 0, 1, 0, 1, 1], strides=[1, 2, 1])),
    "same_upper_even_kernel": ((3, 7, 6), (4, 3, 4, 2), dict(auto_pad="SAME_UPPER")),
    "same_lower_even_kernel": ((3, 7, 6), (4, 3, 4, 2), dict(auto_pad="SAME_LOWER")),
    "same_upper_stride2": ((3, 8, 7), (4, 3, 3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    "same_lower_stride2": ((3, 8, 7), (4, 3, 3, 3), dict(auto_pad="SAME_LOWER", strides=[2, 2])),
    "valid_stride2": ((3, 8, 7), (4, 3, 3, 3), dict(auto_pad="VALID", strides=[2, 2])),
    "no_bias": ((3, 6, 6), (4, 3, 1, 1), {}),
}


@pytest.mark.parametrize("opset", [11, 21])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_matches_onnxruntime(case, opset):
    shape, wshape, attrs = CONV_CASES[case]
    b = ModelBuilder(opset)
    inputs = ["x", b.weight(*wshape)] + ([] if case == "no_bias" else [b.weight(wshape[0])])
    y = b.node("Conv", inputs, kernel_shape=list(wshape[2:]), **attrs)
    assert_matches_ort(b.model({"x": shape}, [y]))


def test_conv_without_kernel_shape_takes_the_weights_matches_onnxruntime():
    b = ModelBuilder(13)
    y = b.node("Conv", ["x", b.weight(4, 3, 3, 2)], strides=[2, 1])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


# ----------------------------------------------------------------------------- ConvTranspose
CONV_T_CASES = {
    "stride2": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2])),
    "stride2_pads": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], pads=[1, 0, 1, 2])),
    "output_padding": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 3], pads=[1, 1, 1, 1],
                                                     output_padding=[1, 2])),
    "dilations": ((2, 4, 4), (2, 3, 2, 3), dict(dilations=[2, 1], strides=[1, 2])),
    "group2": ((4, 4, 4), (4, 3, 3, 3), dict(group=2, strides=[2, 2], pads=[1, 1, 1, 1])),
    "output_shape": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], output_shape=[8, 11])),
    "output_shape_odd_total": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2],
                                                             output_shape=[9, 10])),
    # total padding (2, 1) and (1, 1): odd ones after (upper) or before (lower)
    "same_upper": ((3, 4, 5), (3, 2, 4, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    "same_lower": ((3, 4, 5), (3, 2, 4, 3), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    "same_upper_k3": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    "same_lower_k3": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    "same_upper_dilated": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[3, 2], dilations=[2, 1],
                                                         auto_pad="SAME_UPPER")),
    "output_shape_with_output_padding": ((3, 4, 5), (3, 2, 3, 3), dict(
        strides=[2, 2], output_shape=[9, 10], output_padding=[1, 1])),
    "valid": ((3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], auto_pad="VALID")),
    "1d": ((3, 6), (3, 2, 3), dict(strides=[2], pads=[1, 0])),
    "3d": ((2, 3, 4, 3), (2, 2, 2, 3, 2), dict(strides=[2, 1, 2])),
}


@pytest.mark.parametrize("opset", [11, 17])
@pytest.mark.parametrize("case", CONV_T_CASES, ids=str)
def test_conv_transpose_matches_onnxruntime(case, opset):
    shape, wshape, attrs = CONV_T_CASES[case]
    b = ModelBuilder(opset)
    y = b.node("ConvTranspose", ["x", b.weight(*wshape), b.weight(wshape[1] * attrs.get(
        "group", 1))], kernel_shape=list(wshape[2:]), **attrs)
    assert_matches_ort(b.model({"x": shape}, [y]))


# ----------------------------------------------------------------------------- pooling
POOL_CASES = {
    "2x2_stride2": ((3, 6, 6), dict(kernel_shape=[2, 2], strides=[2, 2])),
    "3x3_stride2_pads": ((3, 7, 7), dict(kernel_shape=[3, 3], strides=[2, 2],
                                         pads=[1, 1, 1, 1])),
    "asymmetric_pads": ((3, 6, 7), dict(kernel_shape=[3, 2], pads=[0, 1, 2, 1])),
    "ceil_mode": ((3, 7, 6), dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    "ceil_mode_pads": ((3, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                       ceil_mode=1)),
    "ceil_mode_last_window_in_padding": ((3, 6, 6), dict(kernel_shape=[3, 3], strides=[3, 3],
                                                         pads=[1, 1, 1, 1], ceil_mode=1)),
    # total padding 1 on both axes: the odd one goes after (upper) or before (lower)
    "same_upper": ((3, 8, 7), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
    "same_lower": ((3, 8, 7), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_LOWER")),
    "same_upper_stride1": ((3, 6, 5), dict(kernel_shape=[4, 2], auto_pad="SAME_UPPER")),
    "same_lower_stride1": ((3, 6, 5), dict(kernel_shape=[4, 2], auto_pad="SAME_LOWER")),
    "valid": ((3, 7, 6), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID")),
    "1d": ((3, 9), dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
    "1d_ceil": ((3, 8), dict(kernel_shape=[3], strides=[2], ceil_mode=1)),
}


@pytest.mark.parametrize("opset", [11, 19])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_matches_onnxruntime(op, case, opset):
    shape, attrs = POOL_CASES[case]
    b = ModelBuilder(opset)
    y = b.node(op, ["x"], **attrs)
    assert_matches_ort(b.model({"x": shape}, [y]))


@pytest.mark.parametrize("case", ["3x3_stride2_pads", "asymmetric_pads", "ceil_mode_pads",
                                  "ceil_mode_last_window_in_padding", "1d", "same_upper",
                                  "same_lower"])
def test_average_pool_count_include_pad_matches_onnxruntime(case):
    shape, attrs = POOL_CASES[case]
    b = ModelBuilder(17)
    y = b.node("AveragePool", ["x"], count_include_pad=1, **attrs)
    assert_matches_ort(b.model({"x": shape}, [y]))


@pytest.mark.parametrize("op, opset", [("MaxPool", 11), ("MaxPool", 17), ("AveragePool", 19)])
def test_dilated_pooling_matches_onnxruntime(op, opset):
    b = ModelBuilder(opset)
    y = b.node(op, ["x"], kernel_shape=[2, 3], dilations=[2, 2], strides=[1, 2], pads=[1, 0, 1, 1])
    assert_matches_ort(b.model({"x": (3, 7, 8)}, [y]))


@pytest.mark.parametrize("op", ["Conv", "MaxPool", "AveragePool"])
def test_same_padding_with_dilations_is_refused(op):
    b = ModelBuilder(19)
    ins = ["x"] + ([b.weight(4, 3, 2, 3)] if op == "Conv" else [])
    y = b.node(op, ins, kernel_shape=[2, 3], dilations=[2, 2], auto_pad="SAME_UPPER",
               strides=[2, 2])
    msg = refusal(b.model({"x": (3, 7, 8)}, [y]))
    assert msg == (f"layer {b.nodes[-1].name!r} ({op}) cannot be expressed as a neuron graph: "
                   "auto_pad SAME_UPPER with dilations > 1 (onnxruntime and the ONNX "
                   "specification disagree on its output)")


def test_max_pool_after_relu_matches_onnxruntime():
    b = ModelBuilder()
    r = b.node("Relu", [conv_then(b)])
    y = b.node("MaxPool", [r], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               ceil_mode=1)
    assert_matches_ort(b.model({"x": (3, 7, 7)}, [y]))


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(3, 5, 6), (3, 7), (2, 3, 4, 3)], ids=str)
def test_global_pool_matches_onnxruntime(op, shape):
    b = ModelBuilder()
    y = b.node(op, ["x"])
    assert_matches_ort(b.model({"x": shape}, [y]))


@pytest.mark.parametrize("keepdims", [1, 0])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax", "ReduceSum"])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_over_spatial_axes_matches_onnxruntime(op, keepdims, opset):
    b = ModelBuilder(opset)
    axes_as_input = opset >= 18 or op == "ReduceSum"
    if axes_as_input:
        y = b.node(op, ["x", b.ints([2, -1])], keepdims=keepdims)
    else:
        y = b.node(op, ["x"], axes=[2, -1], keepdims=keepdims)
    assert_matches_ort(b.model({"x": (4, 5, 6)}, [y]))


def test_reduce_mean_over_channels_is_refused():
    b = ModelBuilder(13)
    y = b.node("ReduceMean", ["x"], axes=[1])
    msg = refusal(b.model({"x": (4, 5, 6)}, [y]))
    assert "ReduceMean" in msg and "channel axis" in msg


# ----------------------------------------------------------------------------- Gemm / MatMul
GEMM_CASES = {
    "transB": (dict(transB=1), (5, 6), (5,)),
    "plain": ({}, (6, 5), (5,)),
    "alpha_beta": (dict(transB=1, alpha=0.5, beta=2.0), (5, 6), (5,)),
    "bias_scalar": (dict(transB=1), (5, 6), ()),
    "bias_1xN": (dict(transB=1, beta=-1.5), (5, 6), (1, 5)),
    "no_bias": (dict(transB=1), (5, 6), None),
}


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("case", GEMM_CASES, ids=str)
def test_gemm_matches_onnxruntime(case, opset):
    attrs, wshape, cshape = GEMM_CASES[case]
    b = ModelBuilder(opset)
    inputs = ["x", b.weight(*wshape)] + ([] if cshape is None else [b.weight(*cshape)])
    y = b.node("Gemm", inputs, **attrs)
    assert_matches_ort(b.model({"x": (6,)}, [y]))


def test_gemm_trans_a_is_refused():
    b = ModelBuilder()
    y = b.node("Gemm", ["x", b.weight(5, 6)], transA=1)
    msg = refusal(b.model({"x": (6,)}, [y]))
    assert "Gemm" in msg and "transA" in msg


@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 3, 6)], ids=str)
def test_matmul_plus_constant_bias_matches_onnxruntime(shape):
    b = ModelBuilder()
    m = b.node("MatMul", ["x", b.weight(6, 5)])
    y = b.node("Add", [m, b.weight(5)])
    g = assert_matches_ort(b.model({"x": shape}, [y]))
    # The bias folds into the MatMul's neurons: one layer of neurons, named by the Add.
    assert [e.name for e in g.entries if e.kind == "neurons"] == [y]


def test_matmul_bias_first_then_relu_matches_onnxruntime():
    b = ModelBuilder()
    m = b.node("MatMul", ["x", b.weight(6, 5)])
    a = b.node("Add", [b.weight(5), m])
    y = b.node("Relu", [a])
    assert_matches_ort(b.model({"x": (6,)}, [y]))


def test_matmul_of_two_activations_is_refused():
    b = ModelBuilder()
    y = b.node("MatMul", ["x", b.node("Relu", ["x"])])
    msg = refusal(b.model({"x": (4, 4)}, [y]))
    assert "MatMul" in msg and "constant matrix" in msg


# ----------------------------------------------------------------------------- normalisation
def _bn_inputs(b, c):
    return [b.weight(c), b.weight(c), b.weight(c), b.weight(c, positive=True)]


@pytest.mark.parametrize("opset", [11, 15])
def test_batchnorm_after_conv_matches_onnxruntime(opset):
    b = ModelBuilder(opset)
    y = b.node("BatchNormalization", [conv_then(b)] + _bn_inputs(b, 4), epsilon=1e-3)
    assert_matches_ort(b.model({"x": (3, 6, 6)}, [y]))


@pytest.mark.parametrize("shape", [(3, 5, 6), (3,), (3, 7)], ids=str)
def test_batchnorm_standalone_matches_onnxruntime(shape):
    b = ModelBuilder()
    y = b.node("BatchNormalization", ["x"] + _bn_inputs(b, 3))
    assert_matches_ort(b.model({"x": shape}, [y]))


def test_batchnorm_training_mode_is_refused():
    b = ModelBuilder(15)
    y, _, _ = b.node("BatchNormalization", ["x"] + _bn_inputs(b, 3), outputs=3,
                     training_mode=1)
    msg = refusal(b.model({"x": (3, 5, 5)}, [y]))
    assert "BatchNormalization" in msg and "training_mode" in msg


def test_instance_normalization_is_refused_with_reason():
    b = ModelBuilder()
    y = b.node("InstanceNormalization", [conv_then(b), b.weight(4), b.weight(4)])
    msg = refusal(b.model({"x": (3, 6, 6)}, [y]))
    assert msg == (f"layer {b.nodes[-1].name!r} (InstanceNormalization) cannot be expressed "
                   "as a neuron graph: its statistics are the input's own (per sample and "
                   "channel): no fixed weights express it")


# ----------------------------------------------------------------------------- activations
ACTIVATIONS = {
    "Relu": {}, "Sigmoid": {}, "Tanh": {}, "Softplus": {}, "HardSwish": {},
    "LeakyRelu": dict(alpha=0.1), "LeakyRelu_default": {},
    "Elu": dict(alpha=0.7), "Elu_default": {}, "Selu": {}, "Selu_params": dict(alpha=1.5,
                                                                              gamma=0.9),
    "HardSigmoid": dict(alpha=0.3, beta=0.4), "HardSigmoid_default": {},
    "Softsign": {}, "Exp": {}, "Mish": {},
}


@pytest.mark.parametrize("newest", [False, True], ids=["first_opset", "opset21"])
@pytest.mark.parametrize("after", ["input", "conv"])
@pytest.mark.parametrize("case", ACTIVATIONS, ids=str)
def test_activation_matches_onnxruntime(case, after, newest):
    op = case.split("_")[0]
    b = ModelBuilder(21 if newest else {"HardSwish": 14, "Mish": 18}.get(op, 11))
    src = "x" if after == "input" else conv_then(b)
    y = b.node(op, [src], **ACTIVATIONS[case])
    g = assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]), feeds=None)
    if after == "conv":  # the activation folds into the convolution's neurons
        assert [e.name for e in g.entries if e.kind == "neurons"] == [y]


@pytest.mark.parametrize("reader", ["graph_output", "second_reader"])
@pytest.mark.parametrize("op", ["Relu", "Add"])
def test_layer_read_elsewhere_keeps_its_values_matches_onnxruntime(op, reader):
    """An activation or a bias folds into the layer before it only when nothing else reads
    that layer's tensor."""
    b = ModelBuilder(13)
    c = conv_then(b)
    y = b.node(op, [c] + ([b.weight(4, 1, 1)] if op == "Add" else []))
    if reader == "graph_output":
        model = b.model({"x": (3, 5, 6)}, [y, c])
    else:
        model = b.model({"x": (3, 5, 6)}, [b.node("Sub", [y, b.node("Sigmoid", [c])])])
    g = assert_matches_ort(model)
    assert c in {e.name for e in g.entries}


def test_activation_names_follow_the_contract():
    b = ModelBuilder()
    t = b.node("LeakyRelu", ["x"], alpha=0.1)
    t = b.node("HardSigmoid", [t], alpha=0.2, beta=0.5)
    t = b.node("Clip", [t, b.const(0.0), b.const(6.0)])
    t = b.node("Elu", [t])
    g = NeuronGraph.from_model(b.model({"x": (4,)}, [t]))
    acts = [e.op.activation(np.arange(1)) for e in g.entries if e.kind == "neurons"]
    assert acts == ["leaky_relu:0.1", "hard_sigmoid:0.2:0.5", "clip:0:6", "elu"]


CLIP_CASES = {
    "min_max": (0.0, 6.0), "min_only": (-0.5, None), "max_only": (None, 0.7),
    "min_zero_only": (0.0, None), "neither": (None, None), "negative_range": (-1.0, -0.25),
}


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("case", CLIP_CASES, ids=str)
def test_clip_with_bounds_as_inputs_matches_onnxruntime(case, opset):
    lo, hi = CLIP_CASES[case]
    b = ModelBuilder(opset)
    ins = [conv_then(b), b.const(lo) if lo is not None else "",
           b.const(hi) if hi is not None else ""]
    while ins[-1] == "":
        ins.pop()
    y = b.node("Clip", ins)
    assert_matches_ort(b.model({"x": (3, 5, 5)}, [y]))


def test_clip_with_bounds_as_attributes_matches_onnxruntime():
    b = ModelBuilder(10)  # min and max are attributes before opset 11
    y = b.node("Clip", [conv_then(b)], min=-0.5, max=0.5)
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


def test_clip_bounds_from_constant_nodes_matches_onnxruntime():
    b = ModelBuilder(13)
    lo = b.node("Constant", [], value=helper.make_tensor("v", TensorProto.FLOAT, [], [0.0]))
    hi = b.node("Constant", [], value_float=6.0)
    y = b.node("Clip", [b.node("Mul", ["x", b.const(4.0)]), lo, hi])
    assert_matches_ort(b.model({"x": (3, 5, 5)}, [y]))


@pytest.mark.parametrize("slope", ["per_channel", "scalar", "full"])
def test_prelu_matches_onnxruntime(slope):
    b = ModelBuilder()
    shapes = {"per_channel": (4, 1, 1), "scalar": (1,), "full": (4, 5, 5)}
    y = b.node("PRelu", [conv_then(b), b.weight(*shapes[slope])])
    assert_matches_ort(b.model({"x": (3, 5, 5)}, [y]))


@pytest.mark.parametrize("opset, shape, axis", [
    (11, (5,), 1), (11, (5,), -1), (13, (5,), None), (13, (3, 5), None), (13, (3, 4, 5), -1),
    (11, (3, 4, 5), 3),
])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_over_last_axis_matches_onnxruntime(op, opset, shape, axis):
    b = ModelBuilder(opset)
    src = b.node("Gemm", ["x", b.weight(5, 5)], transB=1) if len(shape) == 1 else "x"
    y = b.node(op, [src], **({} if axis is None else {"axis": axis}))
    assert_matches_ort(b.model({"x": shape}, [y]))


@pytest.mark.parametrize("layout", ["first", "last"])
def test_softmax_after_reduce_mean_without_keepdims_matches_onnxruntime(layout):
    """The pooled neurons have shape (C, 1, 1) and show as (C,): the softmax runs over C."""
    b = ModelBuilder(13)
    c = conv_then(b)
    if layout == "last":
        c = b.node("Transpose", [c], perm=[0, 2, 3, 1])
    r = b.node("ReduceMean", [c], axes=[2, 3] if layout == "first" else [1, 2], keepdims=0)
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [b.node("Softmax", [r])]))


@pytest.mark.parametrize("opset, axis", [(13, 1), (11, None), (13, 2)])
def test_softmax_over_another_axis_is_refused(opset, axis):
    b = ModelBuilder(opset)
    y = b.node("Softmax", ["x"], **({} if axis is None else {"axis": axis}))
    msg = refusal(b.model({"x": (3, 4, 5)}, [y]))
    assert "(Softmax)" in msg and "only the last axis is supported" in msg


# ----------------------------------------------------------------------------- arithmetic
CONST_SHAPES = {"scalar": (), "one": (1,), "per_channel": (4, 1, 1), "last_axis": (6,),
                "full": (4, 5, 6), "full_batch1": (1, 4, 5, 6)}


@pytest.mark.parametrize("const_first", [False, True], ids=["x_op_c", "c_op_x"])
@pytest.mark.parametrize("shape", CONST_SHAPES, ids=str)
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_arithmetic_with_constant_matches_onnxruntime(op, shape, const_first):
    b = ModelBuilder()
    c = b.weight(*CONST_SHAPES[shape], positive=op == "Div")
    ins = [c, "x"] if const_first else ["x", c]
    y = b.node(op, ins)
    model = b.model({"x": (4, 5, 6)}, [y])
    if op == "Div" and const_first:
        assert "constant divided by a computed tensor" in refusal(model)
        return
    assert_matches_ort(model)


@pytest.mark.parametrize("shape", ["scalar", "per_channel", "full"])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_arithmetic_with_constant_after_conv_matches_onnxruntime(op, shape):
    b = ModelBuilder()
    c = b.weight(*{"scalar": (), "per_channel": (4, 1, 1), "full": (4, 5, 6)}[shape],
                 positive=op == "Div")
    y = b.node(op, [conv_then(b), c])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


BIAS_PRODUCERS = ["Gemm_with_bias", "Conv_BatchNormalization", "AveragePool",
                  "GlobalAveragePool", "ReduceMean_keepdims0", "Add_of_tensors", "Mul_of_tensors",
                  "Resize_nearest", "MatMul_channels_last", "PRelu", "MaxPool"]


@pytest.mark.parametrize("producer", BIAS_PRODUCERS)
def test_constant_added_to_a_layer_matches_onnxruntime(producer):
    """``layer + per-channel constant`` folds into the layer's bias where the layer is a
    plain weighted sum; elsewhere (a product, a max, PRelu's per-neuron slope) it must not."""
    b = ModelBuilder(13)
    if producer == "Gemm_with_bias":
        y = b.node("Gemm", ["x", b.weight(6, 5), b.weight(5)])
        model_in, bias = (6,), (5,)
    else:
        c = conv_then(b)
        model_in, bias = (3, 5, 6), (4, 1, 1)
        if producer == "Conv_BatchNormalization":
            y = b.node("BatchNormalization", [c] + _bn_inputs(b, 4))
        elif producer in ("AveragePool", "MaxPool"):
            y = b.node(producer, [c], kernel_shape=[2, 2])
        elif producer == "GlobalAveragePool":
            y = b.node(producer, [c])
        elif producer == "ReduceMean_keepdims0":
            y, bias = b.node("ReduceMean", [c], axes=[2, 3], keepdims=0), (4,)
        elif producer in ("Add_of_tensors", "Mul_of_tensors"):
            y = b.node(producer.split("_")[0], [c, conv_then(b)])
        elif producer == "Resize_nearest":
            y = b.node("Resize", [c, "", b.const([1, 1, 2, 2])], mode="nearest")
        elif producer == "MatMul_channels_last":
            t = b.node("Transpose", [c], perm=[0, 2, 3, 1])
            y, bias = b.node("MatMul", [t, b.weight(4, 3)]), (3,)
        else:
            y = b.node("PRelu", [c, b.weight(4, 1, 1)])
    z = b.node("Relu", [b.node("Sub", [y, b.weight(*bias)])])
    assert_matches_ort(b.model({"x": model_in}, [z]))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("broadcast", ["same", "per_channel", "scalar_like"])
def test_arithmetic_between_tensors_matches_onnxruntime(op, broadcast):
    b = ModelBuilder()
    left = conv_then(b)
    if broadcast == "same":
        right = conv_then(b)
    elif broadcast == "per_channel":  # squeeze-and-excitation: x * sigmoid(pool(x))
        right = b.node("Sigmoid", [b.node("GlobalAveragePool", [left])])
    else:  # one value per sample, (1, 1, 1), against every position of (4, 5, 6)
        right = b.node("GlobalMaxPool", [conv_then(b, cout=1)])
    y = b.node(op, [left, right])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


@pytest.mark.parametrize("gate", ["Sigmoid", "HardSigmoid"])
def test_swish_as_exporters_write_it_matches_onnxruntime(gate):
    """SiLU (x * sigmoid(x)) and MobileNetV3's hard swish (x * hard_sigmoid(x)): the gate
    reads the layer that the product reads too, so nothing folds."""
    b = ModelBuilder(13)
    c = conv_then(b)
    attrs = dict(alpha=1 / 6, beta=0.5) if gate == "HardSigmoid" else {}
    y = b.node("Mul", [c, b.node(gate, [c], **attrs)])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


def test_add_of_a_tensor_to_itself_is_refused():
    """x + x would be two parallel edges per neuron; the contract has none."""
    b = ModelBuilder()
    c = conv_then(b)
    y = b.node("Add", [c, c])
    msg = refusal(b.model({"x": (3, 5, 6)}, [y]))
    assert msg == (f"layer {b.nodes[-1].name!r} (Add) cannot be expressed as a neuron graph: "
                   "reads the same neuron through two inputs")


def test_division_between_tensors_is_refused():
    b = ModelBuilder()
    y = b.node("Div", [conv_then(b), conv_then(b)])
    msg = refusal(b.model({"x": (3, 5, 6)}, [y]))
    assert "(Div)" in msg and "division between two computed tensors" in msg


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_variadic_matches_onnxruntime(op, n):
    b = ModelBuilder()
    ins = [conv_then(b) for _ in range(n)]
    y = b.node(op, ins)
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


def test_variadic_broadcasting_matches_onnxruntime():
    b = ModelBuilder()
    c = conv_then(b)
    y = b.node("Max", [c, b.node("GlobalMaxPool", [c]), b.node("Relu", [c])])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("axis", [1, 2, -1])
def test_concat_matches_onnxruntime(axis):
    b = ModelBuilder()
    left, right = conv_then(b), b.node("Relu", [conv_then(b, cout=4)])
    y = b.node("Concat", [left, right], axis=axis)
    z = b.node("Conv", [y, b.weight(2, 8 if axis == 1 else 4, 3, 3)])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [z]))


def test_concat_of_a_tensor_with_itself_into_conv_is_refused():
    b = ModelBuilder()
    c = conv_then(b)
    y = b.node("Concat", [c, c], axis=1)
    b.node("Conv", [y, b.weight(2, 8, 3, 3)])
    msg = refusal(b.model({"x": (3, 5, 6)}, [b.nodes[-1].output[0]]))
    assert msg == (f"layer {b.nodes[-1].name!r} (Conv) cannot be expressed as a neuron graph: "
                   "its input holds the same neuron at two positions (a tensor concatenated "
                   "with itself)")


def test_concat_on_batch_axis_is_refused():
    b = ModelBuilder()
    y = b.node("Concat", ["x", b.node("Relu", ["x"])], axis=0)
    assert "batch axis" in refusal(b.model({"x": (3, 5)}, [y]))


@pytest.mark.parametrize("axis", [1, 2])
def test_flatten_then_gemm_matches_onnxruntime(axis):
    b = ModelBuilder()
    f = b.node("Flatten", [b.node("Relu", ["x"])], axis=axis)
    y = b.node("Gemm", [f, b.weight(5, 60)], transB=1) if axis == 1 else \
        b.node("MatMul", [f, b.weight(30, 5)])
    model = b.model({"x": (2, 5, 6)}, [y])
    if axis == 2:
        assert "mixes the batch axis" in refusal(model)
        return
    assert_matches_ort(model)


@pytest.mark.parametrize("target", [[0, -1], [-1, 30], [0, 3, 30], [0, 3, 5, 6, 1], [2, -1],
                                    [0, 0, -1], [-1, 90]],
                         ids=str)
def test_reshape_matches_onnxruntime(target):
    b = ModelBuilder()
    y = b.node("Reshape", [b.node("Relu", ["x"]), b.ints(target)])
    z = b.node("Sigmoid", [y])
    model = b.model({"x": (3, 5, 6)}, [z], batch=2)
    if target == [-1, 30]:  # the batch (2) times 90 / 30: moves values across samples
        assert "moves the batch axis" in refusal(model)
        return
    assert_matches_ort(model)


def test_reshape_to_a_literal_batch_of_one_matches_onnxruntime_at_batch_one():
    """``Reshape(x, [1, -1])`` under a symbolic batch: shape arithmetic folds with a batch of
    1, so the graph is this model's at batch 1 (at batch 2 the model itself moves values
    across samples, which no per-sample graph can show)."""
    b = ModelBuilder()
    y = b.node("Reshape", [conv_then(b), b.ints([1, -1])])
    model = b.model({"x": (3, 4, 5)}, [b.node("Relu", [y])])
    x = np.random.default_rng(5).normal(size=(1, 3, 4, 5)).astype(np.float32)
    assert_matches_ort(model, feeds={"x": x})


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_flatten_as_pytorch_exports_it_matches_onnxruntime(opset):
    """``x.view(x.size(0), -1)``: Shape -> Gather(0) -> Unsqueeze -> Concat with -1 ->
    Reshape, the shape computed from the activation at run time."""
    b = ModelBuilder(opset)
    p = b.node("MaxPool", [conv_then(b)], kernel_shape=[2, 2], strides=[2, 2])
    shape = b.node("Shape", [p])
    n = b.node("Gather", [shape, b.const(0, dtype=np.int64)], axis=0)
    if opset >= 13:
        n1 = b.node("Unsqueeze", [n, b.ints([0])])
    else:
        n1 = b.node("Unsqueeze", [n], axes=[0])
    target = b.node("Concat", [n1, b.ints([-1])], axis=0)
    f = b.node("Reshape", [p, target])
    y = b.node("Gemm", [f, b.weight(5, 4 * 3 * 3), b.weight(5)], transB=1)
    assert_matches_ort(b.model({"x": (3, 6, 7)}, [y]))


def test_shape_arithmetic_with_slice_cast_and_mul_matches_onnxruntime():
    b = ModelBuilder(13)
    c = conv_then(b)
    shape = b.node("Shape", [c])
    hw = b.node("Slice", [shape, b.ints([2]), b.ints([4])])
    prod = b.node("ReduceProd", [b.node("Cast", [hw], to=TensorProto.FLOAT)], keepdims=1)
    n = b.node("Slice", [shape, b.ints([0]), b.ints([2])])
    target = b.node("Concat", [n, b.node("Cast", [prod], to=TensorProto.INT64)], axis=0)
    y = b.node("Reshape", [c, target])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [b.node("Softmax", [y])]))


def test_transpose_to_nhwc_and_back_matches_onnxruntime():
    b = ModelBuilder()
    t = b.node("Transpose", [conv_then(b)], perm=[0, 2, 3, 1])
    r = b.node("LeakyRelu", [t], alpha=0.2)
    y = b.node("Transpose", [r], perm=[0, 3, 1, 2])
    z = b.node("Conv", [y, b.weight(2, 4, 3, 3)])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [z]))


def test_channels_last_input_transposed_into_conv_matches_onnxruntime():
    """How Keras and TensorFlow exports begin: an NHWC input, Transpose to NCHW, Conv."""
    b = ModelBuilder()
    t = b.node("Transpose", ["x"], perm=[0, 3, 1, 2])
    c = b.node("Conv", [t, b.weight(4, 3, 3, 3), b.weight(4)], pads=[1, 1, 1, 1])
    y = b.node("BatchNormalization", [c] + _bn_inputs(b, 4))
    assert_matches_ort(b.model({"x": (5, 6, 3)}, [y]))


def test_transposed_layout_into_gemm_matches_onnxruntime():
    """Keras's Flatten in an export: NCHW -> NHWC, Reshape, then the dense layer."""
    b = ModelBuilder()
    t = b.node("Transpose", [conv_then(b)], perm=[0, 2, 3, 1])
    f = b.node("Reshape", [t, b.ints([0, -1])])
    y = b.node("Gemm", [f, b.weight(4 * 5 * 6, 3), b.weight(3)])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


def test_transpose_of_batch_axis_is_refused():
    b = ModelBuilder()
    y = b.node("Transpose", ["x"], perm=[1, 0, 2])
    assert "moves the batch axis" in refusal(b.model({"x": (3, 4)}, [y]))


@pytest.mark.parametrize("opset", [11, 13, 21])
def test_squeeze_and_unsqueeze_match_onnxruntime(opset):
    b = ModelBuilder(opset)
    g = b.node("GlobalAveragePool", [conv_then(b)])
    if opset >= 13:
        s = b.node("Squeeze", [g, b.ints([-1, 2])])
        u = b.node("Unsqueeze", [b.node("Relu", [s]), b.ints([1, -1])])
    else:
        s = b.node("Squeeze", [g], axes=[-1, 2])
        u = b.node("Unsqueeze", [b.node("Relu", [s])], axes=[1, -1])
    y = b.node("Sigmoid", [b.node("Squeeze", [u])])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


def test_squeeze_in_a_batch_of_one_model_matches_onnxruntime():
    b = ModelBuilder(13)
    g = b.node("GlobalAveragePool", [conv_then(b)])
    y = b.node("Relu", [b.node("Squeeze", [g, b.ints([2, 3])])])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y], batch=1))


def test_squeeze_without_axes_in_a_batch_of_one_model_is_refused():
    """onnxruntime drops the batch axis too there: the graph's (per-sample) shape would not
    be the tensor's."""
    b = ModelBuilder(13)
    y = b.node("Squeeze", [b.node("GlobalAveragePool", [conv_then(b)])])
    msg = refusal(b.model({"x": (3, 5, 6)}, [b.node("Relu", [y])], batch=1))
    assert msg == (f"layer {b.nodes[-2].name!r} (Squeeze) cannot be expressed as a neuron "
                   "graph: without axes it squeezes every axis of size 1, the model's batch "
                   "axis (fixed at 1) included")


@pytest.mark.parametrize("opset", [10, 11, 13, 18, 21])
def test_pad_with_zeros_matches_onnxruntime(opset):
    b = ModelBuilder(opset)
    c = conv_then(b)
    if opset < 11:  # pads and value are attributes
        p = b.node("Pad", [c], pads=[0, 0, 1, 2, 0, 0, 0, 1], value=0.0)
    elif opset >= 18:
        p = b.node("Pad", [c, b.ints([1, 2, 0, 1]), b.const(0.0), b.ints([2, -1])])
    else:
        p = b.node("Pad", [c, b.ints([0, 0, 1, 2, 0, 0, 0, 1]), b.const(0.0)])
    y = b.node("Conv", [p, b.weight(2, 4, 3, 3)], strides=[2, 1])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


def test_pad_with_negative_pads_crops_as_onnxruntime_does():
    b = ModelBuilder(13)
    p = b.node("Pad", [conv_then(b), b.ints([0, 0, -1, 2, 0, 0, 1, -2])])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [b.node("Relu", [p])]))


PAD_READERS = ["MaxPool", "AveragePool", "GlobalMaxPool", "Max", "Sigmoid", "Add_const",
               "PRelu", "BatchNormalization", "Resize_linear", "Gemm", "Concat_Conv",
               "Resize_nearest", "Transpose_MatMul", "Slice", "Pad_Conv", "ConvTranspose",
               "ReduceMean", "Softmax", "Gather"]


@pytest.mark.parametrize("reader", PAD_READERS)
def test_zero_padding_read_by_other_operators_matches_onnxruntime(reader):
    """The padding zeros are no neurons: every kind of reader must see them as 0 (and
    shape-only operators carry them along)."""
    b = ModelBuilder(13)
    p = b.node("Pad", [conv_then(b), b.ints([0, 0, 1, 1, 0, 0, 1, 2])])  # (4, 7, 9)
    if reader in ("MaxPool", "AveragePool"):
        y = b.node(reader, [p], kernel_shape=[3, 3], strides=[2, 2])
    elif reader == "Max":
        q = b.node("Pad", [b.node("Relu", [conv_then(b)]), b.ints([0, 0, 1, 1, 0, 0, 1, 2])])
        y = b.node("Max", [p, q])
    elif reader == "Add_const":
        y = b.node("Add", [p, b.weight(4, 1, 1)])
    elif reader == "PRelu":
        y = b.node("PRelu", [p, b.weight(4, 1, 1)])
    elif reader == "BatchNormalization":
        y = b.node(reader, [p] + _bn_inputs(b, 4))
    elif reader == "Resize_linear":
        y = b.node("Resize", [p, "", b.const([1, 1, 2, 2])], mode="linear")
    elif reader == "Gemm":
        y = b.node("Gemm", [b.node("Flatten", [p]), b.weight(4 * 7 * 9, 3)])
    elif reader == "Concat_Conv":
        q = b.node("Pad", [conv_then(b), b.ints([0, 0, 2, 0, 0, 0, 0, 3])])
        y = b.node("Conv", [b.node("Concat", [p, q], axis=1), b.weight(2, 8, 3, 3)])
    elif reader == "Resize_nearest":
        y = b.node("Resize", [p, "", b.const([1, 1, 2, 1.5])], mode="nearest")
    elif reader == "Transpose_MatMul":
        y = b.node("MatMul", [b.node("Transpose", [p], perm=[0, 2, 3, 1]), b.weight(4, 3)])
    elif reader == "Slice":
        y = b.node("Relu", [b.node("Slice", [p, b.ints([0]), b.ints([3]), b.ints([2])])])
    elif reader == "Pad_Conv":  # padding of padding, channels included
        q = b.node("Pad", [p, b.ints([0, 1, 0, 1, 0, 2, 2, 0])])
        y = b.node("Conv", [q, b.weight(2, 7, 3, 3)])
    elif reader == "ConvTranspose":
        y = b.node(reader, [p, b.weight(4, 2, 3, 3)], strides=[2, 2])
    elif reader == "ReduceMean":
        y = b.node(reader, [p], axes=[2, 3])
    elif reader == "Gather":
        y = b.node("Relu", [b.node(reader, [p, b.ints([0, 2, 6])], axis=2)])
    else:
        y = b.node(reader, [p])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


def test_product_with_zero_padding_is_refused():
    b = ModelBuilder(13)
    p = b.node("Pad", [conv_then(b), b.ints([0, 0, 1, 1, 0, 0, 1, 1])])
    q = b.node("Pad", [b.node("Relu", [conv_then(b)]), b.ints([0, 0, 1, 0, 0, 0, 1, 2])])
    y = b.node("Mul", [p, q])
    msg = refusal(b.model({"x": (3, 5, 6)}, [y]))
    assert msg.endswith("(Mul) cannot be expressed as a neuron graph: product over constant "
                        "zero padding cannot be expressed")


@pytest.mark.parametrize("mode, value, why", [
    ("constant", 1.5, "non-zero padding value"), ("reflect", None, "mode 'reflect'"),
    ("edge", None, "mode 'edge'")])
def test_pad_other_than_zeros_is_refused(mode, value, why):
    b = ModelBuilder(13)
    ins = ["x", b.ints([0, 0, 1, 1, 0, 0, 1, 1])] + ([] if value is None else [b.const(value)])
    b.node("Pad", ins, mode=mode)
    msg = refusal(b.model({"x": (3, 5, 6)}, [b.nodes[-1].output[0]]))
    assert "(Pad)" in msg and why in msg


@pytest.mark.parametrize("opset", [11, 13])
def test_identity_dropout_and_cast_match_onnxruntime(opset):
    b = ModelBuilder(opset)
    i = b.node("Identity", [conv_then(b)])
    d = b.node("Dropout", [i]) if opset < 12 else b.node("Dropout", [i, b.const(0.3)])
    c = b.node("Cast", [d], to=TensorProto.FLOAT)
    wide = b.node("Relu", [b.node("Cast", [c], to=TensorProto.DOUBLE)])
    y = b.node("Cast", [wide], to=TensorProto.FLOAT)
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


def test_dropout_in_training_mode_is_refused():
    b = ModelBuilder(13)
    y = b.node("Dropout", [conv_then(b), b.const(0.5), b.const(True, dtype=np.bool_)])
    msg = refusal(b.model({"x": (3, 4, 5)}, [y]))
    assert msg == (f"layer {b.nodes[-1].name!r} (Dropout) cannot be expressed as a neuron "
                   "graph: training_mode is true: it drops random values")


def test_dropout_with_training_mode_false_matches_onnxruntime():
    b = ModelBuilder(13)
    y = b.node("Dropout", [conv_then(b), b.const(0.5), b.const(False, dtype=np.bool_)])
    assert_matches_ort(b.model({"x": (3, 4, 5)}, [b.node("Relu", [y])]))


def test_weights_option_is_refused_for_onnx():
    b = ModelBuilder(13)
    model = b.model({"x": (3, 4, 5)}, [b.node("Relu", [conv_then(b)])])
    assert refusal(model, weights="imagenet") == ("an ONNX model carries its weights: "
                                                  "--weights does not apply")


def test_dropout_mask_output_is_refused_when_used():
    b = ModelBuilder(13)
    _, mask = b.node("Dropout", ["x"], outputs=2)
    y = b.node("Cast", [mask], to=TensorProto.FLOAT)
    assert "only the first output" in refusal(b.model({"x": (3, 4)}, [y]))


@pytest.mark.parametrize("to", [TensorProto.FLOAT16, TensorProto.INT64])
def test_cast_that_changes_values_is_refused(to):
    b = ModelBuilder(13)
    c = b.node("Cast", [conv_then(b)], to=to)
    y = b.node("Cast", [c], to=TensorProto.FLOAT)
    msg = refusal(b.model({"x": (3, 5, 6)}, [y]))
    name = TensorProto.DataType.Name(to)
    assert msg == (f"layer {b.nodes[-2].name!r} (Cast) cannot be expressed as a neuron graph: "
                   f"casts an activation to {name}, which rounds its values (only FLOAT and "
                   "DOUBLE are exact)")


def test_constant_nodes_as_weights_match_onnxruntime():
    b = ModelBuilder(13)
    w = np.random.default_rng(3).normal(size=(4, 3, 3, 3)).astype(np.float32)
    wn = b.node("Constant", [], value=helper.make_tensor("w", TensorProto.FLOAT, w.shape,
                                                          w.reshape(-1)))
    c = b.node("Conv", ["x", wn])
    s = b.node("Constant", [], value_floats=[0.5, -1.0, 2.0, 1.5])
    shape = b.node("Constant", [], value_ints=[4, 1, 1])
    y = b.node("Mul", [c, b.node("Reshape", [s, shape])])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


@pytest.mark.parametrize("opset", [11, 13])
def test_slice_matches_onnxruntime(opset):
    b = ModelBuilder(opset)
    c = conv_then(b)
    s1 = b.node("Slice", [c, b.ints([1]), b.ints([3]), b.ints([1])])  # channels 1, 2
    # channels 3, 1 and columns 4..0, backwards
    s2 = b.node("Slice", [c, b.ints([-1, 4]), b.ints([-100, -100]), b.ints([1, 3]),
                          b.ints([-2, -1])])
    s3 = b.node("Slice", [s1, b.ints([1]), b.ints([2 ** 62]), b.ints([-1])])
    y = b.node("Add", [b.node("Relu", [s3]), s2])
    model = b.model({"x": (3, 5, 6)}, [y, s2])
    assert_matches_ort(model)


def test_gather_of_channels_matches_onnxruntime():
    b = ModelBuilder()
    c = conv_then(b)
    g = b.node("Gather", [c, b.ints([3, 0, -1])], axis=1)
    y = b.node("Gather", [g, b.const(2, dtype=np.int64)], axis=-1)
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [b.node("Tanh", [y])]))


def test_gather_on_constants_folds():
    b = ModelBuilder()
    table = b.weight(5, 4)
    row = b.node("Gather", [table, b.ints([2])], axis=0)  # (1, 4): a per-channel scale
    y = b.node("Mul", [conv_then(b), b.node("Reshape", [row, b.ints([4, 1, 1])])])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [y]))


@pytest.mark.parametrize("opset, form", [(11, "attr"), (11, "even"), (13, "input"),
                                         (18, "num_outputs"), (18, "uneven")])
def test_split_matches_onnxruntime(opset, form):
    b = ModelBuilder(opset)
    c = b.node("Conv", ["x", b.weight(6, 3, 3, 3)], pads=[1, 1, 1, 1])
    if form == "attr":
        parts = b.node("Split", [c], outputs=3, axis=1, split=[1, 2, 3])
    elif form == "even":
        parts = b.node("Split", [c], outputs=3, axis=1)
    elif form == "input":
        parts = b.node("Split", [c, b.ints([2, 4])], outputs=2, axis=1)
    elif form == "num_outputs":
        parts = b.node("Split", [c], outputs=3, axis=1, num_outputs=3)
    else:  # 7 columns in 4 parts: 2, 2, 2, 1 (ceil(7 / 4) = 2, the last one smaller)
        parts = b.node("Split", [c], outputs=4, axis=-1, num_outputs=4)
    y = b.node("Concat", [b.node("Relu", [p]) if k % 2 else b.node("Sigmoid", [p])
                          for k, p in enumerate(parts)], axis=1 if form != "uneven" else -1)
    assert_matches_ort(b.model({"x": (3, 5, 7)}, [y]))


# ----------------------------------------------------------------------------- Resize
RESIZE_CASES = {
    "nearest_asymmetric_floor": dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                     nearest_mode="floor"),
    "nearest_half_pixel_round_prefer_floor": dict(mode="nearest"),
    "nearest_half_pixel_round_prefer_ceil": dict(mode="nearest", nearest_mode="round_prefer_ceil"),
    "nearest_align_corners": dict(mode="nearest", coordinate_transformation_mode="align_corners"),
    "nearest_pytorch_half_pixel_ceil": dict(mode="nearest", nearest_mode="ceil",
                                            coordinate_transformation_mode="pytorch_half_pixel"),
    "linear_half_pixel": dict(mode="linear"),
    "linear_align_corners": dict(mode="linear", coordinate_transformation_mode="align_corners"),
    "linear_asymmetric": dict(mode="linear", coordinate_transformation_mode="asymmetric"),
    "linear_pytorch_half_pixel": dict(mode="linear",
                                      coordinate_transformation_mode="pytorch_half_pixel"),
}


@pytest.mark.parametrize("size", ["scales_2x3", "scales_down", "sizes"])
@pytest.mark.parametrize("opset", [11, 13, 19])
@pytest.mark.parametrize("case", RESIZE_CASES, ids=str)
def test_resize_matches_onnxruntime(case, opset, size):
    b = ModelBuilder(opset)
    c = conv_then(b)
    roi = b.const([]) if opset < 13 else ""
    if size == "scales_2x3":
        ins = [c, roi, b.const([1, 1, 2, 3])]
    elif size == "scales_down":
        ins = [c, roi, b.const([1, 1, 0.6, 0.5])]
    else:  # as torch.onnx.export writes F.interpolate(size=(7, 9)): N and C from Shape
        nc = b.node("Slice", [b.node("Shape", [c]), b.ints([0]), b.ints([2])])
        sizes = b.node("Concat", [nc, b.ints([7, 9])], axis=0)
        ins = [c, roi, b.const([]) if opset < 13 else "", sizes]
    y = b.node("Resize", ins, **RESIZE_CASES[case])
    z = b.node("Conv", [y, b.weight(2, 4, 3, 3)])
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [z]))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("ctm", ["half_pixel_symmetric", "half_pixel", "align_corners"])
def test_resize_with_axes_matches_onnxruntime(ctm, mode):
    """Opset 18's ``axes``: scales or sizes for the spatial axes only."""
    b = ModelBuilder(19)
    c = conv_then(b)
    up = b.node("Resize", [c, "", "", b.ints([7, 9])], mode=mode, axes=[2, 3],
                coordinate_transformation_mode=ctm)
    down = b.node("Resize", [up, "", b.const([0.5, 0.7])], mode=mode, axes=[-1, -2],
                  coordinate_transformation_mode=ctm)
    assert_matches_ort(b.model({"x": (3, 5, 6)}, [b.node("Relu", [down])]))


def test_resize_of_the_channel_axis_is_refused():
    b = ModelBuilder(13)
    y = b.node("Resize", [conv_then(b), "", b.const([1, 2, 1, 1])], mode="nearest")
    assert "resizes the batch or the channel axis" in refusal(b.model({"x": (3, 4, 5)}, [y]))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("op, opset, scales", [
    *(("Upsample", 9, s) for s in ([1, 1, 2, 3], [1, 1, 2, 1.5])),  # scales >= 1 only
    *(("Resize", 10, s) for s in ([1, 1, 2, 3], [1, 1, 2, 1.5], [1, 1, 0.6, 0.5],
                                  [1, 1, 0.75, 1.7]))], ids=str)
def test_upsample_and_resize_10_match_onnxruntime(op, opset, scales, mode):
    """No coordinate attributes before opset 11: asymmetric, nearest rounding down when
    growing and up when shrinking."""
    b = ModelBuilder(opset)
    y = b.node(op, [conv_then(b), b.const(scales)], mode=mode)
    assert_matches_ort(b.model({"x": (3, 7, 8)}, [y]))


@pytest.mark.parametrize("attrs, why", [
    (dict(mode="linear", antialias=1), "antialias"),
    (dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
     "coordinate_transformation_mode 'tf_crop_and_resize'"),
    (dict(mode="cubic"), "mode 'cubic' (nearest and linear are supported)")])
def test_resize_that_is_not_exact_is_refused(attrs, why):
    b = ModelBuilder(18)
    roi = b.const([0, 0, 0.1, 0.1, 1, 1, 0.9, 0.9]) if "tf_crop" in str(attrs) else ""
    b.node("Resize", [conv_then(b), roi, b.const([1, 1, 0.5, 0.5])], **attrs)
    msg = refusal(b.model({"x": (3, 6, 6)}, [b.nodes[-1].output[0]]))
    assert msg == (f"layer {b.nodes[-1].name!r} (Resize) cannot be expressed as a neuron graph: "
                   f"{why}")


# ----------------------------------------------------------------------------- networks
def test_pytorch_style_cnn_matches_onnxruntime():
    """Conv-BN-Relu-MaxPool(ceil_mode)-Conv-Relu-AdaptiveAvgPool-Flatten-Linear-Softmax, as
    torch.onnx.export writes it (BatchNormalization kept, Gemm with transB)."""
    b = ModelBuilder(17)
    c = b.node("Conv", ["x", b.weight(6, 3, 3, 3), b.weight(6)], pads=[1, 1, 1, 1])
    n = b.node("BatchNormalization", [c] + _bn_inputs(b, 6))
    r = b.node("Relu", [n])
    p = b.node("MaxPool", [r], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    c2 = b.node("Conv", [p, b.weight(8, 6, 3, 3), b.weight(8)], pads=[1, 1, 1, 1],
                strides=[2, 2])
    r2 = b.node("Relu", [c2])
    g = b.node("GlobalAveragePool", [r2])
    f = b.node("Flatten", [g])
    logits = b.node("Gemm", [f, b.weight(5, 8), b.weight(5)], transB=1)
    y = b.node("Softmax", [logits], axis=1)
    graph = assert_matches_ort(b.model({"x": (3, 9, 9)}, [y]))
    kinds = [(e.name, e.kind) for e in graph.entries]
    assert (y, "neurons") in kinds and (f, "alias") in kinds


def test_resnet_block_matches_onnxruntime():
    """Conv-BN-Relu-Conv-BN + identity skip, Relu; then a strided block with a 1x1 projection
    shortcut."""
    b = ModelBuilder(13)
    stem = b.node("Relu", [b.node("Conv", ["x", b.weight(4, 3, 3, 3), b.weight(4)],
                                  pads=[1, 1, 1, 1])])

    def block(x, cin, cout, stride):
        c1 = b.node("Conv", [x, b.weight(cout, cin, 3, 3)], pads=[1, 1, 1, 1],
                    strides=[stride, stride])
        r1 = b.node("Relu", [b.node("BatchNormalization", [c1] + _bn_inputs(b, cout))])
        c2 = b.node("Conv", [r1, b.weight(cout, cout, 3, 3)], pads=[1, 1, 1, 1])
        n2 = b.node("BatchNormalization", [c2] + _bn_inputs(b, cout))
        skip = x if stride == 1 and cin == cout else b.node(
            "Conv", [x, b.weight(cout, cin, 1, 1), b.weight(cout)], strides=[stride, stride])
        return b.node("Relu", [b.node("Add", [n2, skip])])

    y = block(block(stem, 4, 4, 1), 4, 6, 2)
    assert_matches_ort(b.model({"x": (3, 7, 8)}, [y]))


def test_two_input_model_matches_onnxruntime():
    b = ModelBuilder(13)
    left = conv_then(b)
    right = b.node("Conv", ["y", b.weight(4, 2, 3, 3)], pads=[1, 1, 1, 1])
    z = b.node("Relu", [b.node("Add", [left, right])])
    assert_matches_ort(b.model({"x": (3, 5, 6), "y": (2, 5, 6)}, [z]))


def test_fixed_batch_model_matches_onnxruntime():
    """A fixed batch of 2 (an export with a concrete example input): Reshape to (2, -1)."""
    b = ModelBuilder(13)
    f = b.node("Reshape", [conv_then(b), b.ints([2, -1])])
    y = b.node("MatMul", [f, b.weight(160, 3)])
    assert_matches_ort(b.model({"x": (3, 5, 8)}, [y], batch=2))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("op", ["LSTM", "NonMaxSuppression", "Erf"])
def test_unsupported_operator_gives_one_line_naming_the_node(op):
    b = ModelBuilder(13)
    if op == "LSTM":
        y = b.node("LSTM", ["x", b.weight(1, 8, 5), b.weight(1, 8, 2)], outputs=1,
                   hidden_size=2)
        model = b.model({"x": (3, 5)}, [y], batch=4)  # (seq, batch, input) = (4, 3, 5)
    elif op == "NonMaxSuppression":
        y = b.node("NonMaxSuppression", ["x", b.node("Sigmoid", ["x"])])
        b.nodes[-1].input[1] = b.nodes[-2].output[0]
        model = b.model({"x": (4, 4)}, [y])
    else:
        y = b.node("Erf", [conv_then(b)])
        model = b.model({"x": (3, 5, 5)}, [y])
    node = next(n for n in b.nodes if n.op_type == op)
    msg = refusal(model)
    assert msg == (f"layer {node.name!r} ({op}) cannot be expressed as a neuron graph: "
                   "no neuron-graph rule for this operator")


def test_unnamed_node_is_named_by_op_type_and_position():
    b = ModelBuilder(13)
    y = b.node("Erf", [b.node("Relu", ["x"])])
    model = b.model({"x": (3, 4)}, [y])
    for n in model.graph.node:
        n.name = ""
    assert refusal(model) == ("layer 'Erf_1' (Erf) cannot be expressed as a neuron graph: no "
                              "neuron-graph rule for this operator")


def test_corrupt_file_gives_one_line(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    msg = refusal(path)
    assert msg.startswith(f"{path} is not a readable ONNX model (")


@pytest.mark.parametrize("content", ["empty", "truncated"])
def test_empty_or_truncated_file_gives_one_line(tmp_path, content):
    b = ModelBuilder(13)
    data = b.model({"x": (3, 5, 6)}, [b.node("Relu", [conv_then(b)])]).SerializeToString()
    path = tmp_path / "x.onnx"
    path.write_bytes(b"" if content == "empty" else data[:len(data) // 2])
    msg = refusal(path)
    if content == "empty":  # protobuf reads no bytes as an empty model
        assert msg == "x: the ONNX graph has no nodes"
    else:
        assert msg.startswith(f"{path} is not a readable ONNX model (")


def test_missing_file_gives_one_line(tmp_path):
    assert refusal(tmp_path / "none.onnx") == f"model file not found: {tmp_path / 'none.onnx'}"


def test_dynamic_spatial_dims_need_input_shape():
    b = ModelBuilder(13)
    y = b.node("Relu", [conv_then(b)])
    model = b.model({"x": (3, None, None)}, [y])
    msg = refusal(model)
    assert msg == ("input 'x' has dynamic dimensions ((3, ?, ?) after the batch axis): give "
                   "--input-shape, in the model's own layout without the batch axis "
                   "(e.g. 3,224,224)")
    g = assert_matches_ort(model, input_shape=(3, 6, 7))
    assert g.entries[-1].output.shape == (4, 6, 7)


def test_input_shape_of_wrong_rank_gives_one_line():
    b = ModelBuilder(13)
    model = b.model({"x": (3, None, None)}, [b.node("Relu", [conv_then(b)])])
    assert "has 2 dimensions; input 'x' has 3" in refusal(model, input_shape=(6, 7))


def test_input_shape_that_a_constant_reshape_no_longer_fits_names_the_node():
    b = ModelBuilder(13)
    f = b.node("Reshape", [conv_then(b), b.ints([0, 120])])
    model = b.model({"x": (3, 5, 6)}, [b.node("Gemm", [f, b.weight(120, 3)])])
    assert refusal(model, input_shape=(3, 7, 8)) == (
        f"layer {b.nodes[1].name!r} (Reshape) cannot be expressed as a neuron graph: cannot "
        "reshape (1, 4, 7, 8) to [0, 120]")


def test_constant_model_output_is_refused():
    b = ModelBuilder(13)
    k = b.node("Add", [b.const(1.0), b.const(2.0)])
    model = b.model({"x": (3,)}, [b.node("Relu", ["x"]), k])
    assert refusal(model) == (f"layer {k!r} (output) cannot be expressed as a neuron graph: the "
                              "model output is a constant (no neuron computes it)")


def test_invalid_model_gives_one_line():
    b = ModelBuilder(13)
    y = b.node("Relu", ["x"])
    model = b.model({"x": (3, 4)}, [y])
    model.graph.node[0].input[0] = "nowhere"
    assert "is not a valid ONNX model" in refusal(model)
