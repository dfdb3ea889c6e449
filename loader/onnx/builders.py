"""ONNX nodes -> graph entries, one builder per operator family (opsets 11-21).

Every builder receives the :class:`~loader.onnx.reader.Converter` and the node, reads its
inputs (activations as unbatched id maps, constants as arrays), and registers the entries the
node becomes: a layer of neurons (an op of :mod:`loader.ops`), or a shape-only alias. An
operator this module cannot express exactly raises :class:`~loader.ops.base.Unsupported`
with the reason, which the converter turns into the one-line error naming the node.

Layouts: a convolution, pooling or resize reads and writes channels-first tensors (NCHW
without N: ``(C, *spatial)``), so its neurons are numbered channel-major
(:class:`~loader.ops.windowed.WindowedOp` with ``channels_first``). Gemm and MatMul act on the
last axis, as Keras's Dense does.
"""

from __future__ import annotations

import math

import numpy as np

from ..ops import activations
from ..ops.base import Unsupported
from ..ops.elementwise import ElementwiseOp
from ..ops.geometry import (AxisPairs, PairTable, matrix_axis, transposed_axis, whole_axis,
                            window_axis)
from ..ops.tensors import ZERO, TensorIds
from ..ops.windowed import WindowedOp


# ----------------------------------------------------------------------------- helpers
def _ints(v, n=None, default=None) -> list[int]:
    if v is None:
        return list(default) if default is not None else None
    return [int(x) for x in v]


def _batch_axis(axis: int, rank: int, what: str = "axis") -> int:
    """An axis of the batched tensor (rank ``rank``, negative allowed) as an axis of the
    unbatched one; the batch axis itself is refused."""
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise Unsupported(f"{what} {axis} is out of range for rank {rank}")
    if a == 0:
        raise Unsupported(f"{what} {axis} is the batch axis")
    return a - 1


def _unbatched_const(c: np.ndarray, rank: int) -> np.ndarray:
    """A constant broadcast against an activation of unbatched rank ``rank``: a leading batch
    axis of 1 is dropped (numpy broadcasting aligns the rest)."""
    c = np.asarray(c)
    if c.ndim == rank + 1:
        if c.shape[0] != 1:
            raise Unsupported(f"a constant of shape {c.shape} varies along the batch axis")
        c = c[0]
    if c.ndim > rank + 1:
        raise Unsupported(f"a constant of shape {c.shape} has more axes than the activation")
    return c


def _per_channel(vec, shape, layout: str | None) -> np.ndarray:
    """A per-channel vector shaped to broadcast over an activation of ``shape``."""
    vec = np.asarray(vec, dtype=np.float64).reshape(-1)
    if layout == "first" and len(shape) > 1:
        return vec.reshape((-1,) + (1,) * (len(shape) - 1))
    return vec


def _channels_first_input(conv: "Converter", node, name):  # noqa: F821
    v = conv.activation(name)
    if len(v.ids.shape) < 2:
        raise Unsupported(f"input {name!r} has shape {v.ids.shape}: a channels-first tensor "
                          "(C, spatial...) is expected")
    return v


def _spatial_params(node, rank: int):
    kernel = _ints(node.attrs.get("kernel_shape"))
    strides = _ints(node.attrs.get("strides"), default=[1] * rank)
    dilations = _ints(node.attrs.get("dilations"), default=[1] * rank)
    pads = _ints(node.attrs.get("pads"), default=[0] * (2 * rank))
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    return kernel, strides, dilations, pads, auto_pad


def _window_geometry(in_size, k, s, d, pb, pe, auto_pad, ceil_mode=False):
    """(output size, padding before) of one axis of a forward window (Conv, pooling).

    ONNX: ``out = floor((in + pb + pe - ((k - 1) * d + 1)) / s) + 1`` (``ceil`` with
    ``ceil_mode``, dropping a last window that would start in the end padding, as
    onnxruntime and PyTorch do); ``SAME_UPPER`` / ``SAME_LOWER``: ``out = ceil(in / s)``, the
    total padding split with the odd one at the end (upper) or the beginning (lower);
    ``VALID``: no padding.
    """
    eff = (k - 1) * d + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and d > 1:
        # onnxruntime 1.32 refuses it for Conv, and for pooling pads as if undilated, giving
        # fewer outputs than the spec's ceil(in / stride): no reference to be exact against.
        raise Unsupported(f"auto_pad {auto_pad} with dilations > 1 (onnxruntime and the ONNX "
                          "specification disagree on its output)")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-in_size // s)
        total = max(0, (out - 1) * s + eff - in_size)
        before = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        return out, before, total - before
    if auto_pad == "VALID":
        pb = pe = 0
    elif auto_pad != "NOTSET":
        raise Unsupported(f"auto_pad {auto_pad!r}")
    span = in_size + pb + pe - eff
    if span < 0:
        raise Unsupported(f"the window ({eff}) is larger than the padded input "
                          f"({in_size + pb + pe})")
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= in_size + pb:
            out -= 1
    else:
        out = span // s + 1
    return out, pb, pe


def _forward_table(in_spatial, kernel, strides, dilations, pads, auto_pad, ceil_mode=False):
    rank = len(in_spatial)
    axes, out_spatial, geometry = [], [], []
    for a in range(rank):
        o, pb, pe = _window_geometry(in_spatial[a], kernel[a], strides[a], dilations[a],
                                     pads[a], pads[a + rank], auto_pad, ceil_mode)
        axes.append(window_axis(in_spatial[a], o, kernel[a], strides[a], dilations[a], pb))
        out_spatial.append(o)
        geometry.append((pb, pe))
    return PairTable(axes, out_spatial, in_spatial, kernel), tuple(out_spatial), geometry


