"""The layout's promises: imports flow one way, only loader/neo4j talks to Neo4j, library calls
honour the WEIGHTGRAPH_* settings, and a bug in a layer builder is not passed off as an
unsupported layer."""

from __future__ import annotations

import ast
from pathlib import Path

import keras
import networkx as nx
import numpy as np
import pytest
from keras import layers

import loader
from loader.errors import UnsupportedLayerError
from loader.graph.neuron_graph import NeuronGraph

PACKAGE = Path(loader.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST):
    """Every import statement, at any depth (function-level imports count), except those
    under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking_block(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> nx.DiGraph:
    """Module -> module edges inside ``loader`` (importing ``a.b.c`` also runs the packages
    ``a.b`` and ``a``, so those count too, except a package the importer sits in)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for target in targets:
                parts = target.split(".")
                for k in range(1, len(parts) + 1):
                    module = ".".join(parts[:k])
                    inside = name == module or name.startswith(module + ".")
                    if module in modules and not inside:
                        graph.add_edge(name, module)
    return graph


def test_import_graph_sees_the_package():
    graph = import_graph()
    # The walker itself must see real edges, or the cycle test below could not fail.
    assert graph.has_edge("loader.neo4j.load", "loader.sinks.neo4j_online")
    assert graph.has_edge("loader.keras.builders", "loader.graph.entries")
    assert graph.number_of_edges() > 80


def test_no_import_cycle_inside_loader():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


@pytest.mark.parametrize("lower, upper", [
    ("loader.ops", "loader.graph"), ("loader.ops", "loader.keras"), ("loader.ops", "loader.onnx"),
    ("loader.graph", "loader.keras"), ("loader.graph", "loader.onnx"),
    ("loader.keras", "loader.onnx"), ("loader.onnx", "loader.keras"),
    ("loader.sinks", "loader.keras"), ("loader.sinks", "loader.onnx"),
    ("loader.neo4j", "loader.keras"), ("loader.neo4j", "loader.onnx"),
    ("loader.analysis", "loader.keras"), ("loader.analysis", "loader.onnx"),
    ("loader.keras", "loader.sinks"), ("loader.onnx", "loader.sinks"),
    ("loader.graph", "loader.sinks"),
    ("loader.sinks", "loader.neo4j"), ("loader.neo4j", "loader.analysis"),
    ("loader.analysis", "loader.cli"), ("loader.neo4j", "loader.cli"),
])
def test_the_flow_goes_one_way(lower, upper):
    """ops -> graph -> sinks -> neo4j -> analysis -> cli, with the front ends (keras, onnx)
    above the graph core and beside each other: they import the core, nothing below reaches
    them (the graph knows front ends by import path only: loader.graph.frontends)."""
    back = [(a, b) for a, b in import_graph().edges
            if a.startswith(lower + ".") and (b == upper or b.startswith(upper + "."))]
    assert not back, f"{lower} imports {upper}: {back}"


def test_only_loader_neo4j_opens_sessions():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if module.startswith("loader.neo4j"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "session", "execute_query", "begin_transaction", "GraphDatabase"):
                offenders.append(f"{module}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def test_weightgraph_batch_size_reaches_a_library_load(driver, model_name, monkeypatch):
    """WEIGHTGRAPH_BATCH_SIZE in the environment sets the batch size of loader.load(...)."""
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(
        layers.Conv2D(4, 3, name="conv")(inputs))))
    g = NeuronGraph.from_model(model)
    name = model_name("settings")
    monkeypatch.setenv("WEIGHTGRAPH_BATCH_SIZE", "37")
    summary = loader.load(g, name, driver=driver)
    assert summary.relationships == g.n_edges
    node = driver.execute_query("MATCH (m:Model {name: $n}) RETURN m.batch_size AS b",
                                n=name).records[0]
    assert node["b"] == 37
    # The edges were cut into transactions of at most 37 relationships, exactly the batches
    # of that size (the default, 30,000, would have made one per layer).
    rows = driver.execute_query("MATCH (b:LoadBatch {model: $n}) WHERE b.key STARTS WITH 'e:' "
                                "RETURN b.rows AS rows", n=name).records
    sizes = [r["rows"] for r in rows]
    assert max(sizes) <= 37 and sum(sizes) == g.n_edges
    assert len(sizes) == sum(1 for _ in g.iter_edge_batches(37))
    assert len(sizes) > 2 * sum(1 for _ in g.iter_edge_batches(30_000))


