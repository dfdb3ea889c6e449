"""Vectorised text for the streaming writers (GraphML, neo4j-admin CSV).

A batch of numbers becomes text without a Python loop over its elements:

* integers become ASCII with digit arithmetic on whole arrays (4 digits per table lookup);
* a float's text is ``repr`` of its float64 value, the only per-value Python work, done for the
  *distinct* values of a batch and cached across batches by bit pattern, because a conv kernel
  value is reused at every output position and every max-pooling edge is 1.0;
* each element is one fixed-width ``uint8`` row of constant bytes and those fields, 0-padded;
  removing the pad bytes with one boolean mask gives the finished text of the whole batch;
* writing (and gzip compression, on all cores) runs on background threads while the next batch
  is formatted.
"""

from __future__ import annotations

import os
import queue
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

# gzip level 1: on GraphML text it compresses ~4.1x at ~240 MB/s per core, where level 3 gives
# 4.3x at 140 MB/s and level 6 4.6x at 70 MB/s (measured on 90-byte edge lines). Compression is
# the slowest stage of a .gz export, so the few percent of size are not worth 2-3x the time.
GZIP_LEVEL = 1
# Each chunk becomes an independent gzip member (RFC 1952 allows concatenated members; gzip,
# zcat, zlib's gzread and Python read them as one stream), so all cores can compress at once.
_GZIP_CHUNK = 4 << 20
# Distinct float values whose text stays cached: 4M entries (~120 MB) hold the largest kernels
# of VGG16/ResNet (3x3x512x512 = 2.4M weights).
_FLOAT_CACHE_ENTRIES = 1 << 22
# Elements turned into text at a time, whatever the batch size: 128k rows keep the row buffers
# (~13 MB each) in cache-friendly sizes; 64k-256k ran at the same speed, 512k-1M 10-30% slower
# and with 4x the memory.
ROWS_PER_TEXT = 1 << 17
# Longest repr of a float64: sign, 17 digits, point, "e-308".
_FLOAT_TEXT_WIDTH = 24

_DIGITS4 = np.frombuffer(b"".join(b"%04d" % i for i in range(10_000)), dtype=np.uint32)
_POW10 = 10 ** np.arange(1, 19, dtype=np.int64)