def _kernel_matrix(w: np.ndarray) -> np.ndarray:
    """An ONNX conv weight (M, C/g, *k) as the enumerator's (taps, C/g, M)."""
    m, cg = w.shape[:2]
    return np.ascontiguousarray(w.reshape(m, cg, -1).transpose(2, 1, 0))


# ----------------------------------------------------------------------------- windowed
def build_conv(conv, node):
    x = _channels_first_input(conv, node, node.inputs[0])
    w = conv.constant(node, 1, "weight")
    b = conv.constant(node, 2, "bias", required=False)
    shape = x.ids.shape
    rank = len(shape) - 1
    kernel, strides, dilations, pads, auto_pad = _spatial_params(node, rank)
    kernel = kernel or list(w.shape[2:])
    if list(w.shape[2:]) != kernel:
        raise Unsupported(f"kernel_shape {kernel} differs from the weight's {list(w.shape[2:])}")
    groups = int(node.attrs.get("group", 1))
    cin, cout = shape[0], w.shape[0]
    if w.shape[1] * groups != cin:
        raise Unsupported(f"weight {w.shape} with group={groups} does not fit {cin} input "
                          "channels")
    table, out_spatial, geometry = _forward_table(shape[1:], kernel, strides, dilations, pads,
                                                  auto_pad)
    out_shape = (cout,) + out_spatial
    bias = None if b is None else _per_channel(b, out_shape, "first")
    op = WindowedOp(inp=x.ids, out_shape=out_shape, offset=conv.alloc(out_shape), pairs=table,
                    groups=groups, kernel=_kernel_matrix(w), bias=bias, channels_first=True,
                    params={"kernel_size": kernel, "strides": strides, "dilation": dilations,
                            "padding": [list(g) for g in geometry], "groups": groups})
    conv.add_neurons(node, op, layout="first")


def build_conv_transpose(conv, node):
    x = _channels_first_input(conv, node, node.inputs[0])
    w = conv.constant(node, 1, "weight")  # (C, M/g, *k)
    b = conv.constant(node, 2, "bias", required=False)
    shape = x.ids.shape
    rank = len(shape) - 1
    kernel, strides, dilations, pads, auto_pad = _spatial_params(node, rank)
    kernel = kernel or list(w.shape[2:])
    groups = int(node.attrs.get("group", 1))
    out_pad = _ints(node.attrs.get("output_padding"), default=[0] * rank)
    out_shape_attr = _ints(node.attrs.get("output_shape"))
    cin = shape[0]
    if w.shape[0] != cin:
        raise Unsupported(f"weight {w.shape} does not fit {cin} input channels")
    mg = w.shape[1]
    axes, out_spatial = [], []
    for a in range(rank):
        n, k, s, d = shape[1 + a], kernel[a], strides[a], dilations[a]
        full = s * (n - 1) + out_pad[a] + (k - 1) * d + 1
        if out_shape_attr is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            want = (out_shape_attr[-rank + a] if out_shape_attr is not None else n * s)
            total = full - want
            if total < 0:
                raise Unsupported(f"output_shape {want} is larger than the transposed "
                                  f"convolution gives ({full})")
            # ONNX (and onnxruntime 1.32, checked): SAME_UPPER puts the odd padding at the
            # end; SAME_LOWER and an explicit output_shape put it at the beginning.
            pb = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            o = want
        else:
            pb = 0 if auto_pad == "VALID" else pads[a]
            pe = 0 if auto_pad == "VALID" else pads[a + rank]
            o = full - pb - pe
        axes.append(transposed_axis(n, o, k, s, d, pb))
        out_spatial.append(o)
    table = PairTable(axes, out_spatial, shape[1:], kernel)
    cout = mg * groups
    cin_g = cin // groups
    kern = w.reshape(groups, cin_g, mg, -1).transpose(3, 1, 0, 2).reshape(-1, cin_g, cout)
    out_shape = (cout,) + tuple(out_spatial)
    bias = None if b is None else _per_channel(b, out_shape, "first")
    op = WindowedOp(inp=x.ids, out_shape=out_shape, offset=conv.alloc(out_shape), pairs=table,
                    groups=groups, kernel=np.ascontiguousarray(kern), bias=bias,
                    channels_first=True,
                    params={"kernel_size": kernel, "strides": strides, "dilation": dilations,
                            "groups": groups, "transposed": True})
    conv.add_neurons(node, op, layout="first")


def build_pool(conv, node):
    x = _channels_first_input(conv, node, node.inputs[0])
    conv.refuse_other_outputs(node)
    shape = x.ids.shape
    rank = len(shape) - 1
    kernel, strides, dilations, pads, auto_pad = _spatial_params(node, rank)
    if kernel is None:
        raise Unsupported("has no kernel_shape")
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    is_max = node.op_type == "MaxPool"
    table, out_spatial, geometry = _forward_table(shape[1:], kernel, strides, dilations, pads,
                                                  auto_pad, ceil_mode)
    if not is_max:
        include_pad = bool(node.attrs.get("count_include_pad", 0))
        axes = []
        for a, (ax, (pb, pe)) in enumerate(zip(table.axes, geometry)):
            if include_pad:
                # The divisor counts the window's taps inside input + explicit padding (not
                # the overhang a ceil_mode window has past the end padding).
                o = np.arange(out_spatial[a])[:, None]
                t = np.arange(kernel[a])[None, :]
                pos = o * strides[a] - pb + t * dilations[a]
                count = ((pos >= -pb) & (pos < shape[1 + a] + pe)).sum(axis=1)
            else:
                count = np.bincount(ax.out, minlength=out_spatial[a])
            axes.append(AxisPairs(ax.out, ax.tap, ax.inp, 1.0 / count[ax.out]))
        table = PairTable(axes, table.out_spatial, table.in_spatial, table.kernel_spatial)
    out_shape = (shape[0],) + out_spatial
    op = WindowedOp(inp=x.ids, out_shape=out_shape, offset=conv.alloc(out_shape), pairs=table,
                    groups=shape[0], kernel=None, op="max" if is_max else "sum",
                    channels_first=True,
                    params={"pool_size": kernel, "strides": strides, "dilation": dilations,
                            "padding": [list(g) for g in geometry], "ceil_mode": ceil_mode})
    conv.add_neurons(node, op, layout="first")


