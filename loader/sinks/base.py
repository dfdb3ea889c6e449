"""What every sink offers: ``write(batch)`` for node and edge batches, and ``close()``."""

from __future__ import annotations

from ..graph.batches import EdgeBatch, NodeBatch


class BatchSink:
    """Dispatches :meth:`write` to ``write_nodes`` / ``write_edges``."""

    def write(self, batch: NodeBatch | EdgeBatch) -> None:
        """Write a :class:`NodeBatch` or an :class:`EdgeBatch`."""
        if isinstance(batch, EdgeBatch):
            self.write_edges(batch)
        else:
            self.write_nodes(batch)

    def write_nodes(self, batch: NodeBatch) -> None:
        raise NotImplementedError

    def write_edges(self, batch: EdgeBatch) -> None:
        raise NotImplementedError
