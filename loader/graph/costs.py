"""Sizes and rates used by ``plan`` to estimate costs before any work.

Bytes are per element of the finished artefact; rates are throughputs measured by the
benchmarks in ``bench/`` on the project's 2-core development machine (see each figure's
comment). They are estimates: the plan says so.
"""

# NetworkX DiGraph: 355 bytes per edge with one float attribute and 690 per node with six
# attributes, the largest of bench/bench_networkx_memory.py's measurements (tracemalloc around
# NetworkXSink, Python 3.11.7, NetworkX 3.6.1; VGG16@32 block1_conv1 355 / 675, block5_conv1
# 349 / 662, block5_pool:fc1 354 / 686). Degree-1 graphs (a pooling layer alone) cost ~5x more
# per edge: a neuron's first edge allocates its adjacency dict's table.
NX_BYTES_PER_EDGE = 355
NX_BYTES_PER_NODE = 690

# GraphML as written by loader.sinks.graphml: an edge line is 88-92 bytes with 7-8 digit ids
# and a 17-digit weight (~16 bytes gzipped); a node element with six data children ~330 bytes.
GRAPHML_BYTES_PER_EDGE = 90
GRAPHML_BYTES_PER_NODE = 330

# Neo4j 5 record store: 80.8 bytes per relationship measured after the bulk import of VGG16
# block 1 at 32x32 (3,068 MB for 37.95M relationships, nodes and indexes included; DESIGN.md
# says ~75); a node with 8 properties, its label and two index entries ~150 bytes.
NEO4J_BYTES_PER_REL = 81
NEO4J_BYTES_PER_NODE = 150

# neo4j-admin CSV files of loader.sinks.neo4j_csv, the bulk path's default, plain text: 7.12 GB
# for the 270,404,352 relationships of the whole VGG16 at 32x32 (26.3 bytes each: 6-digit ids,
# weights as shortest float32 text), 20.7 MB for its 319,976 neurons (64.8 bytes each);
# rounded up for the longer ids of bigger models.
CSV_BYTES_PER_EDGE = 30
CSV_BYTES_PER_NODE = 80
# The same gzipped (compress=True): measured on the medium test model of tests/test_load.py
# (1,358,336 relationships: 7.1 bytes each; 14,336 neurons: 11.3 bytes each), rounded up.
CSV_GZ_BYTES_PER_EDGE = 10
CSV_GZ_BYTES_PER_NODE = 16

# The bulk path's Parquet import files (loader.sinks.neo4j_parquet: delta ids, float64 weights,
# zstd): 995 MB for the 270,404,352 relationships of the whole VGG16 at 32x32 (3.7 bytes each;
# Dense layers, all weights distinct, dominate); nodes ~9 bytes (2.7 MB for 319,976).
BULK_PARQUET_BYTES_PER_EDGE = 4
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
PARQUET_EDGES_PER_S = 15e6        # bench_parquet: 9.9M (VGG16 224, shared VM at load 8) to 23M


# The bulk load (loader.neo4j.load: plain CSV files, actual node ids, the server stopped for the
# import), as three parts measured on this 2-core, 24 GiB VM, quiet (load average 2-3), by
# bench/bench_whole_model.py, whole VGG16 at 32x32 (270,404,352 relationships): 267.0 s end to
# end (1.01M rel/s), of which
#  * writing the import files (enumeration + checksums + CSV text, 7.12 GB): 48.1 s, 5.6M/s;
#  * neo4j-admin import 199.1 s, 1.36M/s: node import 1.9 s, relationship import 81.8 s,
#    relationship linking 91.4 s, post processing 20.4 s (all but the first per edge);
#  * fixed: server stop 2.6 s; swap, start (6g heap) and count 13.2 s; schema 4.0 s.
# The same VM shared with other work (load average 10-16) ran the previous path ~2x slower
# than quiet: a busy machine takes about twice these.
BULK_FILES_EDGES_PER_S = 5.6e6
BULK_IMPORT_EDGES_PER_S = 1.36e6
BULK_FIXED_SECONDS = 20.0
# GDS in-memory graph (Cypher projection of one model, relationship property `weight`): the
# whole VGG16 at 32x32 (319,976 nodes, 270,404,352 relationships) projected in 2.48 GB, 9.2
# bytes per relationship (gds.graph.list sizeInBytes; GDS's own estimate with PageRank and WCC
# 2.73 GB; bench_whole_model); without the property about half (GDS's estimate).
GDS_BYTES_PER_REL = 9.5
GDS_BYTES_PER_REL_UNWEIGHTED = 4.5
GDS_BYTES_PER_NODE = 100
# The local server's heap beside a projection (transaction state, page cache is off-heap).
GDS_HEAP_HEADROOM = 1 << 30
# Share of the machine's memory the server's heap + page cache may take (the rest: the OS,
# the importer, the Python client).
MEMORY_SHARE = 0.75


def bulk_load_seconds(n_nodes: int, n_edges: int) -> float:
    """Predicted end-to-end seconds of a bulk load (files, import, swap, schema)."""
    return (BULK_FIXED_SECONDS + n_edges / BULK_FILES_EDGES_PER_S
            + n_edges / BULK_IMPORT_EDGES_PER_S)


def gds_projection_bytes(n_nodes: int, n_edges: int, weighted: bool = True) -> int:
    """Predicted heap of a GDS projection of the graph (with or without weights)."""
    per_rel = GDS_BYTES_PER_REL if weighted else GDS_BYTES_PER_REL_UNWEIGHTED
    return int(n_edges * per_rel + n_nodes * GDS_BYTES_PER_NODE)


def machine_fit(est: dict, *, disk_free: int, memory: int) -> list[str]:
    """Why a graph with estimates ``est`` cannot be loaded and analysed on a machine with
    ``disk_free`` bytes free where the store goes and ``memory`` bytes of RAM; empty when it
    fits. One line per reason."""
    from ..terminal import human

    reasons = []
    disk = est["neo4j_store_bytes"] + est["bulk_files_bytes"]
    if disk > disk_free:
        reasons.append(f"disk: the bulk load needs {human(disk)} (store "
                       f"{human(est['neo4j_store_bytes'])} + import files "
                       f"{human(est['bulk_files_bytes'])}), {human(disk_free)} are free")
    heap = est["gds_projection_bytes"] + GDS_HEAP_HEADROOM
    if heap > memory * MEMORY_SHARE:
        reasons.append(f"memory: a GDS projection with weights needs a heap of {human(heap)}, "
                       f"more than {MEMORY_SHARE:.0%} of this machine's {human(memory)}")
    return reasons


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
        "neo4j_bulk_seconds": bulk_load_seconds(n_nodes, n_edges),
        "bulk_files_bytes": n_edges * CSV_BYTES_PER_EDGE + n_nodes * CSV_BYTES_PER_NODE,
        "gds_projection_bytes": gds_projection_bytes(n_nodes, n_edges),
    }
