"""Named kill points for the fault-injection suite (``tests/test_faults.py``).

``WEIGHTGRAPH_KILL_AT=POINT[:N]`` makes the process SIGKILL itself the N-th time (default
the first) it passes ``POINT``: a kill at an exact step of the work (the last batch sent, the
swap done, the state not yet written) that polling from outside could only hit by chance.
Unset, a point costs one dictionary lookup.

Points: ``online.edges`` (after each edge batch is handed to the writers),
``online.before_complete``, ``delete.relationships`` (after each committed chunk),
``delete.before_model`` (the graph gone, the Model node not yet), ``replace.deleted`` (the old
graph gone, the new not started), ``bulk.imported`` (staging store written, server untouched),
``bulk.stopped``, ``bulk.swapped`` (server stopped, new store in place), ``bulk.before_schema``,
``trace.chunks`` (after each transaction of a stored trace's chunks; its Trace node comes last).
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process if ``WEIGHTGRAPH_KILL_AT`` names ``name`` (and this is the N-th
    pass)."""
    target = os.environ.get("WEIGHTGRAPH_KILL_AT")
    if not target:
        return
    point, _, nth = target.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
