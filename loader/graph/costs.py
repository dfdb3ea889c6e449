"""Sizes and rates used by ``plan`` to estimate costs before any work.

Bytes are per element of the finished artefact; rates are throughputs measured by the
benchmarks in ``bench/`` on the project's 2-core development machine (see each figure's
comment). They are estimates: the plan says so.
"""

# NetworkX DiGraph: 344 bytes per edge with one float attribute and 645 per node with six
# attributes (tracemalloc, Python 3.11, NetworkX 3.6; DESIGN.md's 254 is without the dicts).
NX_BYTES_PER_EDGE = 344
NX_BYTES_PER_NODE = 645

# GraphML as written by loader.sinks.graphml: an edge line is 88-92 bytes with 7-8 digit ids
# and a 17-digit weight (~16 bytes gzipped); a node element with six data children ~330 bytes.
GRAPHML_BYTES_PER_EDGE = 90
GRAPHML_BYTES_PER_NODE = 330

# Neo4j 5 record store: 80.8 bytes per relationship measured after the bulk import of VGG16
# block 1 at 32x32 (3,068 MB for 37.95M relationships, nodes and indexes included; DESIGN.md
# says ~75); a node with 8 properties, its label and two index entries ~150 bytes.
NEO4J_BYTES_PER_REL = 81
NEO4J_BYTES_PER_NODE = 150

# neo4j-admin CSV files of loader.sinks.neo4j_csv, gzipped: measured on the medium test model
# of tests/test_load.py (1,358,336 relationships: 7.1 bytes each; 14,336 neurons: 11.3 bytes
# each), rounded up for longer ids.
CSV_GZ_BYTES_PER_EDGE = 10
CSV_GZ_BYTES_PER_NODE = 16

# The bulk path's Parquet import files (loader.sinks.neo4j_parquet: delta ids, float32 weights,
# zstd): 31.4 MB for the 37,954,304 relationships of VGG16 block 1 at 32x32 (0.83 bytes each;
# Dense layers, all weights distinct, ~5); nodes ~15 bytes.
BULK_PARQUET_BYTES_PER_EDGE = 2
BULK_PARQUET_BYTES_PER_NODE = 16

# Parquet dataset (loader.sinks.parquet, weight-major order, delta ids, zstd): bench_parquet
# wrote all 14,975,945,472 edges of VGG16 at 224x224 in 2.99 GB, 0.20 bytes/edge (0.28 at
# 64x64: shorter runs); Dense layers (all weights distinct) cost ~4. A node ~10 bytes.
PARQUET_BYTES_PER_EDGE = 0.2
PARQUET_BYTES_PER_NODE = 10

# Throughputs, edges per second (bench/ figures; see the closing notes of the issues).
ENUMERATE_EDGES_PER_S = 1.4e9   # bench_enumerate: VGG16 224 on one core, with a checksum
GRAPHML_EDGES_PER_S = 2.5e6       # bench_graphml: 1.5-3.7M edges/s
NETWORKX_EDGES_PER_S = 1.0e6      # to_networkx: add_edges_from of python tuples
NEO4J_ONLINE_EDGES_PER_S = 200e3  # bench_load: VGG16 block 1 at 32x32, 160-238k
NEO4J_BULK_EDGES_PER_S = 600e3    # bench_load: the same, CSV + import + restart, 435-626k
PARQUET_EDGES_PER_S = 15e6        # bench_parquet: 9.9M (VGG16 224, shared VM at load 8) to 23M


def estimates(n_nodes: int, n_edges: int) -> dict:
    return {
        "graphml_bytes": n_edges * GRAPHML_BYTES_PER_EDGE + n_nodes * GRAPHML_BYTES_PER_NODE,
        "networkx_bytes": n_edges * NX_BYTES_PER_EDGE + n_nodes * NX_BYTES_PER_NODE,
        "parquet_bytes": n_edges * PARQUET_BYTES_PER_EDGE + n_nodes * PARQUET_BYTES_PER_NODE,
        "neo4j_store_bytes": n_edges * NEO4J_BYTES_PER_REL + n_nodes * NEO4J_BYTES_PER_NODE,
        "enumerate_seconds": n_edges / ENUMERATE_EDGES_PER_S,
        "graphml_seconds": n_edges / GRAPHML_EDGES_PER_S,
        "networkx_seconds": n_edges / NETWORKX_EDGES_PER_S,
        "parquet_seconds": n_edges / PARQUET_EDGES_PER_S,
        "neo4j_online_seconds": n_edges / NEO4J_ONLINE_EDGES_PER_S,
        "neo4j_bulk_seconds": n_edges / NEO4J_BULK_EDGES_PER_S,
    }
