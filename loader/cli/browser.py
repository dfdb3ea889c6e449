"""``weightgraph browser``: Neo4j Browser with a weightgraph guide and the neuron-graph style."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import click

__all__ = ["browser"]


@click.command("browser")
@click.option("--model", help="a loaded model (default: the trace's model, else the only "
                               "loaded model)")
@click.option("--trace", help="a stored trace of the model, for the trace queries' slides "
                               "(default: the model's only trace, if it has exactly one)")
@click.option("--no-open", is_flag=True, help="print the Browser URL; do not open a web browser")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="the guide server's port (0: any free port)")
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="address the guide server listens on (0.0.0.0 in a container whose --port "
                   "is published to the host's loopback)")
@click.option("--browser-url", envvar="WEIGHTGRAPH_BROWSER_URL",
              help="Neo4j Browser's address, as your web browser reaches it [default: "
                   "http://<NEO4J_URI's host>:<NEO4J_HTTP_PORT>/browser/]")
@click.option("--no-labels", is_flag=True,
              help="do not add the style's layer-kind and degree-class labels to the model's "
                   "nodes (neurons are then drawn in one colour and size)")
@click.option("--quiet", is_flag=True, help="no progress bar, no request log")
def browser(model, trace, no_open, port, bind, browser_url, no_labels, quiet):
    """Serve a weightgraph guide to Neo4j Browser and open it, until Ctrl-C.

    The guide (Browser's sidebar, `:guide`) is generated from queries/: a first slide with
    the loaded models, the `:style` block of queries/weightgraph.grass and model_summary;
    one slide per named query with its description, a `:param` block with its parameters
    set for the model (and trace) and the query as a runnable block; a last slide on pulling
    a result into NetworkX. The style colours neurons by layer kind, captions them
    `layer:index` and sizes them by degree class: for that, the model's nodes get a kind
    label and a degree-class label (skip with --no-labels; queries ignore them).

    The guide is served on localhost (the host Neo4j Browser may fetch from before login),
    with CORS for the Browser's origin. An unknown model or trace is one line and nothing is
    served.

    \b
    Example:
      weightgraph browser --model digits_cnn
      weightgraph browser --model vgg16_b1 --trace x1 --no-open --port 7480
    """
    from ..config import Settings
    from ..neo4j.browser import (GuideServer, build_guide, check_allowlist, label_for_style,
                                 resolve_target)
    from ..neo4j.db import Database
    from ..terminal import seconds

    settings = Settings()
    neo4j_browser = browser_url or (f"http://{urlsplit(settings.neo4j_uri).hostname}:"
                                    f"{settings.neo4j_http_port}/browser/")
    with Database.connect(settings) as db:
        target = resolve_target(db, model, trace)
        server = GuideServer(port, bind, neo4j_browser=neo4j_browser,
                             log=None if quiet else lambda line: click.echo(line, err=True))
        try:
            check_allowlist(db, server.guide_url)
            if not no_labels:
                added = label_for_style(db, target.model, progress_bar=not quiet)
                click.echo(f"style labels on {target.model}: "
                           + (", ".join(f"{k} {v:,}" for k, v in added.items()) + " added"
                              if added else "already there"))
            guide = build_guide(db, target, base_url=server.base_url)
        except BaseException:
            server.close()
            raise
    server.publish(guide)
    queries = sum(1 for s in guide.slides if s.query is not None)
    click.echo(f"guide {guide.title!r}" + (f", trace {target.trace!r}" if target.trace else "")
               + f": {len(guide.slides)} slides, {queries} queries from {guide.queries_dir}, "
               f"built in {seconds(guide.seconds)}")
    click.echo(f"serving {server.guide_url} and {guide.style_url} until Ctrl-C")
    click.echo(f"open in Neo4j Browser (log in as {settings.neo4j_user}, password from "
               "NEO4J_PASSWORD / .env):")
    url = server.browser_url()
    click.echo(url)
    if not no_open:
        _open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped serving the guide", err=True)
    finally:
        server.close()


def _open(url: str) -> None:
    """Open ``url`` in a graphical web browser; where there is no display, say so (Python's
    webbrowser would otherwise start a console browser in this terminal)."""
    import webbrowser

    graphical = sys.platform in ("darwin", "win32") or any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY"))
    if not (graphical and webbrowser.open(url)):
        click.echo("no graphical web browser here: open the URL above yourself", err=True)
