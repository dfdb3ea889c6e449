"""``weightgraph ping``, ``load``, ``verify`` and ``delete``: a model's graph in Neo4j."""

from __future__ import annotations

import click

from .options import model_options, open_graph

__all__ = ["ping", "load_command", "verify_command", "delete_command"]


@click.command()
def ping():
    """Check that Neo4j answers with the configured credentials.

    \b
    Example:
      NEO4J_PASSWORD=... weightgraph ping
    """
    from ..config import Settings
    from ..neo4j.db import Database

    s = Settings()
    with Database.connect(s) as db:
        info = db.driver.get_server_info()
        click.echo(f"Neo4j {info.agent} at {s.neo4j_uri}, database {db.name!r}: "
                   f"authenticated as {s.neo4j_user}")


@click.command("load")
@model_options(granularity=True)
@click.option("--name", help="name of the graph in Neo4j (default: the model's name)")
@click.option("--mode", type=click.Choice(["online", "bulk"]), default="online",
              show_default=True, help="online: Bolt transactions; bulk: neo4j-admin import "
                                      "(rebuilds the whole database)")
@click.option("--batch-size", type=int, help="relationships per transaction (online; channel "
                                             "graphs: relationships x kernel length)")
@click.option("--workers", type=int, default=None, help="parallel writers (online)")
@click.option("--replace", is_flag=True, help="delete an existing graph of that name first "
                                              "(bulk: everything in the database, listed "
                                              "before it goes)")
@click.option("--resume", is_flag=True, help="finish an interrupted load of that name")
@click.option("--server", type=click.Choice(["local", "compose"]), default="local",
              show_default=True, help="bulk: which server to stop, import into and restart")
@click.option("--csv-dir", type=click.Path(file_okay=False), help="bulk: where to write the "
                                                                   "import files (default: a "
                                                                   "temp dir)")
@click.option("--bulk-format", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True, help="bulk: the import files' format (csv: plain text, the "
                                      "importer's fastest input; parquet: ~10x smaller)")
@click.option("--keep-serving", is_flag=True, help="bulk: serve the old database during the "
                                                   "import (slower; by default the server is "
                                                   "stopped from the import to the swap)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def load_command(model, weights, input_shape, no_top, layer_range, cone, granularity, name,
                 mode, batch_size, workers, replace, resume, server, csv_dir, bulk_format,
                 keep_serving, quiet):
    """Load a model's neuron graph into Neo4j as (:Neuron)-[:W {weight}]->(:Neuron), or its
    channel graph (--granularity channel) as (:Channel)-[:CW {weight, edges, total,
    kernel}]->(:Channel).

    Nothing is written before the model has converted: an unsupported layer or a bad file is
    reported first. A killed load finishes with --resume, never duplicating an edge.
    MODEL may be a Parquet dataset directory (`weightgraph export --format parquet`): with
    --mode bulk its files are imported as they are.

    \b
    Example:
      weightgraph load vgg16 --weights none --input-shape 32,32,3 \\
          --layers block1_conv1:block1_pool --name vgg16_block1
      weightgraph load model.keras --name mynet --resume
      weightgraph load resnet18.onnx --input-shape 3,64,64 --name resnet18_64
      weightgraph load model.keras --mode bulk --replace
      weightgraph load vgg16 --weights none --granularity channel --name vgg16_channels
      weightgraph load vgg16_32.parquet --mode bulk --replace --name vgg16_32
    """
    from ..neo4j.load import load
    from ..neo4j.models import check_name
    from ..sinks.parquet import is_dataset

    if name is not None:
        check_name(name)
    if is_dataset(model):
        _load_dataset(model, name, mode, replace, server, csv_dir, keep_serving,
                      given=[o for o, v in (("--layers", layer_range), ("--cone", cone),
                                            ("--resume", resume), ("--input-shape", input_shape),
                                            ("--no-top", no_top),
                                            ("--granularity channel", granularity == "channel"))
                             if v])
        return
    g = open_graph(model, weights, input_shape, no_top, layer_range, cone, name=name,
                   granularity=granularity)
    check_name(g.name)
    source = {"model": model if isinstance(model, str) else None, "weights": weights,
              "input_shape": list(input_shape) if input_shape else None, "no_top": no_top,
              "layers": layer_range, "cone": cone, "granularity": granularity}
    summary = load(g, g.name, mode=mode, batch_size=batch_size, workers=workers, replace=replace,
                   resume=resume, progress=not quiet, source=source, server=server,
                   csv_dir=csv_dir, notify=lambda line: click.echo(line, err=True),
                   bulk_format=bulk_format, keep_serving=keep_serving)
    click.echo(summary.line())
    if summary.extra:
        click.echo("  " + ", ".join(f"{k}={v}" for k, v in summary.extra.items()))


def _load_dataset(path, name, mode, replace, server, work_dir, keep_serving, given):
    from ..neo4j.load import LoadError, load_dataset

    if mode != "bulk":
        raise LoadError(f"{path} is a Parquet dataset: it loads with --mode bulk (neo4j-admin "
                        "import of its files)")
    if given:
        raise LoadError(f"{', '.join(given)} do not apply to a dataset: it loads whole (export "
                        "a selection with `weightgraph export ... --layers/--cone`)")
    summary = load_dataset(path, name, replace=replace, server=server, work_dir=work_dir,
                           notify=lambda line: click.echo(line, err=True),
                           keep_serving=keep_serving)
    click.echo(summary.line())
    click.echo("  " + ", ".join(f"{k}={v}" for k, v in summary.extra.items()))


@click.command("verify")
@click.option("--name", required=True, help="name of the graph in Neo4j")
def verify_command(name):
    """Compare neurons, relationships and weight sums per layer in Neo4j with the plan.

    Exits non-zero on any difference.

    \b
    Example:
      weightgraph verify --name vgg16_block1
    """
    from ..neo4j.models import verify

    v = verify(name)
    for line in v.lines():
        click.echo(line)
    if not v.ok:
        raise click.ClickException(f"{name}: Neo4j differs from the plan")
    click.echo(f"{name}: every layer matches the plan")


@click.command("delete")
@click.option("--name", required=True, help="name of the graph in Neo4j")
def delete_command(name):
    """Delete a loaded graph, in bounded transactions.

    The model is marked `deleting` before anything goes, so readers refuse it from the
    first moment; a delete that was interrupted finishes when run again.

    \b
    Example:
      weightgraph delete --name vgg16_block1
    """
    from ..neo4j.db import Database
    from ..neo4j.models import ModelNotFound, check_name, delete_model, model_node, state_of

    check_name(name)
    with Database.connect() as db:
        props = model_node(db, name)
        if props is None:
            raise ModelNotFound(f"no model {name!r} in Neo4j")
        if state_of(props) == "deleting":
            click.echo(f"{name} is `deleting` (an interrupted delete): finishing it")
        n = delete_model(db, name)
    click.echo(f"deleted {name}: {n:,} nodes and relationships")
