"""Which node-id mode ``neo4j-admin database import full`` can take for the node files a bulk
sink writes.

``--id-type=actual`` makes the store's node ids the ids in the files: the importer skips its id
mapping (building it, and a lookup for both ends of every relationship). That needs the ids to
be exactly 0..N-1 in file order, which a whole graph's are (the contract numbers neurons and
channels from 0); the ``(:Model)`` node then takes N. Measured on VGG16 block 1 at 32x32
(37,954,304 relationships, CSV files): the relationship stage took 17.8 s with actual ids
against 29.5 s with ``--id-type=integer``. A selection (``layers=``, ``cone=``) keeps the
contract's global ids, so its files go in with ``integer`` ids and the Model node in an id
space of its own.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ImportIds"]


class ImportIds:
    """Follows the node ids a sink writes; says the id type and the Model node's id column."""

    def __init__(self):
        self.count = 0
        self.dense = True

    def add(self, ids) -> None:
        """Node ids in the order they go into the files."""
        ids = np.asarray(ids)
        if self.dense and len(ids):
            self.dense = bool(ids[0] == self.count and ids[-1] == self.count + len(ids) - 1
                              and np.array_equal(ids, np.arange(self.count,
                                                                self.count + len(ids))))
        self.count += len(ids)

    @property
    def id_type(self) -> str:
        """``actual`` when the ids so far are 0..N-1, else ``integer``."""
        return "actual" if self.dense else "integer"

    def model_id(self) -> tuple[str, int]:
        """The Model node's id column header and value: N after the graph's N nodes (actual
        ids), else 0 in the id space ``Model``."""
        return (":ID", self.count) if self.dense else (":ID(Model)", 0)
