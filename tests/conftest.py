"""Shared fixtures, and the two tiers of the suite.

``scripts/test --quick`` (``pytest -m "not slow"``) runs every test that needs no database
rebuild, no server stop, start or kill and no whole ``keras.applications`` model: what a
developer runs after each change. ``scripts/test`` runs them all (CI).

A test is slow by what it does, not by a guess:

* it takes a fixture of :data:`SLOW_FIXTURES` (they stop, start or kill the Neo4j server, or
  rebuild its database), or carries ``rebuilds_database``: marked ``slow`` and ``exclusive``
  (it needs the server to itself) at collection;
* it builds a whole ``keras.applications`` model: marked ``@pytest.mark.slow`` by hand.

``scripts/test`` runs the quick tier in three processes (pytest-xdist, a file each), then
the slow tests one at a time (a whole application's test beside others would run the
machine out of memory). The tiers cannot drift apart silently: while a test that is not
exclusive runs (set-up, call and tear-down), the one place through which the server is
stopped, started or bulk-imported into (:class:`loader.neo4j.local_server.LocalNeo4j`)
fails it, and so does a server whose pid changed under it (a stop, start or kill from
another process); while a quick test runs, the ``keras.applications`` constructors fail it
too.
"""

import functools
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's CPU kernels for dilated transposed convolution exist only through oneDNN
# ("do not yet support dilation rates larger than 1" without it): the oracle needs them.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "neo4j-local"

#: Fixtures whose tests are slow, and why. The rebuilding ones also sort their tests last.
SLOW_FIXTURES = {
    "server_control": "stops, starts or kills the Neo4j server",
    "bulk_database": "rebuilds the database (a bulk import)",
    "fresh_server": "starts a second Neo4j server from nothing (jars downloaded)",
}
REBUILDING_FIXTURES = {"bulk_database"}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "rebuilds_database: wipes the whole Neo4j database (bulk import); runs last; "
        "slow")
    config.addinivalue_line(
        "markers", "exclusive: needs the server to itself (stops, starts, kills or rebuilds "
        "it); set at collection, never by hand; slow")


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if (item.get_closest_marker("rebuilds_database") is not None
                or SLOW_FIXTURES.keys() & set(item.fixturenames)):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.exclusive)
    # A bulk import replaces the database, so those tests run after every other test; the
    # readers of the shared bulk-built database first, before another import replaces it.
    items.sort(key=_rebuild_order)


def _rebuild_order(item) -> int:
    """0: the database is left alone; 1: reads the shared bulk-built database; 2: reads it,
    then rebuilds; 3: rebuilds."""
    rebuilds = item.get_closest_marker("rebuilds_database") is not None
    if REBUILDING_FIXTURES & set(item.fixturenames):
        return 2 if rebuilds else 1
    return 3 if rebuilds else 0


