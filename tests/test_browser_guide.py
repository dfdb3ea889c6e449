"""`weightgraph browser` without a web browser: the guide built from queries/, its parameters,
the style file, the style labels, the guide server's CORS, the allowlist check and the
one-line errors. tests/test_browser.py drives the same guide in headless Chromium.

Oracles: NetworkX on the graph built from Keras (degrees, cones), the test's own map from its
Keras layers to kinds, the Neo4j server itself (literals read back with RETURN, queries run
with the official driver), and the query files as they are on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import keras
import networkx as nx
import numpy as np
import pytest
from keras import layers

from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j import browser
from loader.neo4j.browser import (BrowserError, GuideServer, build_guide, check_allowlist,
                                  cypher_literal, host_allowed, label_for_style, layer_kind,
                                  resolve_target)
from loader.neo4j.models import ModelNotFound
from loader.neo4j.traces import TraceNotFound
from loader.sinks.networkx import to_networkx
from oracle import randomise_weights

pytestmark = pytest.mark.neo4j

REPO = Path(__file__).resolve().parents[1]
QUERIES = REPO / "queries"
STYLE = json.loads((QUERIES / "weightgraph.grass").read_text())
WEIGHTGRAPH = (shutil.which("weightgraph", path=str(Path(sys.executable).parent))
               or shutil.which("weightgraph") or "weightgraph")
# The test's own reading of its model: layer name -> kind.
KIND_OF = {"image": "Input", "conv": "Conv", "pool": "Pooling", "dense": "Dense",
           "softmax": "Other"}


def guide_model() -> keras.Model:
    """Conv (valid, relu; channel 1 all-negative: dead ReLUs) -> max pooling -> Dense ->
    a softmax Activation layer (kind Other)."""
    inputs = keras.Input((6, 6, 1), name="image")
    x = layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Dense(4, name="dense")(layers.Flatten(name="flatten")(x))
    model = randomise_weights(keras.Model(inputs, layers.Activation("softmax", name="softmax")(x)))
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[..., 1] = -np.abs(kernel[..., 1])
    bias[1] = -0.25
    model.get_layer("conv").set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def loaded(driver):
    """(name, reference nx graph built from Keras) of the guide model, loaded and labelled."""
    from loader.neo4j.load import load
    from loader.neo4j.models import delete_model

    graph = NeuronGraph.from_model(guide_model())
    name = f"test_guide_{os.getpid()}"
    load(graph, name=name, mode="online", driver=driver, replace=True)
    yield name, to_networkx(graph)
    delete_model(driver, name)


class _Blocks(HTMLParser):
    """The guide's slides: per <slide>, its runnable blocks as (data attributes, text)."""

    def __init__(self):
        super().__init__()
        self.slides: list[list[tuple[dict, str]]] = []
        self._pre: dict | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "slide":
            self.slides.append([])
        elif tag == "pre":
            self._pre, self._text = dict(attrs), []

    def handle_data(self, data):
        if self._pre is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "pre" and self._pre is not None:
            self.slides[-1].append((self._pre, "".join(self._text)))
            self._pre = None


def blocks_of(html: str) -> list[list[tuple[dict, str]]]:
    parser = _Blocks()
    parser.feed(html)
    return parser.slides


def degree_label(degree: int) -> str:
    """The degree class named in the style file whose range holds ``degree``."""
    for key in STYLE:
        name = key.removeprefix("node.Degree")
        if key.startswith("node.Degree"):
            low, _, high = name.partition("to")
            if name.endswith("plus") and degree >= int(name.removesuffix("plus")):
                return key.removeprefix("node.")
            if high and int(low) <= degree <= int(high):
                return key.removeprefix("node.")
    raise AssertionError(f"no degree class in the style for {degree}")


# ---------------------------------------------------------------------------- the style file
def test_style_file_colours_every_label_the_guide_writes_in_rule_order():
    keys = list(STYLE)
    for label in (*browser.KIND_LABELS, *(label for _, label in browser.DEGREE_CLASSES)):
        assert "color" in STYLE[f"node.{label}"], label  # no automatic colour from the Browser
    # Later rules win: the kind's colour must come after the size classes' neutral one.
    last_degree = max(keys.index(f"node.{label}") for _, label in browser.DEGREE_CLASSES)
    assert all(keys.index(f"node.{kind}") > last_degree for kind in browser.KIND_LABELS)
    assert keys.index("node.Neuron") < last_degree and keys.index("node.Channel") < last_degree
    assert STYLE["node.Neuron"]["caption"] == "{layer}:{index}"
    assert STYLE["node.Channel"]["caption"] == "{layer}:{channel}"
    assert STYLE["relationship.W"]["caption"] == STYLE["relationship.CW"]["caption"] == "{weight}"
    diameters = [int(STYLE[f"node.{label}"]["diameter"].removesuffix("px"))
                 for _, label in browser.DEGREE_CLASSES]
    assert diameters == sorted(diameters) and len(set(diameters)) == len(diameters)
    assert browser.style_text() == (QUERIES / "weightgraph.grass").read_text()