def decimal_columns(values: np.ndarray) -> np.ndarray:
    """ASCII decimal of non-negative integers: an (n, width) uint8 array, right-aligned, 0-padded.

    Four digits per lookup in a 10,000-entry table of 4-byte strings, so an 8-digit id costs
    two integer divisions and two gathers (~5 ms per million values).
    """
    x = np.asarray(values)
    if x.dtype.kind not in "iu":
        x = x.astype(np.int64)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 1), dtype=np.uint8)
    lo, hi = int(x.min()), int(x.max())
    if lo < 0:
        raise ValueError(f"negative id or index {lo} cannot be written")
    width = len(str(hi))
    chunks = -(-width // 4)
    quads = np.empty((n, chunks), dtype=np.uint32)
    rest = x.astype(np.int64, copy=False)
    for c in range(chunks - 1, -1, -1):
        quotient = rest // 10_000
        quads[:, c] = _DIGITS4[rest - quotient * 10_000]
        rest = quotient
    cols = quads.view(np.uint8)[:, chunks * 4 - width:]
    if len(str(lo)) != width:
        # Mixed lengths: blank each value's leading zeros (multiplying keeps it branch-free).
        ndigits = 1 + np.searchsorted(_POW10, x, side="right")
        keep = np.arange(width) >= (width - ndigits)[:, None]
        cols = cols * keep
    return cols



class FloatText:
    """The exact text of float values: ``repr`` of the float64 value.

    ``float(text) == float(value)`` for every value, so any reader parsing a double gets the
    value back bit for bit. ``repr`` (~0.4 us per value here) is paid once per distinct bit
    pattern while the pattern stays in the cache.

    ``single=True``: the shortest text of each value as a float32 instead (``0.1`` for
    float32 0.1, whose float64 ``repr`` is ``0.10000000149011612``), for a reader that parses
    it as a float32 with correct rounding (Java's ``Float.parseFloat``, what neo4j-admin's CSV
    reader calls for a ``:float`` column): the same value back in about half the bytes. Values
    must be float32 (a float64 input is narrowed).
    """

    def __init__(self, max_entries: int | None = None, single: bool = False):
        self._single = single
        self._max_entries = _FLOAT_CACHE_ENTRIES if max_entries is None else max_entries
        # Per float dtype: sorted bit patterns and their texts (1-D "S24" arrays: gathering
        # whole fixed-size items is ~30x faster than fancy-indexing rows of a 2-D uint8 array).
        self._caches: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}

    def encode(self, values: np.ndarray) -> "Encoded":
        """The texts of a whole batch, looked up once (slices of it are then gathered)."""
        v = np.asarray(values)
        if self._single and v.dtype != np.float32:
            v = v.astype(np.float32)
        if v.dtype not in (np.float32, np.float64):
            v = v.astype(np.float64)
        v = np.ascontiguousarray(v)
        bits = v.view(np.uint32 if v.dtype == np.float32 else np.uint64)
        keys, inverse = np.unique(bits, return_inverse=True)
        return Encoded(self._lookup(v.dtype, keys), inverse.ravel())

    def _lookup(self, dtype: np.dtype, keys: np.ndarray) -> np.ndarray:
        empty = (np.empty(0, keys.dtype), np.empty(0, f"S{_FLOAT_TEXT_WIDTH}"))
        cached_keys, cached_text = self._caches.get(dtype, empty)
        pos = np.searchsorted(cached_keys, keys)
        hit = np.zeros(keys.shape[0], dtype=bool)
        inside = pos < cached_keys.shape[0]
        hit[inside] = cached_keys[pos[inside]] == keys[inside]
        if hit.all():
            return cached_text.take(pos)
        text = np.empty(keys.shape[0], dtype=cached_text.dtype)
        text[hit] = cached_text.take(pos[hit])
        miss = ~hit
        new_keys = keys[miss]
        new_text = (_single_texts if self._single else _repr_texts)(new_keys.view(dtype))
        text[miss] = new_text
        if cached_keys.shape[0] + new_keys.shape[0] <= self._max_entries:
            at = pos[miss]
            self._caches[dtype] = (np.insert(cached_keys, at, new_keys),
                                   np.insert(cached_text, at, new_text))
        else:
            # Full: start over from this batch, the likeliest to repeat (same layer).
            self._caches[dtype] = (keys, text)
        return text


def _repr_texts(values: np.ndarray) -> np.ndarray:
    floats = values.astype(np.float64).tolist()
    # One %-format call runs the repr loop in C: ~20% faster than a list comprehension.
    joined = (b"%r\0" * len(floats)) % tuple(floats)
    return np.array(joined.split(b"\0")[:-1], dtype=f"S{_FLOAT_TEXT_WIDTH}")


_SINGLE_JAVA = {b"inf": b"Infinity", b"-inf": b"-Infinity", b"nan": b"NaN"}


def _single_texts(values: np.ndarray) -> np.ndarray:
    """Shortest round-trip texts of float32 values (Arrow's formatter, vectorised: ~10x the
    speed of ``repr(np.float32(x))``), non-finite values spelled as Java reads them."""
    import pyarrow as pa

    text = np.array(pa.array(values).cast(pa.string()).to_pylist(),
                    dtype=f"S{_FLOAT_TEXT_WIDTH}")
    if not np.isfinite(values).all():
        for arrow, java in _SINGLE_JAVA.items():
            text[text == arrow] = java
    return text


class Encoded:
    """Per-element text as a table of distinct texts plus an index: rows are gathered per slice."""

    def __init__(self, table: np.ndarray, inverse: np.ndarray):
        raw = table.view(np.uint8).reshape(table.shape[0], table.itemsize)
        width = max(1, int(np.count_nonzero(raw, axis=1).max()))
        if width < table.itemsize:
            table = np.ascontiguousarray(raw[:, :width]).view(f"S{width}").ravel()
        self._table, self._inverse, self._width = table, inverse, width

    def rows(self, where: slice) -> np.ndarray:
        """(n, width) uint8 rows, 0-padded, of the elements in ``where``."""
        return self._table.take(self._inverse[where]).view(np.uint8).reshape(-1, self._width)


