"""Sizes and rates used by ``plan`` to estimate costs before any work.

Bytes are per element of the finished artefact; rates are throughputs measured by the
benchmarks in ``bench/`` on the project's 2-core development machine (see each figure's
comment). They are estimates: the plan says so.
"""

# NetworkX DiGraph: ~254 bytes per edge with one float attribute (DESIGN.md), and a node
# dict with six attributes ~600 bytes.
NX_BYTES_PER_EDGE = 254
NX_BYTES_PER_NODE = 600

# GraphML as written by loader.sinks.graphml: an edge line is ~75 bytes with 8-digit ids and a
# 17-digit weight; a node element with six data children ~330 bytes.
GRAPHML_BYTES_PER_EDGE = 75
GRAPHML_BYTES_PER_NODE = 330

# Neo4j 5 record store: ~75 bytes per relationship with one float property (DESIGN.md);
# a node with 8 properties, its label and the (model, id) index entry ~150 bytes.
NEO4J_BYTES_PER_REL = 75
NEO4J_BYTES_PER_NODE = 150

# Throughputs, edges per second (bench/ figures; see the closing notes of the issues).
ENUMERATE_EDGES_PER_S = 300e6
GRAPHML_EDGES_PER_S = 2.5e6
NETWORKX_EDGES_PER_S = 1.0e6
NEO4J_ONLINE_EDGES_PER_S = 200e3
NEO4J_BULK_EDGES_PER_S = 1.0e6


def estimates(n_nodes: int, n_edges: int) -> dict:
    return {
        "graphml_bytes": n_edges * GRAPHML_BYTES_PER_EDGE + n_nodes * GRAPHML_BYTES_PER_NODE,
        "networkx_bytes": n_edges * NX_BYTES_PER_EDGE + n_nodes * NX_BYTES_PER_NODE,
        "neo4j_store_bytes": n_edges * NEO4J_BYTES_PER_REL + n_nodes * NEO4J_BYTES_PER_NODE,
        "enumerate_seconds": n_edges / ENUMERATE_EDGES_PER_S,
        "graphml_seconds": n_edges / GRAPHML_EDGES_PER_S,
        "networkx_seconds": n_edges / NETWORKX_EDGES_PER_S,
        "neo4j_online_seconds": n_edges / NEO4J_ONLINE_EDGES_PER_S,
        "neo4j_bulk_seconds": n_edges / NEO4J_BULK_EDGES_PER_S,
    }
