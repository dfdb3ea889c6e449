"""The two tiers of conftest.py: which tests are slow, in which order the rebuilding ones run,
and the guard that fails a quick test doing a slow thing (these tests are quick: the guard
is on while they run)."""

import re
from pathlib import Path

import keras  # imported at collection, as by every test module that uses Keras: the guard
import pytest  # wraps keras.applications once keras is imported

import conftest
from conftest import GUARD
from loader.neo4j.local_server import LocalNeo4j

Failed = pytest.fail.Exception


class Item:
    """The part of a pytest item that the collection hook reads and writes."""

    def __init__(self, name, fixtures=(), marks=()):
        self.name, self.fixturenames, self.marks = name, list(fixtures), set(marks)

    def get_closest_marker(self, mark):
        return mark if mark in self.marks else None

    def add_marker(self, mark):
        self.marks.add(mark.name)


def test_slow_fixtures_and_rebuilds_database_make_a_test_slow_and_order_the_rebuilds():
    items = [Item("rebuilds", marks=["rebuilds_database"]),
             Item("reads_then_rebuilds", ["bulk_database", "tmp_path"], ["rebuilds_database"]),
             Item("reads", ["bulk_database"]),
             Item("restarts", ["driver", "server_control"]),
             Item("second_server", ["fresh_server"]),
             Item("queries", ["driver", "model_name"]),
             Item("application", marks=["slow"]),
             Item("plain")]
    conftest.pytest_collection_modifyitems(None, items)
    slow = {i.name for i in items if "slow" in i.marks}
    assert slow == {"rebuilds", "reads_then_rebuilds", "reads", "restarts", "second_server",
                    "application"}
    # All but a whole application's test need the server to themselves: they run alone.
    exclusive = {i.name for i in items if "exclusive" in i.marks}
    assert exclusive == slow - {"application"}
    # The database left alone first (in collection order); then the shared bulk-built
    # database read, read and rebuilt, and the other rebuilds.
    assert [i.name for i in items] == ["restarts", "second_server", "queries", "application",
                                       "plain", "reads", "reads_then_rebuilds", "rebuilds"]


def test_every_slow_fixture_is_defined():
    """A misspelt name in SLOW_FIXTURES would leave its tests in the quick tier."""
    defined = set()
    for path in Path(__file__).parent.glob("*.py"):
        defined |= set(re.findall(r"^@pytest\.fixture(?:\(.*\))?\ndef (\w+)\(",
                                  path.read_text(), re.M))
    assert set(conftest.SLOW_FIXTURES) <= defined
    assert conftest.REBUILDING_FIXTURES <= set(conftest.SLOW_FIXTURES)


def test_the_guard_refuses_a_bulk_import_before_it_runs():
    try:
        with pytest.raises(Failed, match="is in the quick tier but ran neo4j-admin database "
                                         "import"):
            LocalNeo4j.from_environment().admin("database", "import", "full", "--help")
    finally:
        GUARD.violations.clear()  # this test's own, expected


def _put_back(server):
    """Where the guard failed to refuse a stop, start the server again for the other tests
    (unguarded: the test has failed already)."""
    if server.pid() is None:
        test, GUARD.test = GUARD.test, None
        try:
            server.start()
        finally:
            GUARD.test = test


def test_the_guard_refuses_a_server_stop_before_it_stops():
    server = LocalNeo4j.from_environment()
    pid = server.pid()
    assert pid is not None, "the test server is not running"
    try:
        with pytest.raises(Failed, match="is in the quick tier but stopped the Neo4j server"):
            server.stop()
        assert server.pid() == pid  # refused before anything was done
    finally:
        GUARD.violations.clear()
        _put_back(server)


def test_the_guard_refuses_a_server_stop_in_a_slow_test_that_is_not_exclusive():
    """A slow test that is not exclusive (a whole application) may build its model but
    never stop the server: nothing marked it as needing the server to itself."""
    server = LocalNeo4j.from_environment()
    pid = server.pid()
    GUARD.quick = False  # as while such a test runs
    try:
        keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), include_top=False)
        assert not GUARD.violations
        with pytest.raises(Failed, match="is not exclusive but stopped the Neo4j server"):
            server.stop()
        assert server.pid() == pid  # refused before anything was done
    finally:
        GUARD.quick = True
        GUARD.violations.clear()
        _put_back(server)


def test_the_guard_fails_a_test_whose_server_pid_changed():
    before = GUARD.pid_before
    assert before is not None
    GUARD.pid_before = before + 1  # as if another process restarted the server
    try:
        with pytest.raises(Failed, match=rf"is now pid {before} \(stopped, restarted or "
                                         r"killed"):
            GUARD.check()
    finally:
        GUARD.pid_before = before
        GUARD.violations.clear()


def test_the_guard_refuses_a_keras_applications_model_once_built():
    from loader.graph.neuron_graph import NeuronGraph

    # a refused call builds nothing: allowed
    with pytest.raises(ValueError):
        keras.applications.VGG16(weights="imagenet", input_shape=(64, 64, 3))
    assert not GUARD.violations
    # a name through the product goes through keras.applications too
    try:
        with pytest.raises(Failed, match="built the whole keras.applications.MobileNet: "):
            NeuronGraph.from_model("mobilenet", weights=None, input_shape=(32, 32, 3),
                                   include_top=False)
    finally:
        GUARD.violations.clear()
