"""Which front end reads a model: a registry of import paths, so that the graph never imports
a front end (nor, through it, a framework).

The graph knows front ends by name only, the way fsspec knows its filesystems
(``known_implementations``): :data:`KNOWN` maps a format to the module that reads it, imported
on first use. A front-end module offers ``accepts(model) -> bool`` (is this mine?) and
``read(model, **options) -> ModelEntries``. ``.onnx`` files and ONNX ``ModelProto`` objects go
to ``loader.onnx``, so reading them never imports TensorFlow; everything else (``.keras`` /
``.h5`` files, ``keras.Model`` objects, ``keras.applications`` names) goes to
``loader.keras``. :func:`register` adds a front end.
"""

from __future__ import annotations

import importlib

from .entries import ModelEntries

# Tried in order; the last one takes what no other accepts.
KNOWN: dict[str, str] = {"onnx": "loader.onnx.reader", "keras": "loader.keras.reader"}


def register(fmt: str, module: str, *, first: bool = True) -> None:
    """Add (or replace) the front end of format ``fmt``: ``module`` is an import path."""
    global KNOWN
    rest = {k: v for k, v in KNOWN.items() if k != fmt}
    KNOWN = {fmt: module, **rest} if first else {**rest, fmt: module}


def front_end(model):
    """The front-end module that reads ``model``."""
    formats = list(KNOWN)
    for fmt in formats[:-1]:
        module = importlib.import_module(KNOWN[fmt])
        if module.accepts(model):
            return module
    return importlib.import_module(KNOWN[formats[-1]])


def read_model(model, **options) -> ModelEntries:
    """The layer entries of ``model`` (a file, a name, or a framework's model object), read
    by its front end; ``options`` are the front end's (``weights``, ``input_shape``, ...)."""
    return front_end(model).read(model, **options)
