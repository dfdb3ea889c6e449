"""A channel graph through bulk mode (neo4j-admin import): the same graph as the online load.

Rebuilds the whole database, so it carries ``rebuilds_database`` and runs last (conftest.py).
"""

import secrets

import pytest

from loader.graph.channels import ChannelGraph
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.db import connect
from loader.neo4j.load import load
from loader.neo4j.models import delete_model, model_exists, verify
from test_channels_neo4j import assert_loaded_channel_graph, channel_model, read_channels


@pytest.mark.rebuilds_database
def test_channel_bulk_load_gives_the_channel_graph():
    driver = connect()  # a fresh driver: an earlier rebuild may have replaced the database
    name = f"ch_bulk_{secrets.token_hex(3)}"
    model = channel_model()
    cg = ChannelGraph(NeuronGraph.from_model(model))
    try:
        summary = load(cg, name, driver=driver, mode="bulk", replace=True)
    finally:
        driver.close()
    driver = connect()  # the database was rebuilt: a new driver, as a new process would
    try:
        assert summary.relationships == cg.n_edges and summary.unit == "channels"
        m = model_exists(driver, name)
        assert (m["granularity"], m["state"], m["mode"]) == ("channel", "complete", "bulk")
        assert_loaded_channel_graph(driver, name, cg, model)  # verify, Cypher read-back, Keras
        nodes, edges = read_channels(driver, name)
        # Absent stays absent through the CSV files: no kernel on pooling / add edges.
        assert sum("kernel" not in p for p in edges.values()) == sum(
            len(b) for b in cg.iter_edge_batches() if b.kernel is None) > 0
        assert all(isinstance(p["edges"], int) for p in edges.values())
        driver.execute_query("MATCH (:Channel {model: $m, layer: 'dense'})<-[r:CW]-() "
                             "WITH r LIMIT 1 SET r.kernel = [x IN r.kernel | -x]", m=name)
        assert not verify(name, driver=driver).ok
    finally:
        delete_model(driver, name)
        assert model_exists(driver, name) is None
        driver.close()
