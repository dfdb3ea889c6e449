"""Reading a loaded graph back from Neo4j with plain Cypher (no weightgraph code in between)."""

import json

import numpy as np


def read_back(driver, name):
    """(layers, nodes, edges) of a loaded model, as arrays for loader.graph.forward.execute_arrays."""
    rec = driver.execute_query("MATCH (m:Model {name: $m}) RETURN m.graph_data AS g",
                               m=name).records
    layers = json.loads(rec[0]["g"])["layers"]
    recs = driver.execute_query(
        "MATCH (n:Neuron {model: $m}) RETURN n.id AS id, n.layer_index AS layer_index, "
        "n.index AS index, n.bias AS bias, n.activation AS activation, n.op AS op, "
        "n.layer AS layer", m=name).records
    nodes = {k: [r[k] for r in recs] for k in ("id", "layer_index", "index", "bias",
                                               "activation", "op", "layer")}
    recs = driver.execute_query(
        "MATCH (a:Neuron {model: $m})-[r:W]->(b:Neuron) "
        "RETURN a.id AS src, b.id AS dst, r.weight AS weight", m=name).records
    edges = {k: np.array([r[k] for r in recs]) for k in ("src", "dst", "weight")}
    return layers, nodes, edges


def layer_sums(driver, name):
    """Per layer index: (neurons, relationships, weight sum) in Neo4j."""
    recs = driver.execute_query(
        "MATCH (n:Neuron {model: $m}) OPTIONAL MATCH (n)<-[r:W]-() "
        "RETURN n.layer_index AS li, count(DISTINCT n) AS n, count(r) AS e, "
        "sum(r.weight) AS w", m=name).records
    return {r["li"]: (r["n"], r["e"], r["w"] or 0.0) for r in recs}
