"""The two record types every stream in weightgraph carries: node and edge batches.

Enumeration produces them, sinks consume them; neither side knows the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EdgeBatch:
    """A bounded run of edges, all entering neurons of one layer.

    Attributes
    ----------
    src, dst : int64 arrays of global neuron ids.
    weight : float32 array.
    layer_index : the IR index of the layer the edges enter (their ``dst`` layer).
    extra : further per-edge attributes by name (a trace's ``chosen``, bool), each an array
        of the batch's length; sinks write the ones the graph declares.

    Notes
    -----
    A stream created with ``reuse_buffers=True`` hands out read-only views of buffers that the
    next batch overwrites: a consumer that keeps a batch past its turn must call :meth:`copy`
    (writing into one raises, rather than corrupting the next batch).
    """

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    layer_index: int
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def copy(self) -> "EdgeBatch":
        return EdgeBatch(self.src.copy(), self.dst.copy(), self.weight.copy(), self.layer_index,
                         {k: v.copy() for k, v in self.extra.items()})


@dataclass(frozen=True)
class NodeBatch:
    """A bounded run of neurons of one layer, with the contract's attributes.

    ``activation`` is one string for the whole batch, or an object array of strings where it
    varies per neuron (PReLU, max pooling over explicit zero padding). ``extra`` holds further
    per-neuron attributes by name (a trace's ``value``, ``active``, ``contribution``).
    """

    id: np.ndarray
    layer: str
    layer_index: int
    index: np.ndarray
    op: str
    bias: np.ndarray
    activation: str | np.ndarray
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def activations(self) -> np.ndarray:
        """The activation of every neuron of the batch, as an object array."""
        if isinstance(self.activation, str):
            return np.full(len(self), self.activation, dtype=object)
        return self.activation
