"""The neuron graph: :class:`NeuronGraph` (ids, selections, plan, bounded batches of nodes and
edges for any sink), :func:`execute`, which runs any representation of it, and :func:`trace`,
which resolves it for one input (values, pooling choices, active neurons, contributions)."""

from .batches import EdgeBatch, NodeBatch
from .forward import execute, execute_arrays, execute_networkx
from .neuron_graph import NeuronGraph
from .plan import LayerSpec, Plan
from .trace import Trace, TracedGraph, trace

__all__ = ["NeuronGraph", "EdgeBatch", "NodeBatch", "LayerSpec", "Plan", "execute",
           "execute_arrays", "execute_networkx", "Trace", "TracedGraph", "trace"]
