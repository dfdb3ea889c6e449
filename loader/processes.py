"""Processes of this machine: whether one still runs.

Used to clean up after killed work: a temporary directory named with its writer's process id
is abandoned once that process is gone (a killed export's hidden directory, a killed bulk
load's import files), and a server's pid file is stale once its process is gone.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie counts as gone: the program it was has exited, and only
    its parent can reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:  # no /proc (or the process is gone): ask the kernel
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
