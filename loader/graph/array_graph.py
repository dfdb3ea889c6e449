"""A graph held as plain arrays (what GraphML, Parquet and Neo4j hold), prepared once for the
passes over it, and the per-layer kernels of those passes.

:meth:`ArrayGraph.prepare` sorts the neurons by id (so by layer: ids follow the layer order,
and within a layer the index order) and turns the edges into rows grouped by the layer they
enter, keeping their order within a layer. :class:`ArrayLayer` is one layer's pass over its
edges, like :func:`loader.graph.blocks.layer_pass` for a :class:`~loader.graph.NeuronGraph`:
``forward`` reduces the sources into the layer's pre-activations (for one input, or a column
per input) and ``backward`` sends a pre-activation gradient to the sources.
:func:`loader.graph.forward.execute_arrays` runs the forward pass;
:func:`loader.graph.trace.trace_arrays` runs it and then the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WeightgraphError

#: The reduction's starting value of each neuron op.
START = {"sum": 0.0, "max": -np.inf, "min": np.inf, "product": 1.0}
_NONE = np.iinfo(np.int64).max


def accumulate(acc: np.ndarray, op: str, local_dst: np.ndarray, src_values: np.ndarray,
               weight: np.ndarray) -> None:
    """Reduce edges into ``acc`` (neurons, or neurons x inputs), in place: ``sum`` adds
    weight x source (a weighted bincount per input), ``max``/``min``/``product`` reduce the
    sources (ufunc ``.at``)."""
    if op == "sum":
        n = acc.shape[0]
        if acc.ndim == 1:
            acc += np.bincount(local_dst, weights=src_values * weight, minlength=n)
            return
        contrib = src_values * weight[:, None]
        for b in range(acc.shape[1]):
            acc[:, b] += np.bincount(local_dst, weights=contrib[:, b], minlength=n)
    elif op == "max":
        np.maximum.at(acc, local_dst, src_values)
    elif op == "min":
        np.minimum.at(acc, local_dst, src_values)
    else:
        np.multiply.at(acc, local_dst, src_values)


@dataclass
class ArrayGraph:
    """Neurons sorted by id and edges as rows grouped by the layer they enter.

    Attributes
    ----------
    layers : layer index -> the contract's layer dict.
    ids, layer_index, index, bias, activation, op : per neuron row (``op`` None when the nodes
        do not carry it).
    src, dst, weight : per edge, the source and target rows and the weight, grouped by the
        target's layer (stable: a layer's edges keep their given order).
    """

    layers: dict
    ids: np.ndarray
    layer_index: np.ndarray
    index: np.ndarray
    bias: np.ndarray
    activation: np.ndarray
    op: np.ndarray | None
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    _edge_bounds: np.ndarray
    _row_bounds: np.ndarray

    @classmethod
    def prepare(cls, layers: list[dict], nodes: dict, edges: dict, *,
                check_sources: bool = False) -> "ArrayGraph":
        """``layers``: the contract's graph-level list; ``nodes``: equal-length arrays ``id``,
        ``layer_index``, ``index``, ``bias``, ``activation`` (and ``op``); ``edges``: arrays
        ``src``, ``dst``, ``weight``. ``check_sources``: an edge from a neuron that ``nodes``
        does not hold is an error (a selection that misses part of a cone)."""
        ids = np.asarray(nodes["id"], dtype=np.int64)
        order = np.argsort(ids)
        ids = ids[order]
        li = np.asarray(nodes["layer_index"], dtype=np.int64)[order]
        index = np.asarray(nodes["index"], dtype=np.int64)[order]
        bias = np.asarray(nodes["bias"], dtype=np.float64)[order]
        act = np.asarray(nodes["activation"], dtype=object)[order]
        op = None if "op" not in nodes else np.asarray(nodes["op"], dtype=object)[order]
        e_src = np.asarray(edges["src"], dtype=np.int64)
        src = np.searchsorted(ids, e_src)
        dst = np.searchsorted(ids, np.asarray(edges["dst"], dtype=np.int64))
        weight = np.asarray(edges["weight"], dtype=np.float64)
        if check_sources and len(src) and (src.max() >= len(ids) or not np.array_equal(
                ids[np.minimum(src, len(ids) - 1)], e_src)):
            raise WeightgraphError("an edge reads a neuron the selection does not hold")
        by_layer = np.argsort(li[dst], kind="stable")
        src, dst, weight = src[by_layer], dst[by_layer], weight[by_layer]
        table = {l["index"]: l for l in layers}
        n_layers = max(table) + 2
        return cls(table, ids, li, index, bias, act, op, src, dst, weight,
                   np.searchsorted(li[dst], np.arange(n_layers)),
                   np.searchsorted(li, np.arange(n_layers)))

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, k: int) -> tuple[int, int]:
        """The rows ``[a, b)`` of layer ``k``'s neurons."""
        return int(self._row_bounds[k]), int(self._row_bounds[k + 1])

    def holds(self, k: int) -> bool:
        """Whether the graph holds any neuron of layer ``k``."""
        a, b = self.rows(k)
        return a < b

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The rows of neuron ids the graph holds."""
        return np.searchsorted(self.ids, ids)

    def layer_pass(self, k: int) -> "ArrayLayer":
        """The pass over the edges entering layer ``k``."""
        a, b = self.rows(k)
        e0, e1 = self._edge_bounds[k], self._edge_bounds[k + 1]
        return ArrayLayer(self, self.layers[k]["op"], self.src[e0:e1], self.dst[e0:e1] - a,
                          self.weight[e0:e1], b - a)


class ArrayLayer:
    """One layer's edges: source rows, target positions in the layer, weights.

    A max (min) neuron chooses, among its maximal (minimal) sources, the one with the least
    id (without the window's geometry; for a window reading a layer's output in position
    order, that is the first in window order).
    """

    def __init__(self, graph: ArrayGraph, op: str, src: np.ndarray, dst: np.ndarray,
                 weight: np.ndarray, n: int):
        self.graph, self.op, self.src, self.dst, self.weight, self.n = \
            graph, op, src, dst, weight, n

    def forward(self, values: np.ndarray, *, choose: bool = False):
        """Pre-activations (before the bias) from ``values`` (rows, or rows x inputs), and with
        ``choose`` (one input) the chosen source id of each max/min neuron (-1: none), else
        None."""
        pre = np.full((self.n,) + values.shape[1:], START[self.op])
        v = values[self.src]
        accumulate(pre, self.op, self.dst, v, self.weight)
        if not choose or self.op not in ("max", "min"):
            return pre, None
        hit = v == pre[self.dst]
        least = np.full(self.n, _NONE)
        np.minimum.at(least, self.dst[hit], self.graph.ids[self.src[hit]])
        return pre, np.where(least == _NONE, -1, least)

    def backward(self, gpre: np.ndarray, values: np.ndarray, chosen: np.ndarray | None,
                 grad: np.ndarray) -> None:
        """Add to ``grad`` (rows) the gradient that pre-activation gradient ``gpre`` sends to
        the sources (one input); ``chosen``: the ids :meth:`forward` chose."""
        s, d = self.src, self.dst
        if self.op == "sum":
            grad += np.bincount(s, weights=gpre[d] * self.weight, minlength=len(grad))
        elif self.op in ("max", "min"):
            ok = (chosen >= 0) & (gpre != 0)
            np.add.at(grad, self.graph.rows_of(chosen[ok]), gpre[ok])
        else:
            # The product of a neuron's other inputs, zeros included: per neuron the product
            # of its nonzero inputs and how many are zero.
            v = values[s]
            zero = v == 0
            nonzero = np.ones(self.n)
            zeros = np.zeros(self.n)
            np.multiply.at(nonzero, d, np.where(zero, 1.0, v))
            np.add.at(zeros, d, zero)
            others = np.where(zeros[d] - zero > 0, 0.0, nonzero[d] / np.where(zero, 1.0, v))
            grad += np.bincount(s, weights=gpre[d] * others, minlength=len(grad))
