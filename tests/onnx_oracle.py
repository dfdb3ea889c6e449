"""onnxruntime's value of every tensor of an ONNX model: the reference the ONNX front end's
graph is judged against.

Imports nothing from ``loader``, on purpose: the model's intermediate tensors are exposed as
graph outputs (every node output, with the types ONNX's shape inference gives), and
onnxruntime computes them all in one run.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort


def all_tensor_values(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    """Every node output's value for ``feeds`` (input name -> batched array), by name."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(m)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    existing = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for out in node.output:
            if out and out not in existing:
                if out in types:
                    m.graph.output.append(types[out])
                else:
                    m.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
                existing.add(out)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(m.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {k: np.asarray(v) for k, v in feeds.items()})
    return dict(zip(names, values))


def input_names(model: onnx.ModelProto) -> list[str]:
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]
