"""Analysis reports of neuron graphs (see :func:`analyze`).

Modules: :mod:`~loader.analysis.sources` (statistics of a NeuronGraph or of a model loaded in
Neo4j), :mod:`~loader.analysis.metrics` (NetworkX metrics and their cost estimates),
:mod:`~loader.analysis.gds` (whole-model summaries from Graph Data Science inside Neo4j),
:mod:`~loader.analysis.plots` (the PNG figures) and :mod:`~loader.analysis.report` (the
entry points and the Markdown / HTML writer).
"""

from ..graph.selection import parse_subgraph
from .metrics import (BETWEENNESS_EXACT_NODES, BETWEENNESS_SAMPLES, METRICS, estimate_costs,
                      run_metrics)
from .report import analyze, receptive_field_paths, report_trace
from .sources import GraphSource, LayerStats, Neo4jSource

__all__ = ["analyze", "report_trace", "receptive_field_paths", "estimate_costs", "run_metrics",
           "parse_subgraph", "METRICS", "BETWEENNESS_EXACT_NODES", "BETWEENNESS_SAMPLES",
           "GraphSource", "Neo4jSource", "LayerStats"]
