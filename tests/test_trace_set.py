"""Aggregated traces over a set of inputs (loader.graph.trace_set) against TensorFlow.

The oracle is :mod:`tf_aggregate` (Keras and TensorFlow only, nothing from ``loader``), on a
float64 copy of each model: mean values = the mean of Keras's layer outputs over the set;
active rates = the fraction of positive pre-activations of the ReLU layers; chosen rates =
``tf.nn.max_pool_with_argmax``'s frequencies per window entry; mean contributions = the mean
of value x ``tf.GradientTape``'s gradient of each input's target (its own predicted class, or
a fixed neuron). Then the effective graph executed on every input of the set, the outputs
(GraphML, Parquet, NetworkX) against the Python API, the input sets, and the one-line errors.
"""

from __future__ import annotations

import json

import keras
import networkx as nx
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from keras import layers

from keras_oracle import keras_outputs, layer_calls
from oracle import randomise_weights
from test_forward_equivalence import (CONV_CASES, ELEMENTWISE_CASES, POOL_CASES, SHAPE_CASES,
                                      seq)
from tf_aggregate import (argmax_rates, float64_model, mean_contributions, mean_outputs,
                          relu_active_rates)
from loader.cli import main
from loader.demo import trained_digits
from loader.graph.forward import execute_arrays, execute_networkx
from loader.graph.neuron_graph import NeuronGraph
from loader.graph.trace import trace
from loader.graph.trace_set import trace_set
from loader.input_sets import read_input_set
from loader.sinks.networkx import to_networkx

TOLERANCE = 1e-7  # float64 on both sides (Keras keeps a few float32 constants: GELU, ...)


def _close(got, want, what, tol=TOLERANCE):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(got - want).max()) / scale
    assert err <= tol, f"{what}: relative error {err:.3g} (largest |.| {scale:.3g})"


@pytest.fixture(scope="module")
def digits():
    """The demo's digits CNN, its graph, the 360 held-out digits and their aggregated trace
    (contributions to each digit's predicted class, batches of 100: four, the last short)."""
    model, split = trained_digits(0)
    g = NeuronGraph.from_model(model)
    x = split.x_test.astype(np.float64)
    ts = trace_set(g, x, target="predicted", batch_size=100)
    return model, g, x, ts


# ---------------------------------------------------------------------------- the digits CNN
def test_digits_means_and_active_rates_match_tensorflow(digits):
    model, g, x, ts = digits
    m64 = float64_model(model)
    assert ts.n == 360
    for name, want in mean_outputs(m64, x).items():
        _close(ts.layer(name, "mean_value"), want, f"mean value of {name}")
    rates = relu_active_rates(m64, x)
    assert sorted(rates) == ["conv1", "conv2", "fc"]
    for name, want in rates.items():
        # Counts of inputs: equal exactly (a pre-activation at exactly 0 is the bias of a
        # blank patch, the same float64 number on both sides).
        np.testing.assert_array_equal(np.round(ts.layer(name, "active_rate") * 360),
                                      np.round(want * 360), err_msg=name)
    assert (ts.layer("fc", "active_rate") == 0).sum() == 16  # the demo prints these
    np.testing.assert_array_equal(ts.predicted,
                                  np.asarray(keras_outputs(m64, x)[0]).argmax(axis=1))


def test_digits_chosen_rates_match_max_pool_with_argmax(digits):
    model, _, x, ts = digits
    m64 = float64_model(model)
    for pool in ("pool1", "pool2"):
        want, _ = argmax_rates(m64, x, pool)
        np.testing.assert_array_equal(np.round(ts.choice_table(pool) * 360),
                                      np.round(want * 360), err_msg=pool)
        _, dst, rate = ts.chosen_rates(pool)
        sums = np.bincount(dst - g_offset(ts, pool), weights=rate)
        np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-12)  # rates into a neuron: 1
        _close(ts.window_rates(pool).reshape(-1), want.mean(axis=0), f"{pool} window shares")


def g_offset(ts, name):
    return ts.graph.entry(name).op.offset


