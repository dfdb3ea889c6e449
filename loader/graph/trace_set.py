"""Traces over a data set: the pooling choices, the neurons that fire and the contributions of
N inputs, aggregated, and the *effective graph* the set uses.

A trace (:mod:`loader.graph.trace`) resolves the graph for one input. Over a set of inputs,
``trace_set(graph, inputs, target=...)`` runs them through the graph **in batches** (every
layer's pass once per batch, :meth:`loader.graph.blocks.WindowedPass.forward_many` and its
siblings: the tap matrices of the single trace with a batch axis) and keeps, per neuron:

* ``mean_value``: the mean of its output over the inputs;
* ``active_rate``: the fraction of inputs where it is *active* (its activation's slope is not 0
  and, for a max/min neuron, an input was chosen: as :attr:`loader.graph.trace.Trace.active`);
* ``nonzero_rate``: the fraction of inputs where its output is not 0 (what the effective graph
  needs to know besides: a ReLU6 stuck at its cap is never active and never 0);
* with a target, ``mean_contribution`` and ``mean_abs_contribution``: the mean of value x
  d(target)/d(value) and of its absolute value. ``target="predicted"`` takes each input's own
  predicted class: the neuron of the last layer with the largest value for that input;
* on a max/min neuron, ``padding_rate``: the fraction of inputs where a padding zero was the
  window's maximum (max pooling over ``ZeroPadding``), so that no edge was chosen;

and per edge into a max/min neuron ``chosen_rate``: the fraction of inputs for which that entry
is the chosen one (the first maximal entry in window order, as for one input). A neuron's
rates sum to ``1 - padding_rate`` (to 1 wherever no padding zero is in its window).

The **effective graph** (:meth:`TraceSet.effective_mask`, ``subgraph(effective=True)``) keeps
the max/min edges with ``chosen_rate > min_rate`` and drops the neurons that are never active
and 0 on every input, with their edges; a dropped neuron that a kept max/min edge or a kept
product neuron reads stays (it is the 0 the maximum takes). With ``min_rate=0`` it executes
to the model's values on every input of the set: a kept max neuron still sees its chosen entry
for each input, and every dropped neuron is 0 wherever it is read.

Memory is bounded by the batch size: a batch holds three float64 arrays over every neuron
(values, slopes, gradients: 24 bytes per neuron per input; VGG16 at 224x224: 366 MB per
input), and the aggregates are five float64 arrays over the neurons plus 20 bytes per
max/min edge. :func:`default_batch_size` picks the batch that fits 2 GiB.

Graphs held as arrays (a model stored in Neo4j: ``loader.neo4j.trace_sets``) run through the
same batched engine with one sparse pass per layer (:class:`ArrayPass`).

>>> ts = trace_set(g, x_test, target="predicted")        # x_test: (N, *input shape)
>>> ts.layer("pool1", "active_rate"); ts.window_rates("pool1")
>>> write_graphml(ts.subgraph(effective=True), "effective.graphml.gz")
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ..errors import SelectionError, WeightgraphError
from ..input_sets import InputSet, array_set, read_input_set
from ..inputs import InputFileError
from ..ops import activations
from ..ops.elementwise import ElementwiseOp
from ..ops.windowed import WindowedOp
from .batches import EdgeBatch, NodeBatch
from .blocks import layer_pass
from .array_graph import ArrayGraph
from .forward import _finish_many, activate, activation_groups
from .neuron_graph import DEFAULT_BATCH, NeuronGraph
from .trace import neuron_id

__all__ = ["TraceSet", "TraceSetGraph", "trace_set", "trace_set_arrays", "default_batch_size",
           "default_workers",
           "ArrayPass", "NODE_ATTRIBUTES", "EDGE_ATTRIBUTES", "effective_keep"]

# Bytes a batch holds per neuron and input: values, slopes and gradients, float64.
BYTES_PER_NEURON_INPUT = 24
BATCH_MEMORY = 2 << 30  # the default batch fits this (the aggregates come on top)
MAX_BATCH = 256  # more inputs per pass buy nothing measurable (digits CNN: 256 vs 360)

#: Node attributes of an aggregated trace (GraphML types); the contribution ones need a target,
#: ``padding_rate`` is on max/min neurons only.
NODE_ATTRIBUTES = (("mean_value", "double"), ("active_rate", "double"),
                   ("nonzero_rate", "double"), ("mean_contribution", "double"),
                   ("mean_abs_contribution", "double"), ("padding_rate", "double"))
#: Edge attribute: on every edge into a max/min neuron.
EDGE_ATTRIBUTES = (("chosen_rate", "double"),)


def default_batch_size(n_neurons: int, n_inputs: int | None = None) -> int:
    """Inputs per batch so that a batch's arrays fit :data:`BATCH_MEMORY` (at most
    :data:`MAX_BATCH`, at most the set)."""
    b = max(1, min(MAX_BATCH, BATCH_MEMORY // max(1, BYTES_PER_NEURON_INPUT * n_neurons)))
    return b if n_inputs is None else max(1, min(b, n_inputs))


# ----------------------------------------------------------------------------- the engine
@dataclass
class _Step:
    """One layer of the engine: rows ``lo:hi`` of the value arrays."""

    index: int  # the layer's index (NeuronGraph entry index = the contract's layer_index)
    name: str
    kind: str  # "input" or "neurons"
    lo: int
    hi: int
    op: str  # "input", "sum", "max", "min", "product"
    shape: tuple  # the layer's output shape
    layer_pass: object = None  # forward_many / backward_many
    finish: object = None  # (neurons, B) pre-activations -> (output, slope, jacobian name)
    take: np.ndarray | None = None  # input layers held in part: the flat positions held


class _Choices:
    """Every edge into one max/min layer, keyed by (neuron, source) and sorted, with its window
    position, and how many inputs chose it; ``none`` counts, per neuron, the inputs where no
    edge was chosen (a padding zero won)."""

    def __init__(self, lo: int, n: int, dst_local, src, position, window_shape, modulus: int):
        self.lo, self.n, self.modulus = lo, n, modulus
        key = np.asarray(dst_local, np.int64) * modulus + np.asarray(src, np.int64)
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.position = np.asarray(position, np.int32)[order]
        self.window_shape = tuple(int(s) for s in window_shape)
        self.counts = np.zeros(len(key), np.int64)
        self.none = np.zeros(n, np.int64)

    @property
    def src(self) -> np.ndarray:
        return self.key % self.modulus

    @property
    def dst_local(self) -> np.ndarray:
        return self.key // self.modulus

    def find(self, dst_local: np.ndarray, src: np.ndarray) -> np.ndarray:
        """Positions in the key of edges (every one must be an edge of the layer)."""
        q = np.asarray(dst_local, np.int64) * self.modulus + np.asarray(src, np.int64)
        return np.minimum(np.searchsorted(self.key, q), len(self.key) - 1)


class _Tally:
    """One worker's counts of one max/min layer's choices, added to the layer's
    :class:`_Choices` when the set is through."""

    def __init__(self, choices: _Choices):
        self.choices = choices
        self.counts = np.zeros(len(choices.key), np.int64)
        self.none = np.zeros(choices.n, np.int64)

    def add(self, chosen: np.ndarray) -> None:
        """Count a batch's choices: ``chosen`` (neurons, B) source rows, -1 for none."""
        key, modulus = self.choices.key, self.choices.modulus
        found = []
        for j in range(chosen.shape[1]):  # an input at a time: index arrays stay small
            c = chosen[:, j]
            d = np.flatnonzero(c >= 0)
            self.none += c < 0
            q = d * modulus + c[d]
            k = np.searchsorted(key, q)
            if len(k) and (k.max() >= len(key) or (key[k] != q).any()):
                raise WeightgraphError("a chosen source is not an edge of its neuron")
            found.append(k)
        if found:
            self.counts += np.bincount(np.concatenate(found), minlength=len(key))

    def merge(self) -> None:
        self.choices.counts += self.counts
        self.choices.none += self.none


