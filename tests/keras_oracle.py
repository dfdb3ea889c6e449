"""Keras's own value of every layer's output: the reference the neuron graph is judged against.

This module imports nothing from ``loader``, on purpose. The product has its own walk over a
Keras model (``loader.keras.model.walk``); if the tests computed Keras's side with that walk
too, a mistake in it (a wrong input wired to a call, a nested model inlined wrongly, a skipped
``training=False``) would sit on both sides of the comparison and cancel out. Here Keras does
the computing: a feature extractor ``keras.Model(model.inputs, [every call's output])``, called
with ``training=False``. The graph is read from Keras's own bookkeeping only: each tensor's
``_keras_history`` (the call that made it) and each layer's ``_inbound_nodes`` (its calls, in
the order they were made).

Names follow the neuron graph's contract:

* a layer's output is reported under the layer's name; input layers under their own name;
* a layer called several times in the model (a shared layer): its first call is ``name``, its
  n-th further call ``name@n`` (n >= 1), counting calls in Keras's order (``_inbound_nodes``);
* a nested model (a ``keras.Model`` used as a layer, e.g. a ``keras.applications`` backbone in
  an outer model, or a Sequential inside a functional model) reports its inner layers' outputs
  under their own names: the outer extractor gives the values the outer model feeds the nested
  one, and the nested model's own extractor runs on them. The nested model's input layers and
  the call of the nested model itself are not reported: they are the outer tensors it reads and
  its last inner layers' outputs;
* a layer with several outputs reports its first one (the neuron graph refuses such layers).

Two different layers with one name (possible only across nested models) would make the names
ambiguous: :func:`layer_calls` refuses such a model rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


@dataclass
class LayerCall:
    """One call of a layer (or of a ``keras.ops`` operation) in a model's graph."""

    name: str  # the name the neuron graph gives this call
    layer: object  # the keras Layer or Operation called
    node: object  # the keras Node recording the call

    @property
    def class_name(self) -> str:
        return type(self.layer).__name__


def input_names(model) -> list[str]:
    """The names of the model's input layers, in the order of ``model.inputs``."""
    return [_node_making(t).operation.name for t in model.inputs]


def layer_calls(model) -> list[LayerCall]:
    """Every layer call of the model, each after the calls it reads, nested models inlined."""
    calls: list[LayerCall] = []
    _collect_calls(model, calls, top=True)
    seen: dict[str, object] = {}
    for call in calls:
        if seen.setdefault(call.name, call.layer) is not call.layer:
            raise ValueError(f"two different layers are named {call.name!r}: "
                             "their outputs cannot be told apart by name")
    return calls


def output_names(model) -> list[str]:
    """The names of the calls that make the model's outputs (inside nested models if need be)."""
    name_of = {id(c.node): c.name for c in layer_calls(model)}
    return [name_of[id(_node_making_innermost(t))] for t in model.outputs]


def layer_outputs(model, inputs) -> dict[str, np.ndarray]:
    """Keras's value of every layer call's output for ``inputs``: name -> array (batch axis
    first).

    ``inputs``: an array for a single-input model, or a dict input-layer name -> array.
    """
    name_of = {id(c.node): c.name for c in layer_calls(model)}
    values: dict[str, np.ndarray] = {}
    _evaluate(model, _input_values(model, inputs), name_of, values, top=True)
    return values


def keras_outputs(model, inputs) -> list[np.ndarray]:
    """The model's outputs as Keras computes them: ``model(x, training=False)``, as a list."""
    result = model(_model_argument(model, inputs), training=False)
    outputs = result if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outputs]


# --------------------------------------------------------------------------- graph reading
def _node_making(tensor):
    """The node (layer call) whose output ``tensor`` is."""
    history = tensor._keras_history
    return history.operation._inbound_nodes[history.node_index]


def _node_making_innermost(tensor):
    """As :func:`_node_making`, looking through nested models to the inner call."""
    node = _node_making(tensor)
    while isinstance(node.operation, keras.Model):
        inner = node.operation
        tensor = inner.outputs[tensor._keras_history.tensor_index]
        node = _node_making(tensor)
    return node