def build_global_pool(conv, node):
    x = _channels_first_input(conv, node, node.inputs[0])
    shape = x.ids.shape
    _global_pool(conv, node, x.ids, shape[1:], is_max=node.op_type == "GlobalMaxPool",
                 out_shape=(shape[0],) + (1,) * (len(shape) - 1))


def _global_pool(conv, node, ids, spatial, *, is_max, out_shape, output=None, layout="first",
                 weight=None):
    """Every position of a channels-first tensor ``ids`` into one neuron per channel (the
    mean, the sum with ``weight=1``, or the maximum); ``output`` reshapes the layer's tensor
    (same order: one position)."""
    axes = [whole_axis(n) for n in spatial]
    if not is_max:
        n = math.prod(spatial)
        scale = 1.0 / n if weight is None else weight
        axes = [AxisPairs(a.out, a.tap, a.inp, np.full(len(a), scale if k == 0 else 1.0))
                for k, a in enumerate(axes)]
    table = PairTable(axes, (1,) * len(spatial), spatial, spatial)
    c = out_shape[0]
    op = WindowedOp(inp=ids, out_shape=out_shape, offset=conv.alloc(out_shape), pairs=table,
                    groups=c, kernel=None, op="max" if is_max else "sum", channels_first=True)
    conv.add_neurons(node, op, layout=layout,
                     output=None if output is None else op.output.reshaped(output))


def build_reduce(conv, node):
    """ReduceMean / ReduceMax / ReduceSum over every axis but the channels: global pooling
    (squeeze-and-excitation blocks write GlobalAveragePool this way)."""
    x = conv.activation(node.inputs[0])
    shape = x.ids.shape
    rank = len(shape) + 1
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = conv.constant(node, 1, "axes")
    if axes is None:
        if node.attrs.get("noop_with_empty_axes", 0):
            raise Unsupported("noop_with_empty_axes with no axes")
        raise Unsupported("reduces every axis, the batch axis included")
    axes = sorted({_batch_axis(int(a), rank) for a in np.asarray(axes).reshape(-1)})
    keep = [a for a in range(len(shape)) if a not in axes]
    if len(keep) != 1 or keep[0] not in (0, len(shape) - 1) or len(shape) < 2:
        raise Unsupported(f"reduces axes {axes} of {shape}: only every axis but the channel "
                          "axis (first or last) is supported")
    keepdims = bool(node.attrs.get("keepdims", 1))
    out = tuple(1 if a in axes else s for a, s in enumerate(shape)) if keepdims else \
        (shape[keep[0]],)
    kind = node.op_type
    if kind not in ("ReduceMean", "ReduceMax", "ReduceSum"):
        raise Unsupported(f"{kind}")
    first = keep[0] == 0
    c = shape[keep[0]]
    spatial = shape[1:] if first else shape[:-1]
    ids = x.ids if first else x.ids.mapped(lambda a: np.moveaxis(a, -1, 0))
    _global_pool(conv, node, ids, spatial, is_max=kind == "ReduceMax",
                 out_shape=(c,) + (1,) * len(spatial), output=out,
                 layout="first" if first else "last",
                 weight=1.0 if kind == "ReduceSum" else None)


def build_gemm(conv, node):
    a = conv.activation(node.inputs[0])
    if len(a.ids.shape) != 1:
        raise Unsupported(f"input A has shape {a.ids.shape} besides the batch axis: Gemm "
                          "takes (batch, K)")
    if node.attrs.get("transA", 0):
        raise Unsupported("transA=1 would transpose the batch axis")
    b = conv.constant(node, 1, "weight B")
    if node.attrs.get("transB", 0):
        b = b.T
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    c = conv.constant(node, 2, "bias C", required=False)
    n = b.shape[1]
    bias = None
    if c is not None:
        c = np.asarray(c, dtype=np.float64)
        if c.ndim == 2:
            if c.shape[0] != 1:
                raise Unsupported(f"bias C of shape {c.shape} varies along the batch axis")
            c = c[0]
        bias = beta * np.broadcast_to(c, (n,))
    _dense(conv, node, a, alpha * np.asarray(b, dtype=np.float64), bias)


def build_matmul(conv, node):
    left, right = conv.value(node.inputs[0]), conv.value(node.inputs[1])
    if left.is_const or not right.is_const:
        raise Unsupported("only an activation times a constant matrix is supported")
    w = np.asarray(right.const)
    if w.ndim != 2:
        raise Unsupported(f"the constant factor has shape {w.shape} (a matrix is expected)")
    if not left.ids.shape:
        raise Unsupported("the activation has no feature axis")
    _dense(conv, node, left, w, None)


def _dense(conv, node, x, w: np.ndarray, bias):
    """A weight matrix over the last axis (Keras Dense's rule): one position pair per leading
    index."""
    shape = x.ids.shape
    if shape[-1] != w.shape[0]:
        raise Unsupported(f"weight {w.shape} does not fit the activation's last axis "
                          f"({shape[-1]})")
    positions = math.prod(shape[:-1])
    ar = np.arange(positions, dtype=np.int64)
    table = PairTable([AxisPairs(ar, np.zeros_like(ar), ar)], (positions,), (positions,), (1,))
    out_shape = tuple(shape[:-1]) + (w.shape[1],)
    ids = x.ids if len(shape) == 1 else x.ids.reshaped((positions, shape[-1]))
    op = WindowedOp(inp=ids, out_shape=out_shape, offset=conv.alloc(out_shape), pairs=table,
                    groups=1, kernel=np.asarray(w, np.float32).reshape(1, *w.shape), bias=bias,
                    params={"units": int(w.shape[1])})
    conv.add_neurons(node, op, layout="last" if len(out_shape) > 1 else None)