@pytest.mark.parametrize("target", ["predicted", "logits:3", "fc:5"])
def test_digits_mean_contributions_match_gradient_tape(digits, target):
    model, g, x, ts = digits
    if target != "predicted":
        ts = trace_set(g, x, target=target, batch_size=128)
    m64 = float64_model(model)
    layer, _, index = target.partition(":")
    want, picked = mean_contributions(m64, x, "predicted" if target == "predicted"
                                      else (layer, int(index)))
    for name, c in want.items():
        _close(ts.layer(name, "mean_contribution"), c, f"mean contribution of {name}")
    # mean |value x gradient| from the same tape: one input at a time
    if target == "predicted":
        for j in (0, 17, 359):
            one, _ = mean_contributions(m64, x[j:j + 1], ("logits", int(picked[j])))
            t = trace(g, x[j], target=f"logits:{int(picked[j])}")
            _close(t.layer("conv2", "contribution"), one["conv2"], f"input {j}")
        total = np.zeros(g.total_neurons)
        for j in range(len(x)):
            total += np.abs(trace(g, x[j], target=f"logits:{int(picked[j])}").contribution)
        _close(ts.mean_abs_contribution, total / len(x), "mean |contribution|")


def test_batch_size_workers_and_the_edge_pass_change_nothing(digits):
    _, g, x, ts = digits
    other = trace_set(g, x[:45], target="predicted", batch_size=7, workers=1)
    threads = trace_set(g, x[:45], target="predicted", batch_size=11, workers=3)
    edges = trace_set(g, x[:45], target="predicted", batch_size=45, method="edges")
    blocks = trace_set(g, x[:45], target="predicted", batch_size=45)
    np.testing.assert_array_equal(threads.predicted, blocks.predicted)
    for a in (other, threads, edges):
        for what in ("mean_value", "mean_contribution", "mean_abs_contribution"):
            _close(a.array(what), blocks.array(what), what, 1e-12)
        np.testing.assert_array_equal(a.active_rate, blocks.active_rate)
        for i in blocks.choices:
            np.testing.assert_array_equal(a.choices[i].counts, blocks.choices[i].counts)


# ---------------------------------------------------------------------------- layer kinds
def _cases():
    cases = {}
    for name, (shape, make) in CONV_CASES.items():
        cases[f"conv:{name}"] = lambda shape=shape, make=make: seq(shape, make())
    for name, (shape, make) in POOL_CASES.items():
        front = (layers.Conv2D if len(shape) == 3 else layers.Conv1D if len(shape) == 2
                 else layers.Conv3D)
        cases[f"pool:{name}"] = lambda shape=shape, make=make, front=front: seq(
            shape, front(shape[-1], 1), make())
    for name, (shape, make) in ELEMENTWISE_CASES.items():
        cases[f"elementwise:{name}"] = lambda shape=shape, make=make: seq(shape, make())
    for name, (shape, *makes) in SHAPE_CASES.items():
        cases[f"shape:{name}"] = lambda shape=shape, makes=makes: seq(shape,
                                                                      *(m() for m in makes))
    return cases


CASES = _cases()


def _merge_model(merge: str):
    inp = keras.Input((5, 4, 3))
    a = layers.Conv2D(3, 3, padding="same", activation="relu")(inp)
    b = layers.Conv2D(3, 1)(inp)
    out = layers.Conv2D(2, 1)(getattr(layers, merge)()([a, b]))
    return randomise_weights(keras.Model(inp, out))


for _merge in ("Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply"):
    CASES[f"merge:{_merge}"] = lambda merge=_merge: _merge_model(merge)


