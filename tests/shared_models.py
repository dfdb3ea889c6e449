"""Small Keras models built once per test session, keyed by their builder and its arguments.

The builders are deterministic (:func:`oracle.randomise_weights` is seeded), so a shared
model is the model a fresh build would give. A test must not change one: the weights'
fingerprint is checked each time the model is handed out, and a change fails the next test
that asks for it, naming the builder. A test that needs a model to change builds its own
with ``builder.fresh(...)``.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

_MODELS: dict = {}


def shared_model(builder):
    """Decorate a model builder: each distinct call is built once and then shared."""

    @functools.wraps(builder)
    def shared(*args, **kwargs):
        key = (builder.__module__, builder.__qualname__, args, tuple(sorted(kwargs.items())))
        if key not in _MODELS:
            model = builder(*args, **kwargs)
            _MODELS[key] = (model, fingerprint(model))
        model, built = _MODELS[key]
        if fingerprint(model) != built:
            call = f"{builder.__name__}(*{args}, **{kwargs})"
            raise AssertionError(f"an earlier test changed the shared model {call}: build a "
                                 f"model to change with {builder.__name__}.fresh(...)")
        return model

    shared.fresh = builder
    return shared


def fingerprint(model) -> str:
    """A digest of every weight of ``model``, its name and its layers' names."""
    digest = hashlib.sha256(model.name.encode())
    for layer in model.layers:
        digest.update(layer.name.encode())
    for w in model.weights:
        digest.update(w.path.encode())
        digest.update(np.asarray(w.numpy()).tobytes())
    return digest.hexdigest()