def build_resize(conv, node):
    x = _channels_first_input(conv, node, node.inputs[0])
    shape = x.ids.shape
    full = (conv.batch,) + shape
    if node.op_type == "Upsample":
        scales = node.attrs.get("scales")
        if scales is None:
            scales = conv.constant(node, 1, "scales")
        sizes = None
    elif conv.opset < 11:  # Resize-10: (X, scales)
        scales = conv.constant(node, 1, "scales")
        sizes = None
    else:
        scales = conv.constant(node, 2, "scales", required=False)
        sizes = conv.constant(node, 3, "sizes", required=False)
        if scales is not None and np.asarray(scales).size == 0:
            scales = None
    mode = node.attrs.get("mode", "nearest")
    # Upsample and Resize-10 have no coordinate attributes: onnxruntime reads them as
    # asymmetric, nearest rounding down (up when shrinking), checked against its output.
    legacy = node.op_type == "Upsample" or conv.opset < 11
    ctm = node.attrs.get("coordinate_transformation_mode",
                         "asymmetric" if legacy else "half_pixel")
    if node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" and sizes is not None:
        raise Unsupported(f"keep_aspect_ratio_policy "
                          f"{node.attrs['keep_aspect_ratio_policy']!r} (only 'stretch')")
    axes = node.attrs.get("axes")
    if axes is not None:  # opset 18: scales or sizes of these axes only, the rest kept
        axes = [_batch_axis(int(a), len(full)) + 1 for a in axes]
        if sizes is not None:
            sizes = _on_axes(full, axes, sizes)
        if scales is not None:
            scales = _on_axes([1.0] * len(full), axes, scales)
    if sizes is not None:
        out_full = [int(s) for s in np.asarray(sizes).reshape(-1)]
        scales_f = [o / i for o, i in zip(out_full, full)]
    elif scales is not None:
        scales_f = [float(s) for s in np.asarray(scales).reshape(-1)]
        out_full = [int(math.floor(i * s)) for i, s in zip(full, scales_f)]
    else:
        raise Unsupported("has neither scales nor sizes")
    if len(out_full) != len(full) or out_full[0] != full[0] or out_full[1] != full[1]:
        raise Unsupported("resizes the batch or the channel axis")
    out_shape = tuple(out_full[1:])
    if mode == "nearest":
        def rounding(scale):
            if legacy:
                return "ceil" if scale < 1 else "floor"
            return node.attrs.get("nearest_mode", "round_prefer_floor")
        maps = [_nearest_index(shape[1 + a], out_shape[1 + a], scales_f[2 + a], ctm,
                               rounding(scales_f[2 + a])) for a in range(len(shape) - 1)]

        def pick(arr):
            for a, m in enumerate(maps):
                arr = np.take(arr, m, axis=1 + a)
            return arr
        # Copies of input values, each a neuron of its own with one edge (as an alias it would
        # feed a later window one neuron twice).
        _elementwise(conv, node, [x.ids.mapped(pick)], [1.0], out_shape=out_shape,
                     layout="first")
        return
    if mode != "linear":
        raise Unsupported(f"mode {mode!r} (nearest and linear are supported)")
    if node.attrs.get("antialias", 0):
        raise Unsupported("antialias")
    axes = []
    for a in range(len(shape) - 1):
        m = _linear_matrix(shape[1 + a], out_shape[1 + a], scales_f[2 + a], ctm)
        axes.append(matrix_axis(m))
    table = PairTable(axes, out_shape[1:], shape[1:], (1,) * (len(shape) - 1))
    op = WindowedOp(inp=x.ids, out_shape=out_shape, offset=conv.alloc(out_shape), pairs=table,
                    groups=shape[0], kernel=None, channels_first=True,
                    params={"mode": mode, "coordinate_transformation_mode": ctm})
    conv.add_neurons(node, op, layout="first")


def _on_axes(base, axes, values) -> list:
    out = list(base)
    for a, v in zip(axes, np.asarray(values).reshape(-1).tolist(), strict=True):
        out[a] = v
    return out


def _source_coordinate(o: np.ndarray, n_in: int, n_out: int, scale: float, ctm: str):
    """ONNX Resize: the input coordinate of output coordinate ``o`` (one axis)."""
    if ctm == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(o, dtype=np.float64)
    if ctm == "align_corners":
        return o * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(o, dtype=np.float64)
    if ctm == "asymmetric":
        return o / scale
    if ctm == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        center = n_in / 2
        offset = center * (1 - adj)
        return offset + (o + 0.5) / scale - 0.5
    raise Unsupported(f"coordinate_transformation_mode {ctm!r}")


def _nearest_index(n_in, n_out, scale, ctm, nearest_mode) -> np.ndarray:
    x = _source_coordinate(np.arange(n_out, dtype=np.float64), n_in, n_out, scale, ctm)
    if nearest_mode == "round_prefer_floor":
        i = np.where(x == np.floor(x) + 0.5, np.floor(x), np.round(x))
    elif nearest_mode == "round_prefer_ceil":
        i = np.where(x == np.floor(x) + 0.5, np.ceil(x), np.round(x))
    elif nearest_mode == "floor":
        i = np.floor(x)
    elif nearest_mode == "ceil":
        i = np.ceil(x)
    else:
        raise Unsupported(f"nearest_mode {nearest_mode!r}")
    return np.clip(i, 0, n_in - 1).astype(np.int64)