def check_against_tensorflow(model, x, *, target="predicted", batch_size=4):
    """Means and mean contributions == TensorFlow's (float64), per layer; active rates and
    choices == the single-input traces' (tests/test_trace.py checks those against
    TensorFlow's gradients, ties included); MaxPooling2D choices == max_pool_with_argmax."""
    g = NeuronGraph.from_model(model)
    ts = trace_set(g, x, target=target, batch_size=batch_size)
    m64, tol = float64_model(model), TOLERANCE
    classes = {c.name: c.class_name for c in layer_calls(model)}
    try:
        means = mean_outputs(m64, x)
        same = np.allclose(means[layer_calls(model)[-1].name],
                           mean_outputs(model, x)[layer_calls(model)[-1].name], rtol=1e-4,
                           atol=1e-4 * float(np.abs(means[layer_calls(model)[-1].name]).max()))
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        same = False  # no float64 CPU kernel (dilated transposed convolution, AvgPool3D)
    if not same:
        # A float64 copy TensorFlow cannot run, or that a layer's config does not rebuild
        # (Normalization keeps its statistics outside get_weights): judge against the float32
        # model at tests/test_trace.py's tolerance.
        m64, tol = model, 1e-4
        means = mean_outputs(m64, x)
    for name, want in means.items():
        _close(ts.layer(name, "mean_value"), want, f"mean value of {name}", tol)
    if target == "predicted":
        want, picked = mean_contributions(m64, x, "predicted")
        targets = [f"{ts.predicted_layer}:{int(p)}" for p in picked]
    else:
        layer, _, index = target.partition(":")
        want, _ = mean_contributions(m64, x, (layer, int(index)))
        targets = [target] * len(x)
    for name, c in want.items():
        _close(ts.layer(name, "mean_contribution"), c, f"mean contribution of {name}", tol)
    singles = [trace(g, xi, target=t) for xi, t in zip(x, targets)]
    np.testing.assert_array_equal(np.round(ts.active_rate * len(x)),
                                  sum(t.active.astype(int) for t in singles))
    for i, c in ts.choices.items():
        op = g.entries[i].op
        counts = np.zeros(len(c.key), np.int64)
        for t in singles:
            ch = t.chosen[i]
            ok = ch >= 0
            counts[c.find(np.flatnonzero(ok), ch[ok])] += 1
        np.testing.assert_array_equal(c.counts, counts, err_msg=g.entries[i].name)
        np.testing.assert_array_equal(c.none, sum((t.chosen[i] < 0).astype(int)
                                                  for t in singles))
        if classes.get(g.entries[i].name) == "MaxPooling2D":
            # TensorFlow's argmax, entry by entry; where it lands on explicit padding (a
            # ZeroPadding before the pool: no edge here), that is the neuron's padding_rate.
            name = g.entries[i].name
            rates, _ = argmax_rates(m64, x, name)
            neuron, position, ours = ts.choice_entries(name)
            np.testing.assert_array_equal(np.round(ours * len(x)),
                                          np.round(rates[neuron, position] * len(x)))
            has_edge = np.zeros(rates.shape, bool)
            has_edge[neuron, position] = True
            np.testing.assert_allclose(np.where(has_edge, 0.0, rates).sum(axis=1),
                                       c.none / len(x), atol=1e-12)
        assert op.n_neurons == c.n
    return g, ts


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_layer_kind_matches_tensorflow(case):
    model = CASES[case]()
    shape = tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(1).normal(size=(6,) + shape)
    check_against_tensorflow(model, x)


def test_fixed_target_and_softmax():
    inp = keras.Input((6, 6, 3))
    h = layers.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    h = layers.BatchNormalization()(h)
    h = layers.Activation("relu")(h)
    h = layers.Add()([h, layers.Conv2D(4, 1)(inp)])
    h = layers.MaxPooling2D(2, padding="same")(h)
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(h))
    model = randomise_weights(keras.Model(inp, out))
    x = np.random.default_rng(0).normal(scale=0.05, size=(9, 6, 6, 3))
    check_against_tensorflow(model, x, target=f"{model.layers[-1].name}:1")
    check_against_tensorflow(model, x)


# ---------------------------------------------------------------------------- padding, effective
def padded_model():
    """ZeroPadding before max pooling (padding zeros win where the window's entries are all
    negative: no edge is chosen there); a ReLU6 whose channel 0 sits at its cap (never active,
    never 0) and whose channel 1 never fires but is read by a Multiply; a ReLU whose channel 1
    never fires and feeds only sums."""
    inp = keras.Input((6, 6, 2))
    a = layers.Conv2D(3, 3, padding="same", name="a")(inp)
    p = layers.MaxPooling2D(3, strides=2, name="pool")(layers.ZeroPadding2D(1, name="pad")(a))
    b = layers.Conv2D(4, 1, name="b")(p)
    capped = layers.ReLU(6.0, name="capped")(b)
    gate = layers.Conv2D(4, 1, activation="sigmoid", name="gate")(p)
    m = layers.Multiply(name="mul")([capped, gate])
    r = layers.Conv2D(4, 1, activation="relu", name="r")(p)
    both = layers.Concatenate(name="both")([m, r])
    out = layers.Dense(5, name="out")(layers.Flatten()(both))
    model = randomise_weights(keras.Model(inp, out))
    for name in ("b", "r"):
        k, bias = model.get_layer(name).get_weights()
        if name == "b":
            bias[0] = 50.0  # channel 0 sits at the cap on every input
        bias[1] = -50.0  # channel 1 never fires
        model.get_layer(name).set_weights([k, bias])
    return model


