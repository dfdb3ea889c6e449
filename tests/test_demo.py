"""The demo's networks and choices: the digits CNN trained here (accuracy, determinism, its
trace against TensorFlow's gradients), the ImageNet path on a stand-in weights file in a
temporary Keras cache, the offline fallback in one line, bad input in one line, and the digits
demo end to end against the real Neo4j server."""

from __future__ import annotations

import json
import time

import h5py
import keras
import networkx as nx
import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image

from tf_gradients import gradients
from loader import demo
from loader.cli import main
from loader.graph.neuron_graph import NeuronGraph
from loader.graph.trace import trace
from loader.neo4j.trace_sets import read_trace_set
from loader.neo4j.traces import read_trace


@pytest.fixture(scope="module")
def digits():
    return demo.trained_digits(0)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache of the test's own (no real ~/.keras is read or written), and
    no download attempts unless a test redirects them."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(demo.OFFLINE_ENV, "1")
    (tmp_path / "keras" / "models").mkdir(parents=True)
    return tmp_path / "keras" / "models"


def test_digits_cnn_is_accurate_and_deterministic(digits):
    model, split = digits
    started = time.perf_counter()
    again, split2 = demo.digits_model(0)
    print(f"digits CNN: trained in {split2.seconds:.1f} s (with building and testing "
          f"{time.perf_counter() - started:.1f} s), held-out accuracy {split2.accuracy:.2%}")
    assert split.accuracy >= 0.95 and len(split.y_test) == 360
    assert split2.accuracy == split.accuracy
    np.testing.assert_array_equal(split2.x_test, split.x_test)
    assert len(model.weights) == len(again.weights) == 8
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # The accuracy is the model's own: its predictions, counted here.
    predicted = model.predict(split.x_test, verbose=0).argmax(axis=1)
    assert (predicted == split.y_test).mean() == split.accuracy


def test_digits_trace_matches_tensorflow_gradients(digits):
    model, split = digits
    x = split.x_test[0].astype(np.float64)
    k = int(model.predict(x[None], verbose=0)[0].argmax())
    values, grads = gradients(model, x, "logits", k)
    t = trace(NeuronGraph.from_model(model), x, target=f"logits:{k}")
    for layer in ("conv1", "pool1", "conv2", "pool2", "fc", "logits"):
        np.testing.assert_allclose(t.layer(layer), values[layer],
                                   atol=1e-4 * np.abs(values[layer]).max(), err_msg=layer)
    expected = values["digit"] * grads["digit"]
    got = t.layer("digit", "contribution")
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


