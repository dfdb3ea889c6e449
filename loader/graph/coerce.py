"""What the API's entry points accept where they take a graph: one rule, written once.

``loader.load``, ``loader.write_graphml``, ``loader.write_parquet``, ``loader.to_networkx``,
``loader.execute``, ``loader.trace`` and ``loader.analyze`` take a graph; a notebook user
first tries a model file, a ``keras.applications`` name or the Keras model in hand. Each
calls :func:`as_graph`, which turns those into a :class:`NeuronGraph` through
:meth:`NeuronGraph.from_model` (so whatever model kinds ``from_model`` learns, the entry
points learn too) and refuses anything else with a one-line ``TypeError`` naming what it got
and what it takes, instead of an ``AttributeError`` from deep inside.

No framework is imported here (``graph/`` imports no framework): a Keras model (an ONNX
``ModelProto``) can only exist once ``keras`` (``onnx``) is imported, so ``sys.modules`` tells
whether to look for one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .channels import ChannelGraph
from .neuron_graph import NeuronGraph

#: What the entry points take, as their TypeError says it.
TAKES = ("a NeuronGraph or ChannelGraph, a model file path (.keras, .h5, .onnx), a "
         "keras.applications name, a Keras model or an ONNX ModelProto")


def as_graph(obj, who: str, *, channel: bool = True,
             takes: str | None = None) -> NeuronGraph | ChannelGraph:
    """``obj`` as a graph for entry point ``who``.

    Parameters
    ----------
    obj : NeuronGraph, ChannelGraph, str, os.PathLike or keras.Model
        A graph (returned as it is: its selection and granularity are the caller's choice;
        so is any object with a graph's streaming surface: ``graph_data``,
        ``iter_node_batches``, ``iter_edge_batches``), or what
        :meth:`NeuronGraph.from_model` reads with its defaults: a model file, a
        ``keras.applications`` name (``"vgg16"``: ImageNet weights, as ``from_model``), a
        Keras model, an ONNX ``ModelProto``.
    who : str
        The entry point's name, for the error (``"load"``).
    channel : bool
        Whether ``who`` takes a ChannelGraph too.
    takes : str, optional
        What ``who`` takes, for the error, where it takes more than this function converts
        (``analyze`` takes the name of a model in Neo4j as well).

    Returns
    -------
    NeuronGraph or ChannelGraph

    Raises
    ------
    TypeError
        ``obj`` is none of these; one line: ``load() takes ..., not int``.

    Examples
    --------
    >>> as_graph("model.keras", "load")          # NeuronGraph.from_model("model.keras")
    >>> as_graph(g, "load") is g
    True
    """
    if takes is None:
        takes = TAKES if channel else TAKES.replace("NeuronGraph or ChannelGraph", "NeuronGraph")
    if _streams(obj):
        if not channel and getattr(obj, "granularity", "neuron") == "channel":
            raise TypeError(f"{who}() takes {takes}, not {_kind(obj)}")
        return obj
    if isinstance(obj, (str, Path)) or _is_keras_model(obj) or _is_onnx_model(obj):
        return NeuronGraph.from_model(obj)
    if isinstance(obj, os.PathLike):
        return NeuronGraph.from_model(Path(obj))
    raise TypeError(f"{who}() takes {takes}, not {_kind(obj)}")


def _streams(obj) -> bool:
    """A NeuronGraph or ChannelGraph (a TracedGraph, a selection), or any object with the
    surface the sinks read (``graph_data`` and bounded node and edge batches), as it is."""
    return isinstance(obj, (NeuronGraph, ChannelGraph)) or all(
        callable(getattr(obj, a, None))
        for a in ("graph_data", "iter_node_batches", "iter_edge_batches"))


def _is_keras_model(obj) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def _is_onnx_model(obj) -> bool:
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(obj, onnx.ModelProto)


def _kind(obj) -> str:
    """``int``, ``ChannelGraph`` or ``networkx.classes.digraph.DiGraph``: the type's name,
    qualified by its module unless it is a builtin or ours."""
    t = type(obj)
    if t.__module__ == "builtins" or t.__module__.startswith("loader."):
        return t.__name__
    return f"{t.__module__}.{t.__qualname__}"
