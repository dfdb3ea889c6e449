"""NetworkX sink: a neuron graph as an ``nx.DiGraph`` keyed by the integer neuron id.

A DiGraph holds every edge as Python objects: tracemalloc measured ~355 bytes per edge (two
adjacency entries, a one-key attribute dict, a float) and ~690 bytes per node (Python 3.11,
NetworkX 3.6, VGG16 conv and dense layers; bench/bench_networkx_memory.py). So this sink is
for small models and subgraphs, and
:func:`to_networkx` refuses a graph above ``max_edges`` before doing any work, quoting the
estimate of :mod:`loader.graph.costs`.
"""

from __future__ import annotations

from typing import Iterator

import networkx as nx
import numpy as np

from ..graph import costs
from ..graph.batches import EdgeBatch, NodeBatch
from ..graph.coerce import as_graph
from ..errors import TooLargeError
from ..terminal import human
from .base import BatchSink
from .graphml import graph_attributes

__all__ = ["NetworkXSink", "ChannelNetworkXSink", "to_networkx", "keras_edges"]


class NetworkXSink(BatchSink):
    """Build an ``nx.DiGraph`` from node and edge batches.

    Node keys are the neuron ids (int); node attributes ``layer``, ``layer_index``, ``index``,
    ``op``, ``bias`` (float), ``activation``; edge attribute ``weight`` (float, the float32
    value widened exactly); graph attributes ``name`` and ``layers`` (a JSON string), the same
    values a GraphML file of the graph reads back as. A trace's graph adds node attributes
    ``value``, ``active`` (bool), ``contribution``, edge attribute ``chosen`` (bool, on edges
    into max/min neurons) and graph attribute ``trace`` (JSON).

    Parameters
    ----------
    graph_data : dict, optional
        ``NeuronGraph.graph_data()``; sets the graph attributes.

    Examples
    --------
    >>> sink = NetworkXSink(g.graph_data())
    >>> for batch in g.iter_edge_batches(): sink.write_edges(batch)
    >>> G = sink.close()
    """

    def __init__(self, graph_data: dict | None = None):
        self.graph = nx.DiGraph()
        if graph_data is not None:
            self.graph.graph.update(graph_attributes(graph_data))

    def write_nodes(self, batch: NodeBatch) -> None:
        """Add the neurons of ``batch`` with their attributes."""
        n = len(batch)
        layer, layer_index, op = str(batch.layer), int(batch.layer_index), str(batch.op)
        bias = np.broadcast_to(np.asarray(batch.bias, dtype=np.float64), (n,)).tolist()
        activation = batch.activations().tolist()
        self.graph.add_nodes_from(
            (node, {"layer": layer, "layer_index": layer_index, "index": index, "op": op,
                    "bias": b, "activation": str(a)})
            for node, index, b, a in zip(batch.id.tolist(), batch.index.tolist(), bias,
                                          activation))
        if batch.extra:  # a trace's value, active, contribution
            nodes = self.graph.nodes
            columns = {k: _python_values(v) for k, v in batch.extra.items()}
            for k, col in columns.items():
                for node, v in zip(batch.id.tolist(), col):
                    nodes[node][k] = v

    def write_edges(self, batch: EdgeBatch) -> None:
        """Add the edges of ``batch`` with their ``weight`` (and ``extra`` attributes: a
        trace's ``chosen``)."""
        if not batch.extra:
            self.graph.add_weighted_edges_from(_edge_tuples(batch))
            return
        names = list(batch.extra)
        columns = [_python_values(batch.extra[k]) for k in names]
        self.graph.add_edges_from(
            (u, v, dict(zip(names, rest), weight=w))
            for u, v, w, *rest in zip(batch.src.tolist(), batch.dst.tolist(),
                                      np.asarray(batch.weight, dtype=np.float64).tolist(),
                                      *columns))

    def close(self) -> nx.DiGraph:
        """Return the graph built so far."""
        return self.graph


