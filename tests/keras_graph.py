"""The neuron graph as Keras alone describes it: counts per layer, the edges themselves, and
the pooling choices. The references the tests judge the product's graph against.

Like :mod:`keras_oracle`, this module imports nothing from ``loader``: geometry (padding,
strides, dilation, groups, windows) is whatever Keras computes when it runs a layer, and the
contract (docs/CONTRACT.md) supplies only the naming: one neuron per value of a layer's output
(none for shape-only layers), one edge per (input value, output value) pair the layer connects,
padding zeros never nodes nor edges.

* :func:`layer_counts`: neurons and edges of every layer call, from Keras's shapes. The edges
  of a windowed layer are counted by running a copy of the layer, every weight set to 1 and no
  bias, on a 0/1 mask of the input's real values (0 where a ``ZeroPadding`` or a ``same``
  border puts a constant zero): each output value is then the number of in-bounds taps
  reading a real value times ``cin / groups``, and the sum over the output is
  ``out positions x in-bounds taps x cin/groups x cout``. Cheap at any size the tests use,
  so it also checks whole ``keras.applications`` models.
* :func:`reference_graph`: the graph itself as an ``nx.DiGraph`` keyed by the contract's ids,
  for small models: which input value feeds which output value through which kernel entry
  comes from Keras running the layer on one-hot inputs with a kernel of distinct integer codes;
  the weight is read from the layer's own kernel at that code.
* :func:`window_choices`: for every max (min) layer, the entry TensorFlow's gradient takes:
  the first maximal (minimal) entry in window order, from Keras's layer outputs
  (``tf.nn.max_pool_with_argmax`` for 1-d and 2-d max pooling), ties included.
"""

from __future__ import annotations

import json

import keras
import networkx as nx
import numpy as np
import tensorflow as tf

from keras_oracle import _graph_nodes, _node_making, layer_calls

