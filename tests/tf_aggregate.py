"""TensorFlow's own aggregates over a set of inputs: the reference an aggregated trace
(``loader.graph.trace_set``) is judged against.

Like :mod:`keras_oracle` and :mod:`tf_gradients`, this module imports nothing from ``loader``:
Keras and TensorFlow do the computing, on a float64 copy of the model (the graph computes in
float64; at float32 a near-tie between two window entries could go either way, and the
chosen rates are compared exactly).

* :func:`mean_outputs`: the mean over the set of every call's output (Keras's extractor);
* :func:`relu_active_rates`: for each layer whose activation is ReLU (fused, as
  ``Conv2D(activation="relu")``, or a ``ReLU`` / ``Activation("relu")`` layer), the fraction of
  inputs where the pre-activation is > 0, where TensorFlow's ReluGrad passes the gradient. A
  fused activation's pre-activation comes from calling the layer, its activation set to
  linear, on Keras's value of its input;
* :func:`argmax_rates`: for a ``MaxPooling2D`` layer, per output neuron and window position,
  the fraction of inputs for which ``tf.nn.max_pool_with_argmax`` (first maximal entry in the
  window, row-major, ties included) picks it, from Keras's value of the pooling layer's input;
* :func:`mean_contributions`: the mean over the set of value x d(target)/d(value) for every
  call's output, the gradient from one ``tf.GradientTape`` over the batch (inputs are
  independent at inference, so d(sum of targets)/d(output of input b) is input b's own
  gradient); ``target="predicted"`` is each input's largest output of the model.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_oracle import input_names, layer_calls, layer_outputs


def float64_model(model):
    """The same functional model (same weights, widened) computing in float64: its config
    with every dtype (the input layers', the layers' policies) made float64."""

    def widen(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                return {**node, "config": {**node["config"], "name": "float64"}}
            return {k: ("float64" if k == "dtype" and v == "float32" else widen(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [widen(v) for v in node]
        return node

    clone = keras.Model.from_config(widen(model.get_config()))
    clone.set_weights([np.asarray(w, np.float64) for w in model.get_weights()])
    return clone


def mean_outputs(model, x) -> dict[str, np.ndarray]:
    """Call name -> mean over the set of its output (no batch axis)."""
    return {name: np.asarray(v, np.float64).mean(axis=0)
            for name, v in layer_outputs(model, x).items()}


def _is_relu(fn) -> bool:
    return getattr(fn, "__name__", "") == "relu"


def relu_active_rates(model, x) -> dict[str, np.ndarray]:
    """Layer name -> fraction of inputs with pre-activation > 0, for the ReLU layers. A fused
    ReLU's pre-activation is the layer called, with a linear activation, on the value Keras
    gives its input."""
    calls = [c for c in layer_calls(model) if not c.node.is_input]
    values = layer_outputs(model, x)
    rates = {}
    for c in calls:
        source = c.node.input_tensors[0]._keras_history.operation.name
        relu_layer = (isinstance(c.layer, keras.layers.ReLU) and c.layer.max_value is None
                      and float(c.layer.negative_slope) == 0 and float(c.layer.threshold) == 0)
        if relu_layer or (isinstance(c.layer, keras.layers.Activation)
                          and _is_relu(c.layer.activation)):
            pre = values[source]  # a separate ReLU layer: its input is the pre-activation
        elif _is_relu(getattr(c.layer, "activation", None)):
            fused = c.layer.activation
            c.layer.activation = keras.activations.linear
            try:
                pre = keras.ops.convert_to_numpy(c.layer(values[source]))
            finally:
                c.layer.activation = fused
        else:
            continue
        rates[c.name] = (np.asarray(pre) > 0).mean(axis=0)
    return rates


def argmax_rates(model, x, pool: str) -> tuple[np.ndarray, np.ndarray]:
    """For ``MaxPooling2D`` layer ``pool``: ``(rates, taps)``, ``rates[j, k]`` the fraction of
    inputs whose maximum of output neuron ``j`` (flat, C order) is window entry ``k``
    (row-major over the pool's window), from ``tf.nn.max_pool_with_argmax``."""
    layer = model.get_layer(pool)
    source = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation.name
    x_in = np.asarray(layer_outputs(model, x)[source], np.float64)
    ph, pw = layer.pool_size
    sh, sw = layer.strides
    _, argmax = tf.nn.max_pool_with_argmax(tf.constant(x_in), (ph, pw), (sh, sw),
                                           layer.padding.upper(), include_batch_in_index=False)
    argmax = argmax.numpy()  # (N, OH, OW, C): flat (y * W + x) * C + c of the maximum
    n, oh, ow, c = argmax.shape
    w, ch = x_in.shape[2], x_in.shape[3]
    y, xx = (argmax // ch) // w, (argmax // ch) % w
    if layer.padding == "same":
        pad_h = max(0, (oh - 1) * sh + ph - x_in.shape[1]) // 2
        pad_w = max(0, (ow - 1) * sw + pw - w) // 2
    else:
        pad_h = pad_w = 0
    top = np.arange(oh)[None, :, None, None] * sh - pad_h
    left = np.arange(ow)[None, None, :, None] * sw - pad_w
    tap = (y - top) * pw + (xx - left)
    rates = np.zeros((oh * ow * c, ph * pw))
    flat = tap.reshape(n, -1)
    for k in range(ph * pw):
        rates[:, k] = (flat == k).mean(axis=0)
    return rates, tap


def mean_contributions(model, x, target="predicted") -> tuple[dict, np.ndarray]:
    """``(contributions, targets)``: call name -> mean over the set of value x gradient of
    each input's target (``"predicted"``, or ``(layer, flat index)``), and each input's
    target index in the last layer (or the given index)."""
    calls = layer_calls(model)
    if any(isinstance(c.layer, keras.Model) for c in calls):
        raise ValueError("nested models are not supported by this oracle")
    names_in = input_names(model)
    xs = [tf.constant(np.asarray(x, np.float64))]
    inner = [c for c in calls if not c.node.is_input]
    extractor = keras.Model(model.inputs, [c.node.outputs[0] for c in inner])
    with tf.GradientTape() as tape:
        for v in xs:
            tape.watch(v)
        outs = extractor(xs[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        by_name = dict(zip(names_in, xs))
        by_name.update({c.name: o for c, o in zip(inner, outs)})
        last = tf.reshape(by_name[inner[-1].name], (len(x), -1))
        if target == "predicted":
            index = tf.argmax(last, axis=1)
            layer_out = last
        else:
            layer, k = target
            layer_out = tf.reshape(by_name[layer], (len(x), -1))
            index = tf.fill((len(x),), tf.cast(k, tf.int64))
        picked = tf.gather(layer_out, index, axis=1, batch_dims=1)
        total = tf.reduce_sum(picked)
    order = list(by_name)
    grads = tape.gradient(total, [by_name[n] for n in order],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    out = {n: (by_name[n].numpy() * g.numpy()).mean(axis=0) for n, g in zip(order, grads)}
    return out, index.numpy()
