"""Make the README's trace figures: a contribution map beside its input, and the chosen
pooling positions, from a small CNN *trained* here (ImageNet weights cannot be downloaded in
this project's environment, and a random network's map is noise).

The task: 32x32 RGB images of noise holding one shape, a red square, a green cross or a blue
ring, anywhere; the network (3 x [conv 3x3 + ReLU + 2x2 max pooling], dense) learns which.
Then one test image is traced with the logit of its true class as the target; the figures
are what ``weightgraph analyze --trace`` draws.

Run: ``.venv/bin/python docs/trace_figures.py`` (about a minute); writes
``docs/trace_contribution.png`` and ``docs/trace_chosen_positions.png``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
from keras import layers  # noqa: E402

from loader.analysis import plots  # noqa: E402
from loader.analysis.traces import from_trace  # noqa: E402
from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.graph.trace import trace  # noqa: E402

SIZE = 32


def image(kind: int, rng) -> np.ndarray:
    x = rng.uniform(0, 90, size=(SIZE, SIZE, 3))
    r, c = rng.integers(4, SIZE - 12, size=2)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    if kind == 0:  # red square
        mask = (yy >= r) & (yy < r + 8) & (xx >= c) & (xx < c + 8)
        color = (230, 40, 40)
    elif kind == 1:  # green cross
        mask = (((yy >= r) & (yy < r + 8) & (xx >= c + 3) & (xx < c + 5))
                | ((xx >= c) & (xx < c + 8) & (yy >= r + 3) & (yy < r + 5)))
        color = (40, 220, 60)
    else:  # blue ring
        d = np.hypot(yy - r - 3.5, xx - c - 3.5)
        mask = (d > 2) & (d < 4.2)
        color = (50, 80, 235)
    x[mask] = color
    return x


def main():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    kinds = rng.integers(0, 3, size=3000)
    xs = np.stack([image(k, rng) for k in kinds]).astype("float32")
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="scale")(inp)
    for i, f in enumerate((16, 32, 32), start=1):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Dense(32, activation="relu", name="fc")(layers.Flatten(name="flatten")(x))
    model = keras.Model(inp, layers.Dense(3, name="logits")(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(xs, kinds, epochs=6, batch_size=64, verbose=0, validation_split=0.1)
    test_kinds = rng.integers(0, 3, size=300)
    test = np.stack([image(k, rng) for k in test_kinds]).astype("float32")
    acc = float((model.predict(test, verbose=0).argmax(axis=1) == test_kinds).mean())
    print(f"test accuracy {acc:.1%}")
    g = NeuronGraph.from_model(model)
    x = image(1, np.random.default_rng(7))
    t = trace(g, x, target="logits:1", info={"input": "a green cross"})
    view = from_trace(t)
    out = Path(__file__).resolve().parent
    entry = view.inputs["image"]
    entry["shown"] = np.clip(x, 0, 255).astype(np.uint8)
    p1 = plots.plot_contribution_map(entry["shown"], entry["contribution"],
                                     f"trained CNN (test accuracy {acc:.0%}): {view.title}",
                                     out, "trace_contribution")
    p2 = plots.plot_chosen_positions(view.pools, out)
    p2 = p2.rename(out / "trace_chosen_positions.png")
    print(f"wrote {p1} and {p2}")


if __name__ == "__main__":
    main()
