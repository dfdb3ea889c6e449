"""The Keras front end's door for :mod:`loader.graph.frontends`: a Keras model (object,
``.keras`` / ``.h5`` file, or ``keras.applications`` name) -> layer entries."""

from __future__ import annotations

from ..graph.entries import ModelEntries
from .builders import build_entries
from .model import load_model, walk


def accepts(model) -> bool:
    """The Keras front end takes whatever no other front end claims (it is the last one)."""
    return True


def read(model, *, weights="default", input_shape=None, include_top=True) -> ModelEntries:
    """Load (if needed) and convert a Keras model; see :func:`loader.keras.model.load_model`."""
    m = load_model(model, weights=weights, input_shape=input_shape, include_top=include_top)
    return ModelEntries(build_entries(walk(m)), name=m.name, format="keras", source=m)
