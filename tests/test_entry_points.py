"""The API's entry points that take a graph also take what a notebook user has in hand: a
model file path, a keras.applications name or a Keras model (converted whole, as
``NeuronGraph.from_model`` does); anything else is a one-line TypeError naming what was
given and what is taken. Values are checked against Keras, not against the product."""

import json
import os
from pathlib import Path

import keras
import networkx as nx
import numpy as np
import pytest
from keras import layers

import loader
from loader.errors import WeightgraphError
from loader.graph.channels import ChannelGraph
from loader.graph.forward import execute_arrays
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.models import model_exists
from oracle import assert_matches_keras, randomise_weights
from test_load import assert_exact

GRAPH_TAKERS = ["load", "write_graphml", "write_parquet", "to_networkx", "execute", "trace",
                "analyze"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small CNN (conv, max pooling, dense) and the file it is saved in."""
    inp = keras.Input((6, 6, 2), name="image")
    x = layers.Conv2D(3, 3, activation="relu", name="conv")(inp)
    x = layers.MaxPooling2D(2, name="pool")(x)
    out = layers.Dense(4, name="dense")(layers.Flatten(name="flatten")(x))
    model = randomise_weights(keras.Model(inp, out, name="entry_cnn"))
    path = tmp_path_factory.mktemp("entry") / "entry_cnn.keras"
    model.save(path)
    x = np.random.default_rng(4).normal(size=(2, 6, 6, 2)).astype("float32")
    return model, path, x


class _PathLike:
    """An os.PathLike that is not a pathlib.Path."""

    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return os.fspath(self.path)


def _givens(saved):
    model, path, _ = saved
    return {"Path": path, "str": str(path), "PathLike": _PathLike(path), "keras.Model": model}


@pytest.mark.parametrize("given", ["Path", "str", "PathLike", "keras.Model"])
def test_execute_and_trace_take_a_model_file_or_a_keras_model(saved, given):
    model, _, x = saved
    obj = _givens(saved)[given]
    assert_matches_keras(loader.execute(obj, x), model, x)  # every layer, and model(x)
    t = loader.trace(obj, x[0], target="dense:1")
    want = np.asarray(model(x[:1], training=False))[0]
    assert np.allclose(t.layer("dense"), want, rtol=1e-5, atol=1e-5)
    assert t.layer("image", "contribution").shape == (6, 6, 2)


def test_the_writers_take_a_model_file_or_a_keras_model(saved, tmp_path):
    model, path, x = saved
    expected = loader.to_networkx(NeuronGraph.from_model(model))
    for given in (path, str(path), model):
        G = loader.to_networkx(given)
        assert nx.utils.graphs_equal(G, expected)
        assert dict(G.nodes(data=True)) == dict(expected.nodes(data=True))
    out = tmp_path / "g.graphml"
    stats = loader.write_graphml(str(path), out, progress=False)
    G = nx.read_graphml(out, node_type=int)
    assert (stats["edges"], G.number_of_edges()) == (expected.number_of_edges(),) * 2
    assert {(u, v): d["weight"] for u, v, d in G.edges(data=True)} == \
        {(u, v): d["weight"] for u, v, d in expected.edges(data=True)}
    loader.write_parquet(model, tmp_path / "ds", progress=False)
    layers_, nodes, edges = loader.read_arrays(tmp_path / "ds")
    ours = execute_arrays(layers_, nodes, edges, x)
    assert_matches_keras(ours, model, x, shape_only_included=False)


def test_analyze_takes_a_path_or_a_keras_model(saved, tmp_path):
    model, path, _ = saved
    for i, given in enumerate((path, model)):
        report = loader.analyze(given, tmp_path / f"r{i}", neuron="dense:0", metrics=())
        text = report.read_text()
        assert "entry_cnn" in text and "dense" in text
    # A str is a model loaded in Neo4j there: a file must come as a Path.
    with pytest.raises(TypeError, match=r"^analyze\(\) takes the name of a model loaded in "
                                        r"Neo4j \(str\).*not int$"):
        loader.analyze(7, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_string_goes_to_from_model_as_a_keras_applications_name(saved):
    # No network here for imagenet weights: an unknown name shows the string took the model
    # route (from_model's own one-line error) and not the graph route (AttributeError).
    for name in (n for n in GRAPH_TAKERS if n != "analyze"):
        fn = getattr(loader, name)
        args = ("no_such_net",) if name == "to_networkx" else ("no_such_net", "x")
        with pytest.raises(WeightgraphError, match="unknown model 'no_such_net'"):
            fn(*args)


BAD = {"int": 3, "NoneType": None, "dict": {"conv": 1}, "networkx.classes.digraph.DiGraph":
       nx.DiGraph(), "numpy.ndarray": np.zeros(3)}


@pytest.mark.parametrize("name", GRAPH_TAKERS)
@pytest.mark.parametrize("kind", sorted(BAD))
def test_anything_else_is_a_one_line_type_error(name, kind, tmp_path):
    fn = getattr(loader, name)
    args = {"load": ("m",), "write_graphml": (tmp_path / "g.graphml",),
            "write_parquet": (tmp_path / "ds",), "to_networkx": (), "execute": (np.zeros(3),),
            "trace": (np.zeros(3),), "analyze": (tmp_path / "r",)}[name]
    with pytest.raises(TypeError) as info:
        fn(BAD[kind], *args)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}() takes ") and message.endswith(f", not {kind}")
    assert "Keras model" in message and "NeuronGraph" in message
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("name", ["execute", "trace", "write_parquet"])
def test_a_channel_graph_is_refused_where_only_neurons_go(saved, name, tmp_path):
    cg = ChannelGraph(NeuronGraph.from_model(saved[0]))
    fn = getattr(loader, name)
    args = (tmp_path / "ds",) if name == "write_parquet" else (saved[2][0],)
    with pytest.raises(TypeError, match=rf"^{name}\(\) takes a NeuronGraph, .*not ChannelGraph$"):
        fn(cg, *args)
    # where channels go, they go as they are
    assert loader.to_networkx(cg).number_of_edges() == cg.n_edges


def test_keras_is_not_imported_to_refuse(tmp_path):
    """``import loader`` stays light: refusing a wrong argument imports no framework."""
    import subprocess
    import sys

    code = ("import sys, loader\n"
            "try:\n    loader.to_networkx(3)\nexcept TypeError as e:\n    print(e)\n"
            "print('keras' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].endswith("not int") and out[1] == "False False"


@pytest.mark.neo4j
def test_load_takes_a_model_file_and_records_it_for_resume(saved, driver, model_name):
    model, path, _ = saved
    name = model_name("entry")
    summary = loader.load(path, name, driver=driver, batch_size=200)
    g = NeuronGraph.from_model(model)
    assert summary.relationships == g.n_edges
    assert_exact(driver, name, g)
    # The file is the model's source: a refused reader names `weightgraph load <file> ...`.
    source = json.loads(model_exists(driver, name)["source"])
    assert Path(source["model"]) == path
    name2 = model_name("entry")
    loader.load(model, name2, driver=driver)
    assert_exact(driver, name2, g)
    assert json.loads(model_exists(driver, name2)["source"]) == {}