def _graph_steps(graph: NeuronGraph, method: str) -> list[_Step]:
    steps = []
    for i, e in enumerate(graph.entries):
        if e.kind == "input":
            steps.append(_Step(i, e.name, "input", e.op.offset, e.op.offset + e.op.n_neurons,
                               "input", tuple(e.output.shape)))
        elif e.kind == "neurons":
            op = e.op
            idx = np.arange(op.n_neurons)
            finish = functools.partial(_finish_many, op, bias=op.bias(idx).astype(np.float64),
                                       groups=activation_groups(op.activation(idx)))
            steps.append(_Step(i, e.name, "neurons", op.offset, op.offset + op.n_neurons, op.op,
                               tuple(op.out_shape), layer_pass(op, method=method), finish))
    return steps


def _graph_choices(graph: NeuronGraph, i: int, modulus: int) -> _Choices:
    """The edges of max/min layer ``i`` with their window positions: the tap for a pooling
    window, the input for a merge (Maximum, Minimum), else the rank among the neuron's
    sources in id order (the window's order wherever it reads a layer in position order)."""
    op = graph.entries[i].op
    if isinstance(op, WindowedOp) and op.cin_g == 1 and op.cout_g == 1:
        in_ids = op.input_ids2d()
        chans = np.arange(op.cout)[None, :]
        local = op.by_channel(np.arange(op.n_neurons))  # (output positions, cout) -> local id
        parts = []
        for out, tap, inp, _ in op.pairs.iter_chunks(1 << 20):
            src = in_ids[inp]
            real = src >= 0  # padding zeros are no edges
            dst = local[out[:, None], chans]
            parts.append((dst[real], src[real], np.broadcast_to(tap[:, None], src.shape)[real]))
        dst, src, pos = (np.concatenate([p[k] for p in parts]) for k in range(3))
        return _Choices(op.offset, op.n_neurons, dst, src, pos, op.pairs.kernel_spatial, modulus)
    if isinstance(op, ElementwiseOp):
        ids = layer_pass(op).ids  # (inputs, neurons), -1 for padding
        k, d = np.nonzero(ids >= 0)
        return _Choices(op.offset, op.n_neurons, d, ids[k, d], k, (len(ids),), modulus)
    src = np.concatenate([s for s, _, _ in op.iter_edges(DEFAULT_BATCH)])
    dst = np.concatenate([d for _, d, _ in op.iter_edges(DEFAULT_BATCH)]) - op.offset
    rank = _rank_by_source(dst, src)
    return _Choices(op.offset, op.n_neurons, dst, src, rank, (int(rank.max(initial=-1)) + 1,),
                    modulus)


