"""Sinks: where node and edge batches go. Each sink is a class with ``write_nodes``,
``write_edges`` and ``close``, and a function on top that streams a whole ``NeuronGraph``."""

from .graphml import GraphMLWriter, graph_attributes, write_graphml
from .networkx import NetworkXSink, keras_edges, to_networkx
from .parquet import ParquetDatasetWriter, write_parquet

__all__ = ["GraphMLWriter", "write_graphml", "graph_attributes",
           "NetworkXSink", "to_networkx", "keras_edges", "ParquetDatasetWriter", "write_parquet"]
