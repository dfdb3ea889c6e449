"""The ``weightgraph`` command: a thin shell over the ``loader`` library.

Each command parses options, calls library functions a notebook user can call too, and turns
known errors (:class:`loader.errors.WeightgraphError`) into one line on stderr and exit 1.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version

import click

from .options import parse_shape

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
    """The neuron-level weighted graph of a Keras CNN: plan it, export it as GraphML, load it
    into Neo4j, query it with Cypher, pull it back into NetworkX.

    \b
    Example:
      weightgraph plan vgg16 --weights none
      weightgraph export vgg16 --weights none --input-shape 32,32,3 \\
          --layers block1_conv1:block1_pool -o block1.graphml.gz
    """


# ---------------------------------------------------------------------------- shared options


def model_options(selection=True):
    def deco(fn):
        opts = [
            click.argument("model"),
            click.option("--weights", default="default", show_default=True,
                         help="imagenet (default for application names), none (random), or "
                              "a weights file"),
            click.option("--input-shape", callback=parse_shape,
                         help="input shape H,W,C (application names; fully convolutional "
                              "files)"),
            click.option("--no-top", "no_top", is_flag=True,
                         help="application names: leave out the dense classifier"),
        ]
        if selection:
            opts += [
                click.option("--layers", "layer_range", metavar="FIRST:LAST",
                             help="inclusive layer range; the neurons feeding FIRST come along "
                                  "as sources"),
                click.option("--cone", metavar="LAYER:INDEX[:DEPTH]",
                             help="every neuron and edge upstream of one neuron"),
            ]
        for opt in reversed(opts):
            fn = opt(fn)
        return fn
    return deco


def open_graph(model, weights, input_shape, no_top, layer_range=None, cone=None, name=None):
    from ..graph.neuron_graph import NeuronGraph

    return NeuronGraph.from_model(model, weights=weights, input_shape=input_shape,
                                  include_top=not no_top, layers=layer_range, cone=cone,
                                  name=name)


def human(n: float, unit="B") -> str:
    for prefix in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.3g} {prefix}{unit}" if prefix else f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.3g} E{unit}"


def seconds(s: float) -> str:
    if s < 90:
        return f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


# ---------------------------------------------------------------------------- plan
@main.command()
@model_options()
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON")
def plan(model, weights, input_shape, no_top, layer_range, cone, as_json):
    """Sizes and costs of a model's neuron graph, before any work.

    Per layer: class, op, output shape, neurons, edges; totals; estimated GraphML, NetworkX and
    Neo4j sizes and times (from the benchmarks in bench/).

    \b
    Example:
      weightgraph plan vgg16 --weights none
      weightgraph plan resnet50 --weights none --input-shape 64,64,3 --json
    """
    g = open_graph(model, weights, input_shape, no_top, layer_range, cone)
    p = g.plan()
    if as_json:
        click.echo(p.model_dump_json(indent=2))
        return
    click.echo(f"model {p.model}   input {tuple(p.input_shape)}   selection: {p.selection}")
    header = f"{'#':>4}  {'layer':<34} {'class':<24} {'op':<8} {'output':<18} {'neurons':>12} {'edges':>16}"
    click.echo(header)
    click.echo("-" * len(header))
    for s in p.layers:
        click.echo(f"{s.index:>4}  {s.name[:34]:<34} {s.class_name[:24]:<24} {s.op or '-':<8} "
                   f"{str(tuple(s.output_shape)):<18} {s.neurons:>12,} {s.edges:>16,}")
    click.echo("-" * len(header))
    click.echo(f"total: {p.neurons:,} neurons, {p.edges:,} edges")
    if p.selection != "all":
        click.echo(f"selected: {p.selected_neurons:,} neurons, {p.selected_edges:,} edges")
    e = p.estimates
    click.echo(f"estimates for the selection: GraphML {human(e['graphml_bytes'])} "
               f"(~{seconds(e['graphml_seconds'])}), NetworkX {human(e['networkx_bytes'])} in "
               f"memory, Neo4j store {human(e['neo4j_store_bytes'])} (online "
               f"~{seconds(e['neo4j_online_seconds'])}, bulk ~{seconds(e['neo4j_bulk_seconds'])})")


# ---------------------------------------------------------------------------- export
@main.command()
@model_options()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="FILE.graphml or FILE.graphml.gz")
@click.option("--batch-size", default=1 << 20, show_default=True, help="edges per batch")
@click.option("--quiet", is_flag=True, help="no progress bar")
def export(model, weights, input_shape, no_top, layer_range, cone, output, batch_size, quiet):
    """Write the neuron graph (or a selection) as GraphML, streaming in bounded memory.

    \b
    Example:
      weightgraph export vgg16 --weights none --input-shape 32,32,3 \\
          --layers block1_conv1:block1_pool -o block1.graphml.gz
      weightgraph export model.keras --cone dense:3 -o cone.graphml
    """
    from ..sinks.graphml import write_graphml

    if not (output.endswith(".graphml") or output.endswith(".graphml.gz")):
        raise WeightgraphError(f"output must end in .graphml or .graphml.gz: {output}")
    g = open_graph(model, weights, input_shape, no_top, layer_range, cone)
    stats = write_graphml(g, output, batch_size=batch_size, progress=not quiet)
    click.echo(f"wrote {output}: {stats['nodes']:,} nodes, {stats['edges']:,} edges, "
               f"{human(stats['bytes'])} in {seconds(stats['seconds'])} "
               f"({stats['edges_per_s']:,.0f} edges/s)")


# ---------------------------------------------------------------------------- neo4j
@main.command()
def ping():
    """Check that Neo4j answers with the configured credentials.

    \b
    Example:
      NEO4J_PASSWORD=... weightgraph ping
    """
    from ..config import Settings
    from ..neo4j.db import connect

    s = Settings()
    driver = connect(s)
    try:
        info = driver.get_server_info()
        click.echo(f"Neo4j {info.agent} at {s.neo4j_uri}: authenticated as {s.neo4j_user}")
    finally:
        driver.close()


@main.command("load")
@model_options()
@click.option("--name", help="name of the graph in Neo4j (default: the model's name)")
@click.option("--mode", type=click.Choice(["online", "bulk"]), default="online",
              show_default=True, help="online: Bolt transactions; bulk: neo4j-admin import "
                                      "(rebuilds the whole database)")
@click.option("--batch-size", type=int, help="relationships per transaction (online)")
@click.option("--workers", type=int, default=None, help="parallel writers (online)")
@click.option("--replace", is_flag=True, help="delete an existing graph of that name first "
                                              "(bulk: everything in the database)")
@click.option("--resume", is_flag=True, help="finish an interrupted load of that name")
@click.option("--server", type=click.Choice(["local", "compose"]), default="local",
              show_default=True, help="bulk: which server to stop, import into and restart")
@click.option("--csv-dir", type=click.Path(file_okay=False), help="bulk: where to write the "
                                                                   "CSV files (default: a temp dir)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def load_command(model, weights, input_shape, no_top, layer_range, cone, name, mode,
                 batch_size, workers, replace, resume, server, csv_dir, quiet):
    """Load a model's neuron graph into Neo4j as (:Neuron)-[:W {weight}]->(:Neuron).

    Nothing is written before the model has converted: an unsupported layer or a bad file is
    reported first. A killed load finishes with --resume, never duplicating an edge.

    \b
    Example:
      weightgraph load vgg16 --weights none --input-shape 32,32,3 \\
          --layers block1_conv1:block1_pool --name vgg16_block1
      weightgraph load model.keras --name mynet --resume
      weightgraph load model.keras --mode bulk --replace
    """
    from ..config import Settings
    from ..neo4j.load import check_name, load

    if name is not None:
        check_name(name)
    settings = Settings()
    g = open_graph(model, weights, input_shape, no_top, layer_range, cone, name=name)
    check_name(g.name)
    source = {"model": model if isinstance(model, str) else None, "weights": weights,
              "input_shape": list(input_shape) if input_shape else None, "no_top": no_top,
              "layers": layer_range, "cone": cone}
    summary = load(g, g.name, mode=mode, batch_size=batch_size or None,
                   workers=workers or settings.weightgraph_workers, replace=replace,
                   resume=resume, progress=not quiet, source=source, server=server,
                   csv_dir=csv_dir)
    click.echo(summary.line())
    if summary.extra:
        click.echo("  " + ", ".join(f"{k}={v}" for k, v in summary.extra.items()))


@main.command("verify")
@click.option("--name", required=True, help="name of the graph in Neo4j")
def verify_command(name):
    """Compare neurons, relationships and weight sums per layer in Neo4j with the plan.

    Exits non-zero on any difference.

    \b
    Example:
      weightgraph verify --name vgg16_block1
    """
    from ..neo4j.load import verify

    v = verify(name)
    for line in v.lines():
        click.echo(line)
    if not v.ok:
        raise click.ClickException(f"{name}: Neo4j differs from the plan")
    click.echo(f"{name}: every layer matches the plan")


@main.command("delete")
@click.option("--name", required=True, help="name of the graph in Neo4j")
def delete_command(name):
    """Delete a loaded graph, in bounded transactions.

    \b
    Example:
      weightgraph delete --name vgg16_block1
    """
    from ..neo4j.db import connect
    from ..neo4j.load import check_name, delete_model, model_exists

    check_name(name)
    driver = connect()
    try:
        if model_exists(driver, name) is None:
            raise WeightgraphError(f"no model {name!r} in Neo4j")
        n = delete_model(driver, name)
    finally:
        driver.close()
    click.echo(f"deleted {name}: {n:,} nodes and relationships")


@main.command()
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


def _register_analysis_commands():
    from .analysis import analyze, pull, query

    for command in (query, pull, analyze):
        main.add_command(command)


_register_analysis_commands()

if __name__ == "__main__":
    main()