def _rank_by_source(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Each edge's rank among its target's edges, sources in id order."""
    order = np.lexsort((src, dst))
    d = dst[order]
    starts = np.searchsorted(d, d, side="left")
    rank = np.empty(len(d), np.int64)
    rank[order] = np.arange(len(d)) - starts
    return rank


class _Totals:
    """Sums over the inputs seen so far."""

    def __init__(self, n_rows: int, with_target: bool):
        self.value = np.zeros(n_rows)
        self.active = np.zeros(n_rows, np.int64)
        self.nonzero = np.zeros(n_rows, np.int64)
        self.contribution = np.zeros(n_rows) if with_target else None
        self.abs_contribution = np.zeros(n_rows) if with_target else None

    def merge(self, other: "_Totals") -> None:
        for k in ("value", "active", "nonzero", "contribution", "abs_contribution"):
            if getattr(self, k) is not None:
                getattr(self, k)[...] += getattr(other, k)

    def add_layer(self, sl: slice, out: np.ndarray, active: np.ndarray, work: dict) -> None:
        self.value[sl] += out.sum(axis=1)
        self.active[sl] += active.sum(axis=1)
        self.nonzero[sl] += np.not_equal(out, 0.0, out=_bools(work, out.shape, "nonzero")).sum(
            axis=1)


_ROWS = 1 << 16  # rows per step of the contributions (a kept (rows, B) buffer)


def _floats(work: dict, name: str, shape: tuple) -> np.ndarray:
    size = int(np.prod(shape))
    if work.get(name) is None or work[name].size < size:
        work[name] = np.empty(size)
    return work[name][:size].reshape(shape)


def _bools(work: dict, shape: tuple, name: str = "active") -> np.ndarray:
    size = int(np.prod(shape))
    if work.get(name) is None or work[name].size < size:
        work[name] = np.empty(size, bool)
    return work[name][:size].reshape(shape)


class _Batch:
    """The arrays of one batch over every row, kept for the next batch of the same size:
    values (the last row is the padding zero, id -1), slopes, gradients, and the passes'
    buffers."""

    def __init__(self, n_rows: int, b: int, with_target: bool):
        self.b = b
        self.values = np.zeros((n_rows + 1, b))
        self.slope = np.ones((n_rows, b)) if with_target else None
        self.grad = np.zeros((n_rows + 1, b)) if with_target else None
        self.work: dict = {}


def _run_batch(steps: list[_Step], arrays: _Batch, x: dict, target, totals: _Totals,
               choices: dict, last: _Step | None):
    """One batch through the graph: forward (values, choices, activity), then with a target
    one backward pass from each input's target neuron. Returns the predicted position in
    ``last`` of each input (None without ``last``)."""
    b = arrays.b
    cols = np.arange(b)
    values, slope, work = arrays.values, arrays.slope, arrays.work
    chosen, jac = {}, {}
    scratch = None if slope is not None else np.empty(0)
    for st in steps:
        sl = slice(st.lo, st.hi)
        if st.kind == "input":
            v = x[st.name].reshape(b, -1).T
            values[sl] = v if st.take is None else v[st.take]
            totals.add_layer(sl, values[sl], np.ones((st.hi - st.lo, b), bool), work)
            continue
        pre, ch = st.layer_pass.forward_many(values, work)
        if slope is not None:
            slope_rows = slope[sl]
        else:
            if scratch.size < pre.size:
                scratch = np.empty(pre.size)
            slope_rows = scratch[:pre.size].reshape(pre.shape)
        out, sl_, j = st.finish(pre, values[sl], slope_rows)
        active = np.not_equal(sl_, 0.0, out=_bools(work, sl_.shape))
        if ch is not None:
            # A window's padding zero is no edge: where it, not the best real entry, is the
            # neuron's output (max over padding, activation relu), nothing is chosen.
            ok = ch >= 0
            ok[ok] = values[ch[ok], np.broadcast_to(cols, ch.shape)[ok]] == out[ok]
            ch[~ok] = -1
            chosen[st.index] = ch
            active &= ok
            choices[st.index].add(ch)
        if j:
            jac[st.index] = j
        totals.add_layer(sl, out, active, work)
        del pre, out, sl_, active
    predicted = None
    if last is not None:
        predicted = np.argmax(values[last.lo:last.hi], axis=0)
    if target is None:
        return predicted
    if isinstance(target, str):  # "predicted"
        if predicted is None:
            raise WeightgraphError("--target predicted needs the whole last layer")
        rows = last.lo + predicted
    else:
        rows = np.full(b, int(target))
    grad = arrays.grad
    grad.fill(0.0)
    grad[rows, cols] = 1.0
    top = int(rows.max())
    for st in reversed(steps):
        if st.kind != "neurons" or st.lo > top:
            continue
        sl = slice(st.lo, st.hi)
        g = grad[sl]
        if not g.any():
            continue
        if st.index in jac:
            shape = (b,) + st.shape
            gpre = activations.jacobian_vjp(jac[st.index], values[sl].T.reshape(shape),
                                            g.T.reshape(shape)).reshape(b, -1).T
        else:
            gpre = np.multiply(g, slope[sl], out=_floats(work, "gpre", g.shape))
        if gpre.any():
            st.layer_pass.backward_many(gpre, values, chosen.get(st.index), grad, work)
        grad[-1] = 0.0
        del gpre
    n_rows = len(slope)
    for a in range(0, n_rows, _ROWS):
        z = min(n_rows, a + _ROWS)
        c = np.multiply(values[a:z], grad[a:z], out=_floats(work, "c", (z - a, b)))
        totals.contribution[a:z] += c.sum(axis=1)
        totals.abs_contribution[a:z] += np.abs(c, out=c).sum(axis=1)
    return predicted


def default_workers() -> int:
    """Threads that run parts of a batch at once: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class _Worker:
    """One thread's share of every batch: its arrays, buffers, sums and choice counts."""

    def __init__(self, n_rows: int, with_target: bool, choices: dict):
        self.n_rows, self.with_target = n_rows, with_target
        self.arrays = None
        self.totals = _Totals(n_rows, with_target)
        self.tallies = {i: _Tally(c) for i, c in choices.items()}

    def run(self, steps, x: dict, target, last):
        b = len(next(iter(x.values())))
        if self.arrays is None or self.arrays.b != b:
            self.arrays = None  # a smaller last part: free the full-size arrays first
            self.arrays = _Batch(self.n_rows, b, self.with_target)
        return _run_batch(steps, self.arrays, x, target, self.totals, self.tallies, last)


def _engine(steps, n_rows, input_set: dict, n: int, target, choices, last, batch_size,
            progress: bool, desc: str, workers: int | None = None):
    """Every batch of the set through the graph; returns (totals, predictions, seconds).

    Each batch is cut into ``workers`` parts run by as many threads at once (numpy and BLAS
    release the GIL), BLAS itself kept to one thread meanwhile: on a shared machine two
    coarse threads keep both cores busy where BLAS's own threads wait for each other at
    every product (VGG16 at 224x224, 2 cores at load ~3: 5.4 CPU-s per input with BLAS's
    threads, 4.0 with one)."""
    from contextlib import nullcontext

    from ..terminal import progress as progress_bar

    workers = max(1, min(workers or default_workers(), batch_size))
    for st in steps:
        prepare = getattr(st.layer_pass, "prepare_many", None)
        if prepare is not None:  # the passes' lazy tables, once, before any thread
            prepare()
    pool_of = [_Worker(n_rows, target is not None, choices) for _ in range(workers)]
    predicted = [] if last is not None else None
    started = time.perf_counter()
    iters = {name: s.batches(batch_size) for name, s in input_set.items()}
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        pool, limits = ThreadPoolExecutor(workers), threadpool_limits(1, user_api="blas")
    else:
        pool, limits = None, nullcontext()
    try:
        with limits, progress_bar(n, desc, enabled=progress, unit="input") as bar:
            done = 0
            while done < n:
                x = {name: next(it) for name, it in iters.items()}
                b = len(next(iter(x.values())))
                cuts = np.array_split(np.arange(b), min(workers, b))
                parts = [{k: v[c[0]:c[-1] + 1] for k, v in x.items()} for c in cuts]
                if pool is None:
                    got = [pool_of[0].run(steps, parts[0], target, last)]
                else:
                    futures = [pool.submit(w.run, steps, p, target, last)
                               for w, p in zip(pool_of, parts)]
                    got = [f.result() for f in futures]
                if predicted is not None:
                    predicted.extend(got)
                done += b
                bar.update(b)
    finally:
        if pool is not None:
            pool.shutdown()
    totals = pool_of[0].totals
    for w in pool_of:
        if w is not pool_of[0]:
            totals.merge(w.totals)
        for tally in w.tallies.values():
            tally.merge()
    seconds = time.perf_counter() - started
    return totals, (np.concatenate(predicted) if predicted else None), seconds


# ----------------------------------------------------------------------------- the result
@dataclass
class TraceSet:
    """A graph resolved for a set of inputs and aggregated. Arrays run over the graph's rows:
    global neuron ids for a :class:`NeuronGraph` (``ids`` None), else the sorted ``ids`` of a
    graph held as arrays.

    Attributes
    ----------
    graph : the NeuronGraph (with its selection: what :meth:`subgraph` exports), or None for a
        graph held as arrays (``layers``, ``ids``).
    n : the number of inputs.
    mean_value, active_rate, nonzero_rate : float64 per neuron.
    mean_contribution, mean_abs_contribution : float64 per neuron, or None without a target.
    choices : layer index -> the layer's max/min edges and how often each was chosen.
    target : ``"LAYER:INDEX"``, ``"predicted"`` or None.
    predicted : per input, the position (flat index) in ``predicted_layer`` of its largest
        value; None where the graph does not hold the whole last layer.
    info : where the inputs came from (``inputs``, ``preprocess``, ``model``, ...).
    seconds : ``total``, and ``per_input``.
    """

    graph: NeuronGraph | None
    n: int
    mean_value: np.ndarray
    active_rate: np.ndarray
    nonzero_rate: np.ndarray
    mean_contribution: np.ndarray | None
    mean_abs_contribution: np.ndarray | None
    choices: dict
    steps: list = field(repr=False, default_factory=list)
    target: str | None = None
    target_id: int | None = None
    predicted: np.ndarray | None = None
    predicted_layer: str | None = None
    batch_size: int = 0
    info: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    ids: np.ndarray | None = None
    layers: list | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ lookups
    def _step(self, name: str) -> _Step:
        for st in self.steps:
            if st.name == name:
                return st
        if self.graph is not None:
            self.graph.entry(name)  # a shape-only layer or an unknown name: its own error
        raise SelectionError(f"layer {name!r} has no neurons in this trace")

    def rows_of(self, ids) -> np.ndarray:
        """Rows of global neuron ids."""
        ids = np.asarray(ids, np.int64)
        return ids if self.ids is None else np.searchsorted(self.ids, ids)

    def id_of(self, rows) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        return rows if self.ids is None else self.ids[rows]

    def array(self, what: str) -> np.ndarray:
        """A per-neuron attribute over all rows (``padding_rate``: NaN off max/min layers)."""
        if what == "padding_rate":
            out = np.full(len(self.mean_value), np.nan)
            for c in self.choices.values():
                out[c.lo:c.lo + c.n] = c.none / self.n
            return out
        arrays = {"mean_value": self.mean_value, "active_rate": self.active_rate,
                  "nonzero_rate": self.nonzero_rate, "mean_contribution": self.mean_contribution,
                  "mean_abs_contribution": self.mean_abs_contribution}
        if what not in arrays:
            raise ValueError(f"what must be one of {sorted(arrays) + ['padding_rate']}")
        if arrays[what] is None:
            raise WeightgraphError(f"this trace set has no {what}: give it a target")
        return arrays[what]

    def layer(self, name: str, what: str = "mean_value") -> np.ndarray:
        """A per-neuron attribute of every position of a layer's output, in the output's
        shape (shape-only layers read the neurons they alias; padding zeros read 0)."""
        if self.graph is None:
            st = self._step(name)
            out = np.zeros(int(np.prod(st.shape)))
            index = self.ids[st.lo:st.hi] - self._offset(st)
            out[index] = self.array(what)[st.lo:st.hi]
            return out.reshape(st.shape)
        e = self.graph.entry(name)
        ids = e.output.array().reshape(e.output.shape)
        arr = self.array(what)
        return np.where(ids < 0, 0.0, arr[np.maximum(ids, 0)])

    def _offset(self, st: _Step) -> int:
        return next(l["offset"] for l in self.layers if l["index"] == st.index)

    def chosen_rates(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(src, dst, chosen_rate)`` of every edge into a max/min layer (global ids)."""
        c = self._choices(name)
        return self.id_of(c.src), self.id_of(c.lo + c.dst_local), c.counts / self.n

    def choice_entries(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(neuron, position, chosen_rate)`` of every edge into a max/min layer: the
        neuron's position in the layer (flat, C order) and the entry's window position (as
        :meth:`window_rates` counts it, flat)."""
        c = self._choices(name)
        return c.dst_local, c.position.astype(np.int64), c.counts / self.n

    def choice_table(self, name: str) -> np.ndarray:
        """``chosen_rate`` of a max/min layer as (neurons, window positions) (see
        :meth:`choice_entries`); 0 where the window has no entry (its part in padding)."""
        c = self._choices(name)
        neuron, position, rate = self.choice_entries(name)
        table = np.zeros((c.n, int(np.prod(c.window_shape))))
        table[neuron, position] = rate
        return table

    def _choices(self, name: str) -> _Choices:
        st = self._step(name)
        if st.index not in self.choices:
            raise SelectionError(f"layer {name!r} has no max or min neurons")
        return self.choices[st.index]

    def window_rates(self, name: str) -> np.ndarray:
        """The share of (neuron, input) choices at each window position of a max/min layer:
        over the window's shape (C order) for pooling, per input for a merge, by rank among
        the sources in id order otherwise. Sums to ``1 - padding_share(name)``."""
        c = self._choices(name)
        size = int(np.prod(c.window_shape))
        shares = np.bincount(c.position, weights=c.counts, minlength=size) / (self.n * c.n)
        return shares[:size].reshape(c.window_shape)

    def padding_share(self, name: str) -> float:
        """The share of (neuron, input) choices a padding zero took in a max/min layer."""
        c = self._choices(name)
        return float(c.none.sum() / (self.n * c.n))

    # ------------------------------------------------------------------ summaries
    def layer_summary(self, min_rate: float | None = None) -> list[dict]:
        """Per neuron layer: neurons, never active (active_rate 0), always zero, mean active
        rate; for max/min layers their edges, how many were never chosen and the padding
        share; with ``min_rate`` the effective graph's neurons and edges per layer."""
        sizes = {} if min_rate is None else {r["index"]: r for r in
                                             self.effective_sizes(min_rate)}
        rows = []
        for st in self.steps:
            sl = slice(st.lo, st.hi)
            n = st.hi - st.lo
            a = self.active_rate[sl]
            row = {"layer": st.name, "index": st.index, "op": st.op, "neurons": n,
                   "never_active": int((a == 0).sum()),
                   "always_zero": int(((a == 0) & (self.nonzero_rate[sl] == 0)).sum()),
                   "mean_active_rate": float(a.mean()) if n else 0.0}
            if st.index in self.choices:
                c = self.choices[st.index]
                row.update(pooling_edges=len(c.key), never_chosen=int((c.counts == 0).sum()),
                           padding_share=float(c.none.sum() / (self.n * c.n)) if c.n else 0.0)
            if st.index in sizes:
                row.update({k: sizes[st.index][k] for k in ("kept_neurons", "edges",
                                                            "kept_edges")})
            rows.append(row)
        return rows

    def effective_mask(self, min_rate: float = 0.0) -> np.ndarray:
        """The neurons the effective graph keeps (bool per row; see the module's notes)."""
        key = ("keep", float(min_rate))
        if key not in self._cache:
            choice_edges = {i: (c.lo + c.dst_local, c.src, c.counts / self.n)
                            for i, c in self.choices.items()}
            self._cache[key] = effective_keep(
                [(st.index, st.lo, st.hi, st.op) for st in self.steps], self.active_rate,
                self.nonzero_rate, choice_edges, self._sources_into, min_rate)
        return self._cache[key]

    def _sources_into(self, index: int, keep: np.ndarray) -> np.ndarray:
        """Source rows of every edge into the kept neurons of (product) layer ``index``."""
        st = next(s for s in self.steps if s.index == index)
        if isinstance(st.layer_pass, ArrayPass):
            p = st.layer_pass
            return p.src[keep[st.lo + p.dst]]
        op = self.graph.entries[index].op
        mask = keep[st.lo:st.hi]
        if not mask.any():
            return np.zeros(0, np.int64)
        return np.concatenate([s for s, _, _ in op.iter_edges(DEFAULT_BATCH, mask)] or
                              [np.zeros(0, np.int64)])

    def effective_sizes(self, min_rate: float = 0.0) -> list[dict]:
        """Per neuron layer of the whole graph: neurons and edges, and how many the effective
        graph keeps."""
        if self.graph is None:
            raise WeightgraphError("effective sizes need the NeuronGraph (a file-based trace)")
        keep = self.effective_mask(min_rate)
        rows = []
        for st in self.steps:
            e = self.graph.entries[st.index]
            edges = self.graph.full_edge_count(st.index)
            kept_edges = 0 if st.kind == "input" else _kept_edges(
                self, st.index, keep, None, min_rate)
            rows.append({"layer": st.name, "index": st.index, "neurons": st.hi - st.lo,
                         "kept_neurons": int(keep[st.lo:st.hi].sum()), "edges": edges,
                         "kept_edges": kept_edges, "op": e.op.op})
        return rows

    # ------------------------------------------------------------------ outputs
    def subgraph(self, effective: bool = False, min_rate: float = 0.0) -> "TraceSetGraph":
        """The trace set's graph selection with its attributes, for any sink (``write_graphml``,
        ``write_parquet``, ``to_networkx``); ``effective`` keeps the effective graph."""
        if self.graph is None:
            raise WeightgraphError("a trace set of a graph held as arrays has no NeuronGraph "
                                   "(pull it from Neo4j with pull_trace_set)")
        return TraceSetGraph(self, effective=effective, min_rate=min_rate)

    def describe(self) -> dict:
        """The graph-level ``trace`` record: what the set was and how it was aggregated."""
        d = {"aggregate": True, "n": int(self.n), "target": self.target, **self.info}
        if self.predicted is not None:
            d["predicted_layer"] = self.predicted_layer
            d["predicted_counts"] = np.bincount(self.predicted).tolist()
        return d


def effective_keep(layers, active_rate, nonzero_rate, choice_edges: dict, sources_into,
                   min_rate: float = 0.0) -> np.ndarray:
    """The neurons an effective graph keeps, over rows (one implementation for a file-based
    trace set and one read back from Neo4j).

    Parameters
    ----------
    layers : ``(index, lo, hi, op)`` of each layer's rows.
    active_rate, nonzero_rate : per row.
    choice_edges : layer index -> ``(dst rows, src rows, chosen_rate)`` of its max/min edges.
    sources_into : ``f(layer index, keep)`` -> source rows of the edges into the kept neurons
        of a product layer.
    min_rate : max/min edges are kept where ``chosen_rate > min_rate``.

    A neuron goes when it is never active and 0 on every input; it stays when a kept max/min
    edge reads it (it is the 0 the maximum took) or a kept product neuron does (a product
    with a 0 factor is 0). Layers are visited from the last down, so a neuron kept for a
    reader above is known before its own inputs are looked at.
    """
    keep = ~((active_rate == 0) & (nonzero_rate == 0))
    for index, lo, hi, op in sorted(layers, reverse=True):
        if index in choice_edges:
            dst, src, rate = choice_edges[index]
            used = (rate > min_rate) & keep[dst]
            keep[src[used]] = True
        elif op == "product":
            keep[sources_into(index, keep)] = True
    return keep


def _kept_edges(ts: TraceSet, i: int, keep: np.ndarray, dst_mask, min_rate: float) -> int:
    """Edges of the effective graph into layer ``i`` (into ``dst_mask`` of it, None: all)."""
    g = ts.graph
    op = g.entries[i].op
    lo, hi = op.offset, op.offset + op.n_neurons
    dst_keep = keep[lo:hi] if dst_mask is None else keep[lo:hi] & dst_mask
    if i in ts.choices:
        c = ts.choices[i]
        e = (c.counts / ts.n > min_rate) & keep[c.src] & dst_keep[c.dst_local]
        return int(e.sum())
    if isinstance(op, WindowedOp):
        return _count_windowed(op, keep, dst_keep)
    total = 0
    for src, _, _ in op.iter_edges(DEFAULT_BATCH, dst_keep):
        total += int(keep[src].sum())
    return total


def _count_windowed(op: WindowedOp, src_keep: np.ndarray, dst_keep: np.ndarray) -> int:
    """Edges from kept sources into kept neurons of a windowed layer, per (pair, group): kept
    inputs of the group at the pair's input position times kept outputs of the group at its
    output position (never per edge: VGG16's fc1 alone has 103M)."""
    ids = op.input_ids2d()  # (input positions, cin), in either layout
    k_in = np.where(ids >= 0, src_keep[np.maximum(ids, 0)], False)
    a_in = k_in.reshape(-1, op.groups, op.cin_g).sum(axis=2)
    a_out = op.by_channel(dst_keep).reshape(-1, op.groups, op.cout_g).sum(axis=2)
    total = 0
    for out_pos, _, in_pos, _ in op.pairs.iter_chunks(1 << 16):
        total += int((a_in[in_pos] * a_out[out_pos]).sum())
    return total


# ----------------------------------------------------------------------------- as a graph
class TraceSetGraph(NeuronGraph):
    """A trace set's selection as a streamable graph: node attributes ``mean_value``,
    ``active_rate``, ``nonzero_rate`` (and ``mean_contribution``, ``mean_abs_contribution``
    with a target; ``padding_rate`` on max/min neurons), edge attribute ``chosen_rate`` on
    every edge into a max/min neuron. With ``effective``: the effective graph."""

    def __init__(self, ts: TraceSet, effective: bool = False, min_rate: float = 0.0):
        base = ts.graph
        super().__init__(base.entries, name=base.name, source=base.source, format=base.format)
        self.trace_set, self.effective, self.min_rate = ts, effective, float(min_rate)
        self._keep = ts.effective_mask(min_rate) if effective else None
        self._narrow(base, self._keep, f"effective (chosen_rate > {min_rate:g})")

    @property
    def extra_attributes(self) -> dict:
        ts = self.trace_set
        node = [a for a in NODE_ATTRIBUTES
                if ts.mean_contribution is not None or "contribution" not in a[0]]
        return {"node": node, "edge": list(EDGE_ATTRIBUTES)}

    def graph_data(self) -> dict:
        data = super().graph_data()
        data["trace"] = {**self.trace_set.describe(), "effective": self.effective,
                         "min_rate": self.min_rate if self.effective else None}
        return data

    def selected_edge_count(self, i: int) -> int:
        if not self.effective:
            return super().selected_edge_count(i)
        if i not in self.edge_masks:
            return 0
        if i not in self._selected_edges:
            self._selected_edges[i] = _kept_edges(self.trace_set, i, self._keep,
                                                  self.edge_masks[i], self.min_rate)
        return self._selected_edges[i]

    def iter_node_batches(self, batch_size: int = DEFAULT_BATCH):
        ts = self.trace_set
        names = [n for n, _ in self.extra_attributes["node"] if n != "padding_rate"]
        arrays = {n: ts.array(n) for n in names}
        for b in super().iter_node_batches(batch_size):
            extra = {n: a[b.id] for n, a in arrays.items()}
            if b.layer_index in ts.choices:
                c = ts.choices[b.layer_index]
                extra["padding_rate"] = c.none[b.index] / ts.n
            yield NodeBatch(b.id, b.layer, b.layer_index, b.index, b.op, b.bias, b.activation,
                            extra)

    def iter_edge_batches(self, batch_size: int = DEFAULT_BATCH, *, reuse_buffers: bool = False,
                          layers: list[int] | None = None, by_weight: int | None = None):
        ts = self.trace_set
        for i in sorted(self.edge_masks) if layers is None else layers:
            if i not in self.edge_masks:
                continue
            op = self.entries[i].op
            c = ts.choices.get(i)
            for src, dst, w in op.iter_edges(batch_size, self.edge_masks[i], reuse_buffers):
                rate = None
                if c is not None:
                    rate = c.counts[c.find(dst - op.offset, src)] / ts.n
                if self.effective:
                    keep = self._keep[src]
                    if rate is not None:
                        keep &= rate > self.min_rate
                    if not keep.all():
                        src, dst, w = src[keep], dst[keep], w[keep]
                        rate = None if rate is None else rate[keep]
                    if not len(src):
                        continue
                yield EdgeBatch(src, dst, w, i, {} if rate is None else {"chosen_rate": rate})


# ----------------------------------------------------------------------------- entry points
def _input_sets(graph_inputs: list[tuple[str, tuple]], inputs, preprocess: str,
                family) -> tuple[dict, int, str]:
    """``{input name: InputSet}``, N and a description of the source."""
    if isinstance(inputs, InputSet):
        inputs = {graph_inputs[0][0]: inputs}
    elif isinstance(inputs, (str, os.PathLike)):
        if len(graph_inputs) != 1:
            raise InputFileError(f"the model has inputs {[n for n, _ in graph_inputs]}: give a "
                                 "dict of arrays, one per input")
        name, shape = graph_inputs[0]
        inputs = {name: read_input_set(inputs, shape, mode=preprocess, family=family)}
    elif not isinstance(inputs, dict):
        if len(graph_inputs) != 1:
            raise InputFileError(f"the model has inputs {[n for n, _ in graph_inputs]}: give a "
                                 "dict of arrays, one per input")
        inputs = {graph_inputs[0][0]: inputs}
    sets = {}
    for name, shape in graph_inputs:
        if name not in inputs:
            raise InputFileError(f"no inputs for input {name!r}")
        s = inputs[name]
        sets[name] = s if isinstance(s, InputSet) else array_set(s, shape,
                                                                 source=f"input {name!r}")
        if sets[name].shape != tuple(shape):
            raise InputFileError(f"{sets[name].source}: inputs of shape {sets[name].shape}, the "
                                 f"model's {name!r} wants {tuple(shape)}")
    ns = {s.n for s in sets.values()}
    if len(ns) != 1:
        raise InputFileError(f"the inputs' sets differ in length: {sorted(ns)}")
    source = ", ".join(s.source for s in sets.values())
    return sets, ns.pop(), source


def _target_row(spec, rows_of, last_name) -> tuple[object, int | None]:
    if spec is None:
        return None, None
    if spec == "predicted":
        if last_name is None:
            raise SelectionError("--target predicted needs the model's last layer whole")
        return "predicted", None
    nid = rows_of(spec)
    return nid, nid


def trace_set(graph: NeuronGraph, inputs, *, target: str | None = None,
              batch_size: int | None = None, method: str = "blocks", progress: bool = False,
              preprocess: str = "auto", family: str | None = None,
              info: dict | None = None, workers: int | None = None) -> TraceSet:
    """Resolve ``graph`` for a set of inputs and aggregate (see the module's notes).

    Parameters
    ----------
    graph : NeuronGraph; its selection is what :meth:`TraceSet.subgraph` exports (values are
        computed for the whole model).
    inputs : an array ``(N, *input shape)``; a dict input-layer name -> such array; an
        :class:`~loader.input_sets.InputSet`; or a path (a ``.npy`` array of N inputs,
        a directory of images or ``.npy`` files, a ``.parquet`` / ``.csv`` file of rows),
        read with ``preprocess`` and ``family`` as ``weightgraph trace --inputs`` reads it.
    target : ``"LAYER:INDEX"``, or ``"predicted"`` (each input's own largest output in the
        last layer): adds ``mean_contribution`` and ``mean_abs_contribution``.
    batch_size : inputs per pass (default :func:`default_batch_size`: 2 GiB of arrays).
    method : ``"blocks"`` (default) or ``"edges"`` (the passes over enumerated edges: the
        slow reference).
    progress : a progress bar of inputs done on stderr.
    workers : threads that run parts of each batch at once (default :func:`default_workers`:
        the cores, at most 4); the results do not depend on it but for float rounding.

    Returns
    -------
    TraceSet

    Examples
    --------
    >>> ts = trace_set(g, x_test, target="predicted")
    >>> ts.layer("pool1", "active_rate").shape
    (4, 4, 16)
    """
    in_entries = [(e.name, tuple(e.output.shape)) for e in graph.entries if e.kind == "input"]
    sets, n, source = _input_sets(in_entries, inputs, preprocess, family)
    steps = _graph_steps(graph, method)
    last = next(st for st in reversed(steps) if st.kind == "neurons") \
        if any(st.kind == "neurons" for st in steps) else None
    target_arg, target_id = _target_row(target, lambda s: neuron_id(graph, s),
                                        None if last is None else last.name)
    modulus = graph.total_neurons + 1
    choices = {st.index: _graph_choices(graph, st.index, modulus) for st in steps
               if st.op in ("max", "min")}
    b = batch_size or default_batch_size(graph.total_neurons, n)
    totals, predicted, seconds = _engine(steps, graph.total_neurons, sets, n, target_arg,
                                         choices, last, b, progress, "inputs", workers)
    meta = {"inputs": source, "preprocess": preprocess, **(info or {})}
    return _result(graph, n, totals, choices, steps, target, target_id, predicted, last, b,
                   meta, seconds)


def _result(graph, n, totals, choices, steps, target, target_id, predicted, last, b, meta,
            seconds, ids=None, layers=None) -> TraceSet:
    with_target = totals.contribution is not None
    return TraceSet(
        graph, n, totals.value / n, totals.active / n, totals.nonzero / n,
        totals.contribution / n if with_target else None,
        totals.abs_contribution / n if with_target else None, choices, steps, target,
        target_id, predicted, None if last is None else last.name, b, meta,
        {"total": seconds, "per_input": seconds / n}, ids, layers)


# ----------------------------------------------------------------------------- array graphs
class ArrayPass:
    """One layer of a graph held as arrays (a model read from Neo4j), for a batch of inputs:
    its edges sorted by (target, source). A ``sum`` layer is one sparse matrix (forward
    ``W @ values``, backward ``W.T @ gpre``); a max/min neuron takes, among its extreme
    sources, the one with the least id (rows are in id order), as
    :func:`loader.graph.trace.trace_arrays` does for one input."""

    def __init__(self, kind: str, dst: np.ndarray, src: np.ndarray, weight: np.ndarray,
                 n: int, n_rows: int):
        order = np.lexsort((src, dst))
        self.kind, self.n = kind, n
        self.dst, self.src, self.weight = dst[order], src[order], weight[order]
        if kind == "sum":
            self.matrix = sparse.csr_matrix((self.weight, (self.dst, self.src)),
                                            shape=(n, n_rows + 1))
            self.matrix_t = self.matrix.T.tocsr()
        else:
            self.starts = np.flatnonzero(np.r_[True, np.diff(self.dst) != 0]) \
                if len(self.dst) else np.zeros(0, np.int64)
            self.seg = self.dst[self.starts]
            self.counts = np.diff(np.r_[self.starts, len(self.dst)])

    def forward_many(self, values: np.ndarray, work: dict | None = None):
        b = values.shape[1]
        if self.kind == "sum":
            return np.asarray(self.matrix @ values), None
        if self.kind == "product":
            pre = np.ones((self.n, b))
            if len(self.src):
                pre[self.seg] = np.multiply.reduceat(values[self.src], self.starts, axis=0)
            return pre, None
        reduce, fill = (np.maximum, -np.inf) if self.kind == "max" else (np.minimum, np.inf)
        pre = np.full((self.n, b), fill)
        chosen = np.full((self.n, b), -1, np.int64)
        if len(self.src):
            v = values[self.src]
            best = reduce.reduceat(v, self.starts, axis=0)
            rows = np.arange(len(v))[:, None]
            first = np.minimum.reduceat(np.where(v == np.repeat(best, self.counts, axis=0),
                                                 rows, len(v)), self.starts, axis=0)
            pre[self.seg], chosen[self.seg] = best, self.src[first]
        return pre, chosen

    def backward_many(self, gpre: np.ndarray, values: np.ndarray, chosen, grad: np.ndarray,
                      work: dict | None = None):
        if self.kind == "sum":
            grad += self.matrix_t @ gpre
            return
        if self.kind in ("max", "min"):
            ok = chosen >= 0
            cols = np.broadcast_to(np.arange(chosen.shape[1]), chosen.shape)
            np.add.at(grad, (chosen[ok], cols[ok]), gpre[ok])
            return
        v = values[self.src]
        zero = v == 0
        nonzero = np.ones(gpre.shape)
        zeros = np.zeros(gpre.shape)
        np.multiply.at(nonzero, self.dst, np.where(zero, 1.0, v))
        np.add.at(zeros, self.dst, zero)
        d = self.dst
        others = np.where(zeros[d] - zero > 0, 0.0, nonzero[d] / np.where(zero, 1.0, v))
        np.add.at(grad, self.src, gpre[d] * others)


def _array_finish(name_of_layer: str, bias: np.ndarray, act: np.ndarray, shape: tuple,
                  whole: bool):
    names = np.asarray(act, dtype=object)
    uniform = names[0] if len(names) and (names == names[0]).all() else None
    groups = activation_groups(uniform if uniform is not None else names)
    jac = next((name for name in groups if name in activations.JACOBIAN), None)

    def finish(pre: np.ndarray, out: np.ndarray, slope: np.ndarray):
        if jac and (not whole or len(groups) != 1):
            raise WeightgraphError(
                f"layer {name_of_layer!r} ends in {jac}, which mixes the whole layer: the "
                "selection must hold all of it")
        return activate(pre + bias[:, None], groups, shape, out=out, slope=slope)

    return finish


def trace_set_arrays(layers: list[dict], nodes: dict, edges: dict, inputs, *,
                     target: str | None = None, batch_size: int | None = None,
                     progress: bool = False, info: dict | None = None,
                     workers: int | None = None) -> TraceSet:
    """:func:`trace_set` of a graph held as arrays (what Neo4j and GraphML hold).

    Parameters
    ----------
    layers : the contract's graph-level ``layers`` list.
    nodes : equal-length arrays ``id``, ``layer_index``, ``index``, ``op``, ``bias``,
        ``activation``: every neuron the values need (a target's cone, or a whole graph).
    edges : arrays ``src``, ``dst``, ``weight``: every edge into the non-input neurons.
    inputs : input-layer name -> an InputSet or an array ``(N, *shape)``.
    target : ``"LAYER:INDEX"`` or ``"predicted"`` (the whole last layer must be held).

    Returns
    -------
    TraceSet with ``graph`` None, ``ids`` the sorted neuron ids and ``layers``.
    """
    graph = ArrayGraph.prepare(layers, nodes, edges, check_sources=True)
    ids, index, bias, act = graph.ids, graph.index, graph.bias, graph.activation
    n_rows, table = len(graph), graph.layers
    steps = []
    for k in sorted(table):
        layer = table[k]
        a, b = graph.rows(k)
        if a == b or layer.get("kind") == "alias":
            continue
        shape = tuple(layer["output_shape"])
        if layer["kind"] == "input":
            whole = b - a == int(np.prod(shape))
            steps.append(_Step(k, layer["name"], "input", a, b, "input", shape,
                               take=None if whole else index[a:b]))
            continue
        edges_in = graph.layer_pass(k)
        p = ArrayPass(layer["op"], edges_in.dst, edges_in.src, edges_in.weight, b - a, n_rows)
        whole = b - a == layer["neurons"]
        steps.append(_Step(k, layer["name"], "neurons", a, b, layer["op"], shape, p,
                           _array_finish(layer["name"], bias[a:b], act[a:b], shape, whole)))
    in_layers = [(st.name, st.shape) for st in steps if st.kind == "input"]
    sets, n, source = _input_sets(in_layers, inputs, "none", None)
    neuron_steps = [st for st in steps if st.kind == "neurons"]
    last = neuron_steps[-1] if neuron_steps else None
    if last is not None and (last.hi - last.lo != table[last.index]["neurons"]
                             or last.index != max(l["index"] for l in layers
                                                  if l.get("kind") == "neurons")):
        last = None  # the graph does not hold the model's last layer whole: no predictions
    target_arg, target_id = None, None
    if target == "predicted":
        if last is None:
            raise SelectionError("--target predicted needs the model's last layer whole")
        target_arg = "predicted"
    elif target is not None:
        from .selection import parse_neuron

        lname, lindex = parse_neuron(target)
        layer = next((l for l in layers if l["name"] == lname), None)
        if layer is None or layer.get("offset") is None:
            raise SelectionError(f"no layer with neurons named {lname!r}")
        target_id = layer["offset"] + lindex
        row = int(np.searchsorted(ids, target_id))
        if row >= n_rows or ids[row] != target_id:
            raise WeightgraphError(f"the target {target} is not in the selection")
        target_arg = row
    choices = {}
    for st in steps:
        if st.op in ("max", "min"):
            p = st.layer_pass
            choices[st.index] = _Choices(st.lo, st.hi - st.lo, p.dst, p.src,
                                         _rank_by_source(p.dst, p.src),
                                         (int(p.counts.max(initial=0)),), n_rows + 1)
    b = batch_size or default_batch_size(n_rows, n)
    totals, predicted, seconds = _engine(steps, n_rows, sets, n, target_arg, choices, last, b,
                                         progress, "inputs", workers)
    meta = {"inputs": source, **(info or {})}
    return _result(None, n, totals, choices, steps, target, target_id, predicted, last, b,
                   meta, seconds, ids=ids, layers=layers)
