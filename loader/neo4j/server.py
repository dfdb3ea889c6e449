"""Control of the Neo4j server that holds the database: stop, start, and
``neo4j-admin database import`` while it is stopped (what a bulk load needs).

Two kinds: the server of ``scripts/neo4j-local`` (Maven Central jars, no Docker) and the
``neo4j`` service of the repository's docker-compose.yml.

This module is also the Python half of ``scripts/neo4j-local``: the project's ``.env`` (read
and written with python-dotenv), the generated password, and the readiness probe, so that
the script keeps only what must be shell (fetching jars, starting and stopping Java)::

    python -m loader.neo4j.server password           # the password; generated into .env if none
    python -m loader.neo4j.server wait --timeout 60  # exit 0 once an authenticated session works
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import dotenv_values, set_key

from ..errors import WeightgraphError, one_line

if TYPE_CHECKING:
    from ..config import Settings


class ServerError(WeightgraphError):
    """The server could not be stopped, started or imported into (the message says why)."""


#: The database a bulk load replaces, and the name its new store is imported under first.
TARGET_DATABASE = "neo4j"
STAGING_DATABASE = "wgstaging"


class ServerControl:
    """How to stop and start the Neo4j server that holds the database, import into a staging
    database beside it (while it runs), and swap the staged store in (while it is stopped).

    The swap keeps the replaced store (``neo4j.previous``) until :meth:`drop_previous`;
    :meth:`rollback` puts it back. ``scripts/neo4j-local start`` rolls back a swap that was
    interrupted halfway, so no start can serve an empty or half-swapped database.
    """

    def stop(self) -> None: ...
    def start(self) -> None: ...

    def import_full(self, nodes: dict[str, list[Path]], rels: list[Path], report: Path,
                    database: str = STAGING_DATABASE) -> str:
        """Run ``neo4j-admin database import full`` into ``database``; its output."""
        ...

    def swap_in(self, staging: str = STAGING_DATABASE) -> None: ...
    def rollback(self) -> None: ...
    def drop_previous(self) -> None: ...

    def data_dir(self) -> Path | None:
        """Where the stores live on this machine (for the disk-space check), if known."""
        return None

    def describe(self) -> str:
        return type(self).__name__


def _run(cmd: list[str], what: str, env=None, timeout=None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except FileNotFoundError:
        raise ServerError(f"{what}: {cmd[0]} not found") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise ServerError(f"{what} failed (exit {p.returncode}): {' | '.join(tail)}")
    return p.stdout + p.stderr


def _import_args(nodes: dict[str, list], rels, report, database, prefix=""):
    files = lambda paths: ",".join(prefix + str(p) for p in paths)  # noqa: E731
    return ["database", "import", "full", "--overwrite-destination=true", "--id-type=integer",
            "--bad-tolerance=0", f"--report-file={report}",
            "--max-off-heap-memory=2G",
            *(f"--nodes={label}={files(paths)}" for label, paths in nodes.items()),
            "--relationships=W=" + files(rels), "--", database]


class LocalServer(ServerControl):
    """The server run by ``scripts/neo4j-local`` (no Docker)."""

    def __init__(self, script: str | os.PathLike | None = None):
        self.script = Path(script) if script else find_local_script()

    def stop(self):
        _run([str(self.script), "stop"], "stopping Neo4j")

    def start(self):
        _run([str(self.script), "start"], "starting Neo4j")

    def import_full(self, nodes, rels, report, database=STAGING_DATABASE):
        return _run([str(self.script), "admin", *_import_args(nodes, rels, report, database)],
                    "neo4j-admin database import")

    def swap_in(self, staging=STAGING_DATABASE):
        _run([str(self.script), "swap-database", staging], "swapping the imported database in")

    def rollback(self):
        _run([str(self.script), "rollback-database"], "restoring the previous database")

    def drop_previous(self):
        _run([str(self.script), "drop-previous"], "deleting the previous database")

    def data_dir(self):
        home = os.environ.get("WEIGHTGRAPH_NEO4J_HOME") or (
            Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
            / "weightgraph" / "neo4j")
        return Path(home) / "data"

    def describe(self):
        return f"local server ({self.script})"


# The swap of scripts/neo4j-local, for the compose service's data volume (POSIX sh, run in a
# one-off container of the service's image).
_COMPOSE_SWAP = """set -e; cd /data
for k in databases transactions; do
  [ -e $k/$0 ] || continue
  if [ -e $k/neo4j ]; then [ ! -e $k/neo4j.previous ]; mv $k/neo4j $k/neo4j.previous; fi
  mv $k/$0 $k/neo4j
done"""
_COMPOSE_ROLLBACK = """set -e; cd /data
for k in databases transactions; do
  [ -e $k/neo4j.previous ] || continue; rm -rf $k/neo4j; mv $k/neo4j.previous $k/neo4j
