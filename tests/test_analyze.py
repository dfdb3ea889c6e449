"""Analysis reports (loader.analysis.report): from a NeuronGraph and from a model loaded in Neo4j.

The plots must be real PNG files with content (not blank), the statistics must agree with
NetworkX on the same graph, and the cost check must refuse before anything is written.
"""

from __future__ import annotations

import os
import re

import matplotlib.image
import numpy as np
import pytest

from loader.analysis import analyze, estimate_costs, parse_subgraph, receptive_field_paths
from loader.errors import SelectionError, TooLargeError
from loader.graph.neuron_graph import NeuronGraph
from loader.sinks.networkx import to_networkx
from test_queries import delete_model, load_into_neo4j, neuron_id, paths_to_inputs, small_model

pytestmark = pytest.mark.neo4j

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def graph():
    return NeuronGraph.from_model(small_model(), name="small")


@pytest.fixture(scope="module")
def loaded(driver, graph):
    name = f"test_q_analyze_{os.getpid()}"
    load_into_neo4j(driver, graph, name)
    yield name
    delete_model(driver, name)


def assert_png_with_content(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    rgb = image[..., :3]
    assert float(rgb.var()) > 1e-3, f"{path.name} looks blank"
    # more than a frame: many distinct colours
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20


def referenced_images(report_text: str, fmt: str) -> list[str]:
    pattern = r"!\[[^\]]*\]\(([^)]+)\)" if fmt == "md" else r"<img src='([^']+)'"
    return re.findall(pattern, report_text)


@pytest.mark.parametrize("source,fmt", [("graph", "md"), ("neo4j", "html")])
def test_report_and_plots_are_written(request, driver, graph, source, fmt, tmp_path):
    src = graph if source == "graph" else request.getfixturevalue("loaded")
    report = analyze(src, tmp_path, neuron="dense:1", subgraph="layers=conv2:dense", fmt=fmt,
                     driver=driver)
    assert report == tmp_path / f"report.{fmt}"
    text = report.read_text()
    images = referenced_images(text, fmt)
    assert {"weights.png", "degree.png", "strength.png", "receptive_field.png",
            "metrics.png"} <= set(images)
    for name in images:
        assert_png_with_content(tmp_path / name)
    for section in ("Weights per layer", "Degree and strength", "Receptive field of dense:1",
                    "NetworkX metrics", "pagerank", "betweenness", "communities"):
        assert section in text, section
    if fmt == "html":
        assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")


def test_weight_statistics_match_networkx(driver, graph, loaded, tmp_path):
    G = to_networkx(graph)
    conv2 = np.array([w for _, t, w in G.edges(data="weight") if G.nodes[t]["layer"] == "conv2"])
    for src, out in ((graph, tmp_path / "g"), (loaded, tmp_path / "n")):
        text = analyze(src, out, neuron="add:4", metrics=(), driver=driver).read_text()
        row = next(line for line in text.splitlines() if line.startswith("| conv2 | 441 |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert [float(c) for c in cells[3:]] == pytest.approx(
            [conv2.min(), conv2.max(), conv2.mean(), conv2.std()], rel=1e-3)


@pytest.mark.parametrize("neuron", ["dense:1", "add:13", "conv1:20", "image:5"])
def test_receptive_field_map_counts_paths_like_networkx(driver, graph, loaded, neuron):
    G = to_networkx(graph)
    layer, index = neuron.split(":")
    want = np.zeros(72)
    for n, p in paths_to_inputs(G, neuron_id(G, layer, int(index))).items():
        want[G.nodes[n]["index"]] = p
    for src in (graph, loaded):
        got = receptive_field_paths(src, neuron, driver=driver)
        assert list(got) == ["image"]
        assert np.array_equal(got["image"], want), src


@pytest.mark.parametrize("source", ["graph", "neo4j"])
def test_big_layers_are_sampled_and_the_report_says_so(request, driver, graph, source, tmp_path):
    src = graph if source == "graph" else request.getfixturevalue("loaded")
    report = analyze(src, tmp_path, neuron="add:4", metrics=(), sample_edges=400, driver=driver)
    text = report.read_text()
    sampled = re.search(r"\| conv1 \| (\d[\d,]*) \| (\d+)% \|", text)
    assert sampled and int(sampled.group(2)) < 100
    assert 0 < int(sampled.group(1).replace(",", "")) < 1536
    assert re.search(r"\| pool \| 108 \| 100% \|", text)  # small layers stay whole
    assert ("left out" if source == "graph" else "hashed sample") in text
    assert_png_with_content(tmp_path / "weights.png")


def test_cost_above_the_limit_is_refused_before_any_work(graph, tmp_path):
    out = tmp_path / "refused"
    with pytest.raises(TooLargeError, match=r"max_cost.*smaller subgraph"):
        analyze(graph, out, neuron="dense:1", subgraph="layers=image:dense", max_cost=1e-4)
    assert not out.exists()
    with pytest.raises(TooLargeError, match="max_edges"):
        analyze(graph, out, neuron="dense:1", subgraph="cone=dense:1", max_edges=100)
    assert not out.exists()


def test_cost_estimates_grow_with_the_subgraph():
    small, big = estimate_costs(100, 1_000), estimate_costs(100_000, 10_000_000)
    for metric in ("pagerank", "betweenness", "communities", "build"):
        assert big[metric] > 100 * small[metric]
    # betweenness samples sources above the exact limit, so its cost stays linear
    assert estimate_costs(10**6, 10**7)["betweenness"] < 10 * estimate_costs(10**5, 10**6)[
        "betweenness"] * 1.01


def test_subgraph_specs():
    assert parse_subgraph("layers=conv1:pool") == ("layers", "conv1:pool")
    assert parse_subgraph("cone=add:5:2") == ("cone", "add:5:2")
    assert parse_subgraph("add:5") == ("cone", "add:5")
    assert parse_subgraph("conv1:pool") == ("layers", "conv1:pool")
    with pytest.raises(SelectionError):
        parse_subgraph("a:b:c")


def test_cli_analyze_from_a_keras_file(tmp_path):
    from click.testing import CliRunner

    from loader.cli.analysis import analyze as analyze_command

    model_path = tmp_path / "small.keras"
    small_model().save(model_path)
    out = tmp_path / "report"
    result = CliRunner().invoke(analyze_command, [str(model_path), "--neuron", "add:4",
                                                  "--subgraph", "cone=add:4:2", "-o", str(out),
                                                  "--format", "html"])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists()
    assert_png_with_content(out / "receptive_field.png")
    assert analyze_command.help.rstrip().splitlines()[-1].strip().startswith("weightgraph")