def test_layer_kinds_of_keras_and_onnx_layer_classes():
    cases = {"InputLayer": "Input", "Conv2D": "Conv", "Conv1D": "Conv",
             "DepthwiseConv2D": "Conv", "SeparableConv2D": "Conv", "Conv3DTranspose": "Conv",
             "MaxPooling2D": "Pooling", "AveragePooling1D": "Pooling",
             "GlobalAveragePooling2D": "Pooling", "Dense": "Dense", "BatchNormalization":
             "Other", "Add": "Other", "ReLU": "Other", "UpSampling2D": "Other",
             "Conv": "Conv", "ConvTranspose": "Conv", "MaxPool": "Pooling",
             "GlobalAveragePool": "Pooling", "Gemm": "Dense", "MatMul": "Dense"}
    for cls, kind in cases.items():
        assert layer_kind({"class_name": cls, "op": "sum"}) == kind, cls
    assert layer_kind({"class_name": "Whatever", "op": "input", "kind": "input"}) == "Input"


def test_local_server_config_allows_the_guide_host(tmp_path):
    from loader.neo4j.local_server import LocalNeo4j

    server = LocalNeo4j(home=tmp_path, gds=False)
    server.conf_dir.mkdir(parents=True)
    server._write_conf()
    conf = dict(line.split("=", 1) for line in (server.conf_dir / "neo4j.conf").read_text()
                .splitlines() if "=" in line and not line.startswith("#"))
    assert host_allowed(conf["browser.remote_content_hostname_whitelist"],
                        "http://localhost:41234/weightgraph.html")


# ---------------------------------------------------------------------------- literals
def test_cypher_literals_read_back_as_the_same_values(driver):
    values = ["plain", "it's", 'say "hi"', "back\\slash\\", "two\nlines\ttab\r",
              "x' }) DETACH DELETE n //", "ünïcødé ✓ 𝄞", "\x01ctl", "", 0, -7, 2**62,
              0.1, -2.5e-300, 1e21, 123456.789, True, False, None, [1, "a", None, [2.5]],
              {"k": "v", "n": [1, 2], "odd key": 3}]
    for value in values:
        got = driver.execute_query(f"RETURN {cypher_literal(value)} AS v").records[0]["v"]
        assert got == value and type(got) is type(value), (value, cypher_literal(value))
    nan = driver.execute_query(f"RETURN {cypher_literal(float('nan'))} AS v").records[0]["v"]
    assert nan != nan


def test_param_block_names_every_parameter_once():
    block = browser.param_command({"model": "m", "index": 3, "trace": None})
    assert block == ":param [{model, index, trace}] => { RETURN 'm' AS model, 3 AS index, " \
                    "null AS trace }"


# ---------------------------------------------------------------------------- labels
def test_style_labels_are_each_layers_kind_and_degree_class_and_idempotent(driver, loaded):
    name, G = loaded
    added = label_for_style(driver, name)
    assert sum(added[k] for k in browser.KIND_LABELS if k in added) == G.number_of_nodes()
    rows = driver.execute_query("MATCH (n:Neuron {model: $m}) RETURN n.id AS id, "
                                "labels(n) AS labels", m=name).records
    assert len(rows) == G.number_of_nodes()
    for r in rows:
        node = G.nodes[r["id"]]
        expected = {"Neuron", KIND_OF[node["layer"]], degree_label(G.degree(r["id"]))}
        assert set(r["labels"]) == expected, (node["layer"], node["index"], r["labels"])
    assert label_for_style(driver, name) == {}  # idempotent: nothing left to label
    from loader.neo4j.models import verify

    assert verify(name, driver=driver).ok  # labels change nothing verify compares


def test_a_channel_model_gets_labels_and_a_guide_on_its_channels(driver):
    from loader.graph.channels import ChannelGraph
    from loader.neo4j.load import load
    from loader.neo4j.models import delete_model

    cg = ChannelGraph(NeuronGraph.from_model(guide_model()))
    name = f"test_guide_ch_{os.getpid()}"
    load(cg, name=name, mode="online", driver=driver, replace=True)
    try:
        G = to_networkx(cg)
        label_for_style(driver, name)
        rows = driver.execute_query("MATCH (n:Channel {model: $m}) RETURN n.id AS id, "
                                    "labels(n) AS labels", m=name).records
        assert {r["id"]: set(r["labels"]) for r in rows} == {
            n: {"Channel", KIND_OF[a["layer"]], degree_label(G.degree(n))}
            for n, a in G.nodes(data=True)}
        guide = build_guide(driver, resolve_target(driver, name), base_url="http://localhost:1")
        top = next(s for s in guide.slides if s.query and s.query.name == "top_inputs")
        assert top.params["layer"] == "pool" and top.params["index"] == 1  # 2 channels // 2
        assert driver.execute_query(top.query.text, top.params).records
        assert "channel graph" in guide.slides[0].html
    finally:
        delete_model(driver, name)