done; rm -rf databases/wg* transactions/wg*"""
_COMPOSE_DROP = "rm -rf /data/databases/neo4j.previous /data/transactions/neo4j.previous"


class ComposeServer(ServerControl):
    """The ``neo4j`` service of the repository's docker-compose.yml.

    The CSV directory is mounted read-only into a one-off container of the same image, which
    runs the import into a staging database on the service's data volume; the swap runs in
    another one-off container while the service is stopped.
    """

    def __init__(self, project_dir: str | os.PathLike = ".", service: str = "neo4j"):
        self.project_dir = Path(project_dir).resolve()
        self.service = service

    def _compose(self, *args):
        return ["docker", "compose", "--project-directory", str(self.project_dir), *args]

    def _sh(self, script: str, *args, what: str):
        return _run(self._compose("run", "--rm", "--no-deps", "--entrypoint", "sh",
                                  self.service, "-c", script, *args), what)

    def stop(self):
        _run(self._compose("stop", self.service), "docker compose stop")

    def start(self):
        _run(self._compose("up", "-d", "--wait", self.service), "docker compose up")

    def import_full(self, nodes, rels, report, database=STAGING_DATABASE):
        csv_dir = Path(rels[0]).parent
        inside = lambda p: Path("/bulk") / Path(p).name  # noqa: E731
        cmd = self._compose("run", "--rm", "--no-deps", "-v", f"{csv_dir}:/bulk",
                            self.service, "neo4j-admin",
                            *_import_args({k: [inside(p) for p in v] for k, v in nodes.items()},
                                          [inside(p) for p in rels], inside(report), database))
        return _run(cmd, "neo4j-admin database import (docker compose)")

    def swap_in(self, staging=STAGING_DATABASE):
        self._sh(_COMPOSE_SWAP, staging, what="swapping the imported database in")

    def rollback(self):
        self._sh(_COMPOSE_ROLLBACK, what="restoring the previous database")

    def drop_previous(self):
        self._sh(_COMPOSE_DROP, what="deleting the previous database")

    def describe(self):
        return f"docker compose service {self.service!r} in {self.project_dir}"


def find_local_script() -> Path:
    """``scripts/neo4j-local``: $WEIGHTGRAPH_NEO4J_LOCAL, else beside the package or the cwd."""
    env = os.environ.get("WEIGHTGRAPH_NEO4J_LOCAL")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "scripts" / "neo4j-local",
                   Path.cwd() / "scripts" / "neo4j-local"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise ServerError("cannot find scripts/neo4j-local for the bulk import: run from the "
                        "repository, set WEIGHTGRAPH_NEO4J_LOCAL, or use --server compose")


def server_control(kind: str | ServerControl | None) -> ServerControl:
    if isinstance(kind, ServerControl):
        return kind
    if kind in (None, "local"):
        return LocalServer()
    if kind == "compose":
        return ComposeServer()
    raise ServerError(f"unknown server kind {kind!r}: local or compose")


# ------------------------------------------------------------------ .env, password, readiness
# The helpers below are what scripts/neo4j-local asks of Python. Their messages carry the
# script's name because the script prints them as its own.
PROG = "neo4j-local"
#: The only user of the local server (scripts/neo4j-local sets its initial password).
NEO4J_USER_NAME = "neo4j"
#: Neo4j's dbms.security.auth_minimum_password_length default: a shorter initial password
#: makes neo4j-admin fail with a stack trace, so it is refused here first, in one line.
MIN_PASSWORD_LENGTH = 8
_ENV_FILE_HEADER = f"# Local secrets for weightgraph (gitignored). Written by scripts/{PROG}.\n"


class CredentialsRefused(ServerError):
    """Neo4j answers but refuses the user and password: waiting longer will not help."""


class NotReady(ServerError):
    """Neo4j did not accept an authenticated session in time (or its process exited)."""


def default_env_file() -> Path:
    """The project's ``.env``: ``$WEIGHTGRAPH_ENV_FILE``, else ``.env`` in the working directory
    (where :class:`loader.config.Settings` reads it)."""
    return Path(os.environ.get("WEIGHTGRAPH_ENV_FILE") or ".env")


def read_env_file(env_file: str | os.PathLike) -> dict[str, str]:
    """The non-empty values of a dotenv file (none when it does not exist).

    Parameters
    ----------
    env_file : path-like
        A dotenv file: ``KEY=value`` lines, optional ``export``, quotes and comments.

    Returns
    -------
    dict of str to str
        Empty values (``NEO4J_PASSWORD=``, as in ``.env.example``) are left out: they mean
        "not set", as in the script.
    """
    if not Path(env_file).is_file():
        return {}
    return {k: v for k, v in dotenv_values(env_file).items() if v}


def env_value(name: str, env_file: str | os.PathLike, default: str | None = None) -> str | None:
    """``name`` from the environment, else from ``env_file``, else ``default``.

    The precedence of :class:`loader.config.Settings`, for the settings it does not model
    (``NEO4J_HEAP_SIZE``, ``NEO4J_PAGECACHE_SIZE``). An empty value counts as unset.

    Examples
    --------
    >>> env_value("NEO4J_HEAP_SIZE", ".env", "4g")   # doctest: +SKIP
    '4g'
    """
    return os.environ.get(name) or read_env_file(env_file).get(name) or default


def password_source(env_file: str | os.PathLike) -> str:
    """Where :func:`ensure_password` takes the password from, for messages."""
    if os.environ.get("NEO4J_PASSWORD"):
        return "NEO4J_PASSWORD (environment)"
    return f"NEO4J_PASSWORD in {env_file}"


def ensure_password(env_file: str | os.PathLike) -> tuple[str, bool]:
    """The Neo4j password, generated into ``env_file`` when there is none yet.

    ``NEO4J_PASSWORD`` from the environment wins, then ``NEO4J_PASSWORD`` in ``env_file``.
    When neither is set, a random one (``secrets.token_hex(12)``) is written to ``env_file``
    together with ``NEO4J_USER=neo4j`` (unless a user is already there); other lines are kept,
    an empty ``NEO4J_PASSWORD=`` line is filled in place, and the file is made mode 600
    because it now holds a secret.

    Parameters
    ----------
    env_file : path-like
        The project's ``.env`` (created when missing).

    Returns
    -------
    password : str
    generated : bool
        True when the password was generated and written just now.

    Raises
    ------
    ServerError
        The password is shorter than Neo4j accepts, or ``env_file`` cannot be written.
    """
    password = os.environ.get("NEO4J_PASSWORD") or read_env_file(env_file).get("NEO4J_PASSWORD")
    generated = not password
    if generated:
        password = secrets.token_hex(12)
        _write_credentials(Path(env_file), password)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ServerError(
            f"the password from {password_source(env_file)} has {len(password)} characters; "
            f"Neo4j requires at least {MIN_PASSWORD_LENGTH} "
            "(dbms.security.auth_minimum_password_length)")
    return password, generated


def _write_credentials(env_file: Path, password: str) -> None:
    try:
        if not env_file.exists():
            # Created 600 from the start: the password must never be readable by others.
            fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_ENV_FILE_HEADER)
        # Unquoted values: the file is also sourced by shells (scripts/test, set -a; . ./.env),
        # and a hex password and 'neo4j' need no quoting.
        set_key(env_file, "NEO4J_PASSWORD", password, quote_mode="never")
        if not read_env_file(env_file).get("NEO4J_USER"):
            set_key(env_file, "NEO4J_USER", NEO4J_USER_NAME, quote_mode="never")
        os.chmod(env_file, 0o600)
    except OSError as exc:
        raise ServerError(f"cannot write the generated password to {env_file}: "
                          f"{exc.strerror or one_line(exc)}") from None


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie counts as gone: the server it was has exited, and only
    the script that started it can reap it."""
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
        if pid is not None and not _process_alive(pid):
            raise NotReady(f"the Neo4j process {pid} exited before it accepted a session at "
                           f"{uri}")
        if time.monotonic() >= deadline:
            raise NotReady(f"no authenticated session within {timeout:g} s: {last}")
        time.sleep(interval)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loader.neo4j.server",
        description=f"The .env, password and readiness helpers of scripts/{PROG}.")
    p.add_argument("--env-file", type=Path, default=None,
                   help="the dotenv file (default: $WEIGHTGRAPH_ENV_FILE, else ./.env)")
    sub = p.add_subparsers(dest="command", required=True)
    pw = sub.add_parser("password", help="print the password, generating it into .env if none")
    pw.add_argument("--source", action="store_true",
                    help="print where the password comes from instead")
    get = sub.add_parser("get", help="print NAME from the environment, else .env, else DEFAULT")
    get.add_argument("name")
    get.add_argument("default", nargs="?", default="")
    wait = sub.add_parser("wait", help="exit 0 once an authenticated session works; 1 when not "
                                       "in time, 2 when the password is refused")
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds (0: one attempt)")
    wait.add_argument("--uri", help="instead of NEO4J_URI")
    wait.add_argument("--user", help="instead of NEO4J_USER")
    wait.add_argument("--pid", type=int, help="give up as soon as this process has exited")
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line of :mod:`loader.neo4j.server` (see the module docstring).

    Returns
    -------
    int
        0 on success; 1 with one line on stderr on failure; 2 when ``wait`` finds the
        password refused.
    """
    args = _parser().parse_args(argv)
    env_file = args.env_file or default_env_file()
    try:
        if args.command == "password":
            if args.source:
                print(password_source(env_file))
                return 0
            password, generated = ensure_password(env_file)
            if generated:
                print(f"{PROG}: no NEO4J_PASSWORD was set: generated a random one and wrote "
                      f"NEO4J_USER/NEO4J_PASSWORD to {env_file} (mode 600)", file=sys.stderr)
            print(password)
        elif args.command == "get":
            print(env_value(args.name, env_file, args.default))
        elif args.command == "wait":
            from ..config import Settings

            overrides = {"neo4j_uri": args.uri, "neo4j_user": args.user}
            settings = Settings(_env_file=env_file,
                                **{k: v for k, v in overrides.items() if v is not None})
            wait_until_ready(settings, args.timeout, pid=args.pid)
    except CredentialsRefused as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except WeightgraphError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
