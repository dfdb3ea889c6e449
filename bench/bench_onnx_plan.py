"""Benchmark: wall time of ``weightgraph plan`` on an ONNX file, with TensorFlow importable
and with it blocked, beside ``plan`` of the same model as a ``.keras`` file (the baseline:
the Keras front end imports TensorFlow).

The model is VGG16 (keras.applications, weights=None, 32x32x3 by default; 320k neurons,
270M edges), saved as ``.keras`` and exported with ``model.export(path, format="onnx")``
into a temporary directory that is deleted at the end (``--onnx``/``--keras`` reuse files
instead). Each plan is a fresh process, timed from start to exit as a user sees it,
``--repeats`` times in turn (the order rotating each round), and the median is printed. "Without TensorFlow" installs an import finder that raises ImportError for
``tensorflow``, ``keras`` and ``tf2onnx`` before ``loader.cli`` is imported; every run also
reports whether TensorFlow ended up imported.

Run: ``.venv/bin/python bench/bench_onnx_plan.py`` (the export takes a minute or two).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUNNER = """
import sys, importlib.abc
if sys.argv[1] == "block":
    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx"):
                raise ImportError(name + " is blocked")
            return None
    sys.meta_path.insert(0, Blocked())
from loader.cli import main
try:
    main(sys.argv[2:], standalone_mode=False)
finally:
    sys.stderr.write("tensorflow imported: %s\\n" % ("tensorflow" in sys.modules))
"""


def export_model(name: str, shape: tuple, where: Path) -> tuple[Path, Path]:
    """keras.applications ``name`` (weights=None) as ``where/name.keras`` and its ONNX export
    ``where/name.onnx``."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=shape)
    model(np.zeros((1,) + shape, dtype="float32"))
    kpath, opath = where / f"{name}.keras", where / f"{name}.onnx"
    model.save(kpath)
    model.export(str(opath), format="onnx", verbose=False)
    return kpath, opath


def time_plan(model: Path, block: bool, runner: Path) -> tuple[float, bool]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(runner), "block" if block else "allow", "plan",
                        str(model)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"plan {model} failed:\n{r.stderr[-2000:]}")
    return seconds, "tensorflow imported: True" in r.stderr


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="VGG16", help="keras.applications name (default VGG16)")
    p.add_argument("--input-shape", default="32,32,3", help="H,W,C (default 32,32,3)")
    p.add_argument("--onnx", type=Path, help="an existing .onnx file (skips the export)")
    p.add_argument("--keras", type=Path, help="the same model as a .keras file")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--export-to", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.export_to is not None:
        export_model(args.model, tuple(int(s) for s in args.input_shape.split(",")),
                     args.export_to)
        return
    tmp = None
    try:
        if args.onnx is None or args.keras is None:
            tmp = Path(tempfile.mkdtemp(prefix="bench_onnx_plan_"))
            shape = tuple(int(s) for s in args.input_shape.split(","))
            t = time.perf_counter()
            # In a child process: the parent stays small (TensorFlow and the exporter hold
            # gigabytes that the timed runs would compete with).
            subprocess.run([sys.executable, __file__, "--export-to", str(tmp), "--model",
                            args.model, "--input-shape", args.input_shape], check=True,
                           cwd=ROOT)
            kpath, opath = tmp / f"{args.model}.keras", tmp / f"{args.model}.onnx"
            print(f"{args.model} {shape}: saved .keras ({kpath.stat().st_size / 2**20:.0f} MiB) "
                  f"and exported .onnx ({opath.stat().st_size / 2**20:.0f} MiB) in "
                  f"{time.perf_counter() - t:.0f} s (untimed)", flush=True)
        else:
            kpath, opath = args.keras, args.onnx
        runner = (tmp or Path(tempfile.gettempdir())) / "bench_onnx_plan_runner.py"
        runner.write_text(RUNNER)
        cases = {"onnx, TensorFlow importable": (opath, False),
                 "onnx, TensorFlow blocked": (opath, True),
                 "keras file (baseline)": (kpath, False)}
        times = {k: [] for k in cases}
        imported = {}
        order = list(cases)
        for k in range(args.repeats):  # the order turns each round: no case always goes first
            for label in order[k % 3:] + order[:k % 3]:
                path, block = cases[label]
                s, tf = time_plan(path, block, runner)
                times[label].append(s)
                imported[label] = tf
        load = os.getloadavg()[0]
        print(f"plan wall time, fresh process each, median of {args.repeats} "
              f"(load average {load:.1f}, {os.cpu_count()} cores):")
        med = {k: statistics.median(v) for k, v in times.items()}
        for label, v in times.items():
            print(f"  {label:<30} {med[label]:6.2f} s  (runs {', '.join(f'{x:.2f}' for x in v)}; "
                  f"TensorFlow imported: {imported[label]})")
        base = med["keras file (baseline)"]
        print(f"ratio keras / onnx: {base / med['onnx, TensorFlow importable']:.1f}x; "
              f"onnx with / without TensorFlow importable: "
              f"{med['onnx, TensorFlow importable'] / med['onnx, TensorFlow blocked']:.2f}")
        if tmp is None:
            runner.unlink()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
