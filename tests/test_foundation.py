"""The foundation: a real, authenticated Neo4j; one-line connection errors; compose; CLI."""

import os
import re
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from loader.cli import main
from loader.config import Settings
from loader.neo4j.db import Neo4jUnavailable, connect

REPO = Path(__file__).resolve().parent.parent


def test_authenticated_session_runs_a_query(driver):
    with driver.session() as s:
        assert s.run("RETURN 20 + 22 AS answer").single()["answer"] == 42
    info = driver.get_server_info()
    assert info.agent.startswith("Neo4j/5.26")


@pytest.mark.parametrize("override, phrase", [
    ({"neo4j_password": "certainly-not-it"}, "wrong password"),
    ({"neo4j_uri": "bolt://127.0.0.1:7999"}, "cannot reach Neo4j"),
])
def test_connection_failures_are_one_line_errors(override, phrase):
    with pytest.raises(Neo4jUnavailable) as info:
        connect(Settings(**override))
    message = str(info.value)
    assert phrase in message and "\n" not in message


def test_neo4j_browser_is_served():
    port = os.environ.get("NEO4J_HTTP_PORT", "7474")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/browser/", timeout=10) as r:
        page = r.read().decode("utf-8", "replace")
    assert r.status == 200 and "<title>Neo4j Browser</title>" in page


def test_compose_names_the_local_servers_neo4j_version():
    from loader.neo4j.jars import NEO4J_VERSION as version

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    neo4j = compose["services"]["neo4j"]
    assert neo4j["image"] == f"neo4j:{version}-community"
    auth = neo4j["environment"]["NEO4J_AUTH"]
    assert "${NEO4J_PASSWORD:?" in auth  # compose fails clearly when no password is set
    assert "healthcheck" in neo4j
    loader = compose["services"]["loader"]
    assert loader["depends_on"]["neo4j"]["condition"] == "service_healthy"
    assert "NEO4J_PASSWORD=" in (REPO / ".env.example").read_text()
    assert not re.search(r"^NEO4J_PASSWORD=\S", (REPO / ".env.example").read_text(), re.M)


def test_cli_version_and_help_with_examples():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "weightgraph, version" in result.output
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name, command in main.commands.items():
        text = runner.invoke(main, [name, "--help"]).output
        assert "Example" in text, name


def test_no_neo4j_is_a_clear_error_not_a_traceback():
    result = CliRunner().invoke(main, ["ping"], env={"NEO4J_URI": "bolt://127.0.0.1:7999"})
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: cannot reach Neo4j")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [
    ["verify", "--name", "anything"],
    ["delete", "--name", "anything"],
    ["query", "model_summary", "--model", "anything"],
    ["pull", "--name", "anything", "-o", "x.graphml"],
    ["gds", "pagerank", "--model", "anything"],
    ["ping"],
])
def test_every_command_talks_to_the_configured_database(args, tmp_path, monkeypatch):
    """NEO4J_DATABASE reaches readers and writers alike: a database the server lacks is the
    same one-line error for each of them, naming it (one Database choice for every command)."""
    password = Settings().neo4j_password.get_secret_value()  # from .env, before leaving it
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args, env={"NEO4J_DATABASE": "wgmissing",
                                                 "NEO4J_PASSWORD": password})
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "no database 'wgmissing'" in line and "\n" not in line and "Traceback" not in line
