"""The ``weightgraph`` command: a thin shell over the ``loader`` library.

Each command parses options, calls library functions a notebook user can call too, and turns
known errors (:class:`loader.errors.WeightgraphError`) into one line on stderr and exit 1.
One module per command family: :mod:`.graph` (plan, export), :mod:`.neo4j` (ping, load,
verify, delete), :mod:`.analysis` (query, pull, analyze, sql), :mod:`.gds` (gds),
:mod:`.trace` (trace),
:mod:`.browser` (browser), :mod:`.server` (its command line: :mod:`.neo4j_local`),
:mod:`.demo`.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version

import click

from ..errors import WeightgraphError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _version() -> str:
    try:
        return version("weightgraph")
    except PackageNotFoundError:
        return "0+unknown"


class Group(click.Group):
    """Turns library errors into a one-line message and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WeightgraphError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", prog_name="weightgraph")
def main():
    """The neuron-level weighted graph of a CNN (a Keras model, or an ONNX file from any
    framework): plan it, export it as GraphML, load it into Neo4j, query it with Cypher, pull
    it back into NetworkX.

    \b
    Example:
      weightgraph plan vgg16 --weights none
      weightgraph export vgg16 --weights none --input-shape 32,32,3 \\
          --layers block1_conv1:block1_pool -o block1.graphml.gz
      weightgraph plan resnet18.onnx --input-shape 3,224,224
    """


def _register_commands():
    from .analysis import analyze, pull, query, sql
    from .browser import browser
    from .demo import demo
    from .gds import gds_command
    from .graph import export, plan
    from .neo4j import delete_command, load_command, ping, verify_command
    from .server import server
    from .trace import trace_group

    for command in (plan, export, ping, load_command, verify_command, delete_command, demo,
                    query, pull, analyze, sql, gds_command, trace_group, browser, server):
        main.add_command(command)


_register_commands()

if __name__ == "__main__":
    main()
