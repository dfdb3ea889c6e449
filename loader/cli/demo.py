"""``weightgraph demo``: the main job end to end."""

from __future__ import annotations

import click

__all__ = ["demo"]


@click.command()
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False),
              help="where the GraphML file and the report go")
@click.option("--weights", default="none", show_default=True,
              help="none (random, offline) or imagenet (downloaded by Keras)")
@click.option("--quiet", is_flag=True, help="no progress bars")
def demo(out, weights, quiet):
    """End to end: plan VGG16, load a cone of it into Neo4j, verify, run named queries,
    export GraphML from Neo4j and write an analysis report; then say where to look.

    \b
    Example:
      weightgraph demo --out out
    """
    from ..demo import run_demo

    run_demo(out, weights=weights, progress=not quiet)
