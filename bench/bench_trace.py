"""Benchmark: the contribution map of one VGG16 output neuron at 224x224 through the graph,
against TensorFlow's gradient of the same neuron, in the same run.

Ours: ``loader.graph.trace.trace(g, x, target="predictions:K")``: a forward pass (every
neuron's value, every max-pooling choice) and a backward pass from the target down, layer by
layer over the graph's edges as blocks (:mod:`loader.graph.blocks`): the cone of one output
neuron of VGG16 at 224x224 holds 14,971,853,568 of the model's 14,975,945,472 edges (all but
the other 999 output neurons' 4,096 each), each used once per pass, in float64. The
contribution map is value x gradient of every input neuron.

Baseline: TensorFlow computes the same map with ``tf.GradientTape``: d predictions[K] /
d input, times the input, on the Keras model (its first and second calls are timed), in
float64 (the same model and weights under the ``float64`` dtype policy), the precision the
graph pass computes in, and in float32, Keras's default.

The run prints the ratio of the graph pass's time to TensorFlow's, each the second call on
the same model, input and target (the graph pass does what TensorFlow does, but through the
graph's edges, and gives every neuron's value, choice and contribution besides).

The graph's map must agree with TensorFlow's float64 map within 1e-4 of its largest magnitude
(it does to ~1e-8). TensorFlow's own float32 map differs from its float64 one by a few
percent at some pixels: float32 rounding flips a few ReLU and max-pooling decisions near
their kinks among 15 million neurons, and the gradient then takes another path; the run
prints that difference too. The weights are random
(``weights=None``): ImageNet weights cannot be downloaded where this runs; the arithmetic is
the same. The input is matplotlib's sample photograph (grace_hopper.jpg) resized to 224x224
and preprocessed as VGG16 expects (caffe).

Run: ``.venv/bin/python bench/bench_trace.py`` (about 2 minutes and 4 GiB on this machine);
``--target K`` picks the output neuron, ``--size N`` a smaller input (``--size 32``: seconds,
~1 GiB).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import matplotlib  # noqa: E402
import tensorflow as tf  # noqa: E402

from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.graph.trace import trace  # noqa: E402
from loader.inputs import read_input  # noqa: E402


def tf_contribution(model, x: np.ndarray, k: int, dtype: str = "float32") -> np.ndarray:
    xin = tf.constant(x[None].astype(dtype))
    with tf.GradientTape() as tape:
        tape.watch(xin)
        y = model(xin, training=False)[0, k]
    return (tape.gradient(y, xin) * xin).numpy()[0]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=int, default=281)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    shape = (args.size, args.size, 3)
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None, input_shape=shape)
    keras.config.set_dtype_policy("float64")
    model64 = keras.applications.VGG16(weights=None, input_shape=shape)
    keras.config.set_dtype_policy("float32")
    model64.set_weights(model.get_weights())
    g = NeuronGraph.from_model(model)
    image = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    x = read_input(image, shape, mode="auto", family="keras.src.applications.vgg16")
    target = f"predictions:{args.target}"
    total = g.plan().edges
    cone = g.same_model(cone=target)
    cone_edges = cone.n_edges
    print(f"VGG16 at {shape}: {g.total_neurons:,} neurons, {total:,} edges; the cone of "
          f"{target} holds {cone_edges:,}")

    t_cold, s_cold = timed(lambda: trace(g, x, target=target))
    t, s = timed(lambda: trace(g, x, target=target))
    ours = t.layer(g.entries[0].name, "contribution")
    print(f"graph pass, first call (builds the tap matrices): {s_cold:.1f} s "
          f"(forward {t_cold.seconds['forward']:.1f} s, backward {t_cold.seconds['backward']:.1f} s)")
    print(f"graph pass, second call: {s:.1f} s (forward {t.seconds['forward']:.1f} s, "
          f"backward {t.seconds['backward']:.1f} s); {2 * cone_edges / s / 1e9:.2f} G "
          f"edge-uses/s over both passes")

    _, tf_cold = timed(lambda: tf_contribution(model64, x, args.target, "float64"))
    theirs, tf_warm = timed(lambda: tf_contribution(model64, x, args.target, "float64"))
    print(f"TensorFlow GradientTape, float64: first call {tf_cold:.2f} s, second call "
          f"{tf_warm:.2f} s")
    _, tf32_cold = timed(lambda: tf_contribution(model, x, args.target))
    theirs32, tf32_warm = timed(lambda: tf_contribution(model, x, args.target))
    print(f"TensorFlow GradientTape, float32: first call {tf32_cold:.2f} s, second call "
          f"{tf32_warm:.2f} s")
    print(f"ratio, second calls, same model, input and target: graph pass {s:.2f} s / "
          f"TensorFlow float64 {tf_warm:.2f} s = {s / tf_warm:.2f}x the time; / TensorFlow "
          f"float32 {tf32_warm:.2f} s = {s / tf32_warm:.2f}x")

    scale = float(np.abs(theirs).max())
    err = float(np.abs(ours - theirs).max()) / scale
    err32 = float(np.abs(theirs32 - theirs).max()) / scale
    print(f"target value: graph {t.values[t.target_id]:.8g}, Keras "
          f"{float(model(x[None].astype('float32'), training=False)[0, args.target]):.8g}")
    print(f"contribution maps: graph vs TF float64: max |difference| / max |TF| = {err:.2e} "
          f"(largest |TF| {scale:.3g}); sum graph {ours.sum():.8g}, TF {theirs.sum():.8g}")
    print(f"(TF float32 vs TF float64: {err32:.2e}, float32 rounding at ReLU/max-pool kinks)")
    print(f"{t.active.mean():.1%} of neurons active; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    ok = err <= 1e-4 and s < 60
    print("OK: agrees within 1e-4 and under 60 s" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
