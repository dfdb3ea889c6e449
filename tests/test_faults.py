"""Fault injection: SIGKILL the client (and the server) in the middle of every writing
operation, then check that the model's state tells the truth, that readers refuse it in one
line naming the state and the fixing command, and that the command they name ends exact.

The client runs as a real ``weightgraph`` process; ``WEIGHTGRAPH_KILL_AT`` makes it SIGKILL
itself at a named point (:mod:`loader.neo4j.faults`). The fixing command is taken from the
reader's error message and run as it is. Rows of the README's fault matrix are collected in
``FAULT_ROWS`` and written to ``$WEIGHTGRAPH_FAULT_MATRIX`` (JSON lines) when it is set.

Server kills and bulk loads stop or rebuild the database: those tests carry the
``rebuilds_database`` marker and run last (conftest.py); each leaves the server running.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers

from loader.cli import main
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.db import connect
from loader.neo4j.models import model_exists
from oracle import randomise_weights
from test_load import assert_exact

REPO = Path(__file__).resolve().parent.parent
# Each kill runs against the smallest of these models that reaches its kill point: the time
# of a fault test is mostly its loads and deletes, which grow with the edges.
BATCH = 350  # 48 edge batches for the fault model: kill points early, middle and late


def saved_model(tmp_path_factory, c1, c2, size):
    """conv 3x3 (relu), conv 3x3, max pooling on a size x size x 4 input, saved so that the
    killed process and the recovery see the same weights."""
    inp = keras.Input((size, size, 4))
    x = layers.Conv2D(c1, 3, padding="same", activation="relu", name="c1")(inp)
    x = layers.Conv2D(c2, 3, padding="same", name="c2")(x)
    out = layers.MaxPooling2D(2, name="pool")(x)
    path = tmp_path_factory.mktemp("faults") / f"fault_{c1}_{c2}_{size}.keras"
    randomise_weights(keras.Model(inp, out)).save(path)
    return path, NeuronGraph.from_model(str(path))


@pytest.fixture(scope="module")
def fault_model(tmp_path_factory):
    """16,528 edges: 48 online batches of BATCH, the edge-batch kill points (2, 20, 28) early,
    middle and late; any size serves the bulk, trace and state kill points."""
    return saved_model(tmp_path_factory, 8, 4, 6)


@pytest.fixture(scope="module")
def delete_fault_model(tmp_path_factory):
    """58,464 edges: a delete takes two chunks of 50,000 (the CLI's), so a kill after the
    first leaves relationships behind; loaded in batches of DELETE_LOAD_BATCH."""
    return saved_model(tmp_path_factory, 12, 6, 8)


@pytest.fixture(scope="module")
def server_fault_model(tmp_path_factory):
    """93,440 edges in 47 online batches of SERVER_BATCH: a load (and a delete) that lasts
    long enough (seconds) to be caught running by a server kill after its 10th batch."""
    return saved_model(tmp_path_factory, 16, 8, 8)


DELETE_LOAD_BATCH = SERVER_BATCH = 2000


def record(**row):
    line = json.dumps(row)
    print("FAULT", line)
    target = os.environ.get("WEIGHTGRAPH_FAULT_MATRIX")
    if target:
        with open(target, "a") as f:
            f.write(line + "\n")


def weightgraph(args, kill_at=None, timeout=300, tmpdir=None):
    """Run the CLI in its own process; returns (exit code, output). -9: it was SIGKILLed.
    ``tmpdir``: its TMPDIR (where a bulk load's import files go)."""
    env = dict(os.environ)
    env.pop("WEIGHTGRAPH_KILL_AT", None)
    if kill_at:
        env["WEIGHTGRAPH_KILL_AT"] = kill_at
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    p = subprocess.run([sys.executable, "-m", "loader.cli", *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).strip()


def cli(args):
    """The CLI in this process (TensorFlow is imported already): (exit code, lines)."""
    result = CliRunner().invoke(main, args)
    return result.exit_code, [l for l in result.output.strip().splitlines() if l.strip()]


def state(driver, name):
    node = model_exists(driver, name)
    return None if node is None else node.get("state")


def readers_refuse(name, want_state):
    """query and pull refuse in one line naming the state and a command; returns it."""
    fixes = set()
    for args in (["query", "model_summary", "--model", name],
                 ["pull", "--name", name, "-o", "/tmp/never.graphml"]):
        code, lines = cli(args)
        assert code == 1 and len(lines) == 1, lines
        assert f"is {want_state}" in lines[0] and "--allow-incomplete" in lines[0], lines[0]
        fixes.add(re.search(r"`([^`]+)`", lines[0]).group(1))
    assert len(fixes) == 1, fixes
    return fixes.pop()


def run_fix(fix, model_path):
    """Run the command a reader named (``weightgraph ...``) in this process."""
    args = shlex.split(fix)
    assert args[0] == "weightgraph"
    args = [str(model_path) if a == "MODEL" else a for a in args[1:]]
    code, lines = cli(args)
    assert code == 0, lines
    return lines


def rel_count(driver, name):
    return driver.execute_query("MATCH (:Neuron {model: $m})-[r:W]->() RETURN count(r) AS c",
                                m=name).records[0]["c"]


def load_args(path, name, *extra, batch=BATCH):
    return ["load", str(path), "--name", name, "--batch-size", str(batch), "--workers", "2",
            "--quiet", *extra]


# ------------------------------------------------------------------------- online load
@pytest.mark.parametrize("point", ["online.edges:2", "online.edges:28", "online.before_complete"])
def test_killed_online_load_is_loading_refused_and_resumes_exact(point, driver, model_name,
                                                                  fault_model, tmp_path):
    path, g = fault_model
    name = model_name("fl")
    code, out = weightgraph(load_args(path, name), kill_at=point)
    assert code == -signal.SIGKILL, out
    got = rel_count(driver, name)
    assert state(driver, name) == "loading"
    fix = readers_refuse(name, "loading")
    assert fix == f"weightgraph load {path} --name {name} --resume"
    if point == "online.edges:28":
        assert_allow_incomplete_reads(name, tmp_path)
    t = time.perf_counter()
    run_fix(fix, path)
    assert_exact(driver, name, g)
    record(operation="online load", point=point, state="loading", rels_at_fault=got,
           rels_planned=g.n_edges, recovery="load ... --resume",
           seconds=round(time.perf_counter() - t, 1), verify="ok", edges=g.n_edges)


# ------------------------------------------------------------------------- delete
@pytest.mark.parametrize("point", ["delete.relationships:1", "delete.relationships:2",
                                   "delete.before_model"])
def test_killed_delete_is_deleting_refused_and_finishes(point, driver, model_name,
                                                        delete_fault_model):
    path, g = delete_fault_model
    name = model_name("fd")
    assert cli(load_args(path, name, batch=DELETE_LOAD_BATCH))[0] == 0
    code, out = weightgraph(["delete", "--name", name], kill_at=point)
    assert code == -signal.SIGKILL, out
    got = rel_count(driver, name)
    assert state(driver, name) == "deleting"
    assert got < g.n_edges  # the kill came after the deletion began
    fix = readers_refuse(name, "deleting")
    assert fix == f"weightgraph delete --name {name}"
    code, lines = cli(["verify", "--name", name])
    assert code == 1
    t = time.perf_counter()
    lines = run_fix(fix, path)
    assert "finishing" in lines[0]
    assert model_exists(driver, name) is None
    assert driver.execute_query("MATCH (n:Neuron {model: $m}) RETURN count(n) AS n", m=name
                                ).records[0]["n"] == 0
    assert driver.execute_query("MATCH (b:LoadBatch {model: $m}) RETURN count(b) AS n", m=name
                                ).records[0]["n"] == 0
    record(operation="delete", point=point, state="deleting", rels_at_fault=got,
           rels_planned=g.n_edges, recovery="delete --name N",
           seconds=round(time.perf_counter() - t, 1), verify="model gone, 0 neurons left",
           edges=0)


# ------------------------------------------------------------------------- replace
@pytest.mark.parametrize("point,want", [("replace.deleted", "replacing"),
                                        ("online.edges:20", "loading")])
def test_killed_replace_is_refused_and_resume_ends_exact(point, want, driver, model_name,
                                                         fault_model, tmp_path):
    path, g = fault_model
    name = model_name("fr")
    small = tmp_path / "small.keras"
    inp = keras.Input((6, 6, 2))
    randomise_weights(keras.Model(inp, layers.Conv2D(3, 3, name="c")(inp))).save(small)
    assert cli(["load", str(small), "--name", name, "--quiet"])[0] == 0
    code, out = weightgraph(load_args(path, name, "--replace"), kill_at=point)
    assert code == -signal.SIGKILL, out
    got = rel_count(driver, name)
    assert state(driver, name) == want
    fix = readers_refuse(name, want)
    assert fix == f"weightgraph load {path} --name {name} --resume"  # the new model's command
    t = time.perf_counter()
    run_fix(fix, path)
    assert_exact(driver, name, g)
    record(operation="replace (online)", point=point, state=want, rels_at_fault=got,
           rels_planned=g.n_edges, recovery="load ... --resume",
           seconds=round(time.perf_counter() - t, 1), verify="ok", edges=g.n_edges)


def test_bad_input_on_the_state_commands_is_one_line(driver, model_name, fault_model):
    path, g = fault_model
    for args, expect in [
            (["delete", "--name", "no_such_model_x"], "no model 'no_such_model_x'"),
            (["delete", "--name", "bad name;"], "is not allowed"),
            (["query", "model_summary", "--model", "no_such_model_x"], "no model"),
            (["load", str(path), "--name", "no_such_model_x", "--resume"], "nothing to resume")]:
        code, lines = cli(args)
        assert code == 1 and len(lines) == 1 and expect in lines[0], lines
    # a resume of a model that is being deleted names the delete
    name = model_name("fs")
    driver.execute_query("CREATE (:Model {name: $n, state: 'deleting'})", n=name)
    code, lines = cli(load_args(path, name, "--resume"))
    assert code == 1 and len(lines) == 1 and f"weightgraph delete --name {name}" in lines[0]


def assert_allow_incomplete_reads(name, tmp_path):
    """--allow-incomplete reads the partial graph; analyze refuses without it."""
    code, lines = cli(["query", "model_summary", "--model", name, "--allow-incomplete",
                       "-f", "json"])
    assert code == 0, lines
    out = tmp_path / "partial.graphml"
    code, lines = cli(["pull", "--name", name, "-o", str(out), "--allow-incomplete", "--quiet"])
    assert code == 0 and out.exists(), lines
    code, lines = cli(["analyze", "--name", name, "--neuron", "pool:0", "-o",
                       str(tmp_path / "rep"), "--metrics", ""])
    assert code == 1 and len(lines) == 1 and "is loading" in lines[0], lines


# ------------------------------------------------------------------------- server kills
def kill_server_and_restart(server, wait_for, client):
    """SIGKILL the Neo4j server once ``wait_for()`` is true, then start it again."""
    deadline = time.time() + 120
    while not wait_for():
        assert client.poll() is None, f"the client ended first: {client.communicate()[0]}"
        assert time.time() < deadline, "the operation did not reach the kill point"
        time.sleep(0.05)
    server.kill()
    server.start()


def edge_batches(driver, name):
    return driver.execute_query("MATCH (b:LoadBatch {model: $m}) WHERE b.key STARTS WITH 'e:' "
                                "RETURN count(b) AS c", m=name).records[0]["c"]


@pytest.mark.rebuilds_database
def test_server_killed_during_online_load_and_delete(model_name, server_fault_model,
                                                     server_control):
    path, g = server_fault_model
    name = model_name("fk")
    probe = connect()
    try:
        client = subprocess.Popen([sys.executable, "-m", "loader.cli",
                                   *load_args(path, name, batch=SERVER_BATCH)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        kill_server_and_restart(server_control, lambda: edge_batches(probe, name) >= 10,
                                client)
        out, _ = client.communicate(timeout=300)
    finally:
        probe.close()
    driver = connect()
    try:
        got = rel_count(driver, name)
        st = state(driver, name)
        if client.returncode:  # lost the server: one line, state loading, resume finishes
            assert len(out.strip().splitlines()[-1:]) == 1 and "--resume" in out, out
            assert st == "loading"
            fix = readers_refuse(name, "loading")
            t = time.perf_counter()
            run_fix(fix, path)
        else:  # the driver's retries outlasted the restart: the load finished by itself
            assert st == "complete"
            t = time.perf_counter()
        assert_exact(driver, name, g)
        record(operation="online load", point="server SIGKILL after >= 10 batches",
               state=st, rels_at_fault=got, rels_planned=g.n_edges,
               recovery="load ... --resume" if client.returncode else "(none: retried)",
               seconds=round(time.perf_counter() - t, 1), verify="ok", edges=g.n_edges)

        client = subprocess.Popen([sys.executable, "-m", "loader.cli", "delete", "--name", name],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        kill_server_and_restart(server_control, lambda: state(driver, name) == "deleting",
                                client)
        out, _ = client.communicate(timeout=300)
    finally:
        driver.close()
    driver = connect()
    try:
        st = state(driver, name)
        got = rel_count(driver, name)
        if st is not None:
            assert st == "deleting"
            fix = readers_refuse(name, "deleting")
            t = time.perf_counter()
            run_fix(fix, path)
        else:
            t = time.perf_counter()
        assert model_exists(driver, name) is None and rel_count(driver, name) == 0
        record(operation="delete", point="server SIGKILL once deleting", state=st,
               rels_at_fault=got, rels_planned=g.n_edges,
               recovery="delete --name N" if st else "(none: retried)",
               seconds=round(time.perf_counter() - t, 1), verify="model gone", edges=0)
    finally:
        driver.close()


# ------------------------------------------------------------------------- bulk
def data_dir():
    home = os.environ.get("WEIGHTGRAPH_NEO4J_HOME") or (
        Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "weightgraph"
        / "neo4j")
    return Path(home) / "data"


@pytest.mark.rebuilds_database
def test_killed_bulk_load_keeps_or_swaps_whole_databases(fault_model, tmp_path, server_control):
    """Before the swap the previous models stay whole (served again by the next start, or
    served throughout with --keep-serving); after it the new model is complete; a swap cut in
    half is rolled back by the next start."""
    path, g = fault_model
    driver = connect()
    old_model = tmp_path / "old.keras"
    inp = keras.Input((6, 6, 2))
    randomise_weights(keras.Model(inp, layers.Conv2D(3, 3, name="c")(inp))).save(old_model)
    try:
        for name in ("wg_old_a", "wg_bulk_new"):
            if model_exists(driver, name):
                cli(["delete", "--name", name])
        assert cli(["load", str(old_model), "--name", "wg_old_a", "--quiet"])[0] == 0
        g_old = NeuronGraph.from_model(str(old_model))
        bulk = ["load", str(path), "--name", "wg_bulk_new", "--mode", "bulk", "--replace",
                "--quiet"]
        work = tmp_path / "tmp"  # the loads' temporary import files
        work.mkdir()

        # 1. killed after the import into the staging store (the server stopped for it, by
        # default): nothing of the old store changed; the next start serves it
        t = time.perf_counter()
        code, out = weightgraph(bulk, kill_at="bulk.imported", tmpdir=work)
        assert len(list(work.glob("weightgraph-bulk-*"))) == 1  # the killed load's files
        assert code == -signal.SIGKILL and "bulk mode replaces the whole database" in out, out
        assert "wg_old_a" in out and "the server is stopped" in out
        status = server_control.status()
        assert status.returncode == 3, status.stdout  # stopped for the import
        server_control.start()
        driver.close()
        driver = connect()
        assert model_exists(driver, "wg_bulk_new") is None
        assert_exact(driver, "wg_old_a", g_old)
        record(operation="bulk load", point="bulk.imported (staging store written)",
               state="server stopped; previous models complete; new model absent",
               rels_at_fault=0, rels_planned=g.n_edges, recovery="scripts/neo4j-local start",
               seconds=round(time.perf_counter() - t, 1), verify="old model ok",
               edges=g_old.n_edges)

        # 1b. the same with --keep-serving: the old models are served throughout
        t = time.perf_counter()
        code, out = weightgraph(bulk + ["--keep-serving"], kill_at="bulk.imported",
                                tmpdir=work)
        assert code == -signal.SIGKILL and "the server is stopped" not in out, out
        driver.close()
        driver = connect()
        assert model_exists(driver, "wg_bulk_new") is None
        assert_exact(driver, "wg_old_a", g_old)
        record(operation="bulk load --keep-serving", point="bulk.imported",
               state="previous models complete and served; new model absent", rels_at_fault=0,
               rels_planned=g.n_edges, recovery="(none needed)",
               seconds=round(time.perf_counter() - t, 1), verify="old model ok",
               edges=g_old.n_edges)

        # 2. a swap cut in half (first directory renamed, server stopped): start rolls back
        server_control.stop()
        dbs = data_dir() / "databases"
        assert (dbs / "wgstaging").is_dir()  # what the killed load staged
        (dbs / "neo4j").rename(dbs / "neo4j.previous")
        (dbs / "wgstaging").rename(dbs / "neo4j")
        t = time.perf_counter()
        p = server_control.start(check=False)
        assert p.returncode == 0 and "restoring the previous database" in p.stderr, p.stderr
        driver.close()
        driver = connect()
        assert_exact(driver, "wg_old_a", g_old)
        assert model_exists(driver, "wg_bulk_new") is None
        record(operation="bulk load", point="swap half done, server stopped",
               state="server down; previous store in neo4j.previous",
               rels_at_fault=0, rels_planned=g.n_edges, recovery="scripts/neo4j-local start",
               seconds=round(time.perf_counter() - t, 1), verify="old model ok",
               edges=g_old.n_edges)

        # 3. killed after the swap, server stopped: the next start serves the new model
        code, out = weightgraph(bulk, kill_at="bulk.swapped", tmpdir=work)
        assert code == -signal.SIGKILL, out
        t = time.perf_counter()
        server_control.start()
        driver.close()
        driver = connect()
        assert state(driver, "wg_bulk_new") == "complete"
        assert model_exists(driver, "wg_old_a") is None
        assert_exact(driver, "wg_bulk_new", g)
        record(operation="bulk load", point="bulk.swapped (server stopped)",
               state="new model complete", rels_at_fault=g.n_edges, rels_planned=g.n_edges,
               recovery="scripts/neo4j-local start",
               seconds=round(time.perf_counter() - t, 1), verify="ok", edges=g.n_edges)

        # 4. a full bulk load after that drops the kept previous store and ends exact
        t = time.perf_counter()
        code, out = weightgraph(bulk, tmpdir=work)
        assert code == 0, out
        assert not (dbs / "neo4j.previous").exists()
        # Each load removed the files of the killed ones before it, then its own.
        assert list(work.glob("weightgraph-bulk-*")) == []
        driver.close()
        driver = connect()
        assert_exact(driver, "wg_bulk_new", g)
        record(operation="bulk load", point="(no fault)", state="complete",
               rels_at_fault=g.n_edges, rels_planned=g.n_edges, recovery="-",
               seconds=round(time.perf_counter() - t, 1), verify="ok", edges=g.n_edges)
    finally:
        if model_exists(driver, "wg_bulk_new"):
            cli(["delete", "--name", "wg_bulk_new"])
        if model_exists(driver, "wg_old_a"):
            cli(["delete", "--name", "wg_old_a"])
        driver.close()


@pytest.mark.rebuilds_database  # it stops and starts the server: after the other tests
def test_failed_bulk_import_serves_the_old_database_again(fault_model):
    """An import that fails after the server was stopped for it starts the server again on
    the untouched old store (the failure is injected after the real stop)."""
    from loader.neo4j.load import load
    from loader.neo4j.models import delete_model
    from loader.neo4j.server import LocalServer, ServerError

    path, g = fault_model
    name = "wg_bulk_fail_old"
    driver = connect()
    if model_exists(driver, name):
        delete_model(driver, name)
    assert cli(["load", str(path), "--name", name, "--quiet"])[0] == 0

    class FailingImport(LocalServer):
        def import_full(self, *args, **kwargs):
            assert self.server.pid() is None  # stopped for the import
            raise ServerError("neo4j-admin database import failed (injected)")

    try:
        with pytest.raises(ServerError, match="injected"):
            load(g, "never", mode="bulk", replace=True, driver=driver, server=FailingImport())
        driver.close()
        driver = connect()  # the server was started again
        assert model_exists(driver, "never") is None
        assert_exact(driver, name, g)
    finally:
        delete_model(driver, name)
        driver.close()


def test_bulk_load_without_disk_space_is_refused_before_anything(driver, model_name,
                                                                  fault_model, monkeypatch,
                                                                  tmp_path):
    import shutil

    from loader.neo4j.load import BulkLoadError, load
    from loader.neo4j.server import ServerControl

    path, g = fault_model
    name = model_name("fsp")
    small = tmp_path / "small.keras"
    inp = keras.Input((6, 6, 2))
    randomise_weights(keras.Model(inp, layers.Conv2D(3, 3, name="c")(inp))).save(small)
    assert cli(["load", str(small), "--name", name, "--quiet"])[0] == 0
    g_small = NeuronGraph.from_model(str(small))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))

    class NoServer(ServerControl):  # the check comes before any server step
        def data_dir(self):
            return None

    with pytest.raises(BulkLoadError, match="not enough disk space.*nothing was changed"):
        load(g, "never", mode="bulk", replace=True, driver=driver, server=NoServer())
    assert_exact(driver, name, g_small)


# ------------------------------------------------------------------------- trace storage
def test_killed_trace_store_leaves_no_trace_and_the_rerun_completes(driver, model_name,
                                                                    fault_model, tmp_path):
    """A trace's (:Trace) node is written after all its chunks: killed before it, no reader
    sees a partial trace, and running the same command again stores it whole."""
    path, g = fault_model
    name = model_name("ft")
    assert cli(load_args(path, name))[0] == 0
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(5).normal(size=(6, 6, 4)).astype("float32"))
    trace_name = f"{name}_t"
    args = ["trace", "--model", name, "--input", str(x), "--name", trace_name,
            "--target", "pool:3"]
    try:
        code, out = weightgraph(args, kill_at="trace.chunks")
        assert code == -signal.SIGKILL, out
        chunks = driver.execute_query("MATCH (c:TraceChunk {trace: $t}) RETURN count(c) AS c",
                                      t=trace_name).records[0]["c"]
        assert chunks > 0  # the kill came after chunks were written ...
        code, lines = cli(["pull", "--name", name, "--trace", trace_name, "-o",
                           str(tmp_path / "never.graphml")])
        assert code == 1 and len(lines) == 1 and f"no trace {trace_name!r}" in lines[0], lines
        assert trace_name not in "\n".join(cli(["trace", "list"])[1])
        t = time.perf_counter()
        code, out = weightgraph(args)  # ... and the same command finishes the job
        assert code == 0, out
        stored = driver.execute_query(
            "MATCH (t:Trace {name: $t}) MATCH (c:TraceChunk {trace: $t}) "
            "RETURN t.chunks AS want, count(c) AS got", t=trace_name).records[0]
        assert stored["want"] == stored["got"]
        code, lines = cli(["query", "trace_value", "--model", name, "-p",
                           f"trace={trace_name}", "-p", "layer=pool", "-p", "index=3",
                           "--format", "json"])
        assert code == 0 and '"value"' in "\n".join(lines), lines
        record(operation="trace store", point="trace.chunks", state="no Trace node",
               rels_at_fault=0, rels_planned=0, recovery="the same trace command",
               seconds=round(time.perf_counter() - t, 1), verify="Trace node, all chunks",
               edges=0)
    finally:
        cli(["trace", "delete", "--name", trace_name])
