"""The Python half of scripts/neo4j-local: .env and password handling (on temporary files) and
the readiness probe (against the real server)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from loader.errors import ServerError
from loader.neo4j.credentials import ensure_password, env_value, read_env_file

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_password_env(monkeypatch):
    """Tests of the .env precedence must not see the developer's NEO4J_PASSWORD."""
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    monkeypatch.delenv("NEO4J_USER", raising=False)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_password_is_written_with_other_lines_kept(tmp_path, no_password_env):
    env = tmp_path / ".env"
    lines = ["# my settings", "NEO4J_HEAP_SIZE=2g", 'export OTHER="a b"', "NEO4J_PASSWORD="]
    env.write_text("\n".join(lines))  # no final newline, an empty password as in .env.example
    env.chmod(0o644)

    password, generated = ensure_password(env)

    assert generated and len(password) == 24 and int(password, 16) >= 0
    text = env.read_text().splitlines()
    assert text[:3] == lines[:3]
    assert text[3] == f"NEO4J_PASSWORD={password}"  # the empty line filled in place
    assert "NEO4J_USER=neo4j" in text
    assert mode(env) == 0o600
    assert read_env_file(env) == {"NEO4J_HEAP_SIZE": "2g", "OTHER": "a b",
                                  "NEO4J_PASSWORD": password, "NEO4J_USER": "neo4j"}
    assert ensure_password(env) == (password, False)  # the second call reads it back


def test_a_missing_env_file_is_created_mode_600(tmp_path, no_password_env):
    env = tmp_path / ".env"
    password, generated = ensure_password(env)
    assert generated and mode(env) == 0o600
    assert read_env_file(env) == {"NEO4J_PASSWORD": password, "NEO4J_USER": "neo4j"}


def test_an_existing_password_is_kept_and_the_file_untouched(tmp_path, no_password_env):
    env = tmp_path / ".env"
    env.write_text("NEO4J_USER=alice\nNEO4J_PASSWORD='kept-secret'\n")
    env.chmod(0o640)
    before = env.read_text()
    assert ensure_password(env) == ("kept-secret", False)
    assert env.read_text() == before and mode(env) == 0o640


def test_a_user_already_in_the_file_is_kept(tmp_path, no_password_env):
    env = tmp_path / ".env"
    env.write_text("NEO4J_USER=alice\n")
    ensure_password(env)
    assert read_env_file(env)["NEO4J_USER"] == "alice"


def test_the_environment_wins(tmp_path, no_password_env, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("NEO4J_PASSWORD=from-the-file\nNEO4J_HEAP_SIZE=2g\n")
    monkeypatch.setenv("NEO4J_PASSWORD", "from-the-environment")
    monkeypatch.setenv("NEO4J_HEAP_SIZE", "3g")
    monkeypatch.delenv("NEO4J_PAGECACHE_SIZE", raising=False)
    assert ensure_password(env) == ("from-the-environment", False)
    assert env.read_text() == "NEO4J_PASSWORD=from-the-file\nNEO4J_HEAP_SIZE=2g\n"
    assert env_value("NEO4J_HEAP_SIZE", env, "4g") == "3g"
    assert env_value("NEO4J_PAGECACHE_SIZE", env, "6g") == "6g"


def test_a_short_password_is_a_one_line_error(tmp_path, no_password_env):
    env = tmp_path / ".env"
    env.write_text("NEO4J_PASSWORD=short\n")
    with pytest.raises(ServerError, match=r"has 5 characters; Neo4j requires at least 8"):
        ensure_password(env)


def _server_cli(*args, **env):
    child = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "loader.cli.neo4j_local", *args], cwd=REPO,
                          env=child, capture_output=True, text=True, timeout=120)


def test_password_command_prints_the_generated_password(tmp_path):
    env = tmp_path / ".env"
    child = {k: v for k, v in os.environ.items() if k != "NEO4J_PASSWORD"}
    p = subprocess.run([sys.executable, "-m", "loader.cli.neo4j_local", "--env-file", str(env),
                        "password"], cwd=REPO, env=child, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0
    assert p.stdout.strip() == read_env_file(env)["NEO4J_PASSWORD"]
    assert p.stderr.strip() == (
        f"neo4j-local: no NEO4J_PASSWORD was set: generated a random one and wrote "
        f"NEO4J_USER/NEO4J_PASSWORD to {env} (mode 600)")


def test_wait_command_against_the_running_server_and_a_wrong_port():
    ready = _server_cli("wait", "--timeout", "10")
    assert ready.returncode == 0, ready.stderr

    down = _server_cli("wait", "--timeout", "2", NEO4J_URI="bolt://127.0.0.1:7999")
    assert down.returncode == 1
    message = down.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("neo4j-local: error: ") and "cannot reach Neo4j" in message


def test_wait_command_reports_a_refused_password_at_once():
    refused = _server_cli("wait", "--timeout", "30", NEO4J_PASSWORD="certainly-not-it")
    assert refused.returncode == 2
    assert "wrong password" in refused.stderr and "\n" not in refused.stderr.strip()
