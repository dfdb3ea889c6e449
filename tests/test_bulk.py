"""Bulk mode (neo4j-admin import) against the real server: same graph as online mode.

A bulk load rebuilds the whole database, so these tests carry the ``rebuilds_database``
marker and run after every other test (see conftest.py).
"""

import secrets

import numpy as np
import pytest

from loader.neo4j.load import BulkLoadError
from loader.neo4j.db import connect
from loader.graph.forward import execute_arrays
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.load import load
from loader.neo4j.models import delete_model, model_exists, verify
from neo4j_helpers import layer_sums, read_back
from oracle import assert_matches_keras
from test_load import residual_model


@pytest.mark.rebuilds_database
def test_bulk_load_gives_the_online_graph():
    # A fresh driver: another rebuilds_database test may have rebuilt the database under the
    # session's driver, whose bookmarks would then wait for transactions that no longer exist.
    driver = connect()
    tag = secrets.token_hex(3)  # a name no earlier run left behind
    online_name, bulk_name = f"online_twin_{tag}", f"bulk_twin_{tag}"
    model = residual_model(size=9, channels=5)
    g = NeuronGraph.from_model(model)
    load(g, online_name, driver=driver, batch_size=1000)
    online = layer_sums(driver, online_name)

    with pytest.raises(BulkLoadError, match="--replace"):
        load(g, bulk_name, driver=driver, mode="bulk")
    assert model_exists(driver, online_name) is not None  # refused: nothing touched

    summary = load(g, bulk_name, driver=driver, mode="bulk", replace=True)
    driver.close()
    # The database was rebuilt: a driver that ran execute_query holds bookmarks of the old
    # one (BookmarkTimeout), so the checks use a new driver, as a new process would.
    driver = connect()
    try:
        assert summary.relationships == g.n_edges
        assert model_exists(driver, online_name) is None  # the database was rebuilt
        bulk = layer_sums(driver, bulk_name)
        assert bulk.keys() == online.keys()
        for li in online:
            n0, e0, w0 = online[li]
            n1, e1, w1 = bulk[li]
            assert (n0, e0) == (n1, e1), li
            assert abs(w0 - w1) <= 1e-9 * max(1.0, abs(w0)), li
        v = verify(bulk_name, driver=driver)
        assert v.ok, "\n".join(v.lines())
        layers, nodes, edges = read_back(driver, bulk_name)
        x = np.random.default_rng(9).normal(size=(2,) + g.entries[0].output.shape).astype("f4")
        ours = execute_arrays(layers, nodes, edges, x)
        assert_matches_keras(ours, model, x, shape_only_included=False)  # per layer, model(x)
        assert driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN count(*) AS c"
                                    ).records[0]["c"] >= 3
    finally:
        delete_model(driver, bulk_name)
        driver.close()
