"""Keras calls -> graph entries: neuron ops (new neurons) or aliases (shape-only views).

One builder per layer family; the registry at the bottom maps Keras class names to them.
Every builder reads the layer's configuration and weights and returns the entries that the
call becomes (SeparableConv makes two: its depthwise stage is a layer of neurons of its own).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedLayerError
from ..graph.entries import Entry, IdAllocator, check_no_parallel_edges
from ..ops import activations
from .model import Call
from ..ops.base import InputOp, NeuronOp, Unsupported
from ..ops.elementwise import ElementwiseOp
from ..ops.geometry import (AxisPairs, PairTable, average_axis, matrix_axis, padded_geometry,
                           transposed_axis, whole_axis, window_axis)
from ..ops.tensors import ZERO, TensorIds
from ..ops.windowed import WindowedOp


def _np(x):
    if hasattr(x, "numpy"):  # Keras variables and eager tensors, without a DeprecationWarning
        return np.asarray(x.numpy())
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def _shape(call: Call, k=0) -> tuple[int, ...]:
    shape = call.output_shapes[k][1:]
    if any(s is None for s in shape):
        raise Unsupported(f"output shape {tuple(call.output_shapes[k])} is not fully known: "
                          "give the model a fixed input shape")
    return tuple(int(s) for s in shape)


def _tuple(v, rank):
    if isinstance(v, int):
        return (v,) * rank
    return tuple(int(x) for x in v)


def _spatial(call: Call, xs) -> tuple:
    """A spatial layer's (layer, input tensor ids, output shape), refusing channels_first."""
    _channels_last(call.op)
    return call.op, xs[0], _shape(call)


def _channels_last(layer):
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise Unsupported(f"data_format={fmt!r} (only channels_last is supported)")


def _activation(layer) -> str:
    """Contract name of a layer's Keras activation function (Conv2D(activation=...))."""
    fn = getattr(layer, "activation", None)
    if fn is None:
        return "linear"
    import keras

    name = keras.activations.serialize(fn)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    name = {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)
    if name == "leaky_relu":
        return "leaky_relu:0.2"  # keras.activations.leaky_relu's default slope
    if name not in activations.PLAIN:
        raise Unsupported(f"unsupported activation {name!r}")
    return name


# ----------------------------------------------------------------------------- windowed
def _window_table(in_shape, out_shape, kernel, strides, dilation, padding, transposed=False):
    """PairTable of a conv/pool window over the spatial axes (all but the last)."""
    rank = len(kernel)
    axes = []
    for d in range(rank):
        i_n, o_n = in_shape[d], out_shape[d]
        if transposed:
            # Transposed conv is the gradient of a conv from the output to the input space, so
            # its padding is that conv's TensorFlow padding (the output's size is Keras's).
            _, pad = padded_geometry(padding, o_n, kernel[d], strides[d], dilation[d])
            axes.append(transposed_axis(i_n, o_n, kernel[d], strides[d], dilation[d], pad))
        else:
            o_expected, pad = padded_geometry(padding, i_n, kernel[d], strides[d], dilation[d])
            if o_expected != o_n:
                raise Unsupported(f"output size {o_n} on axis {d} differs from the {padding!r} "
                                  f"padding rule ({o_expected})")
            axes.append(window_axis(i_n, o_n, kernel[d], strides[d], dilation[d], pad))
    return PairTable(axes, out_shape[:rank], in_shape[:rank], kernel)


