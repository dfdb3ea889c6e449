"""Make the README's figures of an aggregated trace: the chosen rate by window position per
pooling layer and the active-rate histograms, over the 360 held-out digits of the demo's CNN
(``loader.demo.trained_digits``: trained here, deterministically), with contributions to each
digit's predicted class. The figures are what ``weightgraph analyze --trace T`` draws for an
aggregated trace.

Run: ``.venv/bin/python docs/trace_set_figures.py`` (about 15 s); writes
``docs/trace_set_positions.png`` and ``docs/trace_set_active_rates.png``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loader.analysis import plots  # noqa: E402
from loader.analysis.trace_sets import from_trace_set  # noqa: E402
from loader.demo import trained_digits  # noqa: E402
from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.graph.trace_set import trace_set  # noqa: E402


def main():
    model, split = trained_digits(0)
    g = NeuronGraph.from_model(model)
    ts = trace_set(g, split.x_test.astype(np.float64), target="predicted",
                   info={"inputs": "the 360 held-out digits"})
    view = from_trace_set(ts)
    docs = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(plots.plot_chosen_rate_heatmaps(view.pools, view.n, tmp),
                    docs / "trace_set_positions.png")
        shutil.copy(plots.plot_active_rate_histograms(view.layers, tmp),
                    docs / "trace_set_active_rates.png")
    print("wrote docs/trace_set_positions.png and docs/trace_set_active_rates.png")


if __name__ == "__main__":
    main()
