"""Read an ONNX model into graph entries: load and check it, fix its input shapes, and walk its
nodes in order, folding constants and handing every other node to its builder.

Shapes here are *unbatched*: an activation ``(N, C, H, W)`` is a tensor of shape ``(C, H, W)``
whose flat C-order positions are the ``index`` of the contract. The batch axis must stay the
first axis of every activation; a node that would move or mix it is refused. Shape arithmetic
(``Shape``, ``Gather``, ``Slice``, ``Cast``, ``Concat``, ... feeding a ``Reshape``) is evaluated
with the batch taken as 1 (or as the model's fixed batch size), by ONNX's own reference
implementation of each operator (``onnx.reference``), so any operator on constants folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError, UnsupportedLayerError, one_line
from ..graph.entries import Entry, IdAllocator, ModelEntries
from ..ops.base import InputOp, Unsupported
from ..ops.tensors import TensorIds


def accepts(model) -> bool:
    """``.onnx`` paths and ``onnx.ModelProto`` objects (checked without importing onnx)."""
    if isinstance(model, (str, Path)):
        return Path(model).suffix.lower() == ".onnx"
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def read(model, *, input_shape=None, weights="default", include_top=True) -> ModelEntries:
    """The entries of an ONNX model.

    Parameters
    ----------
    model : path to a ``.onnx`` file, or an ``onnx.ModelProto``.
    input_shape : the input's shape without the batch axis, in the model's own layout
        (``(C, H, W)`` for NCHW exports): fixes its dynamic dimensions, or replaces fixed ones
        (a model whose later shapes are constants refuses, naming the node that no longer
        fits).
    weights, include_top : Keras options; an ONNX file carries its weights, so they must stay
        at their defaults.
    """
    if weights not in ("default", None, "none") and weights is not None:
        raise ModelLoadError("an ONNX model carries its weights: --weights does not apply")
    if not include_top:
        raise ModelLoadError("--no-top applies to keras.applications names, not ONNX files")
    proto, name = _load(model)
    return Converter(proto, name, input_shape).run()


def _load(model):
    import onnx

    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # protobuf DecodeError, OSError, ...
            raise ModelLoadError(f"{path} is not a readable ONNX model ({one_line(exc)})") \
                from None
        name = path.stem
    else:
        proto = model
        name = proto.graph.name or "onnx_model"
    if not proto.graph.node:
        raise ModelLoadError(f"{name}: the ONNX graph has no nodes")
    try:
        # A file is checked from its path: checking the proto first serializes it again
        # (0.4 s of VGG16's 144 MiB).
        onnx.checker.check_model(str(path) if isinstance(model, (str, Path)) else proto)
    except Exception as exc:
        raise ModelLoadError(f"{name} is not a valid ONNX model ({one_line(exc)})") from None
    return proto, name


@dataclass
class Value:
    """What the converter knows of one ONNX tensor: a constant (``const``, the full array), or
    an activation (``ids``, unbatched) with the entry that holds it and where its channels
    are (``layout``: ``first``, ``last`` or None for a vector)."""

    const: np.ndarray | None = None
    ids: TensorIds | None = None
    entry: Entry | None = None
    layout: str | None = None

    @property
    def is_const(self) -> bool:
        return self.const is not None


@dataclass
class Node:
    """One ONNX node as the builders see it."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    domain: str = ""