def _conv(call, x, alloc, *, depthwise=False):
    layer = call.op
    _channels_last(layer)
    out_shape = _shape(call)
    rank = len(out_shape) - 1
    kernel = _np(layer.kernel)
    ksize = kernel.shape[:rank]
    strides = _tuple(layer.strides, rank)
    dilation = _tuple(layer.dilation_rate, rank)
    padding = layer.padding
    table = _window_table(x.shape, out_shape, ksize, strides, dilation, padding)
    cin = x.shape[-1]
    if depthwise:
        dm = kernel.shape[-1]
        groups = cin
        weights = kernel.reshape(math.prod(ksize), 1, cin * dm)
    else:
        groups = int(getattr(layer, "groups", 1))
        weights = kernel.reshape(math.prod(ksize), kernel.shape[-2], kernel.shape[-1])
    bias = _np(layer.bias) if getattr(layer, "use_bias", False) and layer.bias is not None else None
    params = {"kernel_size": list(ksize), "strides": list(strides), "dilation": list(dilation),
              "padding": padding, "groups": groups}
    return WindowedOp(inp=x, out_shape=out_shape, offset=alloc(out_shape), pairs=table,
                      groups=groups, kernel=weights, bias=bias, activation=_activation(layer),
                      params=params)


def build_conv(call, xs, alloc):
    return [_neurons(call, _conv(call, xs[0], alloc))]


def build_depthwise(call, xs, alloc):
    return [_neurons(call, _conv(call, xs[0], alloc, depthwise=True))]


def build_separable(call, xs, alloc):
    layer, x, out_shape = _spatial(call, xs)
    rank = len(out_shape) - 1
    dw = _np(layer.depthwise_kernel)
    pw = _np(layer.pointwise_kernel)
    ksize = dw.shape[:rank]
    strides = _tuple(layer.strides, rank)
    dilation = _tuple(layer.dilation_rate, rank)
    cin, dm = dw.shape[-2], dw.shape[-1]
    mid_shape = tuple(out_shape[:-1]) + (cin * dm,)
    table = _window_table(x.shape, mid_shape, ksize, strides, dilation, layer.padding)
    depth = WindowedOp(inp=x, out_shape=mid_shape, offset=alloc(mid_shape), pairs=table,
                       groups=cin, kernel=dw.reshape(math.prod(ksize), 1, cin * dm),
                       params={"kernel_size": list(ksize), "strides": list(strides),
                               "dilation": list(dilation), "padding": layer.padding,
                               "depth_multiplier": int(dm)})
    mid = depth.output
    pw_table = _window_table(mid_shape, out_shape, (1,) * rank, (1,) * rank, (1,) * rank, "valid")
    bias = _np(layer.bias) if layer.use_bias else None
    point = WindowedOp(inp=mid, out_shape=out_shape, offset=alloc(out_shape), pairs=pw_table,
                       groups=1, kernel=pw.reshape(1, cin * dm, -1), bias=bias,
                       activation=_activation(layer), params={"pointwise": True})
    first = Entry(f"{call.name}/depthwise", call.class_name, "neurons", mid, depth)
    return [first, Entry(call.name, call.class_name, "neurons", point.output, point,
                         inputs=[first.name])]


def build_conv_transpose(call, xs, alloc):
    layer, x, out_shape = _spatial(call, xs)
    rank = len(out_shape) - 1
    kernel = _np(layer.kernel)  # (k..., cout, cin)
    ksize = kernel.shape[:rank]
    strides = _tuple(layer.strides, rank)
    dilation = _tuple(layer.dilation_rate, rank)
    if layer.padding not in ("valid", "same"):
        raise Unsupported(f"padding {layer.padding!r}")
    table = _window_table(x.shape, out_shape, ksize, strides, dilation, layer.padding,
                          transposed=True)
    weights = np.swapaxes(kernel.reshape(math.prod(ksize), kernel.shape[-2], kernel.shape[-1]),
                          1, 2)
    bias = _np(layer.bias) if layer.use_bias else None
    op = WindowedOp(inp=x, out_shape=out_shape, offset=alloc(out_shape), pairs=table, groups=1,
                    kernel=weights, bias=bias, activation=_activation(layer),
                    params={"kernel_size": list(ksize), "strides": list(strides),
                            "dilation": list(dilation), "padding": layer.padding,
                            "transposed": True})
    return [_neurons(call, op)]


