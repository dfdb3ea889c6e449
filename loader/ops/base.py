"""What every neuron-producing layer offers the graph: counts, edges, node attributes."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from .tensors import TensorIds, broadcast_take


class Unsupported(Exception):
    """A layer's arithmetic that no neuron graph can express (raised by the ops and the Keras
    builders; :func:`loader.keras.builders.build_entries` names the layer and its class)."""

Edges = tuple[np.ndarray, np.ndarray, np.ndarray]  # src int64, dst int64, weight float32


class NeuronOp:
    """A layer whose outputs are new neurons ``offset .. offset + n_neurons - 1``.

    Subclasses set ``op`` and ``inputs`` and implement :meth:`count_edges` and
    :meth:`iter_edges`.

    ``channels_first`` says where the channel axis of the output is: the last axis (Keras,
    ``(H, W, C)``: neuron ``offset + pos * C + c``) or the first (ONNX's NCHW without the batch
    axis, ``(C, H, W)``: neuron ``offset + c * P + pos``). A neuron's id is its flat C-order
    position either way; the layout only says which axis holds the channels, for the layers
    that mix channels by position (:class:`~loader.ops.windowed.WindowedOp`) and for the
    channel view of the graph.
    """

    op: str = "sum"
    inputs: list[TensorIds] = []

    def __init__(self, out_shape, offset: int, *, bias=None, activation: str = "linear",
                 channels_first: bool = False):
        self.out_shape = tuple(int(s) for s in out_shape)
        self.offset = int(offset)
        self._bias = None if bias is None else np.asarray(bias, dtype=np.float32)
        self._activation = activation
        self.channels_first = bool(channels_first) and len(self.out_shape) > 1

    @property
    def n_neurons(self) -> int:
        return math.prod(self.out_shape)

    # ------------------------------------------------------------------ layout
    @property
    def channel_axis(self) -> int | None:
        """The axis of ``out_shape`` that holds the channels (None for a scalar output)."""
        if not self.out_shape:
            return None
        return 0 if self.channels_first else len(self.out_shape) - 1

    @property
    def n_channels(self) -> int:
        return self.out_shape[self.channel_axis] if self.out_shape else 1

    def channel_of(self, local: np.ndarray) -> np.ndarray:
        """The channel of each neuron, given as local indices (id - offset)."""
        c = self.n_channels
        return local // (self.n_neurons // c) if self.channels_first else local % c

    def by_channel(self, arr: np.ndarray) -> np.ndarray:
        """A per-neuron array (id order) viewed as (positions, channels), without a copy."""
        return by_channel(arr, self.n_channels, self.channels_first)

    @property
    def output(self) -> TensorIds:
        return TensorIds(self.out_shape, offset=self.offset)

    def count_edges(self) -> int:
        raise NotImplementedError

    def iter_edges(self, batch_size: int, needed: np.ndarray | None = None,
                   reuse_buffers: bool = False) -> Iterator[Edges]:
        """Edges into this layer's neurons, in batches of about ``batch_size``.

        ``needed`` (bool per neuron) restricts the edges to those entering needed neurons.
        """
        raise NotImplementedError

    def iter_edges_by_weight(self, batch_size: int, tile_edges: int,
                             tiles: range | None = None,
                             reuse_buffers: bool = False) -> Iterator[Edges]:
        """All edges into this layer in an order that keeps weights in long runs (for columnar
        sinks), in tiles (see :meth:`n_tiles`). Layers without shared weights have no better
        order than :meth:`iter_edges`, and are one tile."""
        if tiles is None or 0 in tiles:
            yield from self.iter_edges(batch_size, reuse_buffers=reuse_buffers)

    def n_tiles(self, tile_edges: int) -> int:
        return 1

    def bias(self, flat: np.ndarray) -> np.ndarray:
        if self._bias is None:
            return np.zeros(len(flat), dtype=np.float32)
        return broadcast_take(self._bias, self.out_shape, flat).astype(np.float32, copy=False)

    def activation(self, flat: np.ndarray) -> str | np.ndarray:
        return self._activation

    def describe(self) -> dict:
        """Layer parameters worth showing in a plan."""
        return {}


class InputOp(NeuronOp):
    """Given values: no incoming edges."""

    op = "input"

    def count_edges(self) -> int:
        return 0

    def iter_edges(self, batch_size, needed=None, reuse_buffers=False):
        return iter(())


def by_channel(arr: np.ndarray, channels: int, channels_first: bool) -> np.ndarray:
    """A flat array over a tensor's positions (C order) viewed as (positions, channels):
    a reshape for channels-last tensors, a transposed reshape (a view) for channels-first."""
    arr = np.asarray(arr)
    if channels_first:
        return arr.reshape(channels, -1).T
    return arr.reshape(-1, channels)


def keep(edges: Edges, mask: np.ndarray) -> Edges:
    return edges[0][mask], edges[1][mask], edges[2][mask]
