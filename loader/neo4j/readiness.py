"""Readiness of a Neo4j server: wait until an authenticated session runs a query."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import ServerError, one_line
from ..processes import process_alive

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["CredentialsRefused", "NotReady", "wait_until_ready"]


class CredentialsRefused(ServerError):
    """Neo4j answers but refuses the user and password: waiting longer will not help."""


class NotReady(ServerError):
    """Neo4j did not accept an authenticated session in time (or its process exited)."""


def wait_until_ready(settings: Settings | None = None, timeout: float = 60.0, *,
                     pid: int | None = None, interval: float = 1.0) -> None:
    """Return once an authenticated session on the settings' database runs a query.

    Each attempt is :func:`loader.neo4j.db.connect` (the one driver factory) followed by an
    auto-commit ``RETURN 1``: a server that is still starting refuses the connection or has
    no database yet, and that is retried every ``interval`` seconds until ``timeout``.

    Parameters
    ----------
    settings : Settings, optional
        URI, user, password and database (default: the environment and ``.env``).
    timeout : float
        Seconds to keep trying; 0 makes one attempt. An attempt in flight may end up to the
        driver's connection timeout later.
    pid : int, optional
        The server's process: stop waiting as soon as it has exited.
    interval : float
        Seconds between attempts.

    Raises
    ------
    CredentialsRefused
        The server refuses the user or password (at once: retrying cannot fix it).
    NotReady
        No authenticated session within ``timeout``, the process ``pid`` exited, or the
        settings cannot work (no password, a malformed URI).
    """
    # The driver and pydantic are imported here: the script's other subcommands need neither,
    # and the driver alone takes about half a second to import.
    from neo4j.exceptions import DriverError, Neo4jError

    from ..config import Settings
    from .db import Database, Neo4jAuthError, Neo4jConfigError, Neo4jUnavailable, connect

    settings = settings or Settings()
    uri = settings.neo4j_uri
    deadline = time.monotonic() + timeout
    while True:
        try:
            driver = connect(settings)
        except Neo4jAuthError as exc:
            raise CredentialsRefused(str(exc)) from None
        except Neo4jConfigError as exc:
            raise NotReady(str(exc)) from None
        except Neo4jUnavailable as exc:  # not up yet: try again
            last = str(exc)
        else:
            try:
                with Database(driver, settings.neo4j_database).session() as session:
                    # Auto-commit, not a managed transaction: that would be retried for a
                    # minute inside one attempt while the database comes online.
                    session.run("RETURN 1").consume()
                return
            except (Neo4jError, DriverError, OSError) as exc:
                last = f"Neo4j at {uri}: {one_line(exc)}"
            finally:
                driver.close()
        if pid is not None and not process_alive(pid):
            raise NotReady(f"the Neo4j process {pid} exited before it accepted a session at "
                           f"{uri}")
        if time.monotonic() >= deadline:
            raise NotReady(f"no authenticated session within {timeout:g} s: {last}")
        time.sleep(interval)
