"""The selection notions, parsed and resolved once for every place that takes them:
``--layers FIRST:LAST``, ``--cone LAYER:INDEX[:DEPTH]``, a neuron ``LAYER:INDEX``, and the
analysis's ``--subgraph`` (either of the first two).

Resolving is written once over an id space (:class:`IdSpace`: layers holding consecutive node
ids, neurons or channels) and a "sources of" function that each graph supplies:
:class:`~loader.graph.NeuronGraph` and :class:`~loader.graph.channels.ChannelGraph` from their
layer entries (through :class:`SelectableGraph`), :mod:`loader.neo4j.pull` from Cypher.
:func:`layer_range` resolves a range, :class:`UpstreamWalk` a cone.

Layer names may hold ``:`` (Keras allows it), so a cone is split from the right.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

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


# ----------------------------------------------------------------------------- resolving
UNREACHED = np.iinfo(np.int32).max  # the depth of a node the cone does not reach

# sources_of(layer, depth, expand) -> chunks of (source ids, their depths), or None for a
# layer without incoming edges (an input). ``depth`` is the layer's depth array and ``expand``
# the nodes whose sources are wanted; a source's depth is 1 + the least depth it feeds.
SourcesOf = Callable[[int, np.ndarray, np.ndarray], "Iterable[tuple[np.ndarray, np.ndarray]] | None"]


class IdSpace:
    """Layers that hold consecutive node ids: which layer owns an id, and where it sits there.

    Parameters
    ----------
    index, offset, size : per layer holding nodes, its layer index, its first id and its node
        count.
    """

    def __init__(self, index, offset, size):
        order = np.argsort(np.asarray(offset, dtype=np.int64), kind="stable")
        self.index = np.asarray(index, dtype=np.int64)[order]
        self.offset = np.asarray(offset, dtype=np.int64)[order]
        self.first = {int(i): int(o) for i, o in zip(self.index, self.offset)}
        self.size = {int(i): int(n) for i, n in zip(self.index, np.asarray(size)[order])}

    def owners(self, ids: np.ndarray) -> np.ndarray:
        """The layer index of each id."""
        return self.index[np.searchsorted(self.offset, ids, side="right") - 1]

    def split(self, ids: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Per owning layer: ``(layer, which of ids, their positions in the layer)``."""
        owners = self.owners(ids)
        for owner in np.unique(owners):
            sel = owners == owner
            yield int(owner), sel, ids[sel] - self.first[int(owner)]


def layer_range(spec: str, *, index_of: Callable[[str], int], last: int,
                holds_nodes: Callable[[int], bool]) -> list[int]:
    """The layer indexes of ``FIRST:LAST`` that hold nodes, in order (an empty end: the first
    layer, or ``last``)."""
    first, end = parse_layer_range(spec)
    lo = index_of(first) if first else 0
    hi = index_of(end) if end else last
    if lo > hi:
        raise SelectionError(f"layer {first!r} comes after {end!r}")
    chosen = [i for i in range(lo, hi + 1) if holds_nodes(i)]
    if not chosen:
        raise SelectionError(f"layers {spec!r} hold no neurons (only shape-only layers)")
    return chosen


def mark(space: IdSpace, masks: dict, ids: np.ndarray) -> None:
    """Add nodes ``ids`` to ``masks`` (layer -> bool mask over its nodes; None: all of it)."""
    if not len(ids):
        return
    for layer, _, local in space.split(ids):
        mask = masks.get(layer)
        if layer in masks and mask is None:
            continue
        if mask is None:
            mask = masks[layer] = np.zeros(space.size[layer], dtype=bool)
        mask[local] = True


