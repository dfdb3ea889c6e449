"""``weightgraph gds``: Graph Data Science algorithms on a loaded model, a thin shell over
:mod:`loader.neo4j.gds`."""

from __future__ import annotations

import json

import click

from ..errors import SelectionError
from ..terminal import human, seconds
from .analysis import format_rows

__all__ = ["gds_command"]

# Rows a table shows when --top is not given (json and csv give every row).
TABLE_ROWS = 20
_SIZE_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_config(values: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` pairs -> a GDS configuration map (values read as JSON when they parse:
    ``maxIterations=50``, ``tolerance=1e-9``, ``orientation=REVERSE``)."""
    config = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SelectionError(f"--config wants KEY=VALUE, got {item!r}")
        try:
            config[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            config[key.strip()] = raw
    return config


def parse_size(value: str | None) -> int | None:
    """``2G``, ``500M``, ``123456`` -> bytes."""
    if value is None:
        return None
    text = value.strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in _SIZE_SUFFIX and not text[-1:].isdigit() else ""
    try:
        return int(float(text[:len(text) - len(unit)]) * _SIZE_SUFFIX[unit])
    except ValueError:
        raise SelectionError(f"--max-memory wants a size like 2G or 500M, got {value!r}") from None


@click.command("gds")
@click.argument("algorithm", required=False)
@click.option("--model", "-m", help="model name in Neo4j")
@click.option("--layers", "layer_range", metavar="FIRST:LAST",
              help="inclusive layer range; the neurons feeding FIRST come along as sources")
@click.option("--cone", metavar="LAYER:INDEX[:DEPTH]", help="everything upstream of one neuron")
@click.option("--cypher", metavar="FILE_OR_TEXT",
              help="a .cypher file (or statement) returning src, dst, weight per edge; $model "
                   "is the model name")
@click.option("--weight", type=click.Choice(["none", "weight", "abs"]), default="none",
              show_default=True, help="relationship weights: none, the signed weight, or "
                                      "|weight|")
@click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE",
              help="GDS configuration, repeatable (maxIterations=50, dampingFactor=0.9, "
                   "samplingSize=100, samplingSeed=1, orientation=REVERSE); values are data")
@click.option("--top", type=int, help="the K highest scores (communities: the K largest), "
                                      f"computed by the server; a table shows {TABLE_ROWS} "
                                      "by default")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True)
@click.option("--write-property", metavar="PROPERTY",
              help="write the values to the neurons as this property (the only mode that "
                   "changes the database)")
@click.option("--max-memory", metavar="SIZE",
              help="refuse above this estimate (default: the server's available heap)")
@click.option("--allow-incomplete", is_flag=True,
              help="read a model whose state is not complete instead of refusing it")
@click.option("--list", "list_", is_flag=True, help="list the algorithms")
def gds_command(algorithm, model, layer_range, cone, cypher, weight, config, top, fmt,
                write_property, max_memory, allow_incomplete, list_):
    """Run a Graph Data Science algorithm inside Neo4j on a loaded model (or a selection).

    The model is projected into GDS's memory (estimated first: refused above the server's
    heap), the algorithm runs there, and the projection is dropped, also on an error or
    Ctrl-C. Results are keyed by neuron id; nothing is written unless --write-property is
    given. Louvain and Leiden run on the undirected view; PageRank, ArticleRank, degree,
    betweenness, eigenvector, Louvain and Leiden want weights >= 0 (--weight abs).

    \b
    Example:
      weightgraph gds --list
      weightgraph gds pagerank --model vgg16_32 --weight abs --top 10
      weightgraph gds wcc --model vgg16_32 --layers block1_conv1:block1_pool
      weightgraph gds betweenness --model vgg16_32 --cone block3_conv3:1000:2 \\
          -c samplingSize=200 -c samplingSeed=42 --format csv
      weightgraph gds louvain --model vgg16_32 --weight abs --write-property community
    """
    from ..neo4j import gds

    if list_:
        for a in gds.list_algorithms():
            click.echo(f"{a.name:12} {a.kind:10} {a.description}")
        return
    if not algorithm:
        raise click.UsageError("name an algorithm (see `weightgraph gds --list`)")
    if not model:
        raise click.UsageError("--model NAME is required (a model loaded in Neo4j)")
    algo = gds.algorithm(algorithm)
    cfg = parse_config(config)
    limit = top if top is not None or fmt != "table" or write_property else TABLE_ROWS
    from ..neo4j.db import Database

    with Database.connect() as db:
        result = gds.run(algo.name, model, layers=layer_range, cone=cone, cypher=cypher,
                         weight=weight, config=cfg, top=limit, write_property=write_property,
                         max_memory=parse_size(max_memory), driver=db,
                         allow_incomplete=allow_incomplete)
    click.echo(f"{algo.name} on {result.selection} of {model!r}: {result.nodes:,} neurons, "
               f"{result.relationships:,} relationships, weight {weight}; estimate "
               f"{human(result.estimate_bytes)}, projected in {seconds(result.project_seconds)}, "
               f"ran in {seconds(result.compute_seconds)}", err=True)
    if write_property:
        names = ([f"{write_property}_auth", f"{write_property}_hub"] if algo.name == "hits"
                 else [write_property])
        click.echo(f"wrote {', '.join(names)} on the {result.nodes:,} projected neurons of "
                   f"{model!r} ({result.written:,} values)")
        return
    names = list(result.columns)
    rows = [tuple(r[n] for n in names) for r in result.rows()]
    click.echo(format_rows(names, rows, fmt), nl=False)
