"""Measure what a NetworkX DiGraph of the neuron graph costs in memory, per edge and per node:
the figure behind `plan`'s ``networkx_bytes`` (loader/graph/costs.py), the README's "as a
NetworkX graph" and ``to_networkx``'s refusal message.

How: ``tracemalloc`` (Python's own allocation tracer, which sees every object NetworkX makes)
around ``NetworkXSink``, as ``to_networkx`` drives it: the node batches first (bytes per node:
the node's entry in the node dict, its adjacency dicts and its six-key attribute dict), then the
edge batches (bytes per edge: an entry in the source's successor dict and the target's
predecessor dict, a one-key ``{"weight": float}`` dict and the float). Measured on layer
selections of VGG16 at 32x32 (random weights): convolutions and a dense layer, in-degrees 27
to 2,048, give the same figure within a few percent; that is what almost every edge of a CNN
is. A neuron's first edge in each direction also allocates its adjacency dict's table, so
graphs of degree 1-4 cost several times more per edge (a pooling layer alone: ~1,750 bytes
per edge); pooling edges are 0.04% of VGG16's. The baseline printed beside each measurement is
the figure ``costs.py`` uses, and the ratio.

Measured (2-core VM, load average 6.6, Python 3.11.7, NetworkX 3.6.1): block1_conv1 355 bytes
per edge, 675 per node; block5_conv1 349 and 662; block5_pool:fc1 354 and 686. VGG16@224 as a
NetworkX graph: 5.3 TB.

Run: ``.venv/bin/python bench/bench_networkx_memory.py`` (about 3 minutes under tracemalloc,
1.6 GB at the peak; ``--layers`` picks other selections).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import networkx as nx  # noqa: E402

from loader.graph import costs  # noqa: E402
from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.sinks.networkx import NetworkXSink  # noqa: E402


def measure(g: NeuronGraph) -> tuple[float, float]:
    """(bytes per node, bytes per edge) of ``g`` as an nx.DiGraph, by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    sink = NetworkXSink(g.graph_data())
    for batch in g.iter_node_batches():
        sink.write_nodes(batch)
    nodes = tracemalloc.get_traced_memory()[0]
    for batch in g.iter_edge_batches(reuse_buffers=True):
        sink.write_edges(batch)
    total = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    G = sink.close()
    assert (G.number_of_nodes(), G.number_of_edges()) == (g.n_nodes, g.n_edges)
    return nodes / g.n_nodes, (total - nodes) / g.n_edges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default="block1_conv1:block1_conv1,"
                                        "block5_conv1:block5_conv1,block5_pool:fc1")
    args = ap.parse_args()
    print(f"Python {platform.python_version()}, NetworkX {nx.__version__}; load average "
          f"{os.getloadavg()[0]:.1f}")
    per_edge = []
    for spec in args.layers.split(","):
        g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3), layers=spec)
        start = time.perf_counter()
        node_b, edge_b = measure(g)
        per_edge.append(edge_b)
        print(f"VGG16@32 {spec}: {g.n_nodes:,} nodes, {g.n_edges:,} edges in "
              f"{time.perf_counter() - start:.1f} s: {edge_b:.0f} bytes per edge, {node_b:.0f} "
              f"per node; baseline costs.py {costs.NX_BYTES_PER_EDGE} per edge, "
              f"{costs.NX_BYTES_PER_NODE} per node: measured/costs "
              f"{edge_b / costs.NX_BYTES_PER_EDGE:.3f}, {node_b / costs.NX_BYTES_PER_NODE:.3f}")
    edges, nodes = 14_975_945_472, 15_237_608
    print(f"VGG16@224 whole ({edges:,} edges, {nodes:,} nodes) at the largest measured "
          f"{max(per_edge):.0f} bytes per edge: "
          f"{(edges * max(per_edge) + nodes * costs.NX_BYTES_PER_NODE) / 1e12:.2f} TB "
          f"(costs.py: {(edges * costs.NX_BYTES_PER_EDGE + nodes * costs.NX_BYTES_PER_NODE) / 1e12:.2f} TB)")


if __name__ == "__main__":
    main()
