"""What every sink offers: ``write(batch)`` for node and edge batches, and ``close()``."""

from __future__ import annotations

from ..graph.batches import EdgeBatch, NodeBatch
from ..graph.channels import ChannelEdgeBatch


class BatchSink:
    """Dispatches :meth:`write` to ``write_nodes`` / ``write_edges``."""

    def write(self, batch: NodeBatch | EdgeBatch) -> None:
        """Write a node batch or an edge batch (neuron or channel)."""
        if isinstance(batch, (EdgeBatch, ChannelEdgeBatch)):
            self.write_edges(batch)
        else:
            self.write_nodes(batch)

    def write_nodes(self, batch: NodeBatch) -> None:
        raise NotImplementedError

    def write_edges(self, batch: EdgeBatch) -> None:
        raise NotImplementedError
