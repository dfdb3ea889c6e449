"""The one door to Neo4j: a driver, the database every statement goes to, and the
transaction kind.

Every module of :mod:`loader.neo4j` talks to the server through a :class:`Database`; nothing
else in weightgraph opens a session. So the database choice (``NEO4J_DATABASE``, or the name
given) is made here once, and a command cannot read one database while it writes another.
Writes run as managed transactions (``execute_write``, retried on transient errors as the
driver recommends); reads as managed read transactions, or as one explicit read transaction
when a stream must see one consistent snapshot and must not be replayed.

Wrong passwords and unreachable servers become one-line :class:`Neo4jUnavailable` errors.

Examples
--------
>>> with Database.connect() as db:
...     db.read_one("RETURN 1 AS one")["one"]
1
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, NamedTuple

import neo4j
from neo4j.exceptions import AuthError, ServiceUnavailable

from ..config import Settings
from ..errors import WeightgraphError, one_line

START_HINT = "start it with `docker compose up -d neo4j` or `scripts/neo4j-local start`"

# Server notices (the online loader's id() seek is deprecated in Cypher 25 but is the fastest
# in 5.26, see loader.neo4j.load; a label not created yet) are noise to users.
_QUIET = neo4j.NotificationMinimumSeverity.OFF


class Explained(NamedTuple):
    """What ``EXPLAIN`` says of a statement: ``query_type`` is ``'r'`` (read only), ``'rw'``,
    ``'w'`` or ``'s'`` (schema); ``columns`` are the names it would return."""

    query_type: str
    columns: list[str]


class Neo4jUnavailable(WeightgraphError):
    """Neo4j cannot be reached, or refused the credentials."""


class Neo4jAuthError(Neo4jUnavailable):
    """Neo4j answered and refused the credentials (retrying will not help)."""


class Neo4jConfigError(Neo4jUnavailable):
    """The settings cannot work: no password, a malformed URI (retrying will not help)."""


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
        raise Neo4jConfigError("NEO4J_PASSWORD is not set: put it in the environment or in .env")
    try:
        driver = neo4j.GraphDatabase.driver(
            s.neo4j_uri, auth=(s.neo4j_user, s.neo4j_password.get_secret_value()),
            connection_timeout=10, max_connection_lifetime=3600,
            # Retry transient failures (a restarting server, lock timeouts) for a minute.
            max_transaction_retry_time=60, notifications_min_severity=_QUIET)
    except (ValueError, neo4j.exceptions.ConfigurationError) as exc:
        # str(), not one_line(): a ConfigurationError's `message` is a generic status text.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Neo4jConfigError(f"bad NEO4J_URI {s.neo4j_uri!r}: {reason}") from None
    try:
        driver.verify_connectivity()
        driver.verify_authentication()
    except AuthError:
        driver.close()
        raise Neo4jAuthError(
            f"Neo4j at {s.neo4j_uri} refused user {s.neo4j_user!r}: wrong password "
            "(check NEO4J_PASSWORD)") from None
    except (ServiceUnavailable, OSError):
        driver.close()
        raise Neo4jUnavailable(f"cannot reach Neo4j at {s.neo4j_uri}; {START_HINT}") from None
    except neo4j.exceptions.Neo4jError as exc:
        driver.close()
        raise Neo4jUnavailable(f"Neo4j at {s.neo4j_uri}: {one_line(exc)}") from None
    return driver


class Database:
    """A driver and the one database that every statement of a command goes to.

    Parameters
    ----------
    driver : neo4j.Driver
        An open driver (see :func:`connect`).
    name : str, optional
        The database; default ``NEO4J_DATABASE`` (``neo4j``).
    owns_driver : bool
        Close the driver in :meth:`close`.
    """

    def __init__(self, driver: neo4j.Driver, name: str | None = None, *,
                 owns_driver: bool = False):
        self.driver = driver
        self.name = name or Settings().neo4j_database
        self._owns_driver = owns_driver

    @classmethod
    def connect(cls, settings: Settings | None = None, name: str | None = None) -> Database:
        """A verified connection from ``settings`` (default: the environment and ``.env``)."""
        settings = settings or Settings()
        db = cls(connect(settings), name or settings.neo4j_database, owns_driver=True)
        try:
            db.check_exists()
        except BaseException:
            db.close()
            raise
        return db

    def check_exists(self) -> None:
        """A one-line :class:`Neo4jConfigError` when the server has no database of this name
        (rather than the driver's error at the first statement of a command)."""
        try:
            with self.session(read=True) as s:
                s.run("RETURN 1").consume()
        except neo4j.exceptions.ClientError as exc:
            if not (exc.code or "").endswith("DatabaseNotFound"):
                raise
            with self.driver.session(database="system") as s:
                names = [r["name"] for r in s.run("SHOW DATABASES YIELD name")]
            raise Neo4jConfigError(
                f"Neo4j has no database {self.name!r} (NEO4J_DATABASE); it has: "
                + ", ".join(n for n in names if n != "system")) from None

    def close(self) -> None:
        if self._owns_driver:
            self.driver.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.name!r})"

    # ------------------------------------------------------------------ sessions
    def session(self, *, read: bool = False, fetch_size: int | None = None) -> neo4j.Session:
        """A session on this database (short-lived: use it in a ``with`` block)."""
        kwargs: dict[str, Any] = {"database": self.name, "notifications_min_severity": _QUIET}
        if read:
            kwargs["default_access_mode"] = neo4j.READ_ACCESS
        if fetch_size is not None:
            kwargs["fetch_size"] = fetch_size
        return self.driver.session(**kwargs)

    # ------------------------------------------------------------------ statements
    def read(self, statement: str, params: dict | None = None, **kw) -> list[neo4j.Record]:
        """All records of a read statement, in a managed read transaction."""
        with self.session(read=True) as s:
            return s.execute_read(lambda tx: list(tx.run(statement, {**(params or {}), **kw})))

    def read_one(self, statement: str, params: dict | None = None, **kw) -> neo4j.Record | None:
        """The single record of a read statement (None when it returns no row)."""
        records = self.read(statement, params, **kw)
        return records[0] if records else None

    def write(self, statement: str, params: dict | None = None, **kw) -> list[neo4j.Record]:
        """All records of a write statement, in a managed write transaction (retried on
        transient errors: the statement must be safe to run again)."""
        with self.session() as s:
            return s.execute_write(lambda tx: list(tx.run(statement, {**(params or {}), **kw})))

    def write_one(self, statement: str, params: dict | None = None, **kw) -> neo4j.Record | None:
        records = self.write(statement, params, **kw)
        return records[0] if records else None

    def execute_write(self, work: Callable[[neo4j.ManagedTransaction], Any]) -> Any:
        """Run ``work(tx)`` in one managed write transaction."""
        with self.session() as s:
            return s.execute_write(work)

    def schema(self, statement: str) -> None:
        """A schema command (constraints, indexes, ``db.awaitIndexes``): Neo4j runs those in
        auto-commit transactions only."""
        with self.session() as s:
            s.run(statement).consume()

    def explain(self, statement: str, params: dict | None = None) -> Explained:
        """Plan a statement without running it, in an auto-commit READ transaction (``CALL {
        ... } IN TRANSACTIONS`` cannot even be explained inside a managed transaction)."""
        with self.session(read=True) as s:
            result = s.run("EXPLAIN " + statement, params or {})
            columns = list(result.keys())
            return Explained(result.consume().query_type, columns)

    @contextlib.contextmanager
    def snapshot(self, fetch_size: int = 10_000) -> Iterator[neo4j.Transaction]:
        """One explicit read transaction: a consistent view for a stream of pages, and no
        automatic retry that would hand a consumer the same rows twice."""
        with self.session(read=True, fetch_size=fetch_size) as s, s.begin_transaction() as tx:
            yield tx

    def concurrent_writer(self, workers: int) -> ConcurrentWriter:
        """Managed write transactions on ``workers`` threads (see :class:`ConcurrentWriter`)."""
        return ConcurrentWriter(self, workers)