def build_dense(call, xs, alloc):
    layer = call.op
    x = xs[0]
    out_shape = _shape(call)
    kernel = _np(layer.kernel)
    positions = math.prod(x.shape[:-1])
    ar = np.arange(positions, dtype=np.int64)
    table = PairTable([AxisPairs(ar, np.zeros_like(ar), ar)], (positions,), (positions,), (1,))
    bias = _np(layer.bias) if layer.use_bias else None
    op = WindowedOp(inp=x, out_shape=out_shape, offset=alloc(out_shape), pairs=table, groups=1,
                    kernel=kernel.reshape(1, *kernel.shape), bias=bias,
                    activation=_activation(layer), params={"units": int(kernel.shape[-1])})
    return [_neurons(call, op)]


def build_pool(call, xs, alloc):
    layer, x, out_shape = _spatial(call, xs)
    rank = len(out_shape) - 1
    pool = _tuple(layer.pool_size, rank)
    strides = _tuple(layer.strides if layer.strides is not None else pool, rank)
    is_max = "Max" in call.class_name
    table = _window_table(x.shape, out_shape, pool, strides, (1,) * rank, layer.padding)
    if not is_max:
        table = PairTable([average_axis(a, o) for a, o in zip(table.axes, out_shape[:rank])],
                          table.out_spatial, table.in_spatial, table.kernel_spatial)
    return _pool_neurons(call, x, out_shape, table, alloc,
                         {"pool_size": list(pool), "strides": list(strides),
                          "padding": layer.padding})


def build_global_pool(call, xs, alloc):
    layer, x, out_shape = _spatial(call, xs)
    spatial = x.shape[:-1]
    is_max = "Max" in call.class_name
    axes = [whole_axis(n) for n in spatial]
    if not is_max:
        axes = [average_axis(a, 1) for a in axes]
    table = PairTable(axes, (1,) * len(spatial), spatial, spatial)
    return _pool_neurons(call, x, out_shape, table, alloc,
                         {"keepdims": bool(getattr(layer, "keepdims", False))})


def _pool_neurons(call, x, out_shape, table, alloc, params):
    """Max pooling: op ``max`` over the window; average pooling: op ``sum`` with the weights
    the table already carries (``average_axis``). Channels never mix (one group each)."""
    op = WindowedOp(inp=x, out_shape=out_shape, offset=alloc(out_shape), pairs=table,
                    groups=x.shape[-1], kernel=None,
                    op="max" if "Max" in call.class_name else "sum", params=params)
    return [_neurons(call, op)]


def build_upsampling(call, xs, alloc):
    layer, x, out_shape = _spatial(call, xs)
    rank = len(out_shape) - 1
    size = _tuple(layer.size, rank)
    interpolation = getattr(layer, "interpolation", "nearest")
    if interpolation == "nearest":
        # A copy of each input value to several positions. As an alias it would feed one neuron
        # to a later window several times (parallel edges), so it makes neurons: one edge each.
        def repeat(a):
            for d, s in enumerate(size):
                a = np.repeat(a, s, axis=d)
            return a
        return _unary(call, x.mapped(repeat), alloc, params={"size": list(size)})
    import keras

    axes = []
    for d in range(rank):
        n = x.shape[d]
        # The exact 1-d interpolation matrix, taken from Keras's own resize of an identity
        # image (resize is separable, so the N-d weights are products of these).
        eye = np.eye(n, dtype=np.float32).reshape(1, n, 1, n)
        m = _np(keras.ops.image.resize(eye, (n * size[d], 1), interpolation=interpolation,
                                       data_format="channels_last"))[0, :, 0, :]
        m = np.where(np.abs(m) < 1e-12, 0.0, m)
        axes.append(matrix_axis(m.astype(np.float64)))
    table = PairTable(axes, out_shape[:rank], x.shape[:rank], (1,) * rank)
    op = WindowedOp(inp=x, out_shape=out_shape, offset=alloc(out_shape), pairs=table,
                    groups=x.shape[-1], kernel=None,
                    params={"size": list(size), "interpolation": interpolation})
    return [_neurons(call, op)]


