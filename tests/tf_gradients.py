"""TensorFlow's own gradients of one output neuron: the reference a trace's contributions are
judged against.

Like :mod:`keras_oracle`, this module imports nothing from ``loader``. TensorFlow does the
differentiating: a feature extractor ``keras.Model(model.inputs, [every call's output])`` is
called under ``tf.GradientTape`` (``training=False``), and the tape gives d target / d output
for every call's output and for the inputs. Layers are named as :mod:`keras_oracle` names them
(shared calls ``name@n``); models with nested models are refused (the extractor of a nested
model is a separate call and would cut the tape's chain).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_oracle import input_names, layer_calls


def gradients(model, inputs, layer: str, index: int) -> tuple[dict, dict]:
    """Keras's values and TensorFlow's gradients of output ``index`` (flat, C order, batch axis
    dropped) of call ``layer``, for one input (``inputs`` without a batch axis, or a dict
    input name -> array).

    Returns ``(values, grads)``: dicts call name -> array in the output's shape (no batch
    axis); a gradient TensorFlow reports as unconnected is zeros.
    """
    calls = layer_calls(model)
    if any(isinstance(c.layer, keras.Model) for c in calls):
        raise ValueError("nested models are not supported by this oracle")
    names_in = input_names(model)
    if not isinstance(inputs, dict):
        inputs = {names_in[0]: inputs}
    xs = [tf.constant(np.asarray(inputs[n], dtype="float32")[None]) for n in names_in]
    inner = [c for c in calls if not c.node.is_input]
    extractor = keras.Model(model.inputs, [c.node.outputs[0] for c in inner])
    with tf.GradientTape(persistent=False) as tape:
        for x in xs:
            tape.watch(x)
        outs = extractor(xs if len(xs) > 1 else xs[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        by_name = dict(zip(names_in, xs))
        by_name.update({c.name: o for c, o in zip(inner, outs)})
        target = tf.reshape(by_name[layer], [-1])[index]
    order = list(by_name)
    grads = tape.gradient(target, [by_name[n] for n in order],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    values = {n: by_name[n].numpy()[0] for n in order}
    return values, {n: g.numpy()[0] for n, g in zip(order, grads)}