# Keras layers whose output is a view of their input's values: the contract gives them no
# neurons (downstream edges attach to the neurons that produced the values).
SHAPE_ONLY = frozenset({
    "Flatten", "Reshape", "Permute", "Concatenate", "Identity", "ActivityRegularization",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D",
})
CONVOLUTIONS = frozenset({"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                          "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D"})
SEPARABLE = frozenset({"SeparableConv1D", "SeparableConv2D"})
POOLING = frozenset({f"{kind}Pooling{r}D" for kind in ("Max", "Average") for r in (1, 2, 3)})
GLOBAL_POOLING = frozenset({f"Global{kind}Pooling{r}D" for kind in ("Max", "Average")
                            for r in (1, 2, 3)})
UPSAMPLING = frozenset({"UpSampling1D", "UpSampling2D", "UpSampling3D"})
# Output value i reads value i of each input (after broadcasting): one edge per input.
ELEMENTWISE = frozenset({
    "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Rescaling", "Normalization", "Add", "Subtract", "Average", "Maximum", "Minimum",
    "Multiply",
    # keras.ops arithmetic in a functional graph (MobileNetV3's ``relu6(x + 3) * (1 / 6)``)
    "Divide", "TrueDivide", "Negative",
})
MAX_OPS = frozenset({"MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D",
                     "GlobalMaxPooling2D", "GlobalMaxPooling3D", "Maximum"})
MIN_OPS = frozenset({"Minimum"})


# --------------------------------------------------------------------------- walking
def _walk(model, input_values: list, visit, name_of: dict, known: dict | None = None) -> list:
    """Evaluate ``visit(call_name, layer, node, input_values) -> output value`` over the
    model's calls in order, nested models inlined; returns the values of ``model.outputs``."""
    known = {} if known is None else known
    for t, v in zip(model.inputs, input_values):
        known[id(t)] = v
    for node in _graph_nodes(model):
        if node.is_input:
            continue
        args = [known[id(t)] for t in node.input_tensors]
        if isinstance(node.operation, keras.Model):
            outs = _walk(node.operation, args, visit, name_of)
            for t, v in zip(node.outputs, outs):
                known[id(t)] = v
        else:
            known[id(node.outputs[0])] = visit(name_of[id(node)], node.operation, node, args)
    return [known[id(t)] for t in model.outputs]


def _shape(node) -> tuple:
    return tuple(int(s) for s in node.outputs[0].shape[1:])


def _run(layer, args: list) -> np.ndarray:
    """``layer`` on arrays without a batch axis (inference mode), batch axis dropped again."""
    batched = [np.asarray(a, dtype="float32")[None] for a in args]
    out = layer(batched if len(batched) > 1 else batched[0], training=False)
    return np.asarray(keras.ops.convert_to_numpy(out))[0]


def _ones_copy(layer):
    """A copy of ``layer`` (its weights set by the caller), no bias, a linear activation."""
    config = dict(layer.get_config(), use_bias=False)
    if "activation" in config:
        config["activation"] = "linear"
    config.pop("name", None)
    return type(layer).from_config(config)


def _count_with_ones(copy, mask: np.ndarray) -> int:
    copy.build((None,) + mask.shape)
    copy.set_weights([np.ones(w.shape, "float32") for w in copy.get_weights()])
    # Every output value is a small integer (taps x channels), exact in float32 up to the
    # rounding of a Winograd-style convolution algorithm, which rint undoes.
    return int(np.rint(_run(copy, [mask]).astype(np.float64)).sum())


def _pool_edges(layer, mask: np.ndarray) -> int:
    rank = mask.ndim - 1
    pool = tuple(np.broadcast_to(layer.pool_size, (rank,)).tolist())
    strides = layer.strides if layer.strides is not None else pool
    strides = tuple(np.broadcast_to(strides, (rank,)).tolist())
    # each channel as a batch item with one channel: channels never mix in pooling
    per_channel = np.moveaxis(mask, -1, 0)[..., None].astype("float32")
    counts = keras.ops.conv(per_channel, np.ones(pool + (1, 1), "float32"), strides=strides,
                            padding=layer.padding)
    return int(np.rint(np.asarray(keras.ops.convert_to_numpy(counts), np.float64)).sum())


def _interpolation_edges(layer, mask: np.ndarray) -> int:
    """(input value, output value) pairs with a non-zero interpolation weight, probed with one
    one-hot input per spatial position (channels never mix)."""
    spatial = mask.shape[:-1]
    n = int(np.prod(spatial))
    probes = np.eye(n, dtype="float32").reshape((n,) + spatial + (1,))
    out = np.asarray(keras.ops.convert_to_numpy(layer(probes)))
    reach = (np.abs(out) > 1e-6).reshape(n, -1).sum(axis=1)  # outputs each position feeds
    real = mask.reshape(n, -1)  # (position, channel): 1 where the input is a real value
    return int((reach[:, None] * real).sum())


def layer_counts(model) -> dict[str, tuple[int, int]]:
    """``{call name: (neurons, edges)}`` of every layer call, computed from Keras's shapes.

    Names follow the contract (and :mod:`keras_oracle`): shared layers' further calls
    ``name@n``; a separable convolution is two layers, ``name/depthwise`` and ``name``;
    shape-only layers have 0 neurons and 0 edges.
    """
    return _masks_and_counts(model, count=True)[1]


def real_masks(model) -> dict[str, np.ndarray]:
    """``{call name: 0/1 array of its output's shape}``: 1 where the value is a neuron's, 0
    where it is a constant zero put there by a ``ZeroPadding`` layer."""
    return _masks_and_counts(model, count=False)[0]


def _masks_and_counts(model, count: bool):
    calls = layer_calls(model)
    name_of = {id(c.node): c.name for c in calls}
    counts: dict[str, tuple[int, int]] = {}
    masks: dict[str, np.ndarray] = {}
    inputs = []
    for t in model.inputs:
        name = name_of[id(_node_making(t))]
        shape = tuple(int(s) for s in t.shape[1:])
        counts[name] = (int(np.prod(shape)), 0)
        masks[name] = np.ones(shape, "float32")
        inputs.append(masks[name])

    def visit(name, layer, node, args):
        cls = type(layer).__name__
        if cls in SHAPE_ONLY:
            counts[name] = (0, 0)
            masks[name] = _run(layer, args)  # padding positions come out 0, the others 1
        else:
            masks[name] = np.ones(_shape(node), "float32")
            if count:
                counts.update(_count(name, layer, node, args))
        return masks[name]

    _walk(model, inputs, visit, name_of)
    return masks, counts


def _count(name, layer, node, masks) -> dict[str, tuple[int, int]]:
    """(neurons, edges) of one neuron layer call (two for a separable convolution), its
    inputs' real values being ``masks``."""
    cls = type(layer).__name__
    shape = _shape(node)
    size = int(np.prod(shape))
    x = masks[0]
    out = {}
    if cls in CONVOLUTIONS:
        edges = _count_with_ones(_ones_copy(layer), x)
    elif cls in SEPARABLE:
        rank = x.ndim - 1
        config = layer.get_config()
        depthwise = getattr(keras.layers, f"DepthwiseConv{rank}D")(
            config["kernel_size"], strides=config["strides"], padding=config["padding"],
            depth_multiplier=config["depth_multiplier"], dilation_rate=config["dilation_rate"],
            use_bias=False)
        stage = _count_with_ones(depthwise, x)
        stage_shape = tuple(int(s) for s in depthwise.compute_output_shape((None,) + x.shape)[1:])
        out[f"{name}/depthwise"] = (int(np.prod(stage_shape)), stage)
        # pointwise: every depthwise output channel to every filter, per position
        edges = int(np.prod(shape[:-1])) * stage_shape[-1] * shape[-1]
    elif cls == "Dense":
        edges = int(x.sum()) * layer.units  # every real input of the last axis, every unit
    elif cls in POOLING:
        edges = _pool_edges(layer, x)
    elif cls in GLOBAL_POOLING:
        edges = int(x.sum())  # every real value of the channel feeds its output
    elif cls in UPSAMPLING and getattr(layer, "interpolation", "nearest") == "nearest":
        edges = int(_run(layer, [x]).sum())  # one copy of one input value per output
    elif cls in UPSAMPLING:
        edges = _interpolation_edges(layer, x)
    elif cls in ELEMENTWISE:
        edges = sum(int(np.broadcast_to(m, shape).sum()) for m in masks)
    else:
        raise NotImplementedError(f"no edge count for Keras class {cls} ({name})")
    out[name] = (size, edges)
    return out


# --------------------------------------------------------------------------- the graph
def _activation_name(layer) -> str:
    fn = getattr(layer, "activation", None)
    return "linear" if fn is None else fn.__name__


def _conv_edges(layer, in_ids: np.ndarray, out_ids: np.ndarray):
    """(src, dst, weight) of a convolution: each real input value as a one-hot through a copy
    of the layer whose kernel entries are numbered 1..K; the number arriving at an output
    value names the kernel entry (tap, input channel, output channel) connecting them."""
    kernel = np.asarray(layer.get_weights()[0], dtype="float32")
    copy = _ones_copy(layer)
    copy.build((None,) + in_ids.shape)
    codes = np.arange(1, kernel.size + 1, dtype="float32").reshape(kernel.shape)
    copy.set_weights([codes])
    real = np.flatnonzero(in_ids.reshape(-1) >= 0)
    probes = np.zeros((len(real), in_ids.size), "float32")
    probes[np.arange(len(real)), real] = 1.0
    out = np.asarray(keras.ops.convert_to_numpy(copy(probes.reshape((-1,) + in_ids.shape))))
    out = np.rint(out.reshape(len(real), -1).astype(np.float64)).astype(np.int64)
    probe, pos = np.nonzero(out)
    code = out[probe, pos]
    src = in_ids.reshape(-1)[real[probe]]
    return src, out_ids.reshape(-1)[pos], kernel.reshape(-1)[code - 1]


def _window_edges(layer, in_ids: np.ndarray, out_ids: np.ndarray):
    """(src, dst, weight) of a pooling layer: each spatial position as a one-hot through the
    layer itself. Max pooling passes 1 to the windows holding it (weight 1.0); average pooling
    passes 1 / (real entries of the window): the weight."""
    spatial, c = in_ids.shape[:-1], in_ids.shape[-1]
    n = int(np.prod(spatial))
    probes = np.eye(n, dtype="float32").reshape((n,) + spatial + (1,))
    out = np.asarray(keras.ops.convert_to_numpy(layer(probes))).reshape(n, -1)
    src_pos, dst_pos = np.nonzero(out)
    weight = out[src_pos, dst_pos]
    srcs = in_ids.reshape(n, c)[src_pos]  # (pairs, channel)
    dsts = out_ids.reshape(-1, c)[dst_pos]
    keep = srcs >= 0
    w = np.broadcast_to((np.ones_like(weight) if "Max" in type(layer).__name__ else weight)
                        [:, None], srcs.shape)
    return srcs[keep], dsts[keep], w[keep]


def _dense_edges(layer, in_ids: np.ndarray, out_ids: np.ndarray):
    kernel = np.asarray(layer.get_weights()[0], dtype="float32")  # (inputs, units)
    cin = in_ids.shape[-1]
    rows = in_ids.reshape(-1, cin)
    outs = out_ids.reshape(-1, layer.units)
    src = np.repeat(rows, layer.units, axis=1).reshape(len(rows), cin, layer.units)
    dst = np.broadcast_to(outs[:, None, :], src.shape)
    w = np.broadcast_to(kernel[None], src.shape)
    keep = src >= 0
    return src[keep], dst[keep], w[keep]


_MERGE_WEIGHTS = {"Add": lambda n: [1.0] * n, "Subtract": lambda n: [1.0, -1.0],
                  "Average": lambda n: [1.0 / n] * n, "Maximum": lambda n: [1.0] * n,
                  "Minimum": lambda n: [1.0] * n, "Multiply": lambda n: [1.0] * n}


def _merge_edges(cls: str, in_ids: list, out_ids: np.ndarray):
    src, dst, w = [], [], []
    for ids, weight in zip(in_ids, _MERGE_WEIGHTS[cls](len(in_ids))):
        s = np.broadcast_to(ids, out_ids.shape).reshape(-1)
        keep = s >= 0
        src.append(s[keep])
        dst.append(out_ids.reshape(-1)[keep])
        w.append(np.full(int(keep.sum()), weight, "float32"))
    return np.concatenate(src), np.concatenate(dst), np.concatenate(w)


def _op(cls: str) -> str:
    if cls == "InputLayer":
        return "input"
    if cls in MAX_OPS:
        return "max"
    if cls in MIN_OPS:
        return "min"
    return "product" if cls == "Multiply" else "sum"


def _unique_order(model, calls) -> None:
    """The contract numbers layers in topological order; the reference can only agree with
    the product where that order is unique (every call reads its predecessor in the order)."""
    by_node = {id(c.node): i for i, c in enumerate(calls)}
    for i, c in enumerate(calls[1:], start=1):
        read = {by_node.get(id(_node_making(t))) for t in c.node.input_tensors}
        if i - 1 not in read:
            raise ValueError(f"{c.name} does not read {calls[i - 1].name}: this model has "
                             "several topological orders; the reference cannot number it")


def reference_graph(model, name: str | None = None) -> nx.DiGraph:
    """The neuron graph of a small Keras model, built from its kernels and geometry alone:
    nodes keyed by the contract's ids with ``layer``, ``layer_index``, ``index``, ``op``,
    ``bias``, ``activation``; edges with ``weight``; graph attributes ``name`` and ``layers``
    (JSON: ``name``, ``index``, ``class_name``, ``kind``, ``op``, ``output_shape``,
    ``neurons``, ``edges``, ``offset``).

    Supported: InputLayer, the shape-only layers, Conv1D/2D/3D, Dense, Max/AveragePooling,
    global pooling, Add/Subtract/Average/Maximum/Minimum/Multiply; one input; a model whose
    layers have a single topological order (anything else raises).
    """
    calls = layer_calls(model)
    if len(model.inputs) != 1 or any(isinstance(c.layer, keras.Model) for c in calls):
        raise NotImplementedError("one input, no nested models")
    _unique_order(model, calls)
    index_of = {c.name: i for i, c in enumerate(calls)}
    name_of = {id(c.node): c.name for c in calls}
    G = nx.DiGraph()
    layers = []
    offset = 0
    ids_of: dict[str, np.ndarray] = {}
    for c in calls:
        cls, node = c.class_name, c.node
        shape = tuple(int(s) for s in node.outputs[0].shape[1:])
        size = int(np.prod(shape))
        in_ids = [ids_of[name_of[id(_node_making(t))]] for t in node.input_tensors]
        entry = {"name": c.name, "index": index_of[c.name], "class_name": cls,
                 "output_shape": list(shape)}
        if cls in SHAPE_ONLY:
            # the layer itself moves id + 1 (0: a padding zero) to where it puts each value
            moved = _run(c.layer, [ids + 1 for ids in in_ids])
            ids_of[c.name] = np.rint(moved).astype(np.int64) - 1
            layers.append(dict(entry, kind="alias", op=None, neurons=0, edges=0, offset=None))
            continue
        out_ids = np.arange(offset, offset + size, dtype=np.int64).reshape(shape)
        ids_of[c.name] = out_ids
        bias = np.zeros(shape, np.float32)
        activation = "linear"
        if cls == "InputLayer":
            src = dst = w = np.zeros(0)
        elif cls in ("Conv1D", "Conv2D", "Conv3D"):
            src, dst, w = _conv_edges(c.layer, in_ids[0], out_ids)
            activation = _activation_name(c.layer)
        elif cls == "Dense":
            src, dst, w = _dense_edges(c.layer, in_ids[0], out_ids)
            activation = _activation_name(c.layer)
        elif cls in POOLING or cls in GLOBAL_POOLING:
            src, dst, w = _window_edges(c.layer, in_ids[0], out_ids)
        elif cls in _MERGE_WEIGHTS:
            src, dst, w = _merge_edges(cls, in_ids, out_ids)
        else:
            raise NotImplementedError(f"the reference graph has no rule for {cls}")
        if getattr(c.layer, "use_bias", False):
            bias = np.broadcast_to(np.asarray(c.layer.get_weights()[1], np.float32), shape)
        op = _op(cls)
        for i, (nid, b) in enumerate(zip(out_ids.reshape(-1).tolist(),
                                         bias.reshape(-1).astype(np.float64).tolist())):
            G.add_node(nid, layer=c.name, layer_index=index_of[c.name], index=i, op=op,
                       bias=b, activation=activation)
        G.add_weighted_edges_from(zip(np.asarray(src, np.int64).tolist(),
                                      np.asarray(dst, np.int64).tolist(),
                                      np.asarray(w, np.float32).astype(np.float64).tolist()))
        layers.append(dict(entry, kind="input" if cls == "InputLayer" else "neurons", op=op,
                           neurons=size, edges=len(src), offset=offset))
        offset += size
    G.graph["name"] = name or model.name
    G.graph["layers"] = json.dumps(layers)
    return G


def layer_range(G: nx.DiGraph, first: str, last: str) -> nx.DiGraph:
    """``--layers FIRST:LAST`` by the contract, on a reference graph: the neurons of the
    layers from FIRST to LAST (by layer index, inclusive; an empty end is the model's first
    or last layer), every edge into them, and the neurons outside that feed them."""
    index = {e["name"]: e["index"] for e in json.loads(G.graph["layers"])}
    lo = index[first] if first else 0
    hi = index[last] if last else max(index.values())
    inside = [n for n, a in G.nodes(data="layer_index") if lo <= a <= hi]
    edges = [(s, t) for t in inside for s in G.predecessors(t)]
    H = G.edge_subgraph(edges).copy()
    H.add_nodes_from((n, G.nodes[n]) for n in inside)
    return H


def cone(G: nx.DiGraph, target: int, depth: int | None = None) -> nx.DiGraph:
    """``--cone`` by the contract, on a reference graph: every neuron within ``depth`` hops
    upstream of ``target`` (None: all), with every edge into those less than ``depth`` hops
    away."""
    dist = nx.single_source_shortest_path_length(G.reverse(copy=False), target, cutoff=depth)
    edges = [(s, t) for t, d in dist.items() if depth is None or d < depth
             for s in G.predecessors(t)]
    H = G.edge_subgraph(edges).copy()
    H.add_nodes_from((n, G.nodes[n]) for n in dist)
    return H


def neuron_at(G: nx.DiGraph, layer: str, index: int) -> int:
    """The id of value ``index`` of ``layer`` in a reference graph (neuron layers only)."""
    return next(n for n, a in G.nodes(data=True) if a["layer"] == layer and a["index"] == index)


# --------------------------------------------------------------------------- pooling choices
def window_choices(model, values: dict) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """For every max/min layer call: ``(input call names, k, p)``, where output value ``i``
    (flat, C order) takes value ``p[i]`` (flat position) of input ``k[i]``, or ``p[i] = -1``
    for none.

    The choice is the one TensorFlow's gradient makes, the first maximal (minimal) entry in
    window order: ``tf.nn.max_pool_with_argmax`` for 1-d and 2-d max pooling, global too (its
    CPU kernel replaces the running maximum only with a strictly greater value); 3-d windows
    found by running the layer on one-hot inputs and searched in order (window order is
    increasing input position); for Maximum / Minimum the first extreme input. ``values``:
    Keras's output of every call (name -> array without the batch axis), e.g.
    :func:`tf_gradients.gradients`'s first result.

    Padding zeros (of a ``ZeroPadding`` layer) are entries of Keras's windows but not neurons
    (docs/CONTRACT.md): where the first maximum is a padding zero, nothing is chosen (-1),
    except that a real entry equal to it (a 0, a ReLU's zero most often) is chosen instead,
    the first such in window order: the contract's rule, since the graph holds no padding to
    choose. TensorFlow's gradient then goes to the padding zero; the contributions are the
    same (the chosen value is 0).
    """
    calls = layer_calls(model)
    if any(isinstance(c.layer, keras.Model) for c in calls):
        raise NotImplementedError("nested models")
    name_of = {id(c.node): c.name for c in calls}
    masks = None
    out = {}
    for c in calls:
        cls = c.class_name
        if cls not in MAX_OPS and cls not in MIN_OPS:
            continue
        masks = real_masks(model) if masks is None else masks
        inputs = [name_of[id(_node_making(t))] for t in c.node.input_tensors]
        xs = [np.asarray(values[n], dtype="float32") for n in inputs]
        real = [masks[n] > 0 for n in inputs]
        if cls in ("Maximum", "Minimum"):
            k, p = _merge_choice(cls, xs, real, _shape(c.node))
        else:
            p = _pool_argmax(c.layer, cls, xs[0])
            if not real[0].all():
                p = _padding_ties(c.layer, xs[0], real[0], p)
            k = np.zeros(len(p), np.int64)
        out[c.name] = (inputs, k, p)
    return out


def _merge_choice(cls, xs, real, shape):
    stacked = np.stack([np.broadcast_to(x, shape).reshape(-1) for x in xs])
    where = [np.broadcast_to(np.arange(x.size).reshape(x.shape), shape).reshape(-1) for x in xs]
    ok = np.stack([np.broadcast_to(r, shape).reshape(-1) for r in real])
    k = (np.argmax if cls == "Maximum" else np.argmin)(stacked, axis=0)
    cols = np.arange(stacked.shape[1])
    # a padding zero first, tied by a real input: that input (the contract's rule, above)
    tied = ~ok[k, cols] & (ok & (stacked == stacked[k, cols])).any(axis=0)
    k = np.where(tied, np.argmax(ok & (stacked == stacked[k, cols]), axis=0), k)
    p = np.array([where[a][i] if ok[a, i] else -1 for i, a in enumerate(k.tolist())])
    return k, p


def _members(layer, spatial: tuple) -> np.ndarray:
    """``member[q, o]``: input position ``q`` is in the window of output position ``o``, by
    running the pooling layer on a one-hot input per position."""
    n = int(np.prod(spatial))
    probes = np.eye(n, dtype="float32").reshape((n,) + spatial + (1,))
    return np.asarray(keras.ops.convert_to_numpy(layer(probes))).reshape(n, -1) > 0


def _padding_ties(layer, x: np.ndarray, real: np.ndarray, p: np.ndarray) -> np.ndarray:
    """TensorFlow's choice ``p`` with the contract's padding rule applied (see
    :func:`window_choices`)."""
    spatial, c = x.shape[:-1], x.shape[-1]
    member = _members(layer, spatial)
    flat_x, flat_real = x.reshape(-1, c), real.reshape(-1, c)
    p = p.reshape(-1, c).copy()
    for o, ch in zip(*np.nonzero(~flat_real[p // c, np.arange(c)[None, :]])):
        window = np.flatnonzero(member[:, o])  # increasing position: window order
        zero = window[flat_real[window, ch] & (flat_x[window, ch] == flat_x[p[o, ch] // c, ch])]
        p[o, ch] = zero[0] * c + ch if len(zero) else -1
    return p.reshape(-1)


def _pool_argmax(layer, cls: str, x: np.ndarray) -> np.ndarray:
    """The flat position of the first maximal entry of every window, padding zeros
    included."""
    rank = x.ndim - 1
    if rank <= 2:
        x4 = x[None] if rank == 2 else x[None, :, None, :]  # 1-d: (1, L, 1, C)
        if cls.startswith("Global"):
            ksize, strides, padding = list(x4.shape[1:3]), [1, 1], "VALID"
        else:
            pool = list(np.broadcast_to(layer.pool_size, (rank,)))
            step = layer.strides if layer.strides is not None else pool
            step = list(np.broadcast_to(step, (rank,)))
            ksize, strides = (pool, step) if rank == 2 else ([pool[0], 1], [step[0], 1])
            padding = layer.padding.upper()
        _, arg = tf.nn.max_pool_with_argmax(x4, ksize=[1, *ksize, 1], strides=[1, *strides, 1],
                                            padding=padding, include_batch_in_index=False)
        # the flat index in (H, W, C) of the maximum; for 1-d W = 1, so y * C + c
        return np.asarray(arg).reshape(-1).astype(np.int64)
    spatial, c = x.shape[:-1], x.shape[-1]
    member = _members(layer, spatial)
    best = np.asarray(keras.ops.convert_to_numpy(layer(x[None]))).reshape(-1, c)
    flat = x.reshape(-1, c)
    p = np.empty(best.shape, np.int64)
    for o in range(best.shape[0]):
        window = np.flatnonzero(member[:, o])  # increasing position: window order
        for ch in range(c):
            first = window[np.flatnonzero(flat[window, ch] == best[o, ch])[0]]
            p[o, ch] = first * c + ch
    return p.reshape(-1)
