"""The ONNX front end: an ONNX model (what PyTorch, TensorFlow, JAX and Paddle export) ->
graph entries, without TensorFlow.

A layer's ``layer`` is the name of the ONNX tensor its neurons' values equal; ``index`` is the
flat C-order position in that tensor without the batch axis (NCHW: ``(c*H + h)*W + w``).
Constants (weights, per-channel scales and shifts, shape arithmetic) are folded while reading;
an activation that only reads a linear layer's output is folded into that layer's neurons (the
layer then names the activation's tensor). :mod:`loader.onnx.reader` loads and walks the model,
:mod:`loader.onnx.builders` holds one builder per operator family.
"""