# ----------------------------------------------------------------------------- elementwise
def _per_axis(values, axis, out_shape):
    """Reshape per-channel ``values`` to broadcast along ``axis`` of the batched tensor."""
    rank = len(out_shape)
    axes = [axis] if isinstance(axis, int) else list(axis)
    axes = [(a % (rank + 1)) - 1 for a in axes]
    shape = [1] * rank
    for a in axes:
        shape[a] = out_shape[a]
    return np.asarray(values, dtype=np.float64).reshape(shape)


def _unary(call, x, alloc, *, weight=1.0, bias=None, activation="linear", params=None,
           parametric=False):
    out_shape = _shape(call)
    op = ElementwiseOp(inputs=[x], weights=[weight], out_shape=out_shape,
                       offset=alloc(out_shape), bias=bias, activation=activation,
                       params=params or {}, parametric=parametric)
    return [_neurons(call, op)]


def build_batchnorm(call, xs, alloc):
    layer = call.op
    out_shape = _shape(call)
    var = _np(layer.moving_variance).astype(np.float64)
    mean = _np(layer.moving_mean).astype(np.float64)
    gamma = _np(layer.gamma).astype(np.float64) if layer.scale else np.ones_like(var)
    beta = _np(layer.beta).astype(np.float64) if layer.center else np.zeros_like(var)
    w = gamma / np.sqrt(var + layer.epsilon)
    b = beta - mean * w
    return _unary(call, xs[0], alloc, weight=_per_axis(w, layer.axis, out_shape),
                  bias=_per_axis(b, layer.axis, out_shape), params={"epsilon": layer.epsilon},
                  parametric=True)


def build_activation(call, xs, alloc):
    return _unary(call, xs[0], alloc, activation=_activation(call.op))


def build_relu(call, xs, alloc):
    layer = call.op
    return _unary(call, xs[0], alloc, activation=activations.relu_name(
        layer.max_value, layer.negative_slope, layer.threshold))


def build_leaky_relu(call, xs, alloc):
    return _unary(call, xs[0], alloc,
                  activation=f"leaky_relu:{activations.fmt(call.op.negative_slope)}")


def build_elu(call, xs, alloc):
    alpha = float(call.op.alpha)
    return _unary(call, xs[0], alloc, activation="elu" if alpha == 1.0 else
                  f"elu:{activations.fmt(alpha)}")


def build_prelu(call, xs, alloc):
    alpha = _np(call.op.alpha).astype(np.float32)
    names = np.vectorize(lambda a: f"leaky_relu:{activations.fmt(a)}", otypes=[object])(alpha)
    return _unary(call, xs[0], alloc, activation=names)


def build_softmax(call, xs, alloc):
    axis = call.op.axis
    rank = len(_shape(call))
    if axis not in (-1, rank):
        raise Unsupported(f"softmax over axis {axis} (only the last axis is supported)")
    return _unary(call, xs[0], alloc, activation="softmax")


def build_rescaling(call, xs, alloc):
    layer = call.op
    scale = np.asarray(layer.scale, dtype=np.float64)
    offset = np.asarray(layer.offset, dtype=np.float64)
    return _unary(call, xs[0], alloc, weight=scale, bias=offset)


def build_normalization(call, xs, alloc):
    import keras

    layer = call.op
    if layer.invert:
        raise Unsupported("invert=True")
    mean = _np(layer.mean).astype(np.float64)
    var = _np(layer.variance).astype(np.float64)
    w = 1.0 / np.maximum(np.sqrt(var), keras.backend.epsilon())
    out_shape = _shape(call)
    w = w.reshape(w.shape[1:]) if w.ndim == len(out_shape) + 1 else w
    mean = mean.reshape(mean.shape[1:]) if mean.ndim == len(out_shape) + 1 else mean
    return _unary(call, xs[0], alloc, weight=w, bias=-mean * w, parametric=True)


_MERGE = {"Add": ("sum", lambda n: [1.0] * n), "Subtract": ("sum", lambda n: [1.0, -1.0]),
          "Average": ("sum", lambda n: [1.0 / n] * n), "Maximum": ("max", lambda n: [1.0] * n),
          "Minimum": ("min", lambda n: [1.0] * n), "Multiply": ("product", lambda n: [1.0] * n)}


