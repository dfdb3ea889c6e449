"""``weightgraph trace`` from files: .npy and image inputs, preprocessing, selections,
--active-only, and one-line errors."""

from __future__ import annotations

import json

import keras
import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers
from PIL import Image

from keras_oracle import layer_outputs
from oracle import randomise_weights
from pictures import assert_picture
from loader.cli import main


def run(*args):
    result = CliRunner().invoke(main, ["trace", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("trace_cli")
    inp = keras.Input((12, 10, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = layers.MaxPooling2D(2, name="pool")(x)
    out = layers.Dense(3, name="out")(layers.Flatten()(x))
    model = randomise_weights(keras.Model(inp, out))
    model.save(d / "small.keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 10, 3))
    np.save(d / "x.npy", x)
    np.save(d / "x_batch.npy", x[None].astype("float32"))
    np.save(d / "wrong.npy", rng.normal(size=(10, 12, 3)))
    np.save(d / "text.npy", np.array(["a", "b"]))
    (d / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    (d / "junk.png").write_bytes(b"not an image")
    Image.fromarray(rng.integers(0, 255, size=(40, 30, 3), dtype=np.uint8)).save(d / "img.png")
    return d, model, x


def test_npy_input_with_or_without_the_batch_axis(files):
    d, model, x = files
    out = d / "t.graphml"
    code, text = run(d / "small.keras", "--input", d / "x.npy", "--target", "out:1", "-o", out)
    assert code == 0, text
    assert "target out:1 = " in text and f"wrote {out}" in text
    G = nx.read_graphml(out, node_type=int)
    want = layer_outputs(model, x[None].astype("float32"))["out"][0, 1]
    (target,) = [n for n, a in G.nodes(data=True) if a["layer"] == "out" and a["index"] == 1]
    assert G.nodes[target]["value"] == pytest.approx(float(want), rel=1e-5)
    # the default selection with a target is its cone: only out:1 of the output layer
    assert [a["index"] for _, a in G.nodes(data=True) if a["layer"] == "out"] == [1]
    assert json.loads(G.graph["trace"])["target"] == "out:1"
    code2, text2 = run(d / "small.keras", "--input", d / "x_batch.npy", "--target", "out:1")
    assert code2 == 0 and text2.splitlines()[-1] == text.splitlines()[-2]


def test_active_only_and_layer_range(files):
    d, _, _ = files
    out = d / "a.graphml.gz"
    code, text = run(d / "small.keras", "--input", d / "x.npy", "--layers", "conv:pool",
                     "--active-only", "-o", out)
    assert code == 0, text
    G = nx.read_graphml(out, node_type=int)
    assert all(a["active"] for _, a in G.nodes(data=True))
    assert all(e["chosen"] for u, v, e in G.edges(data=True) if G.nodes[v]["op"] == "max")
    assert all(G.in_degree(v) <= 1 for v, a in G.nodes(data=True) if a["op"] == "max")
    assert "contribution" not in next(iter(G.nodes(data=True)))[1]


@pytest.mark.slow  # builds a whole keras.applications model
def test_image_input_is_resized_and_preprocessed_like_keras(files, tmp_path):
    d, _, _ = files
    out = tmp_path / "img.graphml"
    code, text = run("vgg16", "--weights", "none", "--input-shape", "32,32,3", "--input",
                     d / "img.png", "--cone", "block1_conv1:0", "-o", out)
    assert code == 0, text
    assert "preprocess auto (vgg16)" in text
    img = keras.utils.img_to_array(keras.utils.load_img(d / "img.png", target_size=(32, 32),
                                                        interpolation="bilinear"))
    want = keras.applications.vgg16.preprocess_input(img[None].copy())[0].reshape(-1)
    G = nx.read_graphml(out, node_type=int)
    inputs = {a["index"]: a["value"] for _, a in G.nodes(data=True) if a["op"] == "input"}
    assert inputs and all(v == pytest.approx(float(want[i]), abs=1e-4)
                          for i, v in inputs.items())
    code, text = run("vgg16", "--weights", "none", "--input-shape", "32,32,3", "--input",
                     d / "img.png", "--preprocess", "none", "--cone", "block1_conv1:0", "-o", out)
    assert code == 0 and "preprocess none" in text
    G = nx.read_graphml(out, node_type=int)
    raw = img.reshape(-1)
    assert all(a["value"] == pytest.approx(float(raw[a["index"]]))
               for _, a in G.nodes(data=True) if a["op"] == "input")


@pytest.mark.parametrize("name, args, message", [
    ("wrong shape", ["--input", "wrong.npy"], "wants shape (12, 10, 3)"),
    ("text", ["--input", "text.npy"], "not a numeric array"),
    ("broken", ["--input", "broken.npy"], "not a readable .npy array"),
    ("missing", ["--input", "missing.npy"], "input file not found"),
    ("junk image", ["--input", "junk.png"], "not a readable image"),
    ("suffix", ["--input", "small.keras"], "want a .npy array or an image"),
    ("target", ["--input", "x.npy", "--target", "out:9"], "index 9 is out of range"),
    ("layer", ["--input", "x.npy", "--target", "nope:1"], "no layer named 'nope'"),
    ("output", ["--input", "x.npy", "-o", "x.txt"], "must end in .graphml"),
])
def test_errors_are_one_line(files, name, args, message):
    d, _, _ = files
    args = [str(d / a) if a.endswith((".npy", ".png", ".keras")) else a for a in args]
    code, text = run(d / "small.keras", *args)
    assert code != 0, text
    lines = [l for l in text.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], text


def test_model_or_loaded_model(files):
    code, text = run("--input", "x.npy")
    assert code != 0 and "either MODEL" in text


def test_analyze_with_a_trace(files, tmp_path):
    d, _, _ = files
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["analyze", str(d / "small.keras"), "--neuron", "out:1",
                                       "--trace", str(d / "x.npy"), "--metrics", "", "-o",
                                       str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "## Trace: x.npy -> out:1 = " in text
    for png in ("contribution.png", "active_fraction.png", "chosen_positions.png"):
        assert_picture(out / png)  # the data drawn: 17-40% of the pixels coloured
        assert f"]({png})" in text
    assert "| pool |" in text  # the active-fraction table has the pooling layer


def test_window_positions_count_where_the_chosen_entries_sit(files):
    """Trace.window_positions against the geometry of a 2x2 stride-2 pooling, by hand."""
    from loader.graph.neuron_graph import NeuronGraph
    from loader.graph.trace import trace

    d, model, x = files
    g = NeuronGraph.from_model(model)
    t = trace(g, x)
    conv = t.layer("conv")  # (12, 10, 4)
    pool = t.layer("pool")  # (6, 5, 4)
    want, ties = np.zeros((2, 2), int), 0
    for r in range(6):
        for c in range(5):
            for ch in range(4):
                window = conv[2 * r:2 * r + 2, 2 * c:2 * c + 2, ch]
                if (window == pool[r, c, ch]).sum() > 1:
                    ties += 1
                    continue
                want[np.unravel_index(np.argmax(window), (2, 2))] += 1
    assert np.array_equal(t.window_positions("pool"), want)
    assert t.tied_neurons("pool") == ties and ties > 0  # dead ReLU windows are all zeros
