"""queries/receptive_field.cypher, the Browser's receptive-field query, is generated and right.

The file is rendered from one stage by ``loader.neo4j.receptive_field.render_browser_query``:
the committed file must be exactly what it renders (so a hand edit fails here), and the
rendered statement, run as Neo4j Browser would run it (the raw text, through the driver, in a
read session; not through weightgraph's query runner), must give the same rows as the Python
procedure ``receptive_field`` and as path counts computed here with NetworkX on the graph built
from Keras alone (``keras_graph.reference_graph``: kernels and geometry, no ``loader`` code). With fewer stages than the cone has layers it must say ``complete = false``.

Needs the real Neo4j server (the ``driver`` fixture fails without it; these tests never skip).
"""

from __future__ import annotations

import os
from pathlib import Path

import neo4j
import networkx as nx
import pytest

from loader.config import Settings
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.receptive_field import STAGE, render_browser_query, receptive_field
from keras_graph import reference_graph
from test_queries import delete_model, load_into_neo4j, small_model

QUERY_FILE = Path(__file__).resolve().parents[1] / "queries" / "receptive_field.cypher"
COLUMNS = ["id", "layer", "index", "paths", "complete"]
# (layer, index) of small_model's neurons, one per layer: the dense neuron's cone spans every
# layer (and the residual Add), the input neuron's cone is itself.
TARGETS = [("dense", 2), ("add", 13), ("conv2", 0), ("pool", 4), ("conv1", 50), ("image", 3)]


# ---------------------------------------------------------------------------- the file
def test_committed_file_is_what_render_browser_query_renders():
    assert QUERY_FILE.read_text(encoding="utf-8") == render_browser_query(), (
        "queries/receptive_field.cypher differs from render_browser_query(): edit STAGE/HEADER "
        "in loader/neo4j/receptive_field.py and run "
        "`python -m loader.neo4j.receptive_field > queries/receptive_field.cypher`")


def test_rendered_query_repeats_the_one_stage():
    text = render_browser_query(3)
    for n in (1, 2, 3):
        assert STAGE.replace("{n}", str(n)) in text
    assert "// stage 4" not in text
    assert render_browser_query().count("// stage ") == 24
    assert "written out 3 times" in text
    with pytest.raises(ValueError):
        render_browser_query(-1)


# ---------------------------------------------------------------------------- against Neo4j
@pytest.fixture(scope="module")
def loaded(driver):
    """(model name, reference nx graph built from Keras) of small_model loaded into Neo4j."""
    model = small_model()
    name = f"test_q_rf_browser_{os.getpid()}"
    load_into_neo4j(driver, NeuronGraph.from_model(model), name)
    yield name, reference_graph(model, name)
    delete_model(driver, name)


def run_browser_text(driver: neo4j.Driver, text: str, params: dict) -> list[list]:
    """The file's text as Neo4j Browser runs it: verbatim, one statement, read access."""
    with driver.session(database=Settings().neo4j_database,
                        default_access_mode=neo4j.READ_ACCESS) as session:
        def work(tx):
            result = tx.run(text, params)
            assert result.keys() == COLUMNS
            return [record.values() for record in result]
        return session.execute_read(work)


def neuron_id(G: nx.DiGraph, layer: str, index: int) -> int:
    return next(n for n, a in G.nodes(data=True) if a["layer"] == layer and a["index"] == index)


def cone_layers(G: nx.DiGraph, target: int) -> list[int]:
    """The layer_index of every non-input layer of the target's cone, highest first: the
    DP needs one stage per such layer."""
    cone = nx.ancestors(G, target) | {target}
    return sorted({G.nodes[n]["layer_index"] for n in cone if G.nodes[n]["op"] != "input"},
                  reverse=True)


def paths_to(G: nx.DiGraph, target: int, through: set[int] | None = None) -> dict[int, int]:
    """Number of paths from each neuron to ``target``, by DP over a reverse topological order,
    following only paths whose neurons after the first lie in layers ``through`` (all layers
    when None). Returns the neurons the paths start from that are inputs or outside
    ``through``: all paths, from the inputs (None), or the frontier left when the stages ran
    out."""
    paths = {target: 1}
    for n in reversed(list(nx.topological_sort(G))):
        if n in paths and (through is None or G.nodes[n]["layer_index"] in through):
            for s in G.predecessors(n):
                paths[s] = paths.get(s, 0) + paths[n]
    return {n: p for n, p in paths.items()
            if G.nodes[n]["op"] == "input"
            or (through is not None and G.nodes[n]["layer_index"] not in through)}


def expected_rows(G: nx.DiGraph, counts: dict[int, int], complete: bool) -> list[list]:
    return [[n, G.nodes[n]["layer"], G.nodes[n]["index"], counts[n], complete]
            for n in sorted(counts)]


@pytest.mark.neo4j
@pytest.mark.parametrize("layer,index", TARGETS)
def test_full_query_equals_procedure_and_networkx(driver, loaded, layer, index):
    name, G = loaded
    target = neuron_id(G, layer, index)
    depth = len(cone_layers(G, target))
    params = {"model": name, "layer": layer, "index": index}
    want = expected_rows(G, paths_to(G, target), True)
    assert want and all(r[1] == "image" for r in want)
    for stages in sorted({depth, depth + 1, 24}):  # exactly enough, one more, the file's
        assert run_browser_text(driver, render_browser_query(stages), params) == want, stages
    assert run_browser_text(driver, QUERY_FILE.read_text(encoding="utf-8"), params) == want
    procedure = receptive_field(driver, name, layer, index)
    assert procedure.columns == COLUMNS
    assert procedure.rows == want


@pytest.mark.neo4j
@pytest.mark.parametrize("layer,index", [("dense", 2), ("add", 13), ("conv2", 0)])
def test_too_few_stages_give_the_frontier_and_complete_false(driver, loaded, layer, index):
    name, G = loaded
    target = neuron_id(G, layer, index)
    layers = cone_layers(G, target)
    assert len(layers) >= 3
    params = {"model": name, "layer": layer, "index": index}
    for stages in range(len(layers)):
        rows = run_browser_text(driver, render_browser_query(stages), params)
        frontier = paths_to(G, target, through=set(layers[:stages]))
        assert rows == expected_rows(G, frontier, False), stages
        # the frontier, carried on to the inputs with NetworkX, gives every path exactly once
        total: dict[int, int] = {}
        for n, p in frontier.items():
            for i, q in paths_to(G, n).items():
                total[i] = total.get(i, 0) + p * q
        assert total == paths_to(G, target)


@pytest.mark.neo4j
def test_unknown_neuron_gives_no_rows(driver, loaded):
    params = {"model": loaded[0], "layer": "dense", "index": 10_000}
    assert run_browser_text(driver, render_browser_query(2), params) == []
