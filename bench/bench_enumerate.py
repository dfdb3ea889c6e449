"""Benchmark: enumerate every edge of VGG16 (224x224) against a plain Python-loop enumerator.

Ours is ``NeuronGraph.iter_edge_batches(reuse_buffers=True)``; every batch goes through a
checksum that reads all of ``src``, ``dst`` and ``weight`` (uint64 sums with wraparound of the
ids and of the weights' float32 bit patterns), so no edge can be skipped and the consumer's
cost is part of the figure. The baseline is what one writes without numpy: nested ``for``
loops over output position, kernel tap, input channel and output channel producing
``(src, dst, w)`` and adding it to the same checksum. It is timed on a whole graph it can
finish, VGG16 at ``--baseline-shape`` (default 32x32: 270,404,352 edges, about a minute),
every layer, and ours is timed on that same graph in the same run: the ratio is of those two
measured times, and the two checksums must be equal. An extra line extrapolates the Python
loop's rate to the ``--input-shape`` graph (224x224: 14,975,945,472 edges) against ours
measured there.

Before timing, both enumerators run over whole layers of VGG16 at 32x32 (a conv with padding
borders, a pooling layer, a 512x512 conv on a 2x2 map, a Dense layer) and must give the same
checksum, with extra pairing terms (sums of ``src*dst`` and ``dst*bits(w)``) that a swap
of edges between batches or a wrong pairing of ids and weights would change.

Run: ``.venv/bin/python bench/bench_enumerate.py`` (about two minutes on a free core);
``--quick`` enumerates 32x32 instead, ``--layers FIRST:LAST`` a layer range,
``--cpu N`` pins the process to one core (figures are for one core in any case: numpy runs
single-threaded here).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loader.graph.neuron_graph import DEFAULT_BATCH, NeuronGraph  # noqa: E402

MASK64 = (1 << 64) - 1
KINDS = {"Conv2D": "conv", "MaxPooling2D": "pool", "Dense": "dense"}


# ------------------------------------------------------------------------------ checksums
class Checksum:
    """Order-independent, exact: edge count and uint64 sums of src, dst and weight bits."""

    def __init__(self, pairing: bool = False):
        self.edges = 0
        self.src = self.dst = self.wbits = 0
        self.pairing = pairing
        self.src_dst = self.dst_w = 0

    def add(self, src: np.ndarray, dst: np.ndarray, weight: np.ndarray):
        self.edges += len(src)
        s, d = src.view(np.uint64), dst.view(np.uint64)
        bits = weight.view(np.uint32)
        # uint64 array sums wrap around silently, as wanted; the totals are Python ints.
        self.src += int(np.add.reduce(s))
        self.dst += int(np.add.reduce(d))
        self.wbits += int(np.add.reduce(bits, dtype=np.uint64))
        if self.pairing:
            self.src_dst += int(np.add.reduce(s * d))
            self.dst_w += int(np.add.reduce(d * bits.astype(np.uint64)))

    def value(self) -> tuple[int, ...]:
        v = (self.edges, self.src & MASK64, self.dst & MASK64, self.wbits & MASK64)
        return v + ((self.src_dst & MASK64, self.dst_w & MASK64) if self.pairing else ())


# ------------------------------------------------------------------------------ baseline
def same_padding(in_size, k, s):
    """TensorFlow 'same': out = ceil(in / s), pad_before = pad_total // 2."""
    out = -(-in_size // s)
    return out, max(0, (out - 1) * s + k - in_size) // 2


def python_loop_checksum(graph: NeuronGraph, name: str, limit: int | None = None,
                         pairing: bool = False) -> tuple:
    """The Python-loop enumerator over one layer, from the Keras layer (not our geometry).

    Stops after ``limit`` edges; returns (checksum tuple, edges).
    """
    entry = graph.entry(name)
    op = entry.op
    layer = graph.source.get_layer(name)
    src_t = op.inputs[0]
    assert src_t.contiguous, "the baseline handles contiguous inputs only"
    in_off, out_off = src_t.offset, op.offset
    s_src = s_dst = s_w = s_sd = s_dw = n = 0
    cls = type(layer).__name__
    if cls == "Dense":
        k = np.asarray(layer.get_weights()[0], np.float32)
        bits = k.view(np.uint32).tolist()
        cin, cout = k.shape
        for ci in range(cin):
            src = in_off + ci
            row = bits[ci]
            for co in range(cout):
                dst, w = out_off + co, row[co]
                s_src += src
                s_dst += dst
                s_w += w
                if pairing:
                    s_sd += src * dst
                    s_dw += dst * w
                n += 1
                if n == limit:
                    break
            if n == limit:
                break
    else:
        h, wd, cin = src_t.shape
        oh, ow, cout = entry.output.shape
        if cls == "Conv2D":
            k = np.asarray(layer.get_weights()[0], np.float32)
            bits = k.view(np.uint32).tolist()  # [ky][kx][ci][co]
            kh, kw = k.shape[:2]
            sy, sx = layer.strides
            groups = 1
        elif cls == "MaxPooling2D":
            kh, kw = layer.pool_size
            sy, sx = layer.strides
            one = int(np.float32(1.0).view(np.uint32))
            groups = cin
        else:
            raise ValueError(f"the baseline has no loop for {cls}")
        if layer.padding == "same":
            _, py = same_padding(h, kh, sy)
            _, px = same_padding(wd, kw, sx)
        else:
            py = px = 0
        done = False
        for oy in range(oh):
            for ox in range(ow):
                for ky in range(kh):
                    iy = oy * sy - py + ky
                    if not 0 <= iy < h:
                        continue
                    for kx in range(kw):
                        ix = ox * sx - px + kx
                        if not 0 <= ix < wd:
                            continue
                        in_base = in_off + (iy * wd + ix) * cin
                        out_base = out_off + (oy * ow + ox) * cout
                        if groups == 1:
                            taps = bits[ky][kx]
                            for ci in range(cin):
                                src = in_base + ci
                                row = taps[ci]
                                for co in range(cout):
                                    dst, w = out_base + co, row[co]
                                    s_src += src
                                    s_dst += dst
                                    s_w += w
                                    if pairing:
                                        s_sd += src * dst
                                        s_dw += dst * w
                                    n += 1
                                    if n == limit:
                                        done = True
                                        break
                                if done:
                                    break
                        else:  # pooling: channel c feeds channel c
                            for c in range(cin):
                                src, dst, w = in_base + c, out_base + c, one
                                s_src += src
                                s_dst += dst
                                s_w += w
                                if pairing:
                                    s_sd += src * dst
                                    s_dw += dst * w
                                n += 1
                        if done:
                            break
                    if done:
                        break
                if done:
                    break
            if done:
                break
    value = (n, s_src & MASK64, s_dst & MASK64, s_w & MASK64)
    if pairing:
        value += (s_sd & MASK64, s_dw & MASK64)
    return value, n


def ours_checksum(graph: NeuronGraph, name: str, batch_size: int, pairing=True) -> tuple:
    c = Checksum(pairing=pairing)
    for b in graph.iter_edge_batches(batch_size, reuse_buffers=True,
                                     layers=[graph.index_of(name)]):
        c.add(b.src, b.dst, b.weight)
    return c.value()


def verify(batch_size: int) -> None:
    """Whole layers at 32x32: ours and the Python loop must give the same checksum."""
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=(32, 32, 3))
    for name in ("block1_conv1", "block1_pool", "block5_conv3", "predictions"):
        expected, n = python_loop_checksum(g, name, pairing=True)
        got = ours_checksum(g, name, batch_size)
        status = "ok" if got == expected else "MISMATCH"
        print(f"verify 32x32 {name:>13}: {n:>10,} edges  checksum {status}")
        if got != expected:
            raise SystemExit(f"checksum mismatch on {name}: ours {got}, Python loop {expected}")
        if n != g.full_edge_count(g.index_of(name)):
            raise SystemExit(f"{name}: the Python loop made {n} edges, the plan says "
                             f"{g.full_edge_count(g.index_of(name))}")


