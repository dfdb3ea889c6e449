"""`plan`'s predictions of the bulk load, the store, the GDS projection, and whether a model
fits this machine (loader/graph/costs.py)."""

import json

import pytest

from click.testing import CliRunner

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
    r = CliRunner().invoke(main, ["plan", "vgg16", "--weights", "none", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["selected_edges"] == VGG16_224_EDGES
    est, machine = data["estimates"], data["machine"]
    assert est["neo4j_bulk_seconds"] == costs.bulk_load_seconds(VGG16_224_NEURONS,
                                                                VGG16_224_EDGES)
    fits = (est["neo4j_store_bytes"] + est["bulk_files_bytes"] <= machine["disk_free_bytes"]
            and est["gds_projection_bytes"] + costs.GDS_HEAP_HEADROOM
            <= machine["memory_bytes"] * costs.MEMORY_SHARE)
    assert machine["fits"] is fits and bool(machine["cannot_fit"]) is not fits
    r = CliRunner().invoke(main, ["plan", "vgg16", "--weights", "none"])
    assert r.exit_code == 0, r.output
    assert "bulk load ~" in r.output and "GDS projection with weights" in r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("this machine: " + ("fits" if fits else "cannot fit: "))