def build_merge(call, xs, alloc):
    op, weights = _MERGE[call.class_name]
    if call.class_name == "Subtract" and len(xs) != 2:
        raise Unsupported("Subtract takes exactly two inputs")
    out_shape = _shape(call)
    eop = ElementwiseOp(inputs=list(xs), weights=weights(len(xs)), out_shape=out_shape,
                        offset=alloc(out_shape), op=op)
    return [_neurons(call, eop)]


def build_arithmetic(call, xs, alloc):
    """keras.ops arithmetic in a functional graph (MobileNetV3's ``x + 3.0``, ``x * (1/6)``)."""
    args = list(call.node.arguments.args)
    if call.node.arguments.kwargs:
        raise Unsupported("keyword arguments")
    import keras

    tensor_pos = [i for i, a in enumerate(args) if isinstance(a, keras.KerasTensor)]
    name = call.class_name
    if len(tensor_pos) == 2 and name in ("Add", "Subtract", "Multiply"):
        return build_merge(call, xs, alloc)
    if len(tensor_pos) != 1 or len(args) != 2:
        raise Unsupported("only a tensor combined with a constant is supported")
    const = np.asarray(_np(args[1 - tensor_pos[0]]), dtype=np.float64)
    first = tensor_pos[0] == 0
    if name == "Add":
        return _unary(call, xs[0], alloc, bias=const)
    if name == "Subtract":
        return _unary(call, xs[0], alloc, weight=1.0 if first else -1.0,
                      bias=-const if first else const)
    if name == "Multiply":
        return _unary(call, xs[0], alloc, weight=const)
    if name in ("Divide", "TrueDivide") and first:
        return _unary(call, xs[0], alloc, weight=1.0 / const)
    raise Unsupported(f"{name} with these operands")


def build_negative(call, xs, alloc):
    return _unary(call, xs[0], alloc, weight=-1.0)


# ----------------------------------------------------------------------------- shape-only
def build_identity(call, xs, alloc):
    return [_alias(call, xs[0])]


def build_reshape(call, xs, alloc):
    return [_alias(call, xs[0].reshaped(_shape(call)))]


def build_permute(call, xs, alloc):
    dims = [d - 1 for d in call.op.dims]
    return [_alias(call, xs[0].mapped(lambda a: a.transpose(dims)), {"dims": list(call.op.dims)})]


def build_concatenate(call, xs, alloc):
    rank = len(_shape(call))
    axis = call.op.axis
    axis = (axis % (rank + 1)) - 1
    ids = np.concatenate([x.array().reshape(x.shape) for x in xs], axis=axis)
    return [_alias(call, TensorIds(ids.shape, ids=ids.reshape(-1)), {"axis": call.op.axis})]


def _pairs(v, rank):
    if isinstance(v, int):
        return ((v, v),) * rank
    if rank == 1 and len(v) == 2 and all(isinstance(p, int) for p in v):
        return (tuple(v),)  # the 1-d layers hold one (before, after) pair
    out = []
    for p in v:
        out.append((p, p) if isinstance(p, int) else tuple(p))
    return tuple(out)


def build_zero_padding(call, xs, alloc):
    _channels_last(call.op)
    rank = len(xs[0].shape) - 1
    pads = _pairs(call.op.padding, rank) + ((0, 0),)
    return [_alias(call, xs[0].mapped(lambda a: np.pad(a, pads, constant_values=ZERO)),
                   {"padding": [list(p) for p in pads[:-1]]})]


def build_cropping(call, xs, alloc):
    _channels_last(call.op)
    rank = len(xs[0].shape) - 1
    crops = _pairs(call.op.cropping, rank)
    sl = tuple(slice(a, n - b) for (a, b), n in zip(crops, xs[0].shape)) + (slice(None),)
    return [_alias(call, xs[0].mapped(lambda a: a[sl]), {"cropping": [list(c) for c in crops]})]