# ------------------------------------------------------------------------ the tier guard
class TierGuard:
    """Fails a test that is not exclusive if it stops, starts or kills the server or
    bulk-imports, and a quick test if it builds a keras.applications model (see the module
    notes)."""

    def __init__(self):
        self.test = None  # the node id of the guarded test running, or None
        self.quick = False  # whether that test is in the quick tier
        self.violations: list[str] = []
        self.pid_before = None
        self._server = None
        self._keras_wrapped = False

    # The in-process door: every stop, start, import and swap of the local server.
    def install(self):
        from loader.neo4j.local_server import LocalNeo4j

        guard = self

        def refuse(what):
            where = "is in the quick tier" if guard.quick else "is not exclusive"
            message = (f"{guard.test} {where} but {what}: give it a fixture of "
                       f"conftest.SLOW_FIXTURES ({', '.join(sorted(SLOW_FIXTURES))}), or "
                       "rebuilds_database, or mark it slow")
            guard.violations.append(message)
            pytest.fail(message, pytrace=False)

        def wrap(name, check):
            real = getattr(LocalNeo4j, name)

            def guarded(self, *args, **kwargs):
                if guard.test is not None:
                    what = check(self, *args)
                    if what:
                        refuse(what)
                return real(self, *args, **kwargs)

            setattr(LocalNeo4j, name, functools.update_wrapper(guarded, real))

        wrap("_start", lambda s: s.pid() is None and f"started the Neo4j server in {s.home}")
        wrap("_stop", lambda s, *a: s.pid() is not None
             and f"stopped the Neo4j server in {s.home}")
        wrap("admin", lambda s, *a: a[:2] == ("database", "import")
             and "ran neo4j-admin database import (a bulk load)")
        wrap("swap_database", lambda s, *a: "swapped a database in (a bulk load)")
        self.refuse = refuse

    def wrap_keras_applications(self):
        """Each constructor of ``keras.applications`` fails a quick test once it has built
        its model (a refused call, such as imagenet weights at another input size, built
        nothing). Done once keras is imported: this module never imports it."""
        keras = sys.modules.get("keras")
        if self._keras_wrapped or keras is None:
            return
        apps = keras.applications
        guard = self
        for name in dir(apps):
            real = getattr(apps, name)
            if not (name[:1].isupper() and callable(real)):
                continue

            def guarded(*args, _real=real, _name=name, **kwargs):
                model = _real(*args, **kwargs)
                if guard.test is not None and guard.quick:
                    guard.refuse(f"built the whole keras.applications.{_name}")
                return model

            # Its module too: loader finds an application's preprocess_input through it.
            setattr(apps, name, functools.update_wrapper(guarded, real))
        self._keras_wrapped = True

    # The out-of-process door: the server's pid, before and after.
    def server_pid(self):
        from loader.neo4j.local_server import LocalNeo4j

        if self._server is None:
            self._server = LocalNeo4j.from_environment()
        return self._server.pid() if self._server.pid_file.exists() else None

    def begin(self, item):
        self.wrap_keras_applications()
        self.test = item.nodeid
        self.quick = _quick(item)
        self.violations = []
        self.pid_before = self.server_pid()

    def check(self):
        if self.test is None:
            return
        self.wrap_keras_applications()
        if self.violations:  # reported once, even where the code under test caught it
            message, self.violations = self.violations[0], []
            pytest.fail(message, pytrace=False)
        pid = self.server_pid()
        if self.pid_before is not None and pid != self.pid_before:
            self.refuse(f"the Neo4j server it started with (pid {self.pid_before}) is "
                        f"{'gone' if pid is None else f'now pid {pid}'} (stopped, restarted "
                        "or killed, maybe by a process it ran)")


GUARD = TierGuard()


def pytest_sessionstart(session):
    GUARD.install()


def pytest_collection_finish(session):
    GUARD.wrap_keras_applications()  # the test modules that use Keras have imported it


def _quick(item) -> bool:
    return item.get_closest_marker("slow") is None


def _exclusive(item) -> bool:
    return item.get_closest_marker("exclusive") is not None


# A violation fails the phase even when the test failed too (the guard's message says why).
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    if not _exclusive(item):
        GUARD.begin(item)
    try:
        return (yield)
    finally:
        GUARD.check()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    finally:
        GUARD.check()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item):
    try:
        return (yield)
    finally:
        try:
            GUARD.check()
        finally:
            GUARD.test = None


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def driver():
    """A verified driver to the real Neo4j server (.ci/run starts it). No server: the tests
    fail with the one-line connection error; they never skip."""
    from loader.neo4j.db import connect

    d = connect()
    yield d
    d.close()


@pytest.fixture
def model_name(driver):
    """A fresh model name, deleted from Neo4j after the test."""
    from loader.neo4j.models import delete_model

    names = []

    def make(prefix="t"):
        name = f"{prefix}_{secrets.token_hex(4)}"
        names.append(name)
        return name

    yield make
    for name in names:
        delete_model(driver, name)


class ServerControl:
    """The test server, driven as a user drives it: ``scripts/neo4j-local``."""

    def run(self, command, check=True) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), command], capture_output=True, text=True,
                              check=check)

    def start(self, check=True):
        return self.run("start", check)

    def stop(self, check=True):
        return self.run("stop", check)

    def status(self) -> subprocess.CompletedProcess:
        return self.run("status", check=False)

    def pid(self) -> int:
        out = self.status().stdout
        m = re.search(r"running \(pid (\d+)\)", out)
        assert m, out
        return int(m.group(1))

    def kill(self):
        """SIGKILL the server process (no shutdown at all)."""
        os.kill(self.pid(), signal.SIGKILL)
        time.sleep(1)


@pytest.fixture
def server_control():
    """Stop, start, status and SIGKILL of the test's Neo4j server; the server is running
    again when the test ends. A test that takes it is slow (it stops the server)."""
    control = ServerControl()
    yield control
    if control.status().returncode != 0:
        control.start()
