"""Benchmark: the Neo4j store cost of a trace, in bytes per neuron, and its write/read time.

A model with many neurons and few edges (so the load is quick) is loaded whole: 64x64x16
input -> BatchNormalization -> ReLU -> DepthwiseConv2D 3x3 -> ReLU -> MaxPooling2D 2 ->
Conv2D 1x1 (relu) -> GlobalAveragePooling2D -> Dense 10, ~0.4M neurons. A trace with a target
(value, active, contribution, chosen for the pooling layer) is computed from the stored graph
and stored; the store files of the database (not the transaction logs) are measured before
and after, each time after a restart of the server (Community edition has no checkpoint
procedure; a clean shutdown checkpoints, so the files then hold everything written). The
growth is what the trace costs; nothing is written per W edge (the relationship count is
checked unchanged).

Baseline, same run, same trace: the trace stored the obvious way, as properties of the graph
elements it describes (the contract's attributes as GraphML and NetworkX carry them):
``trace_value``, ``trace_active``, ``trace_contribution`` on every Neuron node, and
``trace_chosen`` (bool) on every W edge into a max neuron, in UNWIND batches of 10,000 rows
matched by the (model, id) index. Its store growth (after a restart, as above) and its
write time are printed beside ours, with the ratios.

Run: ``.venv/bin/python bench/bench_trace_store.py`` with the server of
``scripts/neo4j-local`` (the store files must be readable here; ``--restart`` is the command
that restarts it, default ``scripts/neo4j-local restart``; three restarts). ``--size 32``
makes the model 4x smaller.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
from keras import layers  # noqa: E402

from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.neo4j.db import Database  # noqa: E402
from loader.neo4j.load import load  # noqa: E402
from loader.neo4j.models import delete_model  # noqa: E402
from loader.neo4j.traces import read_trace, trace_loaded  # noqa: E402


def model(size: int):
    inp = keras.Input((size, size, 16), name="image")
    x = layers.BatchNormalization(name="bn")(inp)
    x = layers.ReLU(name="relu0")(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2D(16, 1, activation="relu", name="pw")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, layers.Dense(10, name="out")(x))


def store_files(db: Database) -> Path:
    rec = db.read_one("SHOW SETTINGS YIELD name, value WHERE name = 'server.directories.data' "
                      "RETURN value")
    return Path(rec["value"]) / "databases" / db.name


def store_bytes(root: Path, restart: str) -> dict:
    """Sizes of the store files after a restart (a clean shutdown checkpoints)."""
    subprocess.run(shlex.split(restart), check=True, capture_output=True)
    return {p.name: p.stat().st_size for p in root.iterdir()
            if p.is_file() and p.name.startswith("neostore") and not p.name.endswith(".id")}


_SET_NODES = """
UNWIND $rows AS r
MATCH (n:Neuron {model: $model, id: r.id})
SET n.trace_value = r.value, n.trace_active = r.active, n.trace_contribution = r.contribution
"""
_SET_EDGES = """
UNWIND $rows AS r
MATCH (:Neuron {model: $model, id: r.src})-[w:W]->(:Neuron {model: $model, id: r.dst})
SET w.trace_chosen = r.chosen
"""


def store_per_element(db: Database, g: NeuronGraph, name: str, t, batch: int = 10_000) -> tuple:
    """The baseline: trace ``t`` (an ArrayTrace of the whole graph) as node and edge
    properties. Returns (seconds, nodes written, edges written)."""
    start = time.perf_counter()
    ids, contribution = t.ids.tolist(), t.contribution.tolist()
    values, active = t.values.tolist(), t.active.tolist()
    for a in range(0, len(ids), batch):
        db.write(_SET_NODES, model=name, rows=[
            {"id": i, "value": v, "active": ac, "contribution": c}
            for i, v, ac, c in zip(ids[a:a + batch], values[a:a + batch],
                                   active[a:a + batch], contribution[a:a + batch])])
    edges = 0
    for li, e in enumerate(g.entries):
        if e.op is None or e.op.op not in ("max", "min"):
            continue
        for b in g.iter_edge_batches(batch, layers=[li]):
            chosen = t.chosen[t.pos(b.dst)] == b.src
            db.write(_SET_EDGES, model=name, rows=[
                {"src": s, "dst": d, "chosen": c}
                for s, d, c in zip(b.src.tolist(), b.dst.tolist(), chosen.tolist())])
            edges += len(b)
    return time.perf_counter() - start, len(ids), edges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--restart", default=str(Path(__file__).resolve().parent.parent /
                                             "scripts" / "neo4j-local") + " restart")
    args = ap.parse_args()
    g = NeuronGraph.from_model(model(args.size))
    name = f"bench_trace_store_{os.getpid()}"
    x = np.random.default_rng(0).normal(size=(args.size, args.size, 16))
    with Database.connect() as db:
        start = time.perf_counter()
        load(g, name, driver=db)
        print(f"loaded {g.n_nodes:,} neurons, {g.n_edges:,} edges in "
              f"{time.perf_counter() - start:.1f} s")
        rels = db.read_one("MATCH ()-[r:W]->() RETURN count(r) AS c")["c"]
        root = store_files(db)
    before = store_bytes(root, args.restart)
    with Database.connect() as db:
        r = trace_loaded(db, name, "x.npy", x=x, name=f"{name}_t", target="out:3")
    after_files = store_bytes(root, args.restart)
    grown = {k: after_files[k] - before.get(k, 0) for k in after_files
             if after_files[k] != before.get(k, 0)}
    after, before = sum(after_files.values()), sum(before.values())
    with Database.connect() as db:
        assert db.read_one("MATCH ()-[r:W]->() RETURN count(r) AS c")["c"] == rels
        start = time.perf_counter()
        arrays = read_trace(db, f"{name}_t")
        read_s = time.perf_counter() - start
        n = r.neurons
        print(f"trace of {n:,} neurons ({r.chunks:,} chunks): read the graph "
              f"{r.seconds['read']:.1f} s, computed {r.seconds['compute']:.2f} s, stored "
              f"{r.seconds['store']:.1f} s; read back {len(arrays['id']):,} neurons in "
              f"{read_s:.2f} s")
        print(f"store growth {after - before:,} bytes = {(after - before) / n:.1f} bytes per "
              f"neuron (value, active, contribution; chosen in the pooling layer): "
              + ", ".join(f"{k} +{v:,}" for k, v in sorted(grown.items())))
        base_s, base_nodes, base_edges = store_per_element(db, g, name, r.trace)
    base_files = store_bytes(root, args.restart)
    base_grown = sum(base_files.values()) - after
    ours_s = r.seconds["store"]
    print(f"baseline, the same trace as node and edge properties: {base_nodes:,} Neuron nodes "
          f"and {base_edges:,} W edges into the pooling layer written in {base_s:.1f} s; store "
          f"growth {base_grown:,} bytes = {base_grown / n:.1f} bytes per neuron")
    print(f"ratio: baseline / ours = {base_grown / (after - before):.2f}x the bytes, "
          f"{base_s / ours_s:.1f}x the write time ({base_s:.1f} s / {ours_s:.1f} s)")
    with Database.connect() as db:
        delete_model(db, name)


if __name__ == "__main__":
    main()