# ---------------------------------------------------------------------------- the guide
def test_guide_has_a_slide_per_query_file_with_its_text_and_picks_up_new_files(
        driver, loaded, tmp_path, monkeypatch):
    name, _ = loaded
    folder = tmp_path / "queries"
    shutil.copytree(QUERIES, folder)
    (folder / "zz_extra.cypher").write_text(
        "// name: zz_extra\n// description: A query the guide has never heard of.\n"
        "// params: $model (string), $layer (string), $index (int)\n// returns: id\n"
        "MATCH (n:Neuron {model: $model, layer: $layer, index: $index}) RETURN n.id AS id\n")
    monkeypatch.setenv("WEIGHTGRAPH_QUERIES_DIR", str(folder))
    target = resolve_target(driver, name)
    guide = build_guide(driver, target, base_url="http://localhost:1")
    files = {p.stem: p.read_text() for p in folder.glob("*.cypher")}
    titles = [s.query.name for s in guide.slides if s.query is not None]
    assert titles[0] == "model_summary" and sorted(titles) == sorted(files)
    assert guide.slides[-1].query is None and "NetworkX" in guide.slides[-1].title

    slides = blocks_of(guide.html())
    assert len(slides) == len(guide.slides)
    assert slides[0][0] == ({"class": "code runnable", "data-style": "1"},
                            ":style http://localhost:1/weightgraph.grass")
    for slide, blocks in zip(guide.slides, slides):
        if slide.query is None:
            assert all("runnable" not in attrs["class"] for attrs, _ in blocks)
            continue
        queries = [text for attrs, text in blocks if attrs.get("data-query") == slide.query.name]
        params = [text for attrs, text in blocks if attrs.get("data-params") == slide.query.name]
        assert queries == [files[slide.query.name].strip()]  # the file, verbatim
        assert params == [browser.param_command(slide.params)]
        declared = {p.name: p for p in slide.query.params}
        assert set(slide.params) == set(declared)  # every parameter, so none leaks in
        assert slide.params["model"] == name
        for p in declared.values():
            if not p.required:
                assert slide.params[p.name] == p.default, (slide.query.name, p.name)
    extra = next(s for s in guide.slides if s.query and s.query.name == "zz_extra")
    assert extra.params["layer"] == "pool"


def test_neuron_slides_get_parameters_their_query_answers(driver, loaded):
    name, G = loaded
    guide = build_guide(driver, resolve_target(driver, name), base_url="http://localhost:1")
    by_name = {s.query.name: s for s in guide.slides if s.query is not None}
    pool = by_name["pooling_choices"].params
    assert (pool["layer"], pool["trace"]) == ("pool", None)
    for slide in by_name.values():
        if "index" not in slide.params and "frontier" not in slide.params:
            continue
        if any(p.required and p.name == "trace" for p in slide.query.params):
            assert slide.params["trace"] is None and "trace" in slide.note
            continue
        rows = driver.execute_query(slide.query.text, slide.params).records
        assert rows, slide.query.name
    # The middle neuron of the first pooling layer: its id is the pulled graph's own.
    middle = next(n for n, a in G.nodes(data=True)
                  if a["layer"] == "pool" and a["index"] == pool["index"])
    assert by_name["receptive_field_step"].params["frontier"] == [[middle, 1]]


def test_networkx_slide_runs_and_pulls_the_cone_it_names(driver, loaded):
    name, G = loaded
    guide = build_guide(driver, resolve_target(driver, name), base_url="http://localhost:1")
    namespace: dict = {}
    exec(compile(guide.python, "<guide>", "exec"), namespace)  # noqa: S102 (our own slide)
    pulled, rows = namespace["G"], namespace["rows"]
    assert isinstance(pulled, nx.DiGraph)
    pool = next(s for s in guide.slides if s.query and s.query.name == "cone_graph").params
    top = next(n for n, a in G.nodes(data=True)
               if a["layer"] == pool["layer"] and a["index"] == pool["index"])
    within_two = nx.single_source_shortest_path_length(G.reverse(copy=False), top, cutoff=2)
    assert set(pulled.nodes) == set(within_two)
    example = guide.example
    assert f"run_query(None, {example.query.name!r}, {example.params!r})" in guide.python
    assert [list(r.values()) for r in rows] == [
        list(r.values()) for r in driver.execute_query(example.query.text, example.params).records]