def _linear_matrix(n_in, n_out, scale, ctm) -> np.ndarray:
    x = _source_coordinate(np.arange(n_out, dtype=np.float64), n_in, n_out, scale, ctm)
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = x - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return np.where(np.abs(m) < 1e-12, 0.0, m)


# ----------------------------------------------------------------------------- elementwise
def _elementwise(conv, node, inputs, weights, *, out_shape, layout, op="sum", bias=None,
                 activation="linear", parametric=False, params=None):
    eop = ElementwiseOp(inputs=inputs, weights=weights, out_shape=out_shape,
                        offset=conv.alloc(out_shape), op=op, bias=bias, activation=activation,
                        parametric=parametric, channels_first=layout == "first",
                        params=params or {})
    return conv.add_neurons(node, eop, layout=layout)


def build_batchnorm(conv, node):
    x = conv.activation(node.inputs[0])
    conv.refuse_other_outputs(node)
    if node.attrs.get("training_mode", 0):
        raise Unsupported("training_mode=1 (batch statistics)")
    scale, b, mean, var = (np.asarray(conv.constant(node, k, what), dtype=np.float64)
                           for k, what in ((1, "scale"), (2, "bias"), (3, "mean"),
                                           (4, "variance")))
    eps = float(node.attrs.get("epsilon", 1e-5))
    shape = x.ids.shape
    w = scale / np.sqrt(var + eps)
    bias = b - mean * w
    # The channel axis of BatchNormalization is axis 1 of the batched tensor.
    _elementwise(conv, node, [x.ids], [_per_channel(w, shape, "first")], out_shape=shape,
                 layout=x.layout, bias=_per_channel(bias, shape, "first"), parametric=True,
                 params={"epsilon": eps})


def build_instance_norm(conv, node):
    raise Unsupported("its statistics are the input's own (per sample and channel): no fixed "
                      "weights express it")


_SIMPLE_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
                       "Softplus": "softplus", "Softsign": "softsign", "HardSwish": "hard_silu",
                       "Exp": "exponential", "Mish": "mish"}


def _num32(x) -> str:
    """A float32 parameter as its shortest text: ``0.1``, not ``0.10000000149011612`` (the
    float32 nearest 0.1 widened to float64); it reads back as the same float32."""
    if not np.isfinite(x):
        return activations.num(x)
    return activations.num(float(np.format_float_positional(np.float32(x), unique=True,
                                                             trim="-")))


def _activation_name(conv, node) -> str:
    """The contract name of an activation node (parameters after colons)."""
    t = node.op_type
    if t in _SIMPLE_ACTIVATIONS:
        return _SIMPLE_ACTIVATIONS[t]
    num = _num32
    if t == "LeakyRelu":
        return f"leaky_relu:{num(node.attrs.get('alpha', 0.01))}"
    if t == "Elu":
        alpha = float(node.attrs.get("alpha", 1.0))
        return "elu" if alpha == 1.0 else f"elu:{num(alpha)}"
    if t == "Selu":
        alpha = float(node.attrs.get("alpha", 1.67326319217681884765625))
        gamma = float(node.attrs.get("gamma", 1.05070102214813232421875))
        return f"selu:{num(alpha)}:{num(gamma)}"
    if t == "HardSigmoid":
        return (f"hard_sigmoid:{num(node.attrs.get('alpha', 0.2))}:"
                f"{num(node.attrs.get('beta', 0.5))}")
    if t == "Clip":
        lo = node.attrs.get("min")
        hi = node.attrs.get("max")
        if lo is None and len(node.inputs) > 1 and node.inputs[1]:
            lo = conv.constant(node, 1, "min")
        if hi is None and len(node.inputs) > 2 and node.inputs[2]:
            hi = conv.constant(node, 2, "max")
        lo = -np.inf if lo is None else float(np.asarray(lo).reshape(-1)[0])
        hi = np.inf if hi is None else float(np.asarray(hi).reshape(-1)[0])
        if lo == 0.0 and hi == np.inf:
            return "relu"
        return f"clip:{num(lo)}:{num(hi)}"
    if t in ("Softmax", "LogSoftmax"):
        return "softmax" if t == "Softmax" else "log_softmax"
    raise Unsupported(f"activation {t}")


def build_activation(conv, node):
    x = conv.activation(node.inputs[0])
    name = _activation_name(conv, node)
    shape = x.ids.shape
    if node.op_type in ("Softmax", "LogSoftmax"):
        rank = len(shape) + 1
        default = -1 if conv.opset >= 13 else 1
        axis = int(node.attrs.get("axis", default))
        axis = axis + rank if axis < 0 else axis
        # Before opset 13 the input is flattened from ``axis`` on: the same as the last axis
        # only when ``axis`` is the last one.
        if axis != rank - 1:
            raise Unsupported(f"{node.op_type} over axis {axis} of a rank-{rank} tensor (only "
                              "the last axis is supported)")
    if _fold_activation(conv, node, x, name):
        return
    _elementwise(conv, node, [x.ids], [1.0], out_shape=shape, layout=x.layout,
                 activation=name)


def _fold_activation(conv, node, x, name: str) -> bool:
    """Give the activation to the neurons that produce ``x`` when nothing else reads their
    pre-activation values; the layer then names the activation's output tensor."""
    op = _linear_producer(conv, node, x)
    if op is None:
        return False
    entry = x.entry
    if name in ("softmax", "log_softmax") and tuple(op.out_shape) != tuple(x.ids.shape):
        # Softmax normalises over the last axis of the neurons' own shape: a layer that
        # shows its neurons reshaped (ReduceMean with keepdims=0: (C, 1, 1) as (C,)) keeps
        # its values, and the softmax becomes a layer of its own.
        return False
    op._activation = name
    conv.rename_layer(entry, node.outputs[0], x.layout)
    return True