class ChannelNetworkXSink(NetworkXSink):
    """Build an ``nx.DiGraph`` of a :class:`~loader.graph.channels.ChannelGraph`.

    Node keys are the channel ids (int); node attributes ``layer``, ``layer_index``,
    ``channel``, ``op``, ``neurons``, and ``bias`` / ``activation`` where the channel's neurons
    share them; edge attributes ``edges`` (int), ``total``, ``weight`` (float) and ``kernel`` (a
    list of floats, absent without one); graph attributes ``name``, ``layers``, ``granularity``.

    Examples
    --------
    >>> g = ChannelGraph.from_model("vgg16", weights=None, include_top=False,
    ...                             input_shape=(224, 224, 3))
    >>> G = to_networkx(g)          # picks this sink: 5,699 nodes, 1,635,968 edges
    """

    def write_nodes(self, batch) -> None:
        layer, layer_index, op = str(batch.layer), int(batch.layer_index), str(batch.op)
        for node, ch, b, act, n in zip(batch.id.tolist(), batch.channel.tolist(),
                                       batch.bias.tolist(), batch.activation.tolist(),
                                       batch.neurons.tolist()):
            attrs = {"layer": layer, "layer_index": layer_index, "channel": ch, "op": op,
                     "neurons": n}
            if b == b:  # NaN: the neurons' biases differ
                attrs["bias"] = b
            if act is not None:
                attrs["activation"] = str(act)
            self.graph.add_node(node, **attrs)

    def write_edges(self, batch) -> None:
        cols = [batch.src.tolist(), batch.dst.tolist(), batch.edges.tolist(),
                batch.total.tolist(), batch.weight.tolist()]
        if batch.kernel is None:
            self.graph.add_edges_from(
                (s, d, {"edges": n, "total": t, "weight": w}) for s, d, n, t, w in zip(*cols))
        else:
            kernels = batch.kernel.astype(np.float64).tolist()
            self.graph.add_edges_from(
                (s, d, {"edges": n, "total": t, "weight": w, "kernel": k})
                for s, d, n, t, w, k in zip(*cols, kernels))


def _python_values(a) -> list:
    a = np.asarray(a)
    return (a.astype(bool) if a.dtype == bool else a.astype(np.float64)).tolist()


def _edge_tuples(batch: EdgeBatch):
    # float32 -> float64 is exact, so the python float equals float(np.float32(w)).
    return zip(batch.src.tolist(), batch.dst.tolist(),
               np.asarray(batch.weight, dtype=np.float64).tolist())


def to_networkx(graph, *, max_edges: int = 5_000_000) -> nx.DiGraph:
    """The neuron graph (or a selection of it) as an ``nx.DiGraph``.

    Parameters
    ----------
    graph : NeuronGraph or ChannelGraph
        The graph or a ``layers=`` / ``cone=`` selection of it; a ChannelGraph gives channel
        nodes and edges (:class:`ChannelNetworkXSink`).
    max_edges : int
        Refuse, before any work, a graph with more edges than this (5M edges: ~1.8 GB).

    Returns
    -------
    networkx.DiGraph
        Nodes keyed by neuron id, attributes as in :class:`NetworkXSink`.

    Raises
    ------
    loader.errors.TooLargeError
        When ``graph.n_edges > max_edges``; the message gives the memory estimate.

    Examples
    --------
    >>> g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3))
    >>> G = to_networkx(g, max_edges=20_000_000)
    >>> G.number_of_edges() == g.n_edges
    True
    """
    graph = as_graph(graph, "to_networkx")
    n_edges = graph.n_edges
    if n_edges > max_edges:
        n_nodes = graph.n_nodes
        need = n_edges * costs.NX_BYTES_PER_EDGE + n_nodes * costs.NX_BYTES_PER_NODE
        raise TooLargeError(
            f"{graph.name}: {n_edges:,} edges and {n_nodes:,} nodes would take about "
            f"{human(need)} as a NetworkX DiGraph (~{costs.NX_BYTES_PER_EDGE} bytes per "
            f"edge + ~{costs.NX_BYTES_PER_NODE} per node), over max_edges={max_edges:,}. "
            "Raise max_edges if you have the memory, take a subgraph (layers= or cone=, or a "
            "smaller input_shape), or stream the graph out instead: export GraphML "
            "(write_graphml) or load it into Neo4j.")
    channel = getattr(graph, "granularity", "neuron") == "channel"
    sink_class = ChannelNetworkXSink if channel else NetworkXSink
    sink = sink_class(graph.graph_data())
    for nodes in graph.iter_node_batches():
        sink.write_nodes(nodes)
    # Each batch is copied into Python objects before the next one is produced.
    for edges in graph.iter_edge_batches(reuse_buffers=True):
        sink.write_edges(edges)
    return sink.close()


def keras_edges(model, **kwargs) -> Iterator[tuple[int, int, float]]:
    """``(src_id, dst_id, weight)`` tuples of a Keras model's neuron graph, streamed.

    Parameters
    ----------
    model : keras.Model, path, or keras.applications name
        Anything :meth:`NeuronGraph.from_model` accepts.
    **kwargs
        Passed to :meth:`NeuronGraph.from_model` (``weights``, ``input_shape``, ``layers``,
        ``cone``, ...).

    Yields
    ------
    tuple of (int, int, float)
        Source neuron id, target neuron id, weight (the float32 value widened exactly).

    Examples
    --------
    >>> G = nx.DiGraph()
    >>> G.add_weighted_edges_from(keras_edges(model))
    >>> G.number_of_edges()
    """
    from ..graph.neuron_graph import NeuronGraph

    graph = NeuronGraph.from_model(model, **kwargs)
    for batch in graph.iter_edge_batches(reuse_buffers=True):
        yield from _edge_tuples(batch)