def test_trace_slides_use_the_models_only_trace(driver, loaded, tmp_path):
    import loader

    name, _ = loaded
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(3).normal(size=(6, 6, 1)).astype("float32"))
    trace = f"{name}_t"
    loader.trace_loaded(driver, name, str(x), name=trace, target="softmax:2", replace=True)
    try:
        target = resolve_target(driver, name)
        assert (target.model, target.trace) == (name, trace)
        assert resolve_target(driver, None, trace).model == name
        guide = build_guide(driver, target, base_url="http://localhost:1")
        for slide in guide.slides:
            if slide.query is not None and "trace" in slide.params:
                assert slide.params["trace"] == trace and not slide.note
        value = next(s for s in guide.slides if s.query and s.query.name == "trace_value")
        assert driver.execute_query(value.query.text, value.params).records
    finally:
        loader.delete_trace(driver, trace)


def test_unknown_model_or_trace_is_a_one_line_error(driver, loaded):
    with pytest.raises(ModelNotFound, match=rf"no model 'nope'.*{loaded[0]}"):
        resolve_target(driver, "nope")
    with pytest.raises(TraceNotFound, match="no trace 'nope'"):
        resolve_target(driver, loaded[0], "nope")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args", [["--model", "no_such_model"],
                                  ["--trace", "no_such_trace"]])
def test_cli_refuses_an_unknown_name_in_one_line_before_serving(args):
    port = _free_port()
    done = subprocess.run([WEIGHTGRAPH, "browser", *args, "--no-open", "--port", str(port)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no ") and args[1] in lines[0]


def test_cli_help_ends_with_an_example():
    done = subprocess.run([WEIGHTGRAPH, "browser", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    tail = done.stdout[done.stdout.index("Example:"):]
    assert "weightgraph browser --model" in tail and "Options:" not in tail.split("\n", 3)[1]


# ---------------------------------------------------------------------------- allowlist
def test_host_allowed_follows_neo4j_browsers_rule():
    url = "http://localhost:41234/weightgraph.html"
    assert host_allowed("guides.neo4j.com,localhost", url)
    assert host_allowed("guides.neo4j.com, http://localhost/", url)
    assert host_allowed("*", url)
    assert not host_allowed("guides.neo4j.com", url)
    assert not host_allowed("guides.neo4j.com,localhost", "http://127.0.0.1:41234/g.html")
    assert not host_allowed("https://localhost", url)


def test_allowlist_is_read_from_the_server(driver):
    assert host_allowed(check_allowlist(driver, "http://localhost:1/g.html"), "http://localhost/")
    with pytest.raises(BrowserError, match="remote_content_hostname_whitelist.*example.org"):
        check_allowlist(driver, "http://example.org:1/g.html")


# ---------------------------------------------------------------------------- the server
def _request(url: str, method: str = "GET", headers: dict | None = None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_guide_server_answers_the_browsers_cors_requests_only(driver, loaded):
    name, _ = loaded
    with GuideServer(neo4j_browser="http://127.0.0.1:7474/browser/") as server:
        guide = build_guide(driver, resolve_target(driver, name), base_url=server.base_url)
        server.publish(guide)
        server.start()
        assert urlsplit(server.guide_url).hostname == "localhost"
        query = parse_qs(urlsplit(server.browser_url()).query)
        assert query == {"cmd": ["guide"], "arg": [server.guide_url]}
        assert server.browser_url().startswith("http://127.0.0.1:7474/browser/?")
        local = f"http://127.0.0.1:{server.port}"
        for origin in ("http://localhost:7474", "http://127.0.0.1:7474"):
            status, headers, _ = _request(
                f"{local}/weightgraph.html", "OPTIONS",
                {"Origin": origin, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "pragma,cache-control"})
            assert status == 204 and headers["Access-Control-Allow-Origin"] == origin
            assert headers["Access-Control-Allow-Headers"] == "pragma,cache-control"
            status, headers, body = _request(f"{local}/weightgraph.html", headers={
                "Origin": origin, "Pragma": "no-cache"})
            assert status == 200 and headers["Access-Control-Allow-Origin"] == origin
            assert body.decode() == guide.html() and "text/html" in headers["Content-Type"]
        for other in ("http://evil.example:7474", "http://localhost:9999"):
            _, headers, _ = _request(f"{local}/weightgraph.html", "OPTIONS", {"Origin": other})
            assert "Access-Control-Allow-Origin" not in headers
        status, _, body = _request(f"{local}/weightgraph.grass")
        assert status == 200 and json.loads(body) == STYLE
        assert _request(f"{local}/../etc/passwd")[0] == 404
        assert _request(f"{local}/")[2].decode() == guide.html()
