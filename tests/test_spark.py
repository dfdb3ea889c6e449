"""Spark in local mode: the distributed enumeration writes the single-process export's rows;
the dataset read into Spark executes to Keras.

One SparkSession for the module (the JVM starts once); models are tiny.
"""

import numpy as np
import pyarrow.dataset as ds
import pytest

from loader.analysis.spark import export_parquet_spark, read_dataset, spark_session
from loader.errors import WeightgraphError
from loader.graph.forward import execute_arrays
from loader.graph.neuron_graph import NeuronGraph
from loader.sinks.parquet import write_parquet
from oracle import assert_matches_keras
from test_load import residual_model


@pytest.fixture(scope="module")
def spark():
    # graphframes=False: the GraphFrames jar is not on the Maven mirror this project reaches.
    session = spark_session("local[2]", graphframes=False,
                            config={"spark.driver.memory": "1g"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = residual_model(size=8, channels=4)
    path = tmp_path_factory.mktemp("spark") / "residual.keras"
    model.save(path)
    return model, path


def rows(path, kind, columns):
    table = ds.dataset(path / kind, format="parquet", partitioning="hive").to_table()
    arrays = [table.column(c).to_numpy() for c in columns]
    order = np.lexsort(arrays[::-1])
    return [a[order] for a in arrays]


def test_spark_export_has_exactly_the_rows_of_the_single_process_export(spark, model_file,
                                                                         tmp_path):
    model, path = model_file
    g = NeuronGraph.from_model(str(path))
    write_parquet(g, tmp_path / "single", tile_edges=300, progress=False)
    for tasks in (1, 3):
        stats = export_parquet_spark(spark, path, tmp_path / f"spark{tasks}", tasks=tasks,
                                     tile_edges=300, batch_size=128)
        assert stats["shards"] > 8 and stats["edges"] == g.n_edges
        for kind, columns in (("edges", ["layer_index", "dst", "src", "weight"]),
                              ("nodes", ["layer_index", "id", "index", "bias", "activation"])):
            want = rows(tmp_path / "single", kind, columns)
            got = rows(tmp_path / f"spark{tasks}", kind, columns)
            for a, b in zip(want, got):
                assert np.array_equal(a, b), (tasks, kind)
    with pytest.raises(WeightgraphError, match="random"):
        export_parquet_spark(spark, "vgg16", tmp_path / "x", weights="none")
    assert not (tmp_path / "x").exists()


def test_dataset_read_into_spark_executes_to_keras(spark, model_file, tmp_path):
    model, path = model_file
    g = NeuronGraph.from_model(str(path))
    write_parquet(g, tmp_path / "ds", progress=False)
    nodes_df, edges_df = read_dataset(spark, tmp_path / "ds")
    node_cols = ["id", "layer_index", "index", "bias", "activation"]
    node_rows = nodes_df.select(*node_cols).collect()
    edge_rows = edges_df.select("src", "dst", "weight").collect()
    nodes = {c: np.array([r[c] for r in node_rows]) for c in node_cols}
    edges = {c: np.array([r[c] for r in edge_rows]) for c in ("src", "dst", "weight")}
    assert len(edge_rows) == g.n_edges
    x = np.random.default_rng(5).normal(size=(2,) + g.entries[0].output.shape).astype("f4")
    ours = execute_arrays(g.graph_data()["layers"], nodes, edges, x)
    assert_matches_keras(ours, model, x, shape_only_included=False)
