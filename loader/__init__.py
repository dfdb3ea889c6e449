"""weightgraph: the neuron-level weighted graph of a CNN (Keras or ONNX).

The import package is ``loader``. Its folders follow the flow of the data::

    keras/     a Keras model -> graph entries (layer walk, one builder per layer family)
    onnx/      an ONNX model -> graph entries (the same, without TensorFlow)
    ops/       rank-generic enumerators of each entry's neurons and edges; activations
    graph/     NeuronGraph: ids, selections, plan, bounded batches; forward execution, traces
    sinks/     where batches go: GraphML, NetworkX, Neo4j online writes, Neo4j import CSV
    neo4j/     the one door to Neo4j: connection, schema, models, load, pull, queries, server
    analysis/  statistics, metrics and plots of a graph, from Keras or from Neo4j
    cli/       the `weightgraph` command, a thin shell over the above

The names most used from a notebook are importable from here (lazily: ``import loader``
loads neither TensorFlow nor the Neo4j driver):

>>> import loader
>>> g = loader.NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3),
...                                   cone="block2_pool:1000")
>>> G = loader.to_networkx(g)
>>> loader.load(g, "vgg16_cone")            # Neo4j, settings from NEO4J_* / WEIGHTGRAPH_*
"""

import importlib
import os

# Quiet TensorFlow before anything imports it. weightgraph runs Keras only to read layers and,
# in tests, as the oracle: oneDNN's fused kernels buy no speed that matters here, and turning
# them off also silences their start-up banner on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# Public name -> the module that defines it.
_API = {
    "NeuronGraph": "loader.graph.neuron_graph",
    "ChannelGraph": "loader.graph.channels",
    "EdgeBatch": "loader.graph.batches",
    "NodeBatch": "loader.graph.batches",
    "execute": "loader.graph.forward",
    "execute_networkx": "loader.graph.forward",
    "trace": "loader.graph.trace",
    "Trace": "loader.graph.trace",
    "trace_set": "loader.graph.trace_set",
    "TraceSet": "loader.graph.trace_set",
    "read_input_set": "loader.input_sets",
    "to_networkx": "loader.sinks.networkx",
    "keras_edges": "loader.sinks.networkx",
    "write_graphml": "loader.sinks.graphml",
    "write_parquet": "loader.sinks.parquet",
    "open_duckdb": "loader.analysis.dataset",
    "read_arrays": "loader.analysis.dataset",
    "Settings": "loader.config",
    "Database": "loader.neo4j.db",
    "connect": "loader.neo4j.db",
    "load": "loader.neo4j.load",
    "load_dataset": "loader.neo4j.load",
    "verify": "loader.neo4j.models",
    "delete_model": "loader.neo4j.models",
    "loaded_models": "loader.neo4j.models",
    "require_complete": "loader.neo4j.models",
    "pull": "loader.neo4j.pull",
    "pull_to_graphml": "loader.neo4j.pull",
    "pull_to_parquet": "loader.neo4j.pull",
    "run_query": "loader.neo4j.queries",
    "trace_loaded": "loader.neo4j.traces",
    "read_trace": "loader.neo4j.traces",
    "pull_trace": "loader.neo4j.traces",
    "list_traces": "loader.neo4j.traces",
    "delete_trace": "loader.neo4j.traces",
    "trace_set_loaded": "loader.neo4j.trace_sets",
    "read_trace_set": "loader.neo4j.trace_sets",
    "pull_trace_set": "loader.neo4j.trace_sets",
    "read_input": "loader.inputs",
    "list_queries": "loader.neo4j.queries",
    "analyze": "loader.analysis",
}

# Public name -> a module offered whole (``loader.gds.run(...)``, ``loader.gds.project(...)``).
_MODULES = {"gds": "loader.neo4j.gds"}

__all__ = sorted(set(_API) | set(_MODULES))


def __getattr__(name: str):
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
        globals()[name] = value
        return value
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'loader' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API) | set(_MODULES))
