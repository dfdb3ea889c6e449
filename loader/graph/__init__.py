"""The neuron graph: :class:`NeuronGraph` (ids, selections, plan, bounded batches of nodes and
edges for any sink) and :func:`execute`, which runs any representation of it."""

from .batches import EdgeBatch, NodeBatch
from .forward import execute, execute_arrays, execute_networkx
from .neuron_graph import NeuronGraph
from .plan import LayerSpec, Plan

__all__ = ["NeuronGraph", "EdgeBatch", "NodeBatch", "LayerSpec", "Plan", "execute",
           "execute_arrays", "execute_networkx"]
