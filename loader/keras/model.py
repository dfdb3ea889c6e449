"""Keras front end: load a model, and list its operations in topological order.

Accepts a ``keras.Model`` object, a ``.keras`` / ``.h5`` path, or a ``keras.applications``
name. Nested models are inlined, so the graph sees one flat list of layer calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelLoadError, one_line

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _keras():
    import keras

    return keras


def application_names() -> dict[str, str]:
    """Lower-case, separator-free names of keras.applications constructors -> their names."""
    apps = _keras().applications
    return {n.lower(): n for n in dir(apps) if n[:1].isupper() and callable(getattr(apps, n))}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def load_model(model, *, weights="default", input_shape=None, include_top=True):
    """Return a built ``keras.Model``.

    Parameters
    ----------
    model : keras.Model, path to ``.keras`` / ``.h5``, or a keras.applications name.
    weights : for application names: ``"imagenet"`` (the default), ``None`` / ``"none"`` for
        random initialisation, or a path to a weights file. For files and objects: ``None`` keeps
        the stored weights, a path loads a weights file into the model.
    input_shape : (H, W, C) for application names; for other models, a new input shape for
        fully convolutional models.
    """
    keras = _keras()
    if weights in ("none", "None"):
        weights = None
    if isinstance(model, keras.Model):
        m = model
        file_weights = None if weights == "default" else weights
    elif isinstance(model, (str, Path)) and (
            Path(model).suffix in (".keras", ".h5", ".hdf5") or os.sep in str(model)):
        path = Path(model)
        if not path.exists():
            raise ModelLoadError(f"model file not found: {path}")
        try:
            m = keras.models.load_model(path, compile=False)
        except Exception as exc:  # keras raises many types for a damaged file
            raise ModelLoadError(f"{path} is not a readable Keras model file "
                                 f"({one_line(exc)})") from None
        file_weights = None if weights == "default" else weights
    elif isinstance(model, str):
        names = application_names()
        key = _normalise(model)
        if key not in names:
            raise ModelLoadError(
                f"unknown model {model!r}: not a file and not a keras.applications name "
                f"(e.g. vgg16, resnet50, mobilenet_v2)")
        fn = getattr(keras.applications, names[key])
        app_weights = "imagenet" if weights == "default" else weights
        file_weights = None
        if app_weights not in (None, "imagenet"):
            file_weights, app_weights = app_weights, None
        kwargs = {"weights": app_weights, "include_top": include_top}
        if input_shape is not None:
            kwargs["input_shape"] = tuple(input_shape)
        try:
            m = fn(**kwargs)
        except ValueError as exc:
            raise ModelLoadError(f"{names[key]}: {one_line(exc)}") from None
        except Exception as exc:  # download failures and the like
            raise ModelLoadError(f"{names[key]} (weights={app_weights}): {one_line(exc)}") from None
        input_shape = None
    else:
        raise ModelLoadError(f"not a model: {model!r}")
    if file_weights is not None:
        if not Path(file_weights).exists():
            raise ModelLoadError(f"weights file not found: {file_weights}")
        try:
            m.load_weights(file_weights)
        except Exception as exc:
            raise ModelLoadError(f"cannot load weights {file_weights}: {one_line(exc)}") from None
    if input_shape is not None:
        m = _with_input_shape(m, tuple(input_shape))
    return m


def _with_input_shape(m, shape):
    keras = _keras()
    try:
        inp = keras.Input(shape=shape)
        clone = keras.models.clone_model(m, input_tensors=inp)
        clone.set_weights(m.get_weights())
        return clone
    except Exception as exc:
        raise ModelLoadError(f"cannot rebuild {m.name} at input shape {shape}: "
                             f"{one_line(exc)}") from None


@dataclass
class Call:
    """One call of a layer (or op) in the flattened functional graph."""

    name: str
    op: object  # the keras Layer or Operation
    class_name: str
    inputs: list[int]  # keys of the tensors it reads (ids of KerasTensors, nesting resolved)
    outputs: list[int]
    output_shapes: list[tuple]
    node: object = None  # keras Node: evaluates the call with its constant arguments
    raw_inputs: list[int] = field(default_factory=list)  # ids as the node sees them

    @property
    def is_input(self) -> bool:
        return self.class_name == "InputLayer"


def walk(model) -> list[Call]:
    """The model's calls in topological order, nested models inlined."""
    keras = _keras()
    if isinstance(model, keras.Sequential):
        model = _sequential_as_functional(model)
    calls: list[Call] = []
    alias: dict[int, int] = {}
    _walk_functional(model, calls, {}, alias, top=True, seen_models=set())
    for c in calls:
        c.inputs = [_resolve(i, alias) for i in c.raw_inputs]
    return calls


def _sequential_as_functional(model):
    functional = getattr(model, "_functional", None)
    if functional is None:
        raise ModelLoadError(f"Sequential model {model.name!r} has no input shape: build it first")
    return functional


def _call_name(op, node, model_nodes: set, used: dict) -> str:
    """``name`` for a layer's first call in this model, ``name@n`` for its n-th after that.

    Calls are numbered in Keras's own order (the layer's ``_inbound_nodes``, this model's
    only), not in walk order: a shared layer first called deep in the graph keeps its plain
    name there. A name another layer already took (nested models may repeat one) gets the
    next free ``@n``.
    """
    calls = [n for n in getattr(op, "_inbound_nodes", []) if id(n) in model_nodes]
    k = next((i for i, n in enumerate(calls) if n is node), 0)
    name = op.name if k == 0 else f"{op.name}@{k}"
    while name in used:
        k += 1
        name = f"{op.name}@{k}"
    used[name] = True
    return name


def _walk_functional(model, calls, used, alias, top, seen_models):
    keras = _keras()
    nodes_by_depth = model._nodes_by_depth
    model_nodes = {id(n) for nodes in nodes_by_depth.values() for n in nodes}
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            op = node.operation
            in_ids = [id(t) for t in node.input_tensors]
            out_ids = [id(t) for t in node.outputs]
            if node.is_input:
                if top:
                    calls.append(Call(_call_name(op, node, model_nodes, used), op, "InputLayer", [], out_ids,
                                      [tuple(t.shape) for t in node.outputs], node, []))
                continue
            if isinstance(op, keras.Model):
                if id(op) in seen_models:
                    raise ModelLoadError(f"nested model {op.name!r} is called more than once")
                seen_models.add(id(op))
                inner = _sequential_as_functional(op) if isinstance(op, keras.Sequential) else op
                # The inner inputs read the outer tensors; the outer outputs are the inner ones.
                for t_inner, i_outer in zip(inner.inputs, in_ids):
                    alias[id(t_inner)] = i_outer
                _walk_functional(inner, calls, used, alias, False, seen_models)
                for t_outer, t_inner in zip(node.outputs, inner.outputs):
                    alias[id(t_outer)] = id(t_inner)
                continue
            calls.append(Call(_call_name(op, node, model_nodes, used), op, type(op).__name__, [], out_ids,
                              [tuple(t.shape) for t in node.outputs], node, in_ids))


def _resolve(i, alias):
    seen = set()
    while i in alias and i not in seen:
        seen.add(i)
        i = alias[i]
    return i
