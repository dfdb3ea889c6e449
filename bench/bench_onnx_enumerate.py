"""Benchmark: enumerating every edge through the ONNX front end against the Keras front end,
for the same model, in the same run.

The model is VGG16 (keras.applications, weights=None, 32x32x3 by default: 270M edges),
saved as ``.keras`` and exported with ``model.export(path, format="onnx")`` by a child
process (bench_onnx_plan.py's export) into a temporary directory that is deleted at the
end; ``--keras``/``--onnx`` reuse files. Both graphs stream every edge with
``iter_edge_batches(reuse_buffers=True)`` into the checksum of bench/bench_enumerate.py
(edge count, uint64 sums of src, dst and the weights' float32 bits), so no edge can be
skipped. The two graphs hold the same edges with the same weights but number neurons in
their own layouts (NHWC against NCHW), so their edge counts and weight-bit sums must be
equal while the id sums differ. Runs alternate (keras, onnx, keras, onnx, ...), ``--repeats``
each; the best of each is compared.

Run: ``.venv/bin/python bench/bench_onnx_enumerate.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_enumerate import enumerate_all  # noqa: E402
from bench_onnx_plan import ROOT  # noqa: E402

from loader.graph.neuron_graph import DEFAULT_BATCH, NeuronGraph  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="VGG16", help="keras.applications name (default VGG16)")
    p.add_argument("--input-shape", default="32,32,3", help="H,W,C (default 32,32,3)")
    p.add_argument("--onnx", type=Path, help="an existing .onnx export")
    p.add_argument("--keras", type=Path, help="the same model as a .keras file")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    tmp = None
    try:
        kpath, opath = args.keras, args.onnx
        if kpath is None or opath is None:
            tmp = Path(tempfile.mkdtemp(prefix="bench_onnx_enumerate_"))
            t = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "bench" / "bench_onnx_plan.py"),
                            "--export-to", str(tmp), "--model", args.model, "--input-shape",
                            args.input_shape], check=True, cwd=ROOT)
            kpath, opath = tmp / f"{args.model}.keras", tmp / f"{args.model}.onnx"
            print(f"saved and exported {args.model} ({opath.stat().st_size / 2**20:.0f} MiB) "
                  f"in {time.perf_counter() - t:.0f} s (untimed)", flush=True)
        t = time.perf_counter()
        graphs = {"keras": NeuronGraph.from_model(str(kpath))}
        tk = time.perf_counter() - t
        t = time.perf_counter()
        graphs["onnx"] = NeuronGraph.from_model(opath)
        to = time.perf_counter() - t
        print(f"{args.model} {shape}: graphs built in {tk:.2f} s (keras) and {to:.2f} s "
              f"(onnx), untimed below")
        best, checks, batches = {}, {}, {}
        for _ in range(args.repeats):
            for label, g in graphs.items():
                check, seconds, _, _, n = enumerate_all(g, args.batch_size)
                best[label] = min(best.get(label, float("inf")), seconds)
                checks[label], batches[label] = check.value(), n
        ck, co = checks["keras"], checks["onnx"]
        if ck[0] != co[0] or ck[3] != co[3]:
            raise SystemExit(f"the two graphs differ: edges {ck[0]} / {co[0]}, weight bits "
                             f"{ck[3]} / {co[3]}")
        print(f"same {ck[0]:,} edges and weight-bit sum in both; load average "
              f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} cores; best of {args.repeats}:")
        for label in graphs:
            print(f"  {label:<6} front end: {best[label]:7.2f} s = "
                  f"{ck[0] / best[label] / 1e6:6.0f} M edges/s ({batches[label]:,} batches)")
        print(f"ratio onnx / keras time: {best['onnx'] / best['keras']:.2f}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