def _linear_producer(conv, node, x):
    """The op of the layer that produces ``x`` when ``node`` may fold into it: a weighted sum
    with no activation (none for the whole layer, none per neuron as PRelu's), read by
    ``node`` alone and shown as it is."""
    entry = x.entry
    op = entry.op if entry is not None and entry.kind == "neurons" else None
    if (op is None or op.op != "sum" or op._activation != "linear"
            or getattr(op, "_activation_array", None) is not None
            or conv.single_consumer(entry.name) is not node or entry.output is not x.ids):
        return None
    return op


def build_prelu(conv, node):
    x = conv.activation(node.inputs[0])
    slope = _unbatched_const(conv.constant(node, 1, "slope"), len(x.ids.shape))
    shape = x.ids.shape
    if np.broadcast_shapes(np.shape(slope), shape) != shape:
        raise Unsupported(f"slope of shape {np.shape(slope)} does not broadcast to {shape}")
    names = np.vectorize(lambda a: f"leaky_relu:{_num32(a)}", otypes=[object])(
        np.asarray(slope, dtype=np.float32))
    _elementwise(conv, node, [x.ids], [1.0], out_shape=shape, layout=x.layout,
                 activation=names)


def build_arithmetic(conv, node):
    """Add, Sub, Mul, Div: against a constant, a weight and a bias (folded into the producing
    layer's bias when that is all an Add does to a linear layer); between tensors, ``sum``
    (Add: 1, 1; Sub: 1, -1) or ``product`` (Mul) neurons, broadcasting as numpy does."""
    a, b = (conv.value(i) for i in node.inputs[:2])
    t = node.op_type
    if not a.is_const and not b.is_const:
        shape = tuple(np.broadcast_shapes(a.ids.shape, b.ids.shape))
        layout = a.layout if a.ids.shape == shape else b.layout
        if t in ("Add", "Sub"):
            _elementwise(conv, node, [a.ids, b.ids], [1.0, 1.0 if t == "Add" else -1.0],
                         out_shape=shape, layout=layout)
        elif t == "Mul":
            _elementwise(conv, node, [a.ids, b.ids], [1.0, 1.0], out_shape=shape,
                         layout=layout, op="product")
        else:
            raise Unsupported("a division between two computed tensors has no neuron-graph "
                              "form")
        return
    x, c, x_first = (a, b.const, True) if not a.is_const else (b, a.const, False)
    shape = x.ids.shape
    c = _unbatched_const(np.asarray(c, dtype=np.float64), len(shape))
    out_shape = tuple(np.broadcast_shapes(shape, c.shape))
    if t == "Add":
        weight, bias = 1.0, c
    elif t == "Sub":
        weight, bias = (1.0, -c) if x_first else (-1.0, c)
    elif t == "Mul":
        weight, bias = c, None
    elif t == "Div" and x_first:
        weight, bias = 1.0 / c, None
    else:
        raise Unsupported("a constant divided by a computed tensor has no neuron-graph form")
    if bias is not None and np.isscalar(weight) and weight == 1.0 and out_shape == shape \
            and _fold_bias(conv, node, x, bias):
        return
    _elementwise(conv, node, [x.ids], [weight], out_shape=out_shape, layout=x.layout,
                 bias=bias)


def _fold_bias(conv, node, x, bias: np.ndarray) -> bool:
    """``linear layer + constant``: add the constant to the layer's bias (MatMul + Add is how
    exporters write a Dense layer) when nothing else reads the layer and the constant is the
    same at every position of a channel."""
    op = _linear_producer(conv, node, x)
    if op is None:
        return False
    shape = op.out_shape
    # The constant broadcasts against the tensor, which shows the neurons in their order.
    per = op.by_channel(np.broadcast_to(bias, x.ids.shape).reshape(-1))
    old = op.by_channel(np.broadcast_to(0.0 if op._bias is None else op._bias, shape)
                        .reshape(-1))
    if not ((per == per[0]).all() and (old == old[0]).all()):
        return False
    channel_bias, old = per[0], old[0]
    op._bias = np.asarray(_per_channel(old + channel_bias, shape,
                                       "first" if op.channels_first else "last"),
                          dtype=np.float32)
    conv.rename_layer(x.entry, node.outputs[0], x.layout)
    return True


def build_variadic(conv, node):
    """Sum, Mean (weights 1, 1/n), Max, Min of several tensors."""
    vals = [conv.value(i) for i in node.inputs if i]
    if any(v.is_const for v in vals):
        raise Unsupported("a constant among its inputs (only computed tensors are supported)")
    shape = tuple(np.broadcast_shapes(*(v.ids.shape for v in vals)))
    layout = next((v.layout for v in vals if v.ids.shape == shape), None)
    n = len(vals)
    t = node.op_type
    op = {"Sum": "sum", "Mean": "sum", "Max": "max", "Min": "min"}[t]
    weights = [1.0 / n if t == "Mean" else 1.0] * n
    if n == 1:
        conv.add_alias(node, vals[0].ids, layout=vals[0].layout)
        return
    _elementwise(conv, node, [v.ids for v in vals], weights, out_shape=shape, layout=layout,
                 op=op)


# ----------------------------------------------------------------------------- shape-only
def build_identity(conv, node):
    """Identity, and Dropout at inference (its ``training_mode`` input false or absent)."""
    x = conv.activation(node.inputs[0])
    conv.refuse_other_outputs(node)
    if node.op_type == "Dropout":
        training = conv.constant(node, 2, "training_mode", required=False)
        ratio = conv.constant(node, 1, "ratio", required=False)
        if training is not None and bool(np.asarray(training).reshape(-1)[0]) and (
                ratio is None or float(np.asarray(ratio).reshape(-1)[0]) > 0):
            raise Unsupported("training_mode is true: it drops random values")
    conv.add_alias(node, x.ids, layout=x.layout)


