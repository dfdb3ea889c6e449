"""The selection notions, parsed once for every place that takes them: ``--layers FIRST:LAST``,
``--cone LAYER:INDEX[:DEPTH]``, a neuron ``LAYER:INDEX``, and the analysis's ``--subgraph``
(either of the first two). :class:`loader.graph.NeuronGraph` resolves selections against a
Keras model, :mod:`loader.neo4j.pull` against a loaded one; both parse them here.

Layer names may hold ``:`` (Keras allows it), so a cone is split from the right.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import SelectionError

_CONE = re.compile(r"(.+?):(\d+)(?::(\d+))?")
_NEURON = re.compile(r"(.+):(\d+)")


class LayerRange(NamedTuple):
    """``FIRST:LAST``, inclusive; an empty end means the first (last) layer."""

    first: str
    last: str


class Cone(NamedTuple):
    """Everything upstream of neuron ``index`` of ``layer``, within ``depth`` hops (None: all)."""

    layer: str
    index: int
    depth: int | None


def parse_layer_range(spec: str) -> LayerRange:
    """``"conv1:pool"`` -> ``LayerRange("conv1", "pool")``."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise SelectionError(f"--layers wants FIRST:LAST, got {spec!r}")
    first, last = (s.strip() for s in spec.split(":"))
    return LayerRange(first, last)


def parse_cone(spec: str) -> Cone:
    """``"block2_pool:1000:3"`` -> ``Cone("block2_pool", 1000, 3)``."""
    m = _CONE.fullmatch(str(spec).strip())
    if not m:
        raise SelectionError(f"--cone wants LAYER:INDEX[:DEPTH], got {spec!r}")
    return Cone(m.group(1), int(m.group(2)), None if m.group(3) is None else int(m.group(3)))


def parse_neuron(spec: str) -> tuple[str, int]:
    """``"block2_pool:1000"`` -> ``("block2_pool", 1000)``."""
    m = _NEURON.fullmatch(str(spec).strip())
    if not m:
        raise SelectionError(f"neuron wants LAYER:INDEX, got {spec!r}")
    return m.group(1), int(m.group(2))


def parse_subgraph(spec: str | None) -> tuple[str, str] | None:
    """``"layers=conv1:pool"``, ``"cone=add:5:2"``, or bare ``"conv1:pool"`` / ``"add:5:2"``
    (a cone when the second part is a number) -> ``(kind, value)``; None for no subgraph."""
    if spec is None or not str(spec).strip():
        return None
    spec = str(spec).strip()
    m = re.fullmatch(r"(layers|cone)\s*[=:]\s*(.+)", spec)
    if m and (m.group(1) == "layers" or _CONE.fullmatch(m.group(2).strip())):
        return m.group(1), m.group(2).strip()
    if re.fullmatch(r".+:\d+(:\d+)?", spec):
        return "cone", spec
    if spec.count(":") == 1:
        return "layers", spec
    raise SelectionError(f"subgraph wants layers=FIRST:LAST or cone=LAYER:INDEX[:DEPTH], "
                         f"got {spec!r}")
