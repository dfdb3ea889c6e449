"""The online loader against the real Neo4j server: exact graphs, resume, faults, bad input."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers

from loader.cli import main
from loader.graph.forward import execute_arrays
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.load import LoadError, load
from loader.neo4j.models import model_exists, verify
from neo4j_helpers import layer_sums, read_back
from oracle import assert_matches_keras, randomise_weights
from shared_models import shared_model

REPO = Path(__file__).resolve().parent.parent


@shared_model
def residual_model(size=8, channels=4):
    """Pooling with same padding, a residual Add and a dense top."""
    inp = keras.Input((size, size + 1, 2))
    x = layers.Conv2D(channels, 3, padding="same", activation="relu", name="conv")(inp)
    s = layers.Conv2D(channels, 1, name="shortcut")(inp)
    x = layers.Add(name="add")([x, s])
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="max_pooling2d")(x)
    x = layers.AveragePooling2D(2, padding="same", name="average_pooling2d")(x)
    out = layers.Dense(3, activation="softmax", name="dense")(layers.Flatten(name="flatten")(x))
    return randomise_weights(keras.Model(inp, out))


@shared_model
def medium_model(channels=16, filters=32):
    inp = keras.Input((16, 16, 4))
    x = layers.Conv2D(filters, 3, padding="same", activation="relu")(inp)
    x = layers.Conv2D(channels, 3, padding="same")(x)
    out = layers.MaxPooling2D(2)(x)
    return randomise_weights(keras.Model(inp, out))


def medium_model_file(tmp_path, channels=16, filters=32):
    """1,358,336 edges (271,872 with channels=4, filters=16), saved, so that separate
    processes see the same weights."""
    path = tmp_path / "medium.keras"
    medium_model(channels, filters).save(path)
    return path


def assert_exact(driver, name, graph):
    v = verify(name, driver=driver)
    assert v.ok, "\n".join(v.lines())
    sums = layer_sums(driver, name)
    assert sum(n for n, _, _ in sums.values()) == graph.n_nodes
    assert sum(e for _, e, _ in sums.values()) == graph.n_edges
    assert driver.execute_query("MATCH (b:LoadBatch {model: $m}) WITH b.key AS k, count(*) AS c "
                                "WHERE c > 1 RETURN count(*) AS dup", m=name
                                ).records[0]["dup"] == 0  # no batch recorded twice


def test_loaded_graph_read_back_with_cypher_executes_to_keras(driver, model_name):
    model = residual_model()
    g = NeuronGraph.from_model(model)
    name = model_name("res")
    summary = load(g, name, driver=driver, batch_size=500)
    assert summary.relationships == g.n_edges
    assert_exact(driver, name, g)
    layer_list, nodes, edges = read_back(driver, name)
    x = np.random.default_rng(5).normal(size=(3,) + g.entries[0].output.shape).astype("float32")
    ours = execute_arrays(layer_list, nodes, edges, x)
    assert_matches_keras(ours, model, x, shape_only_included=False)  # per layer, and model(x)
    assert set(ours) >= {"add", "max_pooling2d", "average_pooling2d", "dense"}


def test_existing_name_is_refused_then_replaced(driver, model_name):
    g = NeuronGraph.from_model(residual_model())
    name = model_name("rep")
    load(g, name, driver=driver)
    with pytest.raises(LoadError, match="already in Neo4j"):
        load(g, name, driver=driver)
    g2 = NeuronGraph.from_model(residual_model(size=6, channels=3))
    load(g2, name, driver=driver, replace=True, batch_size=300)
    assert_exact(driver, name, g2)


def test_resume_of_complete_or_missing_model(driver, model_name):
    g = NeuronGraph.from_model(residual_model())
    name = model_name("res")
    with pytest.raises(LoadError, match="nothing to resume"):
        load(g, name, driver=driver, resume=True)
    load(g, name, driver=driver)
    assert load(g, name, driver=driver, resume=True).extra["note"] == "already complete"


def _wait_for_batches(driver, name, at_least, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = driver.execute_query(
            "MATCH (b:LoadBatch {model: $m}) WHERE b.key STARTS WITH 'e:' RETURN count(b) AS c",
            m=name).records[0]["c"]
        if n >= at_least:
            return n
        time.sleep(0.2)
    raise AssertionError(f"the load wrote fewer than {at_least} batches in {timeout} s")


def test_sigkilled_load_resumes_to_exact_counts(driver, model_name, tmp_path):
    # 68 batches of 4,000: the kill after the 15th, polled from outside, lands with dozens
    # (seconds) still to go, and the resume writes only those.
    path = medium_model_file(tmp_path, channels=4, filters=16)
    name = model_name("kill")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loader.cli", "load", str(path), "--name", name,
         "--batch-size", "4000", "--workers", "2", "--quiet"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for_batches(driver, name, 15)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    g = NeuronGraph.from_model(str(path))
    assert model_exists(driver, name)["state"] == "loading"
    assert not verify(name, driver=driver).ok
    summary = load(g, name, driver=driver, resume=True)
    assert summary.skipped_batches >= 15
    assert_exact(driver, name, g)


def test_resume_with_different_weights_is_refused(driver, model_name, tmp_path):
    path = medium_model_file(tmp_path, channels=4)
    name = model_name("diff")
    g = NeuronGraph.from_model(str(path))
    driver.execute_query("CREATE (m:Model {name: $n, state: 'loading', batch_size: 1000, "
                         "selection: 'all', edges: $e, checksums: '{}'})", n=name, e=g.n_edges)
    with pytest.raises(LoadError, match="weights differ"):
        load(g, name, driver=driver, resume=True)


def test_server_restart_during_load_completes_or_resumes(driver, model_name, tmp_path,
                                                        server_control):
    path = medium_model_file(tmp_path)
    g = NeuronGraph.from_model(str(path))
    name = model_name("restart")
    outcome = {}

    def run():
        try:
            outcome["summary"] = load(g, name, batch_size=4000, workers=2)
        except Exception as exc:  # recorded: the test accepts a clean error, then resumes
            outcome["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    _wait_for_batches(driver, name, 10)
    server_control.stop()
    time.sleep(1)
    server_control.start()
    t.join(timeout=600)
    assert not t.is_alive()
    if "error" in outcome:
        err = outcome["error"]
        assert "\n" not in str(err) and str(err)
        load(g, name, driver=driver, resume=True)
    assert_exact(driver, name, g)


def test_two_models_loaded_at_once_are_both_exact(driver, model_name):
    graphs = [NeuronGraph.from_model(residual_model(size=s, channels=c))
              for s, c in ((10, 6), (9, 5))]
    names = [model_name("twin"), model_name("twin")]
    errors = []

    def run(g, n):
        try:
            load(g, n, driver=driver, batch_size=700)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(g, n)) for g, n in zip(graphs, names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for g, n in zip(graphs, names):
        assert_exact(driver, n, g)


# ------------------------------------------------------------------------- bad input (CLI)
def _cli(args, env=None):
    result = CliRunner().invoke(main, args, env=env)
    lines = [l for l in result.output.strip().splitlines() if l.strip()]
    return result.exit_code, lines


def _no_model(driver, name):
    return model_exists(driver, name) is None


@pytest.mark.parametrize("case", ["missing", "corrupt", "unsupported", "odd_name"])
def test_bad_input_gives_one_line_error_and_writes_nothing(case, driver, tmp_path):
    name = f"bad_{case}"
    if case == "missing":
        args = ["load", str(tmp_path / "nope.keras"), "--name", name]
    elif case == "corrupt":
        bad = tmp_path / "bad.keras"
        bad.write_bytes(b"PK\x03\x04 this is not a model")
        args = ["load", str(bad), "--name", name]
    elif case == "unsupported":
        inp = keras.Input((4, 4, 2))
        m = keras.Model(inp, layers.LayerNormalization()(layers.Conv2D(2, 1)(inp)))
        path = tmp_path / "ln.keras"
        m.save(path)
        args = ["load", str(path), "--name", name]
    else:
        name = "bad name; MATCH (n) DETACH DELETE n"
        path = medium_model_file(tmp_path, channels=2)
        args = ["load", str(path), "--name", name]
    code, lines = _cli(args)
    assert code != 0
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    if case == "unsupported":
        assert "layer_normalization" in lines[0] and "LayerNormalization" in lines[0]
    assert driver.execute_query("MATCH (m:Model) WHERE m.name STARTS WITH 'bad' "
                                "RETURN count(m) AS c").records[0]["c"] == 0


@pytest.mark.parametrize("env", [{"NEO4J_URI": "bolt://127.0.0.1:7999"},
                                 {"NEO4J_PASSWORD": "definitely-wrong"}])
def test_unreachable_server_or_wrong_password_is_one_line(env, tmp_path):
    path = medium_model_file(tmp_path, channels=2)
    code, lines = _cli(["load", str(path), "--name", "never"], env=env)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert ("cannot reach" in lines[0]) or ("wrong password" in lines[0])


def test_verify_cli_exit_codes(driver, model_name):
    g = NeuronGraph.from_model(residual_model())
    name = model_name("ver")
    load(g, name, driver=driver)
    code, lines = _cli(["verify", "--name", name])
    assert code == 0 and "matches" in lines[-1]
    driver.execute_query("MATCH (:Neuron {model: $m})-[r:W]->() WITH r LIMIT 1 "
                         "SET r.weight = r.weight + 1.0", m=name)
    code, lines = _cli(["verify", "--name", name])
    assert code == 1 and lines[-1].startswith("Error:")