_WIDE_FLOAT_TYPES = (1, 11)  # FLOAT, DOUBLE


def build_cast(conv, node):
    """A cast to float32 or float64 changes no value of a float32 model (the graph computes
    in float64); a cast to float16, bfloat16 or an integer rounds, which no neuron does."""
    x = conv.activation(node.inputs[0])
    to = int(node.attrs.get("to", 0))
    if to not in _WIDE_FLOAT_TYPES:
        import onnx

        raise Unsupported(f"casts an activation to {onnx.TensorProto.DataType.Name(to)}, "
                          "which rounds its values (only FLOAT and DOUBLE are exact)")
    conv.add_alias(node, x.ids, layout=x.layout)


def build_flatten(conv, node):
    x = conv.activation(node.inputs[0])
    rank = len(x.ids.shape) + 1
    axis = int(node.attrs.get("axis", 1))
    axis = axis + rank if axis < 0 else axis
    if axis != 1 and not (axis > 1 and math.prod(x.ids.shape[:axis - 1]) == 1):
        raise Unsupported(f"Flatten at axis {axis} mixes the batch axis with others")
    conv.add_alias(node, x.ids.reshaped((x.ids.size,)), layout=None)


def build_reshape(conv, node):
    x = conv.activation(node.inputs[0])
    target = [int(s) for s in np.asarray(conv.constant(node, 1, "shape")).reshape(-1)]
    full = (conv.batch,) + x.ids.shape
    allowzero = int(node.attrs.get("allowzero", 0))
    out = []
    for k, s in enumerate(target):
        if s == 0 and not allowzero:
            if k >= len(full):
                raise Unsupported(f"shape {target}: 0 copies a dimension the input lacks")
            out.append(full[k])
        else:
            out.append(s)
    if out.count(-1) > 1:
        raise Unsupported(f"shape {target} has more than one -1")
    total = math.prod(full)
    if -1 in out:
        known = math.prod(s for s in out if s != -1)
        if known == 0 or total % known:
            raise Unsupported(f"cannot reshape {full} to {target}")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        raise Unsupported(f"cannot reshape {full} to {target}")
    if not out or out[0] != conv.batch:
        raise Unsupported(f"shape {target} moves the batch axis (the input is {full})")
    _shape_alias(conv, node, x, tuple(out[1:]))


def _shape_alias(conv, node, x, shape):
    layout = x.layout if tuple(shape) == x.ids.shape else (None if len(shape) <= 1 else
                                                           _reshaped_layout(x, shape))
    conv.add_alias(node, x.ids.reshaped(shape), layout=layout)


def _reshaped_layout(x, shape):
    """After a reshape the channels stay where they were if that axis survives whole."""
    old = x.ids.shape
    if x.layout == "first" and shape[0] == old[0]:
        return "first"
    if x.layout == "last" and shape[-1] == old[-1]:
        return "last"
    return None


def build_squeeze(conv, node):
    x = conv.activation(node.inputs[0])
    rank = len(x.ids.shape) + 1
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = conv.constant(node, 1, "axes")
    shape = list(x.ids.shape)
    if axes is None:
        if conv.fixed_batch == 1:
            raise Unsupported("without axes it squeezes every axis of size 1, the model's "
                              "batch axis (fixed at 1) included")
        keep = [s for s in shape if s != 1]
    else:
        drop = {_batch_axis(int(a), rank) for a in np.asarray(axes).reshape(-1)}
        if any(shape[a] != 1 for a in drop):
            raise Unsupported(f"squeezes an axis of size > 1 ({shape})")
        keep = [s for a, s in enumerate(shape) if a not in drop]
    _shape_alias(conv, node, x, tuple(keep))


def build_unsqueeze(conv, node):
    x = conv.activation(node.inputs[0])
    axes = node.attrs.get("axes")
    if axes is None:
        axes = conv.constant(node, 1, "axes")
    axes = [int(a) for a in np.asarray(axes).reshape(-1)]
    rank = len(x.ids.shape) + 1 + len(axes)
    shape = [conv.batch] + list(x.ids.shape)
    for a in sorted(a + rank if a < 0 else a for a in axes):
        if a == 0:
            raise Unsupported("inserts an axis before the batch axis")
        shape.insert(a, 1)
    _shape_alias(conv, node, x, tuple(shape[1:]))


def build_transpose(conv, node):
    x = conv.activation(node.inputs[0])
    rank = len(x.ids.shape) + 1
    perm = _ints(node.attrs.get("perm"), default=list(range(rank))[::-1])
    if perm[0] != 0:
        raise Unsupported(f"perm {perm} moves the batch axis")
    inner = [p - 1 for p in perm[1:]]
    layout = None
    if x.layout in ("first", "last"):
        where = 0 if x.layout == "first" else len(inner) - 1
        new = inner.index(where)
        layout = "first" if new == 0 else "last" if new == len(inner) - 1 else None
    conv.add_alias(node, x.ids.mapped(lambda a: a.transpose(inner)), layout=layout,
                   params={"perm": perm})


def build_concat(conv, node):
    vals = [conv.value(i) for i in node.inputs if i]
    if any(v.is_const for v in vals):
        raise Unsupported("concatenates a constant with computed tensors")
    rank = len(vals[0].ids.shape) + 1
    axis = _batch_axis(int(node.attrs.get("axis", 1)), rank)
    ids = np.concatenate([v.ids.array().reshape(v.ids.shape) for v in vals], axis=axis)
    conv.add_alias(node, TensorIds(ids.shape, ids=ids.reshape(-1)), layout=vals[0].layout,
                   params={"axis": axis + 1})