def _neurons(call, op: NeuronOp) -> Entry:
    check_no_parallel_edges(op)
    return Entry(call.name, call.class_name, "neurons", op.output, op)


def _alias(call, t: TensorIds, params=None) -> Entry:
    if t.shape != _shape(call):
        raise Unsupported(f"computed shape {t.shape} differs from Keras's {_shape(call)}")
    return Entry(call.name, call.class_name, "alias", t, params=params or {})


BUILDERS = {
    **{f"Conv{r}D": build_conv for r in (1, 2, 3)},
    **{f"DepthwiseConv{r}D": build_depthwise for r in (1, 2)},
    **{f"SeparableConv{r}D": build_separable for r in (1, 2)},
    **{f"Conv{r}DTranspose": build_conv_transpose for r in (1, 2, 3)},
    "Dense": build_dense,
    **{f"{k}Pooling{r}D": build_pool for k in ("Max", "Average") for r in (1, 2, 3)},
    **{f"Global{k}Pooling{r}D": build_global_pool for k in ("Max", "Average") for r in (1, 2, 3)},
    **{f"UpSampling{r}D": build_upsampling for r in (1, 2, 3)},
    "BatchNormalization": build_batchnorm,
    "Activation": build_activation,
    "ReLU": build_relu,
    "LeakyReLU": build_leaky_relu,
    "PReLU": build_prelu,
    "ELU": build_elu,
    "Softmax": build_softmax,
    "Rescaling": build_rescaling,
    "Normalization": build_normalization,
    **{k: build_merge for k in _MERGE},
    "Concatenate": build_concatenate,
    "Flatten": build_reshape,
    "Reshape": build_reshape,
    "Permute": build_permute,
    **{k: build_identity for k in ("Dropout", "SpatialDropout1D", "SpatialDropout2D",
                                   "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
                                   "AlphaDropout", "ActivityRegularization", "Identity")},
    **{f"ZeroPadding{r}D": build_zero_padding for r in (1, 2, 3)},
    **{f"Cropping{r}D": build_cropping for r in (1, 2, 3)},
}

# keras.ops calls recorded in functional graphs (module keras.src.ops.*), by class name.
OP_BUILDERS = {"Add": build_arithmetic, "Subtract": build_arithmetic,
               "Multiply": build_arithmetic, "Divide": build_arithmetic,
               "TrueDivide": build_arithmetic, "Negative": build_negative}


def build_entries(calls: list[Call]) -> list[Entry]:
    """Convert every call, allocating neuron ids in topological order.

    Raises UnsupportedLayerError (naming the layer and its class) before any output exists,
    for the refusals builders raise as :class:`Unsupported`; other exceptions are bugs and
    propagate unchanged.
    """
    entries: list[Entry] = []
    tensors: dict[int, tuple[TensorIds, str]] = {}
    alloc = IdAllocator()

    for call in calls:
        try:
            if call.is_input:
                shape = _shape(call)
                op = InputOp(shape, alloc(shape))
                built = [Entry(call.name, "InputLayer", "input", op.output, op)]
            else:
                xs = [tensors[i][0] for i in call.inputs]
                builder = _builder(call)
                built = builder(call, xs, alloc)
                built[0].inputs = built[0].inputs or [tensors[i][1] for i in call.inputs]
        except Unsupported as exc:
            # A builder's explicit refusal. Anything else a builder raises is a bug in it and
            # propagates with its traceback, rather than passing for an unsupported layer.
            raise UnsupportedLayerError(call.name, call.class_name, str(exc)) from None
        entries.extend(built)
        if len(call.outputs) != 1:
            raise UnsupportedLayerError(call.name, call.class_name, "more than one output")
        tensors[call.outputs[0]] = (built[-1].output, built[-1].name)
    return entries


def _builder(call: Call):
    module = type(call.op).__module__
    if module.startswith("keras.src.ops."):
        builder = OP_BUILDERS.get(call.class_name)
    else:
        builder = BUILDERS.get(call.class_name)
    if builder is None:
        raise Unsupported("no neuron-graph rule for this layer kind")
    return builder
