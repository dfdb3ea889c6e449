"""Neo4j online sink: node and edge batches of one model into Neo4j over Bolt, each batch
exactly once.

Every batch is written in one transaction together with a ``(:LoadBatch {model, key})`` node,
and ``key`` is unique: a batch whose transaction committed is skipped on resume (its key is in
``done``), and a batch replayed after an ambiguous commit (the server died between commit and
acknowledgement) fails on the constraint and counts as done. Keys are a pure function of the
batch order (``n:<layer>:<k>`` for the k-th node batch, ``e:<layer>:<k>`` for a layer's k-th
edge batch), so a resumed load that cuts the same batches finds the same keys.

Why it is fast (bench/bench_load.py; the figures are in loader.neo4j.load):
- relationships travel as three parallel lists (``$s``, ``$d``, ``$w``): no per-row maps;
- both ends are found by internal node id (``NodeByIdSeek``), fetched once after the nodes
  exist, instead of two index seeks per row (37k -> 53k rels/s on the same 200k edges);
- a few concurrent writers keep the server's serial commit path busy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
from neo4j.exceptions import ConstraintError

from ..errors import WeightgraphError
from ..graph.batches import EdgeBatch, NodeBatch
from .base import BatchSink
from .neo4j_labels import CHANNEL, NEURON

if TYPE_CHECKING:  # the sink writes through the Database it is given; it imports no driver
    from ..neo4j.db import Database

CREATE_NODES = """
UNWIND range(0, size($ids) - 1) AS i
CREATE (:Neuron {model: $model, id: $ids[i], layer: $layer, layer_index: $layer_index,
                 index: $index[i], op: $op, bias: $bias[i], activation: $activation[i]})
WITH count(*) AS written
CREATE (:LoadBatch {model: $model, key: $key, rows: written})
"""

CREATE_RELATIONSHIPS = """
UNWIND range(0, size($s) - 1) AS i
MATCH (a) WHERE id(a) = $s[i]
MATCH (b) WHERE id(b) = $d[i]
CREATE (a)-[:W {weight: $w[i]}]->(b)
WITH count(*) AS written
CREATE (:LoadBatch {model: $model, key: $key, rows: written})
"""

CREATE_CHANNELS = """
UNWIND range(0, size($ids) - 1) AS i
CREATE (:Channel {model: $model, id: $ids[i], layer: $layer, layer_index: $layer_index,
                  channel: $channel[i], op: $op, neurons: $neurons[i], bias: $bias[i],
                  activation: $activation[i]})
