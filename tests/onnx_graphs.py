"""Small ONNX models written with ``onnx.helper`` in PyTorch's style (NCHW, float32
initializers, a symbolic batch axis ``N``), and the check that the neuron graph of each one
reproduces onnxruntime's value of every tensor.

The expected values come from onnxruntime only (:mod:`onnx_oracle`); nothing here imports
Keras or TensorFlow.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from loader.graph.forward import execute
from loader.graph.neuron_graph import NeuronGraph
from onnx_oracle import all_tensor_values

TOLERANCE = 1e-5  # error relative to the tensor's largest magnitude
BATCH = 2


class ModelBuilder:
    """Nodes and float32 initializers of one graph, with seeded random weights.

    Example::

        b = ModelBuilder(opset=13)
        y = b.node("Conv", ["x", b.weight(4, 3, 3, 3)], pads=[1, 1, 1, 1])
        model = b.model({"x": (3, 6, 6)}, [y])
    """

    def __init__(self, opset: int = 17, seed: int = 0):
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, value, name: str | None = None, dtype=np.float32) -> str:
        """An initializer holding ``value`` (float32 unless ``dtype`` says otherwise)."""
        name = name or self._name("c")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, *shape, scale: float = 0.5, positive: bool = False) -> str:
        """A random float32 initializer of ``shape`` (``positive``: in [0.5, 1.5))."""
        w = self.rng.normal(scale=scale, size=shape)
        if positive:
            w = self.rng.uniform(0.5, 1.5, size=shape)
        return self.const(w)

    def ints(self, values) -> str:
        """An int64 initializer (shapes, axes, pads, split sizes)."""
        return self.const(values, dtype=np.int64)

    def node(self, op_type: str, inputs, outputs=1, **attrs):
        """Append a node; returns its output name (or the list of them when ``outputs`` > 1
        or is a list of names)."""
        if isinstance(outputs, int):
            names = [self._name(op_type.lower()) for _ in range(outputs)]
        else:
            names = list(outputs)
        self.nodes.append(helper.make_node(op_type, list(inputs), names,
                                           name=self._name(op_type), **attrs))
        return names[0] if len(names) == 1 else names

    def model(self, inputs: dict, outputs, *, batch="N") -> onnx.ModelProto:
        """The checked model; ``inputs``: name -> shape without the batch axis (``None`` for
        a dynamic dimension)."""
        ins = [helper.make_tensor_value_info(
            n, TensorProto.FLOAT, [batch] + [d if d is not None else f"d{k}"
                                             for k, d in enumerate(shape)])
            for n, shape in inputs.items()]
        graph = helper.make_graph(self.nodes, "t", ins, [], self.initializers)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = min(m.ir_version, 10)  # what onnxruntime 1.32 reads
        # The outputs' types with shapes, as exporters write them: from ONNX's shape
        # inference, or where it gives no shape, from the tensor onnxruntime computes.
        inferred = onnx.shape_inference.infer_shapes(m)
        known = {v.name: v for v in inferred.graph.value_info
                 if v.type.tensor_type.HasField("shape")}
        if any(o not in known for o in outputs):
            probe = onnx.ModelProto()
            probe.CopyFrom(m)
            probe.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in outputs)
            values = all_tensor_values(probe, random_feeds(probe))
        for o in outputs:
            if o not in known:
                dims = list(values[o].shape)
                known[o] = helper.make_tensor_value_info(o, TensorProto.FLOAT,
                                                         [batch] + dims[1:])
            m.graph.output.append(known[o])
        onnx.checker.check_model(m)
        return m


def random_feeds(model: onnx.ModelProto, shapes: dict | None = None, seed: int = 1) -> dict:
    """A batch of standard-normal float32 inputs per graph input: ``BATCH`` samples, or the
    model's fixed batch size (``shapes`` gives the unbatched shape where the model's is
    dynamic)."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        shape = tuple((shapes or {}).get(inp.name, dims[1:]))
        batch = dims[0] or BATCH  # a fixed batch size, or two samples
        feeds[inp.name] = rng.normal(size=(batch,) + shape).astype(np.float32)
    return feeds


def assert_matches_ort(model: onnx.ModelProto, *, input_shape=None, feeds=None,
                       tol: float = TOLERANCE, check_counts: bool = True) -> NeuronGraph:
    """Every layer of the model's neuron graph, executed on a batch of two random inputs,
    equals onnxruntime's value of the ONNX tensor of the same name; the model's outputs are
    among the layers; the enumerated edges match the plan, with no parallel edge.

    Returns the graph (its ``worst_error`` attribute: the largest relative error seen).
    """
    g = NeuronGraph.from_model(model, **({} if input_shape is None else
                                         {"input_shape": input_shape}))
    if feeds is None:
        name = next(e.name for e in g.entries if e.kind == "input")
        feeds = random_feeds(model, {name: input_shape} if input_shape else None)
    theirs = dict(all_tensor_values(model, feeds))
    theirs.update(feeds)
    inputs = feeds if len(feeds) > 1 else next(iter(feeds.values()))
    ours = execute(g, inputs)
    missing = sorted(set(ours) - set(theirs))
    assert not missing, f"layers that name no ONNX tensor: {missing}"
    outputs = [o.name for o in model.graph.output]
    absent = [o for o in outputs if o not in ours]
    assert not absent, f"model outputs no layer computes: {absent}"
    assert any(e.kind == "neurons" for e in g.entries), "no layer of neurons to compare"
    worst = 0.0
    for name, got in ours.items():
        want = np.asarray(theirs[name], dtype=np.float64)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        scale = max(float(np.abs(want).max()), 1e-6)
        err = float(np.abs(got - want).max()) / scale
        assert err <= tol, f"layer {name}: relative error {err:.3g} (tolerance {tol})"
        worst = max(worst, err)
    if check_counts:
        assert_counts_match(g)
    g.worst_error = worst
    if os.environ.get("WG_ONNX_ERROR_LOG"):  # the tolerance each test reached, for a report
        with open(os.environ["WG_ONNX_ERROR_LOG"], "a") as log:
            log.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\t"
                      f"{worst:.3g}\n")
    return g


def assert_counts_match(g: NeuronGraph):
    """Enumerated edges per layer == the planned count; every edge goes forward between
    existing neurons; no (src, dst) pair repeats."""
    per_layer, pairs = {}, []
    for b in g.iter_edge_batches(4096):
        per_layer[b.layer_index] = per_layer.get(b.layer_index, 0) + len(b)
        assert (b.src >= 0).all() and (b.dst < g.total_neurons).all()
        assert (b.src < b.dst).all(), "an edge goes backwards"
        pairs.append(b.src * g.total_neurons + b.dst)
    for spec in g.layer_specs():
        assert per_layer.get(spec.index, 0) == spec.edges, spec.name
    pairs = np.concatenate(pairs) if pairs else np.zeros(0, np.int64)
    assert len(np.unique(pairs)) == len(pairs), "parallel edges"