def encode_strings(values: np.ndarray, escape) -> Encoded:
    """Escaped UTF-8 text of per-element strings (each distinct value escaped once)."""
    uniq, inverse = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    encoded = [escape(s) for s in uniq.tolist()]
    table = np.array(encoded, dtype=f"S{max(1, max(len(e) for e in encoded))}")
    return Encoded(table, inverse.ravel())


def text_slices(n: int):
    return (slice(start, min(n, start + ROWS_PER_TEXT)) for start in range(0, n, ROWS_PER_TEXT))


class TextBuilder:
    """Rows made of constant byte strings and (n, w) uint8 fields, pad bytes removed.

    The text never holds a 0 byte, so ``rows[rows != 0]`` drops exactly the padding and leaves
    the rows concatenated in order: ~50 ms for a million 100-byte rows. The row and mask
    buffers are kept from call to call: on the development VM, first touches of fresh memory
    made the first batches 3-5x slower than the rest.
    """

    def __init__(self):
        self._rows = np.empty(0, dtype=np.uint8)
        self._mask = np.empty(0, dtype=bool)

    def build(self, parts: list, n: int) -> np.ndarray:
        widths = [len(p) if isinstance(p, bytes) else p.shape[1] for p in parts]
        size = n * sum(widths)
        if self._rows.shape[0] < size:
            self._rows = np.empty(size, dtype=np.uint8)
            self._mask = np.empty(size, dtype=bool)
        rows = self._rows[:size].reshape(n, -1)
        col = 0
        for part, width in zip(parts, widths):
            if isinstance(part, bytes):
                rows[:, col:col + width] = np.frombuffer(part, dtype=np.uint8)
            else:
                rows[:, col:col + width] = part
            col += width
        mask = np.not_equal(rows, 0, out=self._mask[:size].reshape(n, -1))
        return rows[mask]


class Output:
    """Ordered background output: optional gzip on a thread pool, writes on one thread.

    zlib and file writes release the GIL, so they overlap with the formatting of the next
    batch. The queue is bounded, so memory stays flat when the disk is the slowest stage.
    Data handed to :meth:`write` is read later, from other threads: it must not change.
    """

    _STOP = object()

    def __init__(self, file, gzip_level: int | None):
        self._file = file
        self._level = gzip_level
        self._error: BaseException | None = None
        self._discard = False
        self._closed = False
        self._buffer = bytearray()
        if gzip_level is None:
            self._pool = None
            pending = 8  # texts of ROWS_PER_TEXT elements, ~12 MB each
        else:
            workers = max(1, min(os.cpu_count() or 1, 16))
            self._pool = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="text-gzip")
            pending = 2 * workers
        self._queue: queue.Queue = queue.Queue(maxsize=pending)
        self._thread = threading.Thread(target=self._drain, name="text-write", daemon=True)
        self._thread.start()

    def write(self, data) -> None:
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B")
        if self._pool is None:
            self._queue.put(view)
            return
        # Members of exactly _GZIP_CHUNK bytes of text, whatever the batch sizes: small batches
        # still compress well, and the .gz bytes depend only on the text.
        if self._buffer:
            take = _GZIP_CHUNK - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < _GZIP_CHUNK:
                return
            self._compress(bytes(self._buffer))
            self._buffer = bytearray()
        whole = len(view) - len(view) % _GZIP_CHUNK
        for start in range(0, whole, _GZIP_CHUNK):
            self._compress(view[start:start + _GZIP_CHUNK])
        self._buffer += view[whole:]

    def _compress(self, chunk) -> None:
        self._queue.put(self._pool.submit(zlib.compress, chunk, self._level, 31))

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is not None or self._discard:
                continue
            try:
                self._file.write(item.result() if isinstance(item, Future) else item)
            except BaseException as exc:  # re-raised in the producer's thread
                self._error = exc

    def close(self, *, discard: bool = False) -> None:
        """Write everything still pending (or, with ``discard``, drop it) and stop the threads."""
        if self._closed:
            return
        self._closed = True
        if self._buffer and not discard and self._error is None:
            self._compress(bytes(self._buffer))
        self._discard = discard
        self._queue.put(self._STOP)
        self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=discard)
        if self._error is not None and not discard:
            raise self._error
