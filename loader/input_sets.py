"""A data set of inputs for an aggregated trace (``weightgraph trace MODEL --inputs SET``).

Three kinds of set, each read in batches (never the whole set in memory at once), each input
checked as :func:`loader.inputs.read_input` checks one:

* a ``.npy`` file holding an array of N inputs, ``(N, *input shape)`` (an array of exactly the
  input's shape is a set of one). Memory-mapped: only the batch being traced is read.
* a directory of inputs: every image (``.png``, ``.jpg``, ...) and ``.npy`` file in it, in
  the order of their names, each read by :func:`~loader.inputs.read_input` (images
  resized to the model's input, ``--preprocess`` applied); hidden files (a leading dot) are
  skipped, anything else is an error.
* a Parquet (``.parquet``) or CSV (``.csv``) file of rows: each row is one input, flattened in
  C order, one numeric column per value (a CSV may have a header row or not).

``--preprocess`` applies to images as for one input; to arrays and rows only when asked
(``caffe``, ``tf``, ``torch``; ``auto`` means none).

What can be checked before any work is checked when the set is opened: the file or directory
exists, an array's (or a table's) shape and type, the directory is not empty, every file in it
is an image whose header reads or a ``.npy`` array of the input's shape. A file that fails
later (an image truncated past its header, NaN in a row) stops the run with the same kind of
one-line :class:`~loader.inputs.InputFileError` naming it; an aggregated trace writes
nothing before the whole set has been read.

>>> s = read_input_set("digits.npy", (8, 8, 1))
>>> s.n, s.kind
(360, 'npy')
>>> for batch in s.batches(64): ...   # (<=64, 8, 8, 1) float64
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import one_line
from .inputs import IMAGE_SUFFIXES, PREPROCESS, InputFileError, preprocess, read_input

__all__ = ["InputSet", "read_input_set", "array_set", "SET_SUFFIXES"]

SET_SUFFIXES = (".npy", ".parquet", ".csv")


@dataclass
class InputSet:
    """N inputs of one shape, read a batch at a time.

    Attributes
    ----------
    source : where the inputs come from (a path, or ``array``).
    kind : ``npy``, ``directory``, ``parquet``, ``csv`` or ``array``.
    n : the number of inputs.
    shape : one input's shape (no batch axis).
    names : for a directory, the file of each input.
    """

    source: str
    kind: str
    n: int
    shape: tuple
    _read: Callable[[int, int], np.ndarray] = field(repr=False)
    names: list = field(default_factory=list)

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive batches of at most ``size`` inputs, each float64 ``(b, *shape)``."""
        size = max(1, int(size))
        for a in range(0, self.n, size):
            yield self._read(a, min(self.n, a + size))


def _check_mode(mode: str) -> None:
    if mode not in PREPROCESS:
        raise InputFileError(f"--preprocess wants one of {', '.join(PREPROCESS)}, got {mode!r}")


