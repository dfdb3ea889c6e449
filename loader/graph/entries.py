"""The boundary between a model front end and the graph: layer entries.

A front end (``loader.keras``, ``loader.onnx``) turns a model into a list of :class:`Entry`,
one per layer in topological order, each either a neuron layer (an op from :mod:`loader.ops`
with its shapes, ids, weights and activation) or a shape-only view of other layers' neurons
(an id map). Everything after this point (``graph/``, ``sinks/``, ``neo4j/``, ``analysis/``)
works on entries only and never imports a framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..ops.base import NeuronOp, Unsupported
from ..ops.elementwise import ElementwiseOp
from ..ops.tensors import TensorIds


@dataclass
class Entry:
    """One layer of the graph: ``kind`` is input, neurons or alias.

    ``name`` is the framework's name of the tensor the layer's values equal (a Keras layer
    call, an ONNX tensor); ``class_name`` the framework's kind of layer (``Conv2D``, ``Conv``).
    """

    name: str
    class_name: str
    kind: str
    output: TensorIds
    op: NeuronOp | None = None
    inputs: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)


@dataclass
class ModelEntries:
    """What a front end hands the graph: the entries, the model's name, its format and the
    framework's own model object (``source``: opaque here, for callers that want it)."""

    entries: list[Entry]
    name: str
    format: str
    source: object = None


class IdAllocator:
    """Global neuron ids in topological order: each layer takes the next ``prod(shape)``."""

    def __init__(self):
        self.next_id = 0

    def __call__(self, shape) -> int:
        start = self.next_id
        self.next_id += math.prod(shape)
        return start


def check_no_parallel_edges(op: NeuronOp):
    """Refuse a layer that would read one neuron twice into the same neuron.

    Only shape-only layers can make a tensor hold a neuron twice (concatenating a tensor with
    itself); a graph has no parallel edges, so such a layer is refused rather than approximated.
    """
    if isinstance(op, ElementwiseOp):
        if len(op.inputs) > 1:
            ids = np.concatenate([np.unique(t.array()) for t in op.inputs])
            ids = ids[ids >= 0]
            if len(np.unique(ids)) != len(ids):
                raise Unsupported("reads the same neuron through two inputs")
        return
    for t in op.inputs:
        if not t.contiguous:
            real = t.ids[t.ids >= 0]
            if len(np.unique(real)) != len(real):
                raise Unsupported("its input holds the same neuron at two positions "
                                  "(a tensor concatenated with itself)")
