"""`plan`'s predictions of the bulk load, the store, the GDS projection, and whether a model
fits this machine (loader/graph/costs.py).

The sizes `plan` starts from are held to counts from Keras's shapes (tests/keras_graph.py);
the NetworkX memory figure to a tracemalloc measurement. The other predictions are rates
measured by the benchmarks (costs.py says which); here they are checked for their logic
(linear in the edges, fixed costs once, the reasons a model cannot fit) and for being what
`plan` quotes.
"""

import json
import tracemalloc

import keras
import pytest

from click.testing import CliRunner

from keras_graph import layer_counts
from loader.cli import main
from loader.graph import costs

VGG16_224_EDGES = 14_975_945_472
VGG16_224_NEURONS = 15_237_608


def test_predictions_scale_with_the_graph():
    small, big = costs.estimates(1_000, 1_000_000), costs.estimates(2_000, 2_000_000)
    for key in ("neo4j_bulk_seconds", "neo4j_store_bytes", "gds_projection_bytes",
                "bulk_files_bytes"):
        assert 0 < small[key] < big[key], key
    # fixed costs once, the per-edge part doubles
    assert big["neo4j_bulk_seconds"] - costs.BULK_FIXED_SECONDS == pytest.approx(
        2 * (small["neo4j_bulk_seconds"] - costs.BULK_FIXED_SECONDS))
    assert costs.gds_projection_bytes(10, 1000, weighted=False) < \
        costs.gds_projection_bytes(10, 1000)


def test_cannot_fit_says_why():
    est = costs.estimates(VGG16_224_NEURONS, VGG16_224_EDGES)
    assert est["neo4j_store_bytes"] > 1.1e12  # ~1.2 TB
    reasons = costs.machine_fit(est, disk_free=75 * 10**9, memory=24 << 30)
    assert len(reasons) == 2
    assert reasons[0].startswith("disk: the bulk load needs 1.") and "TB" in reasons[0]
    assert reasons[1].startswith("memory: a GDS projection")
    assert costs.machine_fit(est, disk_free=2 * 10**12, memory=24 << 30)[0].startswith("memory")
    assert costs.machine_fit(est, disk_free=2 * 10**12, memory=1 << 40) == []


@pytest.mark.slow  # builds a whole keras.applications model
def test_plan_json_and_text_say_whether_vgg16_224_fits_here():
    counts = layer_counts(keras.applications.VGG16(weights=None)).values()
    neurons, edges = sum(n for n, _ in counts), sum(e for _, e in counts)
    assert (neurons, edges) == (VGG16_224_NEURONS, VGG16_224_EDGES)  # the README's figures
    r = CliRunner().invoke(main, ["plan", "vgg16", "--weights", "none", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert (data["selected_nodes"], data["selected_edges"]) == (neurons, edges)
    est, machine = data["estimates"], data["machine"]
    # plan quotes costs' model for those counts (the model's rates: costs.py and bench/)
    assert est == costs.estimates(neurons, edges)
    fits = (est["neo4j_store_bytes"] + est["bulk_files_bytes"] <= machine["disk_free_bytes"]
            and est["gds_projection_bytes"] + costs.GDS_HEAP_HEADROOM
            <= machine["memory_bytes"] * costs.MEMORY_SHARE)
    assert machine["fits"] is fits and bool(machine["cannot_fit"]) is not fits
    r = CliRunner().invoke(main, ["plan", "vgg16", "--weights", "none"])
    assert r.exit_code == 0, r.output
    assert "bulk load ~" in r.output and "GDS projection with weights" in r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("this machine: " + ("fits" if fits else "cannot fit: "))


def test_networkx_estimate_is_what_networkx_takes():
    """``networkx_bytes`` (and ``to_networkx``'s refusal) against tracemalloc's count of what
    a DiGraph of a conv layer (in-degree 72, out-degree up to 72) really allocates."""
    from loader.graph.neuron_graph import NeuronGraph
    from loader.sinks.networkx import to_networkx

    inp = keras.Input((16, 16, 8))
    g = NeuronGraph.from_model(keras.Model(inp, keras.layers.Conv2D(8, 3, padding="same")(inp)))
    tracemalloc.start()
    G = to_networkx(g)
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert G.number_of_edges() == g.n_edges > 100_000
    predicted = costs.estimates(g.n_nodes, g.n_edges)["networkx_bytes"]
    assert 0.9 < used / predicted < 1.1, (used, predicted)