class UpstreamWalk:
    """Everything upstream of node ``top`` within ``max_depth`` hops (None: all), layer by
    layer from the highest layer index down.

    A node's depth is 1 + the least depth of the nodes it feeds; every node it feeds sits in a
    higher layer (ids follow the topological order), so when a layer's turn comes its depths
    are final. A node is expanded (its incoming edges belong to the cone) when its depth is
    less than ``max_depth``.

    Attributes
    ----------
    depths : layer -> int32 depth of each of its nodes (:data:`UNREACHED`: not in the cone),
        for every layer the cone reaches.
    expanded : layer -> bool mask of its expanded nodes, for the layers whose sources were
        asked for (highest layer first).
    """

    def __init__(self, space: IdSpace, top: int, max_depth: int | None):
        self.space = space
        self.limit = UNREACHED if max_depth is None else max_depth
        self.depths: dict[int, np.ndarray] = {}
        self.expanded: dict[int, np.ndarray] = {}
        self.lower(np.array([top], dtype=np.int64), np.array([0], dtype=np.int32))

    def lower(self, ids: np.ndarray, depth: np.ndarray) -> None:
        """Lower the depth of nodes ``ids`` to ``depth`` where that is less."""
        if not len(ids):
            return
        for layer, sel, local in self.space.split(ids):
            arr = self.depths.get(layer)
            if arr is None:
                arr = self.depths[layer] = np.full(self.space.size[layer], UNREACHED,
                                                   dtype=np.int32)
            np.minimum.at(arr, local, depth[sel])

    def run(self, sources_of: SourcesOf) -> "UpstreamWalk":
        done: set[int] = set()
        while len(done) < len(self.depths):
            layer = max(set(self.depths) - done)
            done.add(layer)
            d = self.depths[layer]
            expand = d < self.limit
            if not expand.any():
                continue
            chunks = sources_of(layer, d, expand)
            if chunks is None:
                continue
            self.expanded[layer] = expand
            for ids, depth in chunks:
                self.lower(ids, depth)
        return self

    def n_reached(self) -> int:
        return int(sum((d < UNREACHED).sum() for d in self.depths.values()))

    def reached(self) -> dict[int, np.ndarray]:
        """Layer -> bool mask of the nodes in the cone (highest layer first)."""
        return {i: self.depths[i] < UNREACHED for i in sorted(self.depths, reverse=True)}


class SelectableGraph:
    """The selection of a graph built from layer entries (:class:`NeuronGraph`,
    :class:`ChannelGraph`): ``node_masks`` / ``edge_masks`` (entry index -> None for all of
    the layer, or a bool mask over its nodes; edges are those entering the masked nodes) and
    the ``selection`` text.

    A subclass supplies ``entries``, ``_id_space`` (an :class:`IdSpace` over its nodes),
    ``_layer_index(name)``, ``_cone_top(name, index)`` (the node id a cone starts from) and
    ``_sources(i, depth=None, expand=None, below=None)``, the "sources of" function
    (:data:`SourcesOf`; ``expand`` None: every node, and then ``depth`` may be None too;
    ``below``: only sources with smaller ids are wanted, so a layer that reads none may answer
    None).
    """

    def _select(self, layers: str | None, cone: str | None) -> None:
        """Everything, or the layer range ``layers``, or the cone ``cone``."""
        self.node_masks = {int(i): None for i in self._id_space.index}
        self.edge_masks = {int(i): None for i in self._id_space.index
                           if self.entries[i].kind == "neurons"}
        self.selection = "all"
        if layers and cone:
            raise SelectionError("choose either a layer range or a cone, not both")
        if layers:
            self._select_layers(layers)
        elif cone:
            self._select_cone(cone)

    def _select_layers(self, spec: str) -> None:
        chosen = layer_range(spec, index_of=self._layer_index, last=len(self.entries) - 1,
                             holds_nodes=lambda i: self.entries[i].op is not None)
        self.selection = f"layers {spec}"
        self.node_masks = {i: None for i in chosen}
        self.edge_masks = {i: None for i in chosen if self.entries[i].kind == "neurons"}
        # Nodes that feed the range from outside are included as sources.
        first_id = self._id_space.first[chosen[0]]
        for i in list(self.edge_masks):
            for ids, _ in self._sources(i, below=first_id) or ():
                mark(self._id_space, self.node_masks, ids[ids < first_id])

    def _select_cone(self, spec: str) -> None:
        name, index, max_depth = parse_cone(spec)
        top = self._cone_top(name, index)
        walk = UpstreamWalk(self._id_space, top, max_depth).run(self._sources)
        self.node_masks = walk.reached()
        self.edge_masks = walk.expanded
        self.selection = f"cone {spec}"