def _rows(a: np.ndarray, first: int, shape: tuple, where: str, mode: str) -> np.ndarray:
    """Rows of a set as float64 inputs: numeric, finite, preprocessed when asked."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise InputFileError(f"{where}: not numeric (dtype {a.dtype})")
    a = a.astype(np.float64).reshape((len(a),) + shape)
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        raise InputFileError(f"{where}: input #{first + int(np.argmax(bad))} holds NaN or "
                             "infinite values")
    if mode in ("caffe", "tf", "torch"):
        a = np.stack([preprocess(x, mode) for x in a])
    return a


def array_set(x, shape, *, source: str = "array") -> InputSet:
    """An in-memory array of inputs, ``(N, *shape)`` (or ``shape``: one input), as a set."""
    shape = tuple(int(s) for s in shape)
    a = np.asarray(x)
    if a.shape == shape:
        a = a[None]
    if a.dtype.kind not in "biuf":
        raise InputFileError(f"{source}: not a numeric array (dtype {a.dtype})")
    if a.shape[1:] != shape or a.ndim != len(shape) + 1:
        raise InputFileError(f"{source}: a set of inputs of shape {shape} is an array "
                             f"(N, {', '.join(map(str, shape))}); this one has {a.shape}")
    if len(a) == 0:
        raise InputFileError(f"{source}: the set is empty")
    return InputSet(source, "array", len(a), shape,
                    lambda i, j: _rows(a[i:j], i, shape, source, "none"))


def read_input_set(path, shape, *, mode: str = "auto", family: str | None = None) -> InputSet:
    """Open a set of inputs for a model input of ``shape`` (see the module's notes).

    Parameters
    ----------
    path : a ``.npy`` file, a directory, a ``.parquet`` or a ``.csv`` file.
    shape : the model input's shape (no batch axis).
    mode : ``auto`` (default), ``none``, ``caffe``, ``tf`` or ``torch``.
    family : :func:`loader.inputs.application_family` of the model, for ``auto``.

    Returns
    -------
    InputSet

    Raises
    ------
    InputFileError
        One line: a missing path, an empty directory, a file of the wrong kind or shape.
    """
    _check_mode(mode)
    path = Path(path)
    shape = tuple(int(s) for s in shape)
    if path.is_dir():
        return _directory_set(path, shape, mode, family)
    if not path.is_file():
        raise InputFileError(f"input set not found: {path}")
    suffix = path.suffix.lower()
    rows_mode = "none" if mode == "auto" else mode
    if suffix == ".npy":
        return _npy_set(path, shape, rows_mode)
    if suffix == ".parquet":
        return _parquet_set(path, shape, rows_mode)
    if suffix == ".csv":
        return _csv_set(path, shape, rows_mode)
    raise InputFileError(f"{path}: an input set is a .npy array of N inputs, a directory of "
                         "images or .npy files, or a .parquet / .csv file of rows")


def _npy_set(path: Path, shape: tuple, mode: str) -> InputSet:
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, ...
        raise InputFileError(f"{path} is not a readable .npy array ({one_line(exc)})") from None
    if a.dtype.kind not in "biuf":
        raise InputFileError(f"{path}: not a numeric array (dtype {a.dtype})")
    if a.shape == shape:
        a = a[None]
    if a.shape[1:] != shape or a.ndim != len(shape) + 1:
        raise InputFileError(f"{path}: a set of inputs of shape {shape} is an array "
                             f"(N, {', '.join(map(str, shape))}); this one has {a.shape}")
    if len(a) == 0:
        raise InputFileError(f"{path}: the set is empty (0 inputs)")
    where = str(path)
    return InputSet(where, "npy", len(a), shape, lambda i, j: _rows(a[i:j], i, shape, where,
                                                                     mode))


def _directory_set(path: Path, shape: tuple, mode: str, family) -> InputSet:
    files = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    files = [p for p in files if not p.is_dir()]
    if not files:
        raise InputFileError(f"{path}: no inputs in the directory (want image or .npy files)")
    for p in files:
        suffix = p.suffix.lower()
        if suffix == ".npy":
            try:
                a = np.load(p, mmap_mode="r", allow_pickle=False)
            except Exception as exc:
                raise InputFileError(f"{p} is not a readable .npy array ({one_line(exc)})") \
                    from None
            if a.shape not in (shape, (1,) + shape):
                raise InputFileError(f"{p}: the model wants shape {shape} (or "
                                     f"{(1,) + shape}), the array has {a.shape}")
        elif suffix in IMAGE_SUFFIXES:
            _check_image_header(p)
        else:
            raise InputFileError(f"{p}: not an input (a directory set holds images "
                                 f"({', '.join(IMAGE_SUFFIXES)}) or .npy files)")

    def read(i: int, j: int) -> np.ndarray:
        return np.stack([read_input(p, shape, mode=mode, family=family) for p in files[i:j]])

    return InputSet(str(path), "directory", len(files), shape, read,
                    names=[p.name for p in files])


def _check_image_header(p: Path) -> None:
    """Pillow reads the header only: a file that is no image fails here, before any work."""
    from PIL import Image

    try:
        with Image.open(p) as img:
            img.size  # noqa: B018 (the header is parsed lazily)
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError, ...
        raise InputFileError(f"{p} is not a readable image ({one_line(exc)})") from None


def _table_width(names: list, types: list, where: str, shape: tuple) -> None:
    import pyarrow as pa

    want = int(np.prod(shape)) if shape else 1
    bad = [n for n, t in zip(names, types) if not (pa.types.is_integer(t) or
                                                  pa.types.is_floating(t))]
    if bad:
        raise InputFileError(f"{where}: every column is one value of the input; column "
                             f"{bad[0]!r} is not numeric")
    if len(names) != want:
        raise InputFileError(f"{where}: an input of shape {shape} is a row of {want} values; "
                             f"the table has {len(names)} columns")


def _parquet_set(path: Path, shape: tuple, mode: str) -> InputSet:
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow.ArrowInvalid, OSError
        raise InputFileError(f"{path} is not a readable Parquet file ({one_line(exc)})") \
            from None
    schema = f.schema_arrow
    _table_width(schema.names, schema.types, str(path), shape)
    n = f.metadata.num_rows
    if n == 0:
        raise InputFileError(f"{path}: the set is empty (0 rows)")
    where = str(path)

    def read(i: int, j: int) -> np.ndarray:
        # Row groups hold the rows in order: read the ones that overlap [i, j).
        parts, start = [], 0
        for g in range(f.num_row_groups):
            rows = f.metadata.row_group(g).num_rows
            if start < j and start + rows > i:
                t = f.read_row_group(g)
                a = np.column_stack([np.asarray(c.to_numpy(zero_copy_only=False), np.float64)
                                     for c in t.columns])
                parts.append(a[max(0, i - start):j - start])
            start += rows
        return _rows(np.concatenate(parts), i, shape, where, mode)

    return InputSet(where, "parquet", n, shape, read)


def _csv_set(path: Path, shape: tuple, mode: str) -> InputSet:
    import pyarrow.csv as pcsv

    try:
        with open(path, newline="") as fh:
            first = next(csv.reader(fh), None)
            n = sum(1 for line in fh if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path} is not a readable CSV file ({one_line(exc)})") from None
    if first is None:
        raise InputFileError(f"{path}: the set is empty (no rows)")
    header = not all(_is_number(c) for c in first)
    n += 0 if header else 1
    if n == 0:
        raise InputFileError(f"{path}: the set is empty (0 rows)")
    want = int(np.prod(shape)) if shape else 1
    if len(first) != want:
        raise InputFileError(f"{path}: an input of shape {shape} is a row of {want} values; "
                             f"the table has {len(first)} columns")
    import pyarrow as pa

    names = list(first) if header else [f"f{k}" for k in range(len(first))]
    # Every value is read as a float64: a value that is not a number is an error naming it.
    read_options = (pcsv.ReadOptions(skip_rows=1, column_names=names, block_size=1 << 22)
                    if header else pcsv.ReadOptions(column_names=names, block_size=1 << 22))
    read_options = (read_options, pcsv.ConvertOptions(
        column_types={k: pa.float64() for k in names}))
    return InputSet(str(path), "csv", n, shape, _CsvRows(path, read_options, shape, mode))


class _CsvRows:
    """Rows ``[i, j)`` of a CSV file. CSV has no row index: a reader streams from the start and
    is kept between calls, so batches read in order cost one pass over the file."""

    def __init__(self, path: Path, options, shape: tuple, mode: str):
        self.path, self.options, self.shape, self.mode = path, options, shape, mode
        self.reader, self.at, self.rest = None, 0, None

    def _next_block(self) -> np.ndarray | None:
        import pyarrow.csv as pcsv

        if self.rest is not None:
            block, self.rest = self.rest, None
            return block
        if self.reader is None:
            self.reader = pcsv.open_csv(self.path, read_options=self.options[0],
                                        convert_options=self.options[1])
        try:
            batch = self.reader.read_next_batch()
        except StopIteration:
            return None
        except Exception as exc:  # pyarrow.ArrowInvalid: a bad value further down
            raise InputFileError(f"{self.path}: after row {self.at}: {one_line(exc)}") from None
        return np.column_stack([np.asarray(c.to_numpy(zero_copy_only=False), np.float64)
                                for c in batch.columns])

    def __call__(self, i: int, j: int) -> np.ndarray:
        if self.at > i:  # going back: start again
            self.reader, self.at, self.rest = None, 0, None
        parts = []
        while self.at < j:
            block = self._next_block()
            if block is None:
                break
            lo, hi = max(0, i - self.at), min(len(block), j - self.at)
            if lo < hi:
                parts.append(block[lo:hi])
            if hi < len(block):
                self.rest = block[hi:]
                self.at += hi
                break
            self.at += len(block)
        return _rows(np.concatenate(parts), i, self.shape, str(self.path), self.mode)




def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
