"""Benchmark: an aggregated trace over a set of inputs (contributions to each input's own
predicted class), against running a single-input trace per input, in the same run.

Ours: ``loader.graph.trace_set.trace_set(g, X, target="predicted")``: the inputs go through
the graph in batches, one pass per layer per batch forward and one backward (the tap matrices
of the single trace with a batch axis; :mod:`loader.graph.blocks`), and the aggregates (mean
values, active rates, chosen rates per pooling edge, mean contributions and mean |value x
gradient|) are summed as the batches go.

Baseline: what a user had before, one ``loader.graph.trace.trace(g, x, target=...)`` per
input, its target the input's predicted class (Keras's argmax, computed before the clock
starts), summing the same aggregates by hand. On VGG16 the baseline's per-input time comes from
``--baseline-runs`` measured runs (default all 32); with fewer, its total is those runs' mean
times the set, and the run says so.

Two cases (``--case``):

* ``digits``: the demo's CNN trained on scikit-learn's digits (``loader.demo.digits_model``),
  its 360 held-out digits. Goal: under 10 s.
* ``vgg16``: VGG16 at 224x224 with random weights (``weights=None``: ImageNet weights cannot be
  downloaded where this runs; the arithmetic is the same), 32 inputs: crops of scikit-image's
  bundled photographs (chelsea, coffee, astronaut, rocket; four quadrants and the whole of
  each, mirrored or not) resized to 224x224 and preprocessed as VGG16 expects (caffe). Goal:
  under 3 minutes on the project's 2-core machine.

The aggregates of both must agree (max relative difference printed; over the baseline's inputs
for VGG16, from a second aggregated run over exactly those). The load average is printed
before and after: the machine is shared, and a loaded run is slower on both sides.

Run: ``.venv/bin/python bench/bench_trace_set.py --case digits`` (about 10 s) and
``--case vgg16 [--baseline-runs N] [--batch-size B]`` (about 10 minutes and 7.5 GiB).

Measured on the project's shared 2-core VM (2026-12-03):

* digits: 0.13 s for the 360 digits (0.1 CPU-s) against 0.40 s for 360 single traces (x3.2),
  load 2.0.
* VGG16 @224: 152.5 s for 32 inputs (4.8 s per input, 140.3 CPU-s, batches of 5 in two
  threads; load 2.9-3.7) against 201.8 s for 32 single traces (6.3 s per input, 249.0 CPU-s;
  load 3.7 falling to 2.3): x1.32 wall, x1.77 CPU. Before the threads (BLAS's own two
  threads): 181.6 s, 168.9 CPU-s against 281.7 s, 260.8 CPU-s (load 3.7-4.8). At load 6-9,
  before the im2col GEMMs: 301.1 s.
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

from loader.graph.neuron_graph import NeuronGraph  # noqa: E402
from loader.graph.trace import trace  # noqa: E402
from loader.graph.trace_set import trace_set  # noqa: E402


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def photographs(size: int) -> np.ndarray:
    """32 inputs from scikit-image's bundled photographs, as VGG16 reads them."""
    import skimage.data
    from PIL import Image
    from keras.applications.vgg16 import preprocess_input

    out = []
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        img = np.asarray(getattr(skimage.data, name)())
        h, w = img.shape[:2]
        crops = [img, img[:h // 2, :w // 2], img[:h // 2, w // 2:], img[h // 2:, :w // 2]]
        for c in crops:
            for flip in (False, True):
                a = np.asarray(Image.fromarray(np.ascontiguousarray(c)).resize(
                    (size, size), Image.BILINEAR), dtype=np.float32)
                out.append(a[:, ::-1] if flip else a)
    return np.asarray(preprocess_input(np.stack(out)), np.float64)


def baseline(g: NeuronGraph, x: np.ndarray, targets: list[str]) -> tuple[dict, list[float]]:
    """One single-input trace per input, the aggregates summed by hand."""
    sums = {k: np.zeros(g.total_neurons) for k in ("mean_value", "active_rate",
                                                    "mean_contribution",
                                                    "mean_abs_contribution")}
    times = []
    for xi, target in zip(x, targets):
        start = time.perf_counter()
        t = trace(g, xi, target=target)
        sums["mean_value"] += t.values[:-1]
        sums["active_rate"] += t.active
        sums["mean_contribution"] += t.contribution
        sums["mean_abs_contribution"] += np.abs(t.contribution)
        times.append(time.perf_counter() - start)
        if times[-1] > 1.0:  # VGG16: one line per run (the digits CNN's take 1 ms)
            print(f"    baseline run {len(times)}: {times[-1]:.1f} s ({load()})", flush=True)
    return {k: v / len(x) for k, v in sums.items()}, times


def agreement(ts, sums: dict) -> float:
    worst = 0.0
    for k, want in sums.items():
        got = ts.array(k)
        worst = max(worst, float(np.abs(got - want).max()) / max(float(np.abs(want).max()),
                                                                 1e-300))
    return worst


def run(g, x, predicted_layer, *, goal: float, baseline_runs: int, batch_size, label: str):
    out_size = g.entry(predicted_layer).op.n_neurons
    print(f"{label}: {g.total_neurons:,} neurons, {g.plan().edges:,} edges, {len(x)} inputs "
          f"({load()})", flush=True)
    c0, t0 = cpu(), time.perf_counter()
    ts = trace_set(g, x, target="predicted", batch_size=batch_size)
    ours, ours_cpu = time.perf_counter() - t0, cpu() - c0
    print(f"ours: trace_set, {len(x)} inputs in {ours:.2f} s ({ours / len(x):.3f} s per "
          f"input, batches of {ts.batch_size}, {ours_cpu:.1f} CPU-s; {load()})", flush=True)
    targets = [f"{predicted_layer}:{int(p)}" for p in ts.predicted]
    assert all(0 <= int(p) < out_size for p in ts.predicted)
    n = min(baseline_runs, len(x))
    c0, t0 = cpu(), time.perf_counter()
    sums, times = baseline(g, x[:n], targets[:n])
    base, base_cpu = time.perf_counter() - t0, cpu() - c0
    per = base / n
    total = per * len(x)
    how = "measured" if n == len(x) else f"{n} measured runs x {len(x) / n:.2f}"
    print(f"baseline: {n} single-input traces in {base:.2f} s ({per:.3f} s per input, "
          f"{base_cpu:.1f} CPU-s); for {len(x)} inputs {total:.1f} s ({how}); {load()}")
    check = ts if n == len(x) else trace_set(g, x[:n], target="predicted",
                                             batch_size=batch_size)
    err = agreement(check, sums)
    print(f"aggregates (mean values, active rates, mean contributions, mean |contribution|) "
          f"vs the baseline's: max relative difference {err:.2e}")
    print(f"speed-up {total / ours:.2f}x wall, {base_cpu / n * len(x) / ours_cpu:.2f}x CPU; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    ok = ours < goal and err < 1e-9
    print(f"{'OK' if ok else 'FAILED'}: {ours:.1f} s against the goal of {goal:.0f} s; "
          + ("aggregates agree within 1e-9" if err < 1e-9 else "aggregates DIFFER"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=["digits", "vgg16"], default="digits")
    ap.add_argument("--baseline-runs", type=int, default=None,
                    help="single-input traces to measure (default: all the inputs)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--size", type=int, default=224, help="vgg16: the input size")
    args = ap.parse_args()
    if args.case == "digits":
        from loader.demo import trained_digits

        model, split = trained_digits(0)
        g = NeuronGraph.from_model(model)
        x = split.x_test.astype(np.float64)
        trace_set(g, x[:2], target="predicted")  # builds the layer passes, as a warm run would
        ok = run(g, x, "logits", goal=10.0, baseline_runs=args.baseline_runs or len(x),
                 batch_size=args.batch_size, label="digits CNN")
    else:
        keras.utils.set_random_seed(0)
        model = keras.applications.VGG16(weights=None, input_shape=(args.size, args.size, 3))
        g = NeuronGraph.from_model(model)
        x = photographs(args.size)
        # Both sides share the layer passes (tap matrices, widened kernels): build them once
        # before either clock starts, with one untimed single-input trace.
        start = time.perf_counter()
        trace(g, x[0], target="predictions:0")
        print(f"warm-up: one single-input trace builds the layer passes in "
              f"{time.perf_counter() - start:.1f} s")
        ok = run(g, x, "predictions", goal=180.0, baseline_runs=args.baseline_runs or len(x),
                 batch_size=args.batch_size, label=f"VGG16 at {args.size}x{args.size}, "
                 "weights=None")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