def build_pad(conv, node):
    x = conv.activation(node.inputs[0])
    mode = node.attrs.get("mode", "constant")
    if mode != "constant":
        raise Unsupported(f"mode {mode!r} (only constant zero padding is supported)")
    pads = node.attrs.get("pads")
    if pads is None:
        pads = conv.constant(node, 1, "pads")
    value = node.attrs.get("value")
    if value is None and len(node.inputs) > 2 and node.inputs[2]:
        value = conv.constant(node, 2, "constant_value")
    if value is not None and float(np.asarray(value).reshape(-1)[0]) != 0.0:
        raise Unsupported("a non-zero padding value")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    rank = len(x.ids.shape) + 1
    axes = list(range(rank))
    if len(node.inputs) > 3 and node.inputs[3]:
        axes = [int(a) + rank if int(a) < 0 else int(a)
                for a in np.asarray(conv.constant(node, 3, "axes")).reshape(-1)]
    before, after = [0] * rank, [0] * rank
    for k, a in enumerate(axes):
        before[a], after[a] = pads[k], pads[k + len(axes)]
    if before[0] or after[0]:
        raise Unsupported("pads the batch axis")

    def pad(arr):
        crop = tuple(slice(max(0, -b), arr.shape[d] - max(0, -e))
                     for d, (b, e) in enumerate(zip(before[1:], after[1:])))
        arr = arr[crop]
        widths = [(max(0, b), max(0, e)) for b, e in zip(before[1:], after[1:])]
        return np.pad(arr, widths, constant_values=ZERO)
    conv.add_alias(node, x.ids.mapped(pad), layout=x.layout,
                   params={"pads": pads})


def build_slice(conv, node):
    x = conv.activation(node.inputs[0])
    rank = len(x.ids.shape) + 1
    if conv.opset < 10 or "starts" in node.attrs:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = conv.constant(node, 1, "starts")
        ends = conv.constant(node, 2, "ends")
        axes = conv.constant(node, 3, "axes", default=np.arange(len(starts)), required=False)
        steps = conv.constant(node, 4, "steps", default=np.ones(len(starts)), required=False)
    index = [slice(None)] * (rank - 1)
    for s, e, a, st in zip(*(np.asarray(v).reshape(-1).tolist() for v in
                             (starts, ends, axes, steps))):
        ax = _batch_axis(int(a), rank)
        n = x.ids.shape[ax]
        s, e, st = int(s), int(e), int(st)
        s = max(-n - 1, min(s, n))
        e = max(-n - 1, min(e, n))
        index[ax] = slice(s, e if not (st < 0 and e < -n) else None, st)
    conv.add_alias(node, x.ids.mapped(lambda arr: arr[tuple(index)]), layout=x.layout)


def build_gather(conv, node):
    x = conv.activation(node.inputs[0])
    idx = np.asarray(conv.constant(node, 1, "indices"), dtype=np.int64)
    rank = len(x.ids.shape) + 1
    axis = _batch_axis(int(node.attrs.get("axis", 0)), rank)
    n = x.ids.shape[axis]
    idx = np.where(idx < 0, idx + n, idx)
    conv.add_alias(node, x.ids.mapped(lambda arr: np.take(arr, idx, axis=axis)), layout=None)


def build_split(conv, node):
    x = conv.activation(node.inputs[0])
    rank = len(x.ids.shape) + 1
    axis = _batch_axis(int(node.attrs.get("axis", 0)), rank)
    n = x.ids.shape[axis]
    split = node.attrs.get("split")
    if split is None and len(node.inputs) > 1 and node.inputs[1]:
        split = conv.constant(node, 1, "split")
    outs = [o for o in node.outputs]
    if split is None:
        k = len(outs)
        size = -(-n // k)
        split = [min(size, n - size * j) for j in range(k)]
    split = [int(s) for s in np.asarray(split).reshape(-1)]
    start = 0
    for out, size in zip(outs, split):
        sl = [slice(None)] * (rank - 1)
        sl[axis] = slice(start, start + size)
        start += size
        if out:
            conv.add_alias(node, x.ids.mapped(lambda arr, sl=tuple(sl): arr[sl]),
                           layout=x.layout, out=out)


BUILDERS = {
    "Conv": build_conv,
    "ConvTranspose": build_conv_transpose,
    "MaxPool": build_pool,
    "AveragePool": build_pool,
    "GlobalAveragePool": build_global_pool,
    "GlobalMaxPool": build_global_pool,
    "ReduceMean": build_reduce,
    "ReduceMax": build_reduce,
    "ReduceSum": build_reduce,
    "Gemm": build_gemm,
    "MatMul": build_matmul,
    "Resize": build_resize,
    "Upsample": build_resize,
    "BatchNormalization": build_batchnorm,
    "InstanceNormalization": build_instance_norm,
    **{k: build_activation for k in (*_SIMPLE_ACTIVATIONS, "LeakyRelu", "Elu", "Selu",
                                     "HardSigmoid", "Clip", "Softmax", "LogSoftmax")},
    "PRelu": build_prelu,
    **{k: build_arithmetic for k in ("Add", "Sub", "Mul", "Div")},
    **{k: build_variadic for k in ("Sum", "Mean", "Max", "Min")},
    "Identity": build_identity,
    "Cast": build_cast,
    "Dropout": build_identity,
    "Flatten": build_flatten,
    "Reshape": build_reshape,
    "Squeeze": build_squeeze,
    "Unsqueeze": build_unsqueeze,
    "Transpose": build_transpose,
    "Concat": build_concat,
    "Pad": build_pad,
    "Slice": build_slice,
    "Gather": build_gather,
    "Split": build_split,
}