class ConcurrentWriter:
    """Runs write transactions on a few threads, at most ``2 * workers`` in flight.

    Neo4j's commit path is serial, so one writer leaves the server idle while the next batch
    is packed and sent: 1 writer measured ~100k rels/s, 4 writers 130-190k (loader.neo4j.load).
    Each thread keeps one session for all its transactions (sessions are cheap, not free).
    ``submit`` blocks while the window is full, so memory holds at most ``2 * workers`` batches.
    """

    def __init__(self, db: Database, workers: int):
        self.db = db
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="wg-writer")
        self.limit = 2 * max(1, workers)
        self.pending: deque[Future] = deque()
        self.local = threading.local()
        self.sessions: list[neo4j.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> neo4j.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = self.db.session()
            with self._lock:
                self.sessions.append(s)
        return s

    def _run(self, work: Callable[[neo4j.ManagedTransaction], Any], on_error, result):
        try:
            self._session().execute_write(work)
        except Exception as exc:
            if on_error is None or not on_error(exc):
                raise
        return result

    def submit(self, work: Callable[[neo4j.ManagedTransaction], Any], result: Any,
               on_done: Callable[[Any], None], on_error=None) -> None:
        """Run ``work(tx)`` in a managed write transaction; ``on_done(result)`` is called (on
        this thread) once it committed. ``on_error(exc)`` returning True forgives a failure."""
        while len(self.pending) >= self.limit:
            on_done(self.pending.popleft().result())
        self.pending.append(self.pool.submit(self._run, work, on_error, result))

    def drain(self, on_done: Callable[[Any], None]) -> None:
        """Wait for every submitted transaction (re-raising the first failure)."""
        while self.pending:
            on_done(self.pending.popleft().result())

    def close(self) -> None:
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True)
        for s in self.sessions:
            s.close()


@contextlib.contextmanager
def using(driver: Database | neo4j.Driver | None = None,
          database: str | None = None) -> Iterator[Database]:
    """The :class:`Database` a library call talks to.

    ``driver`` may be a :class:`Database` (used as it is), a ``neo4j.Driver`` (with
    ``database`` or ``NEO4J_DATABASE``), or None: a connection from the settings, closed again
    at the end of the block.
    """
    if isinstance(driver, Database):
        if database is not None and database != driver.name:
            yield Database(driver.driver, database)
        else:
            yield driver
    elif driver is not None:
        yield Database(driver, database)
    else:
        with Database.connect(name=database) as db:
            yield db
