"""How each granularity looks in Neo4j: one table, read by the sinks that write a graph and by
every reader in :mod:`loader.neo4j` (load, verify, delete, pull, queries).

=============  ===========  ==========  =====================================================
granularity    node label   rel. type   node's place in its layer / per-layer count
=============  ===========  ==========  =====================================================
``neuron``     ``Neuron``   ``W``       ``index`` / ``neurons``
``channel``    ``Channel``  ``CW``      ``channel`` / ``channels``
=============  ===========  ==========  =====================================================

Labels and types differ so that a channel can never be read as a neuron (a query written for
``(:Neuron)-[:W]->()`` finds nothing in a channel model, and the other way round). The labels
are constants of this table: they are the only text ever formatted into Cypher (user input is
always passed as parameters).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GraphLabels:
    granularity: str
    node: str       # node label
    rel: str        # relationship type
    position: str   # the node property that places it in its layer
    unit: str       # the per-layer count in graph_data's layers table

    def cypher(self, text: str) -> str:
        """``text`` written for neurons (``:Neuron``, ``:W``, ``.index``) in this vocabulary."""
        if self is NEURON:
            return text
        return (text.replace(":Neuron", f":{self.node}").replace(":W]", f":{self.rel}]")
                .replace(":W {", f":{self.rel} {{").replace(".index", f".{self.position}"))


NEURON = GraphLabels("neuron", "Neuron", "W", "index", "neurons")
CHANNEL = GraphLabels("channel", "Channel", "CW", "channel", "channels")
ALL = (NEURON, CHANNEL)


def labels_of(granularity: str | None) -> GraphLabels:
    """The vocabulary of a granularity (None: a model written before granularities: neuron)."""
    for v in ALL:
        if v.granularity == (granularity or "neuron"):
            return v
    raise ValueError(f"granularity must be neuron or channel, not {granularity!r}")


def labels_for(graph) -> GraphLabels:
    """The vocabulary of a graph object (``NeuronGraph`` or ``ChannelGraph``)."""
    return labels_of(getattr(graph, "granularity", "neuron"))