def test_padding_zeros_take_the_rest_of_the_rates():
    model = padded_model()
    x = np.random.default_rng(3).normal(size=(20, 6, 6, 2))
    g, ts = check_against_tensorflow(model, x, batch_size=6)
    pad = ts.array("padding_rate")[g.entry("pool").op.offset:][:g.entry("pool").op.n_neurons]
    assert pad.max() > 0  # some window's maximum was a padding zero
    _, dst, rate = ts.chosen_rates("pool")
    sums = np.bincount(dst - g.entry("pool").op.offset, weights=rate,
                       minlength=g.entry("pool").op.n_neurons)
    np.testing.assert_allclose(sums + pad, 1.0, atol=1e-12)
    # TensorFlow's argmax over the padded tensor lands on a padding zero exactly as often
    m64 = float64_model(model)
    rates, _ = argmax_rates(m64, x, "pool")
    neuron, position, ours = ts.choice_entries("pool")
    np.testing.assert_array_equal(np.round(ours * 20), np.round(rates[neuron, position] * 20))
    has_edge = np.zeros(rates.shape, bool)
    has_edge[neuron, position] = True
    np.testing.assert_allclose(np.where(has_edge, 0, rates).sum(axis=1), pad, atol=1e-12)
    capped = ts.layer("capped", "active_rate")[..., 0]
    assert (capped == 0).all() and (ts.layer("capped", "nonzero_rate")[..., 0] == 1).all()


def _effective_outputs(ts, x, via):
    G = to_networkx(ts.subgraph(effective=True, min_rate=0.0))
    if via == "networkx":
        return G, execute_networkx(G, x)
    nodes = {k: [G.nodes[n][k] if k != "id" else n for n in G.nodes]
             for k in ("id", "layer_index", "index", "bias", "activation")}
    src, dst, w = zip(*((u, v, d["weight"]) for u, v, d in G.edges(data=True)))
    return G, execute_arrays(json.loads(G.graph["layers"]), nodes,
                             {"src": src, "dst": dst, "weight": w}, x)


@pytest.mark.parametrize("via", ["networkx", "arrays"])
def test_effective_graph_executes_to_the_model_on_every_input(digits, via):
    model, g, x, ts = digits
    G, out = _effective_outputs(ts, x, via)
    assert G.number_of_edges() < g.n_edges and G.number_of_nodes() < g.total_neurons
    want = np.asarray(keras_outputs(float64_model(model), x)[0])
    _close(out["logits"], want, "logits of the effective graph")
    np.testing.assert_array_equal(out["logits"].argmax(axis=1), want.argmax(axis=1))
    # what it dropped: never-active, always-0 neurons; the never-chosen pooling edges
    dropped = set(range(g.total_neurons)) - set(G.nodes)
    assert all(ts.active_rate[n] == 0 and ts.nonzero_rate[n] == 0 for n in dropped)
    assert not any(d.get("chosen_rate", 1) == 0 for _, _, d in G.edges(data=True))
    # a higher rate keeps fewer pooling edges
    higher = ts.subgraph(effective=True, min_rate=0.05)
    assert higher.n_edges < G.number_of_edges()