# ------------------------------------------------------------------------------ timing
def enumerate_all(g: NeuronGraph, batch_size: int):
    """Stream every selected edge through the checksum; per-layer seconds and edges."""
    check = Checksum()
    seconds: dict[int, float] = {}
    edges: dict[int, int] = {}
    batches = 0
    start = t0 = time.perf_counter()
    for b in g.iter_edge_batches(batch_size, reuse_buffers=True):
        check.add(b.src, b.dst, b.weight)
        t1 = time.perf_counter()
        seconds[b.layer_index] = seconds.get(b.layer_index, 0.0) + t1 - t0
        edges[b.layer_index] = edges.get(b.layer_index, 0) + len(b.src)
        batches += 1
        t0 = t1
    return check, time.perf_counter() - start, seconds, edges, batches


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input-shape", default="224,224,3", help="H,W,C (default 224,224,3)")
    p.add_argument("--quick", action="store_true", help="32x32 input")
    p.add_argument("--layers", default=None, help="FIRST:LAST layer range (NeuronGraph layers=)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"edges per batch (default {DEFAULT_BATCH}, the library's)")
    p.add_argument("--baseline-shape", default="32,32,3",
                   help="H,W,C of the VGG16 whose every edge both enumerators make, timed")
    p.add_argument("--skip-verify", action="store_true")
    p.add_argument("--cpu", type=int, default=None, help="pin to this core")
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    shape = (32, 32, 3) if args.quick else tuple(int(x) for x in args.input_shape.split(","))

    if not args.skip_verify:
        # In a child process, so that the peak RSS below is the model's and the enumeration's.
        child = multiprocessing.get_context("spawn").Process(target=verify,
                                                             args=(args.batch_size,))
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit("verification failed: the figures below would not be of correct "
                             "output")

    # Baseline first, then ours on the same graph: the same process, the same machine state.
    base_shape = tuple(int(x) for x in args.baseline_shape.split(","))
    small = NeuronGraph.from_model("vgg16", weights=None, input_shape=base_shape)
    python_loop_checksum(small, small.entries[1].name, limit=1)  # warm up
    parts, n_base = [], 0
    t = time.perf_counter()
    for e in small.entries:
        if e.kind == "neurons":
            value, n = python_loop_checksum(small, e.name)
            parts.append(value)
            n_base += n
    base_s = time.perf_counter() - t
    base_rate = n_base / base_s
    base_check = tuple(sum(v[k] for v in parts) & MASK64 for k in range(4))
    small_check, ours_small_s, _, _, _ = enumerate_all(small, args.batch_size)
    if (n_base, small_check.value()) != (small.n_edges, base_check):
        raise SystemExit(f"vgg16 {base_shape}: the Python loop gave {base_check}, ours "
                         f"{small_check.value()}, the plan {small.n_edges:,} edges")
    print(f"vgg16 {base_shape}, every edge, same checksum: Python loop {n_base:,} edges in "
          f"{base_s:.1f} s = {base_rate / 1e6:.2f} M edges/s; ours {ours_small_s:.2f} s = "
          f"{n_base / ours_small_s / 1e6:,.0f} M edges/s")
    print(f"ratio on the same work, both measured: Python loop {base_s:.1f} s / ours "
          f"{ours_small_s:.2f} s = {base_s / ours_small_s:,.0f}x")
    del small

    t = time.perf_counter()
    g = NeuronGraph.from_model("vgg16", weights=None, input_shape=shape, layers=args.layers)
    total = g.n_edges
    print(f"vgg16 {shape}: {total:,} edges planned, model built in "
          f"{time.perf_counter() - t:.1f} s (untimed)")

    check, seconds, per_layer_s, per_layer_n, batches = enumerate_all(g, args.batch_size)
    if check.edges != total:
        raise SystemExit(f"enumerated {check.edges:,} edges, the plan says {total:,}")
    rate = total / seconds
    print(f"ours: {total:,} edges in {seconds:.2f} s = {rate / 1e6:,.0f} M edges/s "
          f"({batches:,} batches of <= {args.batch_size:,}), checksum {check.value()}")
    by_kind: dict[str, list[float]] = {}
    for i, s in per_layer_s.items():
        kind = KINDS.get(g.entries[i].class_name, g.entries[i].class_name)
        acc = by_kind.setdefault(kind, [0, 0.0])
        acc[0] += per_layer_n[i]
        acc[1] += s
    for kind, (n, s) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        print(f"  {kind:>6}: {n:>15,} edges {s:8.2f} s  {n / s / 1e6:8,.0f} M edges/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(f"peak RSS {peak / 2**30:.2f} GiB (model weights included)")
    print(f"extrapolated: the Python loop's rate over these {total:,} edges ~"
          f"{total / base_rate:,.0f} s against ours measured {seconds:.2f} s: "
          f"~{rate / base_rate:,.0f}x")
    return rate, base_rate, seconds, peak


if __name__ == "__main__":
    main()