def test_a_bug_in_a_builder_propagates_with_its_traceback(monkeypatch):
    from loader.keras import builders

    def broken(call, xs, alloc):
        raise KeyError("a bug, not a refusal")

    monkeypatch.setitem(builders.BUILDERS, "Dense", broken)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    with pytest.raises(KeyError, match="a bug"):
        NeuronGraph.from_model(model)
    # ... while a builder's explicit refusal stays the clear one-line error.
    model = keras.Sequential([keras.Input((4, 3)), layers.LayerNormalization()])
    with pytest.raises(UnsupportedLayerError, match="LayerNormalization"):
        NeuronGraph.from_model(model)


# What the README's Python API section shows each public name to be; the rest are functions.
API_CLASSES = {"NeuronGraph", "ChannelGraph", "EdgeBatch", "NodeBatch", "Trace", "TraceSet", "Settings",
               "Database"}
API_MODULES = {"gds": ("run", "project")}  # loader.gds.run(...), loader.gds.project(...)


def test_public_api_is_importable_from_the_package_lazily():
    import inspect

    assert API_CLASSES | set(API_MODULES) <= set(loader.__all__)
    for name in loader.__all__:
        value = getattr(loader, name)
        if name in API_CLASSES:
            assert inspect.isclass(value) and value.__name__ == name, (name, value)
        elif name in API_MODULES:
            assert inspect.ismodule(value), (name, value)
            for function in API_MODULES[name]:
                assert inspect.isfunction(getattr(value, function, None)), (name, function)
        else:
            assert inspect.isfunction(value) and value.__name__ == name, (name, value)
    assert isinstance(loader.NeuronGraph.from_model(
        keras.Sequential([keras.Input((2,)), layers.Dense(1)])).n_edges, (int, np.integer))


FRAMEWORKS = ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime", "torch", "jax")


@pytest.mark.parametrize("package", ["graph", "ops", "sinks", "neo4j", "analysis"])
def test_the_core_imports_no_framework(package):
    """graph/, ops/, sinks/, neo4j/ and analysis/ import no framework and no front end
    (``loader.keras``, ``loader.onnx``), at any depth: the front ends hand them layer
    entries."""
    offenders = []
    for path in (PACKAGE / package).rglob("*.py"):
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif not node.level:
                names = [node.module or ""]
            else:  # relative: a front end (loader.keras, loader.onnx) counts as its framework
                here = _module_name(path).split(".")
                base = here[:len(here) - node.level + (path.name == "__init__.py")]
                names = [".".join(base + ([node.module] if node.module else []))]
            for name in names:
                top = name.split(".")
                if top[0] in FRAMEWORKS or top[:2] in (["loader", "keras"], ["loader", "onnx"]):
                    offenders.append(f"{_module_name(path)}:{node.lineno} imports {name}")
    assert not offenders, offenders


def test_front_ends_are_known_by_import_path_only():
    """The graph reaches a front end through the registry's strings, imported on use."""
    from loader.graph import frontends

    assert all(isinstance(v, str) and v.startswith("loader.") for v in frontends.KNOWN.values())
    assert list(frontends.KNOWN)[-1] == "keras"  # the one that takes the rest
    import importlib

    for module in frontends.KNOWN.values():
        m = importlib.import_module(module)
        assert callable(m.accepts) and callable(m.read)