def test_effective_graph_keeps_the_zeros_a_maximum_takes_and_constants():
    model = padded_model()
    x = np.random.default_rng(4).normal(size=(25, 6, 6, 2))
    ts = trace_set(NeuronGraph.from_model(model), x, target="predicted", batch_size=10)
    G, out = _effective_outputs(ts, x, "networkx")
    want = np.asarray(keras_outputs(float64_model(model), x)[0])
    _close(out["out"], want, "outputs of the effective graph")
    g = ts.graph
    capped, r = g.entry("capped").op, g.entry("r").op
    positions = range(capped.n_neurons // 4)
    assert (ts.layer("capped", "active_rate")[..., :2] == 0).all()
    assert (ts.layer("r", "active_rate")[..., 1] == 0).all()
    # the ReLU6's channel 0 is never active but 6 everywhere: kept (a constant); its channel
    # 1 is 0 everywhere but a product reads it (x * 0 is 0): kept; the ReLU's channel 1 is 0
    # everywhere and only summed: dropped
    assert all(capped.offset + 4 * k in G and capped.offset + 4 * k + 1 in G
               for k in positions)
    assert not any(r.offset + 4 * k + 1 in G for k in positions)
    assert all(r.offset + 4 * k + 2 in G for k in positions
               if ts.active_rate[r.offset + 4 * k + 2] > 0)


# ---------------------------------------------------------------------------- outputs
def test_graphml_parquet_and_the_api_give_the_same_numbers(digits, tmp_path):
    from loader.analysis.dataset import open_duckdb
    from loader.sinks.graphml import write_graphml
    from loader.sinks.parquet import write_parquet

    _, g, x, ts = digits
    write_graphml(ts.subgraph(), tmp_path / "set.graphml.gz", progress=False)
    write_parquet(ts.subgraph(), tmp_path / "set.parquet", progress=False)
    G = nx.read_graphml(tmp_path / "set.graphml.gz", node_type=int)
    meta = json.loads(G.graph["trace"])
    assert meta["aggregate"] and meta["n"] == 360 and meta["target"] == "predicted"
    assert sum(meta["predicted_counts"]) == 360
    ids = np.array(sorted(G.nodes))
    for what in ("mean_value", "active_rate", "nonzero_rate", "mean_contribution",
                 "mean_abs_contribution"):
        got = np.array([G.nodes[n][what] for n in ids])
        np.testing.assert_array_equal(got, ts.array(what)[ids], err_msg=what)
    con = open_duckdb(tmp_path / "set.parquet")
    nodes = con.execute("SELECT id, mean_value, active_rate, mean_contribution, padding_rate "
                        "FROM nodes ORDER BY id").fetchnumpy()
    np.testing.assert_array_equal(nodes["id"], ids)
    for what in ("mean_value", "active_rate", "mean_contribution"):
        np.testing.assert_array_equal(nodes[what], ts.array(what)[ids], err_msg=what)
    padded = dict(con.execute("SELECT layer, count(padding_rate) FROM nodes WHERE "
                              "padding_rate IS NOT NULL OR layer = 'conv1' GROUP BY 1"
                              ).fetchall())
    assert padded == {"conv1": 0, "pool1": 256, "pool2": 128}  # max neurons only
    for pool in ("pool1", "pool2"):
        src, dst, rate = ts.chosen_rates(pool)
        in_graphml = np.array([G.edges[s, d]["chosen_rate"] for s, d in zip(src, dst)])
        np.testing.assert_array_equal(in_graphml, rate)
        li = g.index_of(pool)
        e = con.execute("SELECT src, dst, chosen_rate FROM edges WHERE layer_index = ? "
                        "ORDER BY dst, src", [li]).fetchnumpy()
        order = np.lexsort((src, dst))
        np.testing.assert_array_equal(e["chosen_rate"], rate[order])
    assert con.execute("SELECT count(chosen_rate) FROM edges WHERE layer_index = 2"
                       ).fetchone()[0] == 0  # only edges into max neurons carry it


# ---------------------------------------------------------------------------- input sets
def _png(path, a):
    from PIL import Image

    Image.fromarray(np.asarray(a, np.uint8)).save(path)


def test_every_kind_of_set_reads_the_same_inputs(digits, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, g, x, _ = digits
    xs = x[:23]
    np.save(tmp_path / "set.npy", xs)
    rows = xs.reshape(len(xs), -1)
    pq.write_table(pa.table({f"v{k}": rows[:, k] for k in range(64)}), tmp_path / "set.parquet",
                   row_group_size=5)
    np.savetxt(tmp_path / "set.csv", rows, delimiter=",",
               header=",".join(f"v{k}" for k in range(64)), comments="")
    np.savetxt(tmp_path / "bare.csv", rows, delimiter=",")
    folder = tmp_path / "folder"
    folder.mkdir()
    for j, a in enumerate(xs):
        np.save(folder / f"{j:03d}.npy", a)
    (folder / ".hidden").write_text("skipped")
    want = trace_set(g, xs, target="predicted", batch_size=8)
    for path in ("set.npy", "set.parquet", "set.csv", "bare.csv", "folder"):
        s = read_input_set(tmp_path / path, (8, 8, 1))
        assert s.n == 23, path
        got = trace_set(g, s, target="predicted", batch_size=8)
        np.testing.assert_array_equal(got.mean_value, want.mean_value, err_msg=path)
        np.testing.assert_array_equal(got.mean_contribution, want.mean_contribution)


def test_a_directory_of_images_is_read_like_one_image_each(digits, tmp_path):
    from loader.inputs import read_input

    _, g, x, _ = digits
    for j, a in enumerate(x[:5]):
        _png(tmp_path / f"{j}.png", a[..., 0] * 15)
    ts = trace_set(g, tmp_path, target="predicted", preprocess="none")
    each = np.stack([read_input(tmp_path / f"{j}.png", (8, 8, 1), mode="none")
                     for j in range(5)])
    np.testing.assert_array_equal(ts.mean_value, trace_set(g, each).mean_value)


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def saved(digits, tmp_path_factory):
    model, _, x, _ = digits
    d = tmp_path_factory.mktemp("cli")
    model.save(d / "digits.keras")
    np.save(d / "test.npy", x)
    return d


def _run(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_cli_aggregates_to_graphml_and_parquet(saved, digits):
    _, g, x, ts = digits
    code, out = _run(["trace", saved / "digits.keras", "--inputs", saved / "test.npy",
                      "--aggregate", "--target", "predicted", "--effective",
                      "-o", saved / "eff.graphml.gz", "--quiet"])
    assert code == 0, out
    assert "traced 360 inputs" in out and "pooling edges never chosen: 162 of 1,536" in out
    assert "neurons never active: 56 of 2,090" in out
    assert "effective graph (chosen_rate > 0): 2,046 of 2,090 neurons" in out
    G = nx.read_graphml(saved / "eff.graphml.gz", node_type=int)
    assert G.number_of_nodes() == 2_046
    assert (execute_networkx(G, x)["logits"].argmax(axis=1) == ts.predicted).all()
    code, out = _run(["trace", saved / "digits.keras", "--inputs", saved / "test.npy",
                      "--aggregate", "-o", saved / "set.parquet", "--format", "parquet",
                      "--quiet"])
    assert code == 0, out
    from loader.analysis.dataset import read_graph_json

    meta = read_graph_json(saved / "set.parquet")
    assert meta["trace"]["n"] == 360 and meta["attributes"]["edge"] == ["chosen_rate"]
    assert "mean_contribution" not in meta["attributes"]["node"]  # no target


def _one_line_error(code, out, message):
    lines = [l for l in out.splitlines() if l.strip()]
    assert code != 0 and lines and lines[-1].startswith("Error: ") and message in lines[-1], out


def test_cli_bad_sets_are_one_line_and_write_nothing(saved, tmp_path):
    model = saved / "digits.keras"
    out = tmp_path / "out.graphml"
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((5, 9, 9, 1)))
    empty = tmp_path / "empty"
    empty.mkdir()
    middle = tmp_path / "middle"
    middle.mkdir()
    for j in range(6):
        _png(middle / f"{j}.png", np.full((8, 8), 10 * j))
    (middle / "3.png").write_bytes(b"not an image at all")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for j in range(300):
        _png(truncated / f"{j:03d}.png", np.random.default_rng(j).integers(0, 255, (8, 8)))
    data = (truncated / "150.png").read_bytes()
    (truncated / "150.png").write_bytes(data[:len(data) // 2])  # header fine, data cut
    odd = tmp_path / "odd"
    odd.mkdir()
    np.save(odd / "a.npy", np.zeros((8, 8, 1)))
    np.save(odd / "b.npy", np.zeros((7, 8, 1)))
    cases = [(wrong, "this one has (5, 9, 9, 1)"), (empty, "no inputs in the directory"),
             (middle, "3.png is not a readable image"), (truncated, "150.png"),
             (odd, "b.npy: the model wants shape (8, 8, 1)"),
             (tmp_path / "missing.npy", "input set not found")]
    for path, message in cases:
        for target in (out, tmp_path / "out.parquet"):
            extra = ["--format", "parquet"] if target.suffix == ".parquet" else []
            code, text = _run(["trace", model, "--inputs", path, "--aggregate", "--target",
                               "predicted", "-o", target, "--quiet", *extra])
            _one_line_error(code, text, message)
            assert not target.exists()
            assert not any(p.name.startswith(f".{target.name}") for p in tmp_path.iterdir())


def test_cli_usage(saved):
    model, s = saved / "digits.keras", saved / "test.npy"
    code, out = _run(["trace", model, "--inputs", s])
    assert code == 2 and "add --aggregate" in out
    code, out = _run(["trace", model, "--input", s, "--inputs", s, "--aggregate"])
    assert code == 2 and "either --input" in out
    code, out = _run(["trace", model, "--inputs", s, "--aggregate", "--active-only"])
    assert code == 2 and "--effective" in out
    code, out = _run(["trace", "--help"])
    assert code == 0 and "--inputs SET --aggregate" in out and "Example:" in out