def _graph_nodes(model) -> list:
    """The nodes of ``model``'s own graph (not inside nested models), inputs first, each node
    after the nodes it reads (depth-first from the outputs)."""
    ordered = [_node_making(t) for t in model.inputs]
    done = {id(n) for n in ordered}
    stack = [(_node_making(t), False) for t in reversed(list(model.outputs))]
    while stack:
        node, inputs_done = stack.pop()
        if id(node) in done:
            continue
        if inputs_done:
            done.add(id(node))
            ordered.append(node)
            continue
        stack.append((node, True))
        for t in reversed(list(node.input_tensors)):
            parent = _node_making(t)
            if id(parent) not in done:
                stack.append((parent, False))
    return ordered


def _collect_calls(model, calls: list[LayerCall], top: bool) -> None:
    nodes = _graph_nodes(model)
    in_model = {id(n) for n in nodes}
    for node in nodes:
        layer = node.operation
        if node.is_input:
            if top:
                calls.append(LayerCall(layer.name, layer, node))
        elif isinstance(layer, keras.Model):
            _collect_calls(layer, calls, top=False)
        else:
            calls.append(LayerCall(_call_name(layer, node, in_model), layer, node))


def _call_name(layer, node, in_model: set) -> str:
    """``name`` for the layer's first call in this model, ``name@n`` for its n-th further one."""
    own_calls = [n for n in layer._inbound_nodes if id(n) in in_model]
    n = next(i for i, c in enumerate(own_calls) if c is node)
    return layer.name if n == 0 else f"{layer.name}@{n}"


# --------------------------------------------------------------------------- evaluation
def _input_values(model, inputs) -> list:
    names = input_names(model)
    # In the inputs' own dtype (float32, or float64 for tf_aggregate's float64 copies).
    dtypes = [str(getattr(t, "dtype", "float32")) for t in model.inputs]
    if isinstance(inputs, dict):
        return [np.asarray(inputs[n], dtype=d) for n, d in zip(names, dtypes)]
    if len(names) != 1:
        raise ValueError(f"the model has inputs {names}: give a dict name -> array")
    return [np.asarray(inputs, dtype=dtypes[0])]


def _model_argument(model, inputs):
    """The inputs as ``model(...)`` takes them: the array, or a dict input-layer name -> array
    (Keras matches a dict by input names whether the model was built from a list or a dict)."""
    values = _input_values(model, inputs)
    return values[0] if len(values) == 1 else dict(zip(input_names(model), values))


def _evaluate(model, input_values: list, name_of: dict, values: dict, top: bool) -> None:
    """Fill ``values`` with the outputs of ``model``'s calls (nested models recursively),
    ``input_values`` being the values of ``model.inputs``."""
    nodes = _graph_nodes(model)
    known = {id(t): v for t, v in zip(model.inputs, input_values)}
    wanted = []  # tensors the extractor must return: call outputs, nested models' inputs
    for node in nodes:
        if node.is_input:
            continue
        read_by_nested = isinstance(node.operation, keras.Model)
        for t in (node.input_tensors if read_by_nested else node.outputs[:1]):
            if id(t) not in known and all(t is not w for w in wanted):
                wanted.append(t)
    if wanted:
        extractor = keras.Model(model.inputs, wanted)
        got = extractor(list(input_values), training=False)  # built from a list of inputs
        got = got if isinstance(got, (list, tuple)) else [got]
        for t, v in zip(wanted, got):
            known[id(t)] = np.asarray(keras.ops.convert_to_numpy(v))
    for node in nodes:
        if node.is_input:
            if top:
                values[name_of[id(node)]] = known[id(node.outputs[0])]
        elif isinstance(node.operation, keras.Model):
            inner_inputs = [known[id(t)] for t in node.input_tensors]
            _evaluate(node.operation, inner_inputs, name_of, values, top=False)
        else:
            values[name_of[id(node)]] = known[id(node.outputs[0])]
