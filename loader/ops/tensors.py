"""Which neuron holds each value of a tensor.

A tensor produced by a neuron layer is contiguous: position ``i`` (flat, C order) is neuron
``offset + i``. Shape-only layers (Permute, Concatenate, Cropping, ZeroPadding, ...) make no
neurons; their output is an explicit id map, with ``-1`` where the value is a constant zero
from padding. Reshape and Flatten keep the flat order, so they keep a contiguous map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ZERO = -1  # id-map entry for a constant zero (padding): never a node, never an edge


@dataclass(frozen=True)
class TensorIds:
    shape: tuple[int, ...]
    offset: int | None = None
    ids: np.ndarray | None = None  # flat int64, C order

    def __post_init__(self):
        if (self.offset is None) == (self.ids is None):
            raise ValueError("TensorIds needs exactly one of offset and ids")

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def contiguous(self) -> bool:
        return self.offset is not None

    @property
    def has_zeros(self) -> bool:
        return self.ids is not None and bool((self.ids < 0).any())

    def array(self) -> np.ndarray:
        """The flat id map (materialised for contiguous tensors)."""
        if self.ids is not None:
            return self.ids
        return np.arange(self.offset, self.offset + self.size, dtype=np.int64)

    def take(self, flat: np.ndarray) -> np.ndarray:
        """Ids at flat positions ``flat``."""
        if self.offset is not None:
            return flat.astype(np.int64, copy=False) + self.offset
        return self.ids[flat]

    def reshaped(self, shape) -> "TensorIds":
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape, dtype=np.int64)) != self.size:
            raise ValueError(f"cannot reshape {self.shape} to {shape}")
        return TensorIds(shape, self.offset, self.ids)

    def mapped(self, fn) -> "TensorIds":
        """Apply an array transform (transpose, slice, pad, repeat) to the id map."""
        out = np.ascontiguousarray(fn(self.array().reshape(self.shape)))
        return TensorIds(tuple(out.shape), ids=out.reshape(-1).astype(np.int64, copy=False))


def broadcast_take(arr: np.ndarray, out_shape: tuple[int, ...], flat: np.ndarray) -> np.ndarray:
    """``np.broadcast_to(arr, out_shape).reshape(-1)[flat]`` without materialising the broadcast."""
    arr = np.asarray(arr)
    if arr.ndim < len(out_shape):
        arr = arr.reshape((1,) * (len(out_shape) - arr.ndim) + arr.shape)
    if arr.shape == tuple(out_shape):
        return arr.reshape(-1)[flat]
    if arr.size == 1:
        return np.broadcast_to(arr.reshape(-1)[:1], flat.shape).copy()
    coords = np.unravel_index(flat, out_shape)
    small = tuple(c if s != 1 else np.zeros_like(c) for c, s in zip(coords, arr.shape))
    return arr[small]


def broadcast_ids(t: TensorIds, out_shape: tuple[int, ...], flat: np.ndarray) -> np.ndarray:
    """Ids of tensor ``t`` broadcast to ``out_shape``, at flat output positions ``flat``."""
    if t.shape == tuple(out_shape):
        return t.take(flat)
    return broadcast_take(t.array().reshape(t.shape), out_shape, flat)