class Converter:
    """Walks an ONNX graph and builds the entries (see the module docstring)."""

    def __init__(self, proto, name: str, input_shape=None):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.proto = proto
        self.name = name
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                          1)
        self.values: dict[str, Value] = {}
        self.entries: list[Entry] = []
        self.alloc = IdAllocator()
        self.batch = 1
        self.fixed_batch: int | None = None  # the input's batch size when the model fixes it
        graph = proto.graph
        for init in graph.initializer:
            self.values[init.name] = Value(const=numpy_helper.to_array(init))
        self.outputs = {o.name for o in graph.output}
        self.consumers: dict[str, list[int]] = {}
        self.nodes = [self._node(n, k) for k, n in enumerate(graph.node)]
        for k, n in enumerate(self.nodes):
            for i in n.inputs:
                if i:
                    self.consumers.setdefault(i, []).append(k)
        self._inputs(graph, input_shape)

    # ------------------------------------------------------------------ setup
    def _node(self, n, k: int) -> Node:
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in n.attribute}
        for key, v in attrs.items():
            if isinstance(v, bytes):
                attrs[key] = v.decode()
            elif isinstance(v, self.onnx.TensorProto):
                attrs[key] = self.numpy_helper.to_array(v)
        return Node(n.name or f"{n.op_type}_{k}", n.op_type, list(n.input), list(n.output),
                    attrs, n.domain)

    def _inputs(self, graph, input_shape):
        real = [i for i in graph.input if i.name not in self.values]
        if not real:
            raise ModelLoadError(f"{self.name}: the model has no input")
        if input_shape is not None and len(real) != 1:
            raise ModelLoadError(f"{self.name} has {len(real)} inputs; --input-shape fixes "
                                 "the shape of a single input")
        for inp in real:
            ttype = inp.type.tensor_type
            if not inp.type.HasField("tensor_type"):
                raise ModelLoadError(f"input {inp.name!r} is not a tensor")
            dims = [d.dim_value if d.HasField("dim_value") else None
                    for d in ttype.shape.dim]
            if not dims:
                raise ModelLoadError(f"input {inp.name!r} has no batch axis")
            if dims[0] is not None:
                self.batch = self.fixed_batch = dims[0]
            shape = dims[1:]
            if input_shape is not None:
                given = tuple(int(s) for s in input_shape)
                if len(given) != len(shape):
                    raise ModelLoadError(
                        f"--input-shape {','.join(map(str, given))} has {len(given)} "
                        f"dimensions; input {inp.name!r} has {len(shape)} besides the batch "
                        f"axis ({_shape_text(shape)})")
                shape = list(given)
            if any(s is None or s <= 0 for s in shape):
                raise ModelLoadError(
                    f"input {inp.name!r} has dynamic dimensions ({_shape_text(shape)} after the "
                    "batch axis): give --input-shape, in the model's own layout without the "
                    "batch axis (e.g. 3,224,224)")
            shape = tuple(shape)
            op = InputOp(shape, self.alloc(shape), channels_first=self._input_layout(inp.name,
                                                                                 shape) == "first")
            entry = Entry(inp.name, "Input", "input", op.output, op)
            self.entries.append(entry)
            self.values[inp.name] = Value(ids=op.output, entry=entry,
                                          layout=self._input_layout(inp.name, shape))

    def _input_layout(self, name: str, shape) -> str | None:
        """Channels first (the ONNX convention), unless the input's first reader transposes it
        from channels-last (what exports of Keras and TensorFlow models do)."""
        if len(shape) < 2:
            return None
        for k in self.consumers.get(name, []):
            n = self.nodes[k]
            if n.op_type == "Transpose":
                perm = list(n.attrs.get("perm", []))
                rank = len(shape) + 1
                if perm == [0, rank - 1] + list(range(1, rank - 1)):
                    return "last"
        return "first"

    # ------------------------------------------------------------------ walk
    def run(self) -> ModelEntries:
        from . import builders

        for k, node in enumerate(self.nodes):
            try:
                if node.domain not in ("", "ai.onnx"):
                    raise Unsupported(f"operator domain {node.domain!r} (only the default "
                                      "ONNX domain)")
                if self._foldable(node):
                    self._fold(node)
                    continue
                builder = builders.BUILDERS.get(node.op_type)
                if builder is None:
                    raise Unsupported("no neuron-graph rule for this operator")
                builder(self, node)
            except Unsupported as exc:
                raise UnsupportedLayerError(node.name, node.op_type, str(exc)) from None
        missing = [o for o in self.outputs if o in self.values and self.values[o].is_const]
        if missing:
            raise UnsupportedLayerError(missing[0], "output",
                                        "the model output is a constant (no neuron computes it)")
        return ModelEntries(self.entries, name=self.name, format="onnx", source=self.proto)

    def _foldable(self, node: Node) -> bool:
        """Every input a constant (or absent), or a node that only reads shapes."""
        if node.op_type in ("Shape", "Size"):
            return True
        return all(not i or self.values[i].is_const for i in node.inputs) and \
            node.op_type not in ("RandomNormal", "RandomUniform", "RandomNormalLike",
                                 "RandomUniformLike", "Multinomial")

    def _fold(self, node: Node):
        """Evaluate a node on constants with ONNX's reference implementation."""
        from onnx.reference import ReferenceEvaluator

        feeds = {}
        ins = []
        for i in node.inputs:
            if not i:
                ins.append("")
                continue
            v = self.value(i)
            if v.is_const:
                feeds[i] = v.const
            else:  # Shape / Size of an activation: its (batched) shape is all they read
                feeds[i] = np.zeros((self.batch,) + v.ids.shape, dtype=np.float32)
            ins.append(i)
        helper = self.onnx.helper
        attrs = {k: v for k, v in node.attrs.items()}
        proto_node = helper.make_node(node.op_type, ins, node.outputs, **_attr_args(attrs))
        # Inside a function of the model's opset: a lone node would be read at the newest
        # opset (Unsqueeze-11's axes attribute, say, is an input from opset 13 on).
        function = helper.make_function(
            "weightgraph.fold", "fold", [i for i in ins if i], [o for o in node.outputs if o],
            [proto_node], [helper.make_opsetid("", self.opset)])
        try:
            ref = ReferenceEvaluator(function)
            outs = ref.run(None, feeds, attributes={})
        except Exception as exc:
            raise Unsupported(f"cannot evaluate it on constants ({one_line(exc)})") from None
        for name, arr in zip([o for o in node.outputs if o], outs, strict=True):
            self.values[name] = Value(const=np.asarray(arr))

    # ------------------------------------------------------------------ for builders
    def value(self, name: str) -> Value:
        if name not in self.values:
            raise Unsupported(f"reads tensor {name!r}, which nothing before it produces")
        return self.values[name]

    def activation(self, name: str) -> Value:
        """An activation input (a constant there is refused)."""
        v = self.value(name)
        if v.is_const:
            raise Unsupported(f"input {name!r} is a constant where an activation is expected")
        return v

    def constant(self, node: Node, k: int, what: str, *, default=None, required=True):
        """Input ``k`` of ``node`` as a constant array (``default`` when absent)."""
        if k >= len(node.inputs) or not node.inputs[k]:
            if required and default is None:
                raise Unsupported(f"has no {what}")
            return default
        v = self.value(node.inputs[k])
        if not v.is_const:
            raise Unsupported(f"its {what} ({node.inputs[k]!r}) is computed from the input, "
                              "not a constant")
        return v.const

    def single_consumer(self, tensor: str) -> Node | None:
        """The one node reading ``tensor`` when exactly one does and it is no graph output."""
        readers = self.consumers.get(tensor, [])
        if len(readers) != 1 or tensor in self.outputs:
            return None
        return self.nodes[readers[0]]

    def add_neurons(self, node: Node, op, *, layout: str | None, class_name=None,
                    output: TensorIds | None = None, params=None, out: str | None = None):
        """Register a neuron layer producing ``out`` (default: the node's first output)."""
        from ..graph.entries import check_no_parallel_edges

        check_no_parallel_edges(op)
        out = out or node.outputs[0]
        ids = op.output if output is None else output
        entry = Entry(out, class_name or node.op_type, "neurons", ids, op,
                      inputs=self._entry_inputs(node), params=params or {})
        self.entries.append(entry)
        self.values[out] = Value(ids=ids, entry=entry, layout=layout)
        return entry

    def add_alias(self, node: Node, ids: TensorIds, *, layout: str | None, out: str | None = None,
                  params=None):
        """Register a shape-only layer: ``out`` shows other layers' neurons."""
        out = out or node.outputs[0]
        entry = Entry(out, node.op_type, "alias", ids, inputs=self._entry_inputs(node),
                      params=params or {})
        self.entries.append(entry)
        self.values[out] = Value(ids=ids, entry=entry, layout=layout)
        return entry

    def rename_layer(self, entry: Entry, name: str, layout: str | None):
        """A layer takes over tensor ``name`` (an activation or a bias folded into it): the
        name of its old tensor no longer stands for anything."""
        del self.values[entry.name]
        entry.name = name
        self.values[name] = Value(ids=entry.output, entry=entry, layout=layout)

    def _entry_inputs(self, node: Node) -> list[str]:
        return [self.values[i].entry.name for i in node.inputs
                if i and i in self.values and not self.values[i].is_const]

    def refuse_other_outputs(self, node: Node, keep: int = 1):
        for extra in node.outputs[keep:]:
            if extra and (self.consumers.get(extra) or extra in self.outputs):
                raise Unsupported(f"its output {extra!r} is used (only the first output can "
                                  "be a layer)")


def _attr_args(attrs: dict) -> dict:
    """Attributes back into ``make_node`` keyword form (tensors stay arrays: make_node takes
    numpy arrays for tensor attributes through make_attribute)."""
    import onnx

    out = {}
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            out[k] = onnx.numpy_helper.from_array(v)
        else:
            out[k] = v
    return out


def _shape_text(shape) -> str:
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
