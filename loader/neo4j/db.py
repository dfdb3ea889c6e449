"""Neo4j access: one driver per process, verified, with errors a user can act on.

Wrong passwords and unreachable servers become one-line :class:`Neo4jUnavailable` errors.
"""

from __future__ import annotations

import neo4j
from neo4j.exceptions import AuthError, ServiceUnavailable

from ..config import Settings
from ..errors import WeightgraphError

START_HINT = "start it with `docker compose up -d neo4j` or `scripts/neo4j-local start`"


class Neo4jUnavailable(WeightgraphError):
    """Neo4j cannot be reached, or refused the credentials."""


def connect(settings: Settings | None = None) -> neo4j.Driver:
    """Open a driver and verify that an authenticated session works.

    Examples
    --------
    >>> driver = connect()
    >>> driver.execute_query("RETURN 1 AS one").records[0]["one"]
    1
    """
    s = settings or Settings()
    if s.neo4j_password is None:
        raise Neo4jUnavailable("NEO4J_PASSWORD is not set: put it in the environment or in .env")
    try:
        driver = neo4j.GraphDatabase.driver(
            s.neo4j_uri, auth=(s.neo4j_user, s.neo4j_password.get_secret_value()),
            connection_timeout=10, max_connection_lifetime=3600,
            # Retry transient failures (a restarting server, lock timeouts) for a minute.
            max_transaction_retry_time=60,
            # Server notices (the online loader's id() seek is deprecated in Cypher 25 but is the
            # fastest in 5.26, see loader.load; a label not created yet) are noise to users.
            notifications_min_severity="OFF")
    except ValueError as exc:
        raise Neo4jUnavailable(f"bad NEO4J_URI {s.neo4j_uri!r}: {exc}") from None
    try:
        driver.verify_connectivity()
        driver.verify_authentication()
    except AuthError:
        driver.close()
        raise Neo4jUnavailable(
            f"Neo4j at {s.neo4j_uri} refused user {s.neo4j_user!r}: wrong password "
            "(check NEO4J_PASSWORD)") from None
    except (ServiceUnavailable, OSError):
        driver.close()
        raise Neo4jUnavailable(f"cannot reach Neo4j at {s.neo4j_uri}; {START_HINT}") from None
    except neo4j.exceptions.Neo4jError as exc:
        driver.close()
        raise Neo4jUnavailable(f"Neo4j at {s.neo4j_uri}: {_first_line(exc)}") from None
    return driver


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