WITH count(*) AS written
CREATE (:LoadBatch {model: $model, key: $key, rows: written})
"""

# ``$k`` holds null where the layer has no parameters: the property is then absent.
CREATE_CHANNEL_RELATIONSHIPS = """
UNWIND range(0, size($s) - 1) AS i
MATCH (a) WHERE id(a) = $s[i]
MATCH (b) WHERE id(b) = $d[i]
CREATE (a)-[:CW {weight: $w[i], edges: $n[i], total: $t[i], kernel: $k[i]}]->(b)
WITH count(*) AS written
CREATE (:LoadBatch {model: $model, key: $key, rows: written})
"""

_INTERNAL_IDS = ("MATCH (n:Neuron {model: $name}) WHERE n.id >= $lo AND n.id < $hi "
                 "RETURN n.id AS i, id(n) AS nid")
_BATCH_COMMITTED = "MATCH (b:LoadBatch {model: $m, key: $k}) RETURN count(b) AS c"


class MissingNeurons(WeightgraphError):
    """Edges whose neurons are not in Neo4j (a model changed under a resumed load)."""


class Neo4jOnlineSink(BatchSink):
    """Write node batches, then edge batches, of model ``model`` into ``db``.

    Parameters
    ----------
    db : Database
        Where to write (:class:`loader.neo4j.db.Database`).
    model : str
        The model's name (``Neuron.model``).
    total_neurons : int
        Size of the model's id space (internal ids are kept in an array of that length).
    workers : int
        Concurrent write transactions.
    done : set of str
        Keys of batches already committed (resume): they are skipped.
    on_rows : callable, optional
        Called with the row count of each batch once it committed or was skipped.

    Examples
    --------
    >>> sink = Neo4jOnlineSink(db, "small", g.total_neurons, workers=4)
    >>> for b in g.iter_node_batches(20_000): sink.write_nodes(b)
    >>> for b in g.iter_edge_batches(30_000): sink.write_edges(b)
    >>> sink.close()
    """

    labels = NEURON

    def __init__(self, db: "Database", model: str, total_neurons: int, *, workers: int = 4,
                 done: set[str] | frozenset = frozenset(),
                 on_rows: Callable[[int], None] | None = None):
        self.db, self.model, self.total_neurons = db, model, total_neurons
        self.done = done
        self.on_rows = on_rows or (lambda n: None)
        self.writer = db.concurrent_writer(workers)
        self.skipped = 0
        self._node_batches = 0
        self._edge_batches: dict[int, int] = {}
        self._internal: np.ndarray | None = None

    def _skip(self, key: str, rows: int) -> bool:
        if key in self.done:
            self.skipped += 1
            self.on_rows(rows)
            return True
        return False

    def _submit(self, cypher: str, params: dict, rows: int) -> None:
        self.writer.submit(lambda tx: tx.run(cypher, params).consume(), rows, self.on_rows,
                           on_error=lambda exc: self._committed_before(exc, params["key"]))

    def _committed_before(self, exc: Exception, key: str) -> bool:
        # Replayed after an ambiguous commit: the LoadBatch key proves it committed.
        return (isinstance(exc, ConstraintError)
                and self.db.read_one(_BATCH_COMMITTED, m=self.model, k=key)["c"] == 1)

    def write_nodes(self, nb: NodeBatch) -> None:
        if self._internal is not None:
            raise ValueError("Neo4jOnlineSink takes every node batch before the first edges")
        key = f"n:{nb.layer_index}:{self._node_batches}"
        self._node_batches += 1
        if self._skip(key, len(nb)):
            return
        self._submit(*self._node_statement(nb, key), len(nb))

    def _node_statement(self, nb: NodeBatch, key: str) -> tuple[str, dict]:
        return CREATE_NODES, {
            "model": self.model, "key": key, "ids": nb.id.tolist(), "layer": nb.layer,
            "layer_index": nb.layer_index, "op": nb.op, "index": nb.index.tolist(),
            "bias": nb.bias.astype(np.float64).tolist(), "activation": nb.activations().tolist()}

    def _edge_statement(self, eb: EdgeBatch, key: str, s: np.ndarray,
                        d: np.ndarray) -> tuple[str, dict]:
        return CREATE_RELATIONSHIPS, {"model": self.model, "key": key, "s": s.tolist(),
                                      "d": d.tolist(), "w": eb.weight.astype(np.float64).tolist()}

    def write_edges(self, eb: EdgeBatch) -> None:
        if self._internal is None:
            self.writer.drain(self.on_rows)
            self._internal = self._internal_ids()
        k = self._edge_batches.get(eb.layer_index, 0)
        self._edge_batches[eb.layer_index] = k + 1
        key = f"e:{eb.layer_index}:{k}"
        if self._skip(key, len(eb)):
            return
        s, d = self._internal[eb.src], self._internal[eb.dst]
        if (s < 0).any() or (d < 0).any():
            raise MissingNeurons(f"model {self.model!r}: neurons missing in Neo4j for layer "
                                 f"index {eb.layer_index}; reload with --replace")
        self._submit(*self._edge_statement(eb, key, s, d), len(eb))

    def flush(self) -> None:
        """Wait until every submitted batch committed."""
        self.writer.drain(self.on_rows)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.writer.close()

    def abort(self) -> None:
        """Stop without waiting for what is in flight (an error or Ctrl-C)."""
        self.writer.close()

    def _internal_ids(self, chunk: int = 200_000) -> np.ndarray:
        """Internal node id of every loaded neuron, indexed by neuron id (-1: absent).

        Paged over neuron id ranges by the (model, id) constraint's index, so memory stays one
        array of 8 bytes per neuron.
        """
        internal = np.full(self.total_neurons, -1, dtype=np.int64)
        for lo in range(0, self.total_neurons, chunk):
            rows = [(r["i"], r["nid"]) for r in
                    self.db.read(self.labels.cypher(_INTERNAL_IDS), name=self.model, lo=lo,
                                 hi=lo + chunk)]
            if rows:
                a = np.array(rows, dtype=np.int64)
                internal[a[:, 0]] = a[:, 1]
        return internal


class ChannelNeo4jOnlineSink(Neo4jOnlineSink):
    """The same exactly-once writer for a :class:`~loader.graph.channels.ChannelGraph`:
    ``(:Channel {model, id, layer, layer_index, channel, op, neurons, bias, activation})``
    and ``[:CW {weight, edges, total, kernel}]`` (``bias``, ``activation`` and ``kernel``
    absent where the contract leaves them out). ``total_neurons`` is the size of the channel
    id space (``ChannelGraph.total_channels``)."""

    labels = CHANNEL

    def _node_statement(self, nb, key):
        bias = [None if b != b else b for b in nb.bias.astype(np.float64).tolist()]
        acts = [None if a is None else str(a) for a in nb.activation.tolist()]
        return CREATE_CHANNELS, {
            "model": self.model, "key": key, "ids": nb.id.tolist(), "layer": nb.layer,
            "layer_index": nb.layer_index, "op": nb.op, "channel": nb.channel.tolist(),
            "neurons": nb.neurons.tolist(), "bias": bias, "activation": acts}

    def _edge_statement(self, eb, key, s, d):
        kernel = (eb.kernel.astype(np.float64).tolist() if eb.kernel is not None
                  else [None] * len(eb))
        return CREATE_CHANNEL_RELATIONSHIPS, {
            "model": self.model, "key": key, "s": s.tolist(), "d": d.tolist(),
            "w": eb.weight.astype(np.float64).tolist(), "n": eb.edges.tolist(),
            "t": eb.total.astype(np.float64).tolist(), "k": kernel}
