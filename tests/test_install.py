"""Installed the way users install it: the sdist and the wheel built by ``python -m build``, the
wheel installed into a fresh virtual environment outside the repository, and the command run
from another working directory.

The fresh environment gets the wheel alone (``--no-deps``); its third-party dependencies
(TensorFlow alone is ~600 MB) are borrowed from the project's environment through a ``.pth``
path line. A path line adds the directory without running its ``.pth`` files, so the project's
editable install of ``loader`` stays invisible: every ``loader`` module comes from the wheel,
which the test checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import keras
import pytest
from keras import layers

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out),
                    str(REPO)], check=True, capture_output=True, text=True, timeout=600)
    wheel = next(out.glob("weightgraph-*.whl"))
    sdist = next(out.glob("weightgraph-*.tar.gz"))
    return wheel, sdist


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """A fresh venv with only the wheel installed; returns (bin dir, a working directory)."""
    wheel, _ = built
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bin_dir = venv / "bin"
    site = Path(subprocess.check_output(
        [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install",
                    "--quiet", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    work = root / "elsewhere"
    work.mkdir()
    return bin_dir, work


def _run(bin_dir: Path, work: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "WEIGHTGRAPH_QUERIES_DIR"}
    environment.update(env or {})
    return subprocess.run([str(bin_dir / "weightgraph"), *args], cwd=work, env=environment,
                          capture_output=True, text=True, timeout=300)


def _files_read_at_run_time() -> set[str]:
    """What the package reads besides its modules: every named query, the queries README,
    the Neo4j Browser style and the lock of the local server's jars."""
    return {f"loader/named_queries/{p.name}" for p in (REPO / "queries").iterdir()
            if p.suffix in (".cypher", ".md", ".grass")} | {"loader/neo4j/jars.lock"}


def test_the_wheel_and_the_sdist_hold_every_file_read_at_run_time(built):
    wheel, sdist = built
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = _files_read_at_run_time() - names
    assert not missing, f"the wheel lacks {sorted(missing)}"
    modules = {str(p.relative_to(REPO)) for p in (REPO / "loader").rglob("*.py")}
    assert modules <= names, f"the wheel lacks modules {sorted(modules - names)}"
    import tarfile

    with tarfile.open(sdist) as tar:
        inside = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"queries/{p.name}" for p in (REPO / "queries").iterdir()} <= inside
    assert "pyproject.toml" in inside


def test_installed_command_finds_its_queries_outside_the_repository(installed):
    bin_dir, work = installed
    where = subprocess.check_output(
        [str(bin_dir / "python"), "-c", "import loader; print(loader.__file__)"], cwd=work,
        text=True).strip()
    assert str(bin_dir.parent) in where and str(REPO) not in where  # the wheel's copy
    version = _run(bin_dir, work, "--version")
    assert version.returncode == 0 and "weightgraph, version" in version.stdout
    listing = _run(bin_dir, work, "query", "--list")
    assert listing.returncode == 0, listing.stderr
    for path in (REPO / "queries").glob("*.cypher"):
        assert f"{path.stem}:" in listing.stdout


def test_installed_command_plans_a_saved_model(installed):
    bin_dir, work = installed
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, layers.Conv2D(2, 3, name="conv")(inputs))
    path = work / "tiny.keras"
    model.save(path)
    plan = _run(bin_dir, work, "plan", "tiny.keras", "--json")
    assert plan.returncode == 0, plan.stderr
    assert '"edges": 648' in plan.stdout  # 6*6*2 neurons x 3*3*1 inputs


@pytest.mark.neo4j
def test_installed_command_runs_a_named_query_against_the_server(installed, driver,
                                                                   model_name):
    bin_dir, work = installed
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, layers.Conv2D(2, 3, name="conv")(inputs))
    model.save(work / "small.keras")
    name = model_name("wheel")
    loaded = _run(bin_dir, work, "load", "small.keras", "--name", name, "--quiet")
    assert loaded.returncode == 0, loaded.stderr
    result = _run(bin_dir, work, "query", "model_summary", "--model", name, "--format", "csv")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    rows = {row["layer"]: row for row in (dict(zip(header.split(","), line.split(",")))
                                          for line in lines)}
    neurons = driver.execute_query(
        "MATCH (n:Neuron {model: $m, layer: 'conv'}) RETURN count(n) AS c", m=name
    ).records[0]["c"]
    assert neurons == 32 and rows["conv"]["neurons"] == str(neurons)
    assert rows["conv"]["edges_in"] == str(32 * 9)