# ---------------------------------------------------------------------------- ImageNet
@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A Keras cache holding a stand-in for VGG16's ImageNet weights: the real file's name and
    layout (Keras 2 HDF5: a group per layer, ``weight_names``), the real shapes, random
    values (uniform, He-scaled so the activations stay finite; the last layer small, so the
    softmax does not saturate into ties); and a class index of made-up names."""
    cache = tmp_path_factory.mktemp("keras") / "models"
    cache.mkdir()
    reference = keras.applications.VGG16(weights=None)
    rng = np.random.default_rng(1)
    with h5py.File(cache / demo.VGG16_WEIGHTS_FILE, "w") as f:
        f.attrs["layer_names"] = [l.name.encode() for l in reference.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in reference.layers:
            g = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for w, n in zip(layer.weights, names):
                shape = tuple(w.shape)
                scale = np.sqrt(6.0 / np.prod(shape[:-1])) if len(shape) > 1 else 0.1
                if layer.name == "predictions":
                    scale *= 1e-3
                values = rng.random(shape, dtype=np.float32) * np.float32(2 * scale)
                g.create_dataset(n, data=values - np.float32(scale))
    index = {str(i): [f"n{i:08d}", f"made_up_{i}"] for i in range(1000)}
    (cache / demo.CLASS_INDEX_FILE).write_text(json.dumps(index))
    return cache


@pytest.mark.slow  # builds the whole keras.applications.VGG16 at 224x224, twice
def test_imagenet_path_on_a_stand_in_weights_file(stand_in, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(stand_in.parent))
    monkeypatch.setenv(demo.OFFLINE_ENV, "1")
    said = []
    net = demo.choose_network("auto", echo=said.append)
    assert said == [f"VGG16 with ImageNet weights (cached at "
                    f"{stand_in / demo.VGG16_WEIGHTS_FILE})"]
    assert net.kind == "imagenet" and net.cone_layer == "block2_conv1"
    # The photograph: scikit-image's cat, its centered square at 224x224.
    cat = skimage.data.chelsea()
    assert cat.shape == (300, 451, 3) and net.shown.shape == (224, 224, 3)
    square = cat[:, 75:375].astype(np.float64)
    coarse = np.asarray(Image.fromarray(net.shown).resize((300, 300), Image.BILINEAR), float)
    assert np.corrcoef(square.ravel(), coarse.ravel())[0, 1] > 0.97
    # preprocess_input for VGG16 ("caffe"): RGB -> BGR, minus the ImageNet BGR means.
    expected = net.shown[..., ::-1].astype(np.float64) - [103.939, 116.779, 123.68]
    np.testing.assert_allclose(net.x, expected, atol=1e-4)
    # The weights are the file's, and the top 5 are its predictions, named from the index.
    with h5py.File(stand_in / demo.VGG16_WEIGHTS_FILE, "r") as f:
        for layer in ("block1_conv1", "fc2", "predictions"):
            np.testing.assert_array_equal(net.model.get_layer(layer).kernel.numpy(),
                                          f[layer][f"{layer}/kernel:0"][()])
    p = net.model.predict(net.x[None].astype("float32"), verbose=0)[0]
    top = np.argsort(-p)[:5]
    assert p[top[0]] < 0.5 and p[top[4]] > p[np.argsort(-p)[5]]  # no saturation, no ties
    assert net.target == f"predictions:{top[0]}"
    shown = [l for l in net.lines if "made_up_" in l]
    assert [int(l.rsplit("(", 1)[1].rstrip(")")) for l in shown] == list(top)
    assert all(f"made_up_{i} " in l for i, l in zip(top, shown))
    assert f"{p[top[0]]:7.2%}" in shown[0]


def test_class_names_fall_back_to_numbers_without_the_index(keras_home):
    p = np.zeros(1000)
    p[[3, 999, 281, 5, 7]] = [0.1, 0.5, 0.2, 0.05, 0.15]
    assert demo.top_classes(p) == [(999, "class 999", 0.5), (281, "class 281", 0.2),
                                   (7, "class 7", 0.15), (3, "class 3", 0.1),
                                   (5, "class 5", 0.05)]


def test_no_cache_and_no_network_fall_back_in_one_line(keras_home, monkeypatch, digits):
    monkeypatch.delenv(demo.OFFLINE_ENV)
    # A closed port on this machine: the download's connection is refused at once.
    monkeypatch.setattr(demo, "VGG16_WEIGHTS_URL", "https://127.0.0.1:9/vgg16.h5")
    started = time.perf_counter()
    path, why = demo.find_imagenet_weights(url=demo.VGG16_WEIGHTS_URL)
    assert path is None and "127.0.0.1 cannot be reached" in why and "\n" not in why
    assert time.perf_counter() - started < demo.PROBE_TIMEOUT + 5
    said = []
    net = demo.choose_network("auto", echo=said.append)
    assert net.kind == "trained" and net.name == "digits_cnn"
    assert said[0].startswith("no ImageNet weights for VGG16 (no "
                              f"{demo.VGG16_WEIGHTS_FILE} in {keras_home}, and 127.0.0.1 "
                              "cannot be reached")
    assert said[0].endswith("using a small CNN trained here on scikit-learn's digits instead")
    assert not list(keras_home.iterdir())  # nothing half-downloaded


def run(*args):
    result = CliRunner().invoke(main, ["demo", *map(str, args)])
    return result.exit_code, result.output


@pytest.mark.neo4j  # the demo connects before it reads anything
@pytest.mark.parametrize("what, args, message", [
    ("forced imagenet, none cached", ["--weights", "imagenet", "--offline"],
     "--weights imagenet: no vgg16_weights_tf_dim_ordering_tf_kernels.h5 in "),
    ("unreadable image", ["--weights", "trained", "--image", "junk.png"],
     "is not a readable image"),
    ("a shape the digits CNN cannot take", ["--weights", "trained", "--image", "big.npy"],
     "the model wants shape (8, 8, 1)"),
    ("a shape VGG16 cannot take", ["--weights", "none", "--image", "big.npy"],
     "the model wants shape (32, 32, 3)"),
    ("missing image", ["--weights", "trained", "--image", "missing.png"],
     "input file not found"),
])
def test_bad_input_is_one_line_and_writes_nothing(keras_home, tmp_path, what, args, message):
    (tmp_path / "junk.png").write_bytes(b"not an image")
    np.save(tmp_path / "big.npy", np.zeros((28, 28)))
    args = [str(tmp_path / a) if a.endswith((".png", ".npy")) else a for a in args]
    code, text = run("--out", tmp_path / "out", *args)
    lines = [l for l in text.splitlines() if l.strip()]
    assert code == 1 and lines[-1].startswith("Error: ") and message in lines[-1], text
    assert "Traceback" not in text
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- end to end
@pytest.mark.neo4j
def test_digits_demo_end_to_end(driver, model_name, digits, keras_home, tmp_path):
    name = model_name("demo")
    said = []
    result = demo.run_demo(tmp_path / "out", weights="auto", progress=False, name=name,
                           echo=said.append)
    assert said[0].startswith("no ImageNet weights for VGG16 (no ")
    net, t = result["network"], result["trace"]
    model, split = digits
    np.testing.assert_array_equal(net.x, split.x_test[0])
    assert net.target == f"logits:{int(model.predict(net.x[None], verbose=0)[0].argmax())}"
    # The trace computed from Neo4j (the target's cone) is the one computed from Keras's
    # graph, neuron by neuron.
    stored = read_trace(driver, f"{name}_input")
    cone = NeuronGraph.from_model(model, cone=net.target).plan()
    assert len(stored["id"]) == cone.selected_neurons == 2_081
    np.testing.assert_allclose(stored["value"], t.values[stored["id"]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stored["contribution"], t.contribution[stored["id"]],
                               rtol=1e-6, atol=1e-6)
    assert result["summary"].relationships == 64_960
    G = nx.read_graphml(result["graphml"])
    assert G.number_of_nodes() == 2_090 and G.number_of_edges() == 64_960
    active = nx.read_graphml(result["active"])
    assert 0 < active.number_of_edges() < 64_960
    report = result["report"].read_text()
    for picture in ("contribution.png", "chosen_positions.png", "weights.png", "degree.png",
                    "metrics.png"):
        assert f"]({picture})" in report and (result["report"].parent / picture).is_file()
    assert (tmp_path / "out" / f"{name}_input.png").is_file()
    # The held-out set: the effective graph, executed on the 360 digits, gives Keras's 360
    # predictions; what it printed is what the stored aggregated trace holds.
    held = result["held_out"]
    keras_predicted = model.predict(split.x_test, verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(held.predictions, keras_predicted)
    assert held.agree == 360 and held.trace_set.n == 360
    assert any(l.startswith("5/8 the held-out set: 360 digits") for l in said)
    stored_set = read_trace_set(driver, f"{name}_held_out")
    never = sum(v[0] for v in held.never_active.values())
    assert (stored_set["active_rate"] == 0).sum() == never > 0
    assert (stored_set["choices"]["rate"] == 0).sum() == sum(
        v[0] for v in held.never_chosen.values()) > 0
    assert (held.report.parent / "chosen_rate_positions.png").is_file()
