"""``weightgraph query``, ``pull`` and ``analyze``: thin click commands over
:mod:`loader.neo4j.queries`, :mod:`loader.neo4j.pull` and :mod:`loader.analysis`.

They are plain ``@click.command()`` functions; ``loader.cli`` registers them on the
``weightgraph`` group (``main.add_command(query)``), whose error handling prints a
:class:`~loader.errors.WeightgraphError` as one line.
"""

from __future__ import annotations

import csv
import io
import json

import click

from .options import INPUT_SHAPE_HELP, loaded_selection_options, output_format, parse_shape

from ..errors import WeightgraphError

__all__ = ["query", "pull", "analyze"]


# ---------------------------------------------------------------------------- query
def _format_table(columns, rows) -> str:
    def text(v):
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, (dict, list)):
            return json.dumps(v, default=str)
        return "" if v is None else str(v)

    cells = [[text(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w)
                        for v, w in zip(r, widths)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


@click.command()
@click.argument("name_or_file", required=False)
@click.option("--model", "-m", help="model name in Neo4j (the query's $model)")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="query parameter; repeatable. Types follow the query header (int, float, "
                   "bool, JSON list); undeclared ones are inferred. Values are data, never Cypher.")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True)
@click.option("--list", "list_", is_flag=True, help="list the named queries and their parameters")
@click.option("--timeout", type=float, help="seconds before the server stops the query")
@click.option("--allow-incomplete", is_flag=True,
              help="read a model whose state is not complete (a partial graph) instead of "
                   "refusing it")
@click.option("--statement", is_flag=True,
              help="run the Cypher statement even where the query names a Python procedure "
                   "(receptive_field)")
def query(name_or_file, model, params, fmt, list_, timeout, allow_incomplete, statement):
    """Run a named, read-only Cypher query from queries/ (or a .cypher file) on a loaded model.

    A query that would write is refused before it runs and the database stays unchanged.

    \b
    Example:
      weightgraph query --list
      weightgraph query top_inputs --model vgg16_32 -p layer=block3_conv3 -p index=1000 -p k=5
      weightgraph query receptive_field -m vgg16_32 -p layer=block3_conv3 -p index=1000 -f csv
    """
    from ..neo4j.db import Database
    from ..neo4j.queries import list_queries, load_query, parse_params, run_query

    if list_:
        for q in list_queries():
            ps = ", ".join(f"${p.name} ({p.type}"
                           + ("" if p.required else f", default {json.dumps(p.default)}") + ")"
                           for p in q.params)
            click.echo(f"{q.name}: {q.description}")
            click.echo(f"    params: {ps or '-'}")
            click.echo(f"    returns: {', '.join(q.returns) or '-'}")
        return
    if not name_or_file:
        raise click.UsageError("name a query (see `weightgraph query --list`) or a .cypher file")
    q = load_query(name_or_file)
    values = parse_params(params, q)
    if model is not None:
        values["model"] = model
    with Database.connect() as db:
        result = run_query(db, q, values, timeout=timeout, procedure=not statement,
                           allow_incomplete=allow_incomplete)
    if fmt == "json":
        click.echo(json.dumps(result.records(), indent=2, default=str))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        click.echo(_format_table(result.columns, result.rows))


# ---------------------------------------------------------------------------- pull
@click.command()
@click.option("--name", "-n", help="model name in Neo4j (with --trace: the trace's model)")
@loaded_selection_options
@click.option("-o", "--output", required=True, type=click.Path(),
              help="FILE.graphml, FILE.graphml.gz, or a dataset DIR with --format parquet")
@click.option("--format", "fmt", type=click.Choice(["graphml", "parquet"]),
              help="default: graphml for .graphml/.graphml.gz outputs; parquet: a dataset "
                   "directory like `export --format parquet` writes")
@click.option("--max-edges", type=int, help="refuse selections with more edges (default: none)")
@click.option("--allow-incomplete", is_flag=True,
              help="read a model whose state is not complete (a partial graph) instead of "
                   "refusing it")
@click.option("--trace", "trace_name", metavar="TRACE",
              help="a stored trace: nodes get value, active, contribution; edges into max "
                   "neurons chosen (default selection: the trace's cone, or all it holds)")
@click.option("--active-only", is_flag=True,
              help="with --trace: only active neurons, the edges between them, and the chosen "
                   "edge of each max/min neuron")
@click.option("--effective", is_flag=True,
              help="with --trace of an aggregated trace: the effective graph (pooling edges "
                   "with chosen_rate > --min-rate, without the neurons never active and 0 on "
                   "every input of the set)")
@click.option("--min-rate", type=float, default=0.0, show_default=True,
              help="with --effective: the chosen_rate a pooling edge must exceed to stay")
@click.option("--quiet", is_flag=True, help="no progress bar")
def pull(name, layer_range, cone, cypher, params, output, fmt, max_edges, allow_incomplete,
         trace_name, active_only, effective, min_rate, quiet):
    """Stream a loaded model (or a selection of it) from Neo4j into a GraphML file or a
    Parquet dataset directory.

    Nothing is built in memory; sizes are counted in the database first. A channel model
    (loaded with --granularity channel) comes out as its channel graph; --cone is then
    LAYER:CHANNEL[:DEPTH].

    \b
    Example:
      weightgraph pull --name vgg16_32 --cone block3_conv3:1000:3 -o cone.graphml.gz
      weightgraph pull --name small --layers conv1:pool -o block.graphml
      weightgraph pull --name small -o small.parquet --format parquet
      weightgraph pull --trace cat --active-only -o cat_active.graphml.gz
      weightgraph pull --trace held_out --effective -o held_out_effective.graphml.gz
      weightgraph pull --trace held_out -o held_out.parquet --format parquet
    """
    from ..neo4j.db import Database
    from ..neo4j.pull import pull_to_graphml, pull_to_parquet
    from ..neo4j.queries import parse_params

    fmt = output_format(output, fmt)
    if fmt == "parquet":
        from ..sinks.parquet import check_target

        check_target(output)  # before connecting
    if trace_name is not None:
        from ..neo4j.trace_sets import is_aggregate, pull_trace_set
        from ..neo4j.traces import pull_trace, trace_info

        if cypher is not None:
            raise click.UsageError("--trace takes --layers or --cone, not --cypher")
        if layer_range and cone:
            raise click.UsageError("choose one of --layers or --cone")
        with Database.connect() as db:
            t = trace_info(db, trace_name)
            if name is not None and name != t["model"]:
                raise WeightgraphError(f"trace {trace_name!r} is of model {t['model']!r}, "
                                       f"not {name!r}")
            if is_aggregate(t):
                if active_only:
                    raise click.UsageError(f"trace {trace_name!r} aggregates a set of inputs: "
                                           "use --effective, not --active-only")
                stats = pull_trace_set(trace_name, effective=effective, min_rate=min_rate,
                                       layers=layer_range, cone=cone, path=output, fmt=fmt,
                                       driver=db, max_edges=max_edges)
                how = ", effective)" if effective else ")"
            else:
                if effective:
                    raise click.UsageError(f"trace {trace_name!r} is of one input: --effective "
                                           "needs an aggregated trace (--active-only is its "
                                           "one-input counterpart)")
                if fmt == "parquet":
                    raise click.UsageError("a trace of one input pulls to GraphML")
                stats = pull_trace(trace_name, layers=layer_range, cone=cone,
                                   active_only=active_only, path=output, driver=db,
                                   max_edges=max_edges)
                how = ", active only)" if active_only else ")"
        click.echo(f"wrote {output}: {stats['nodes']:,} nodes, {stats['edges']:,} edges in "
                   f"{stats['seconds']:.1f} s (trace {trace_name}" + how)
        return
    if active_only or effective:
        raise click.UsageError("--active-only and --effective need --trace")
    if name is None:
        raise click.UsageError("give --name (a loaded model) or --trace")
    if sum(x is not None for x in (layer_range, cone, cypher)) > 1:
        raise click.UsageError("choose one of --layers, --cone or --cypher")
    if params and cypher is None:
        raise click.UsageError("--param only applies to --cypher")
    to_file = pull_to_parquet if fmt == "parquet" else pull_to_graphml
    with Database.connect() as db:
        stats = to_file(name, output, layers=layer_range, cone=cone, cypher=cypher,
                        driver=db, params=parse_params(params), max_edges=max_edges,
                        progress=not quiet, allow_incomplete=allow_incomplete)
    click.echo(f"wrote {output}: {stats['nodes']:,} nodes, {stats['edges']:,} edges in "
               f"{stats['seconds']:.1f} s ({stats['edges_per_s']:,.0f} edges/s)")


# ---------------------------------------------------------------------------- analyze
@click.command()
@click.argument("model", required=False)
@click.option("--name", "-n", help="analyse a model loaded in Neo4j instead of a model file")
@click.option("--weights", default="default", show_default=True,
              help="imagenet (default for application names), none (random), or a weights file")
@click.option("--input-shape", callback=parse_shape, help=INPUT_SHAPE_HELP)
@click.option("--no-top", is_flag=True, help="application names: leave out the classifier")
@click.option("--neuron", metavar="LAYER:INDEX",
              help="the neuron whose receptive field is mapped (required but for datasets)")
@click.option("--subgraph", metavar="layers=A:B | cone=L:I[:D]",
              help="where the NetworkX metrics run (default: the neuron's cone, depth 2)")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="directory for the report and its PNG plots")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md",
              show_default=True)
@click.option("--metrics", default="pagerank,betweenness,communities", show_default=True,
              help="comma-separated; empty for none")
@click.option("--max-cost", type=float, default=60.0, show_default=True,
              help="refuse when the metrics are estimated to take longer (seconds)")
@click.option("--max-edges", type=int, default=5_000_000, show_default=True,
              help="edge limit of the metrics subgraph")
@click.option("--allow-incomplete", is_flag=True,
              help="read a model whose state is not complete (a partial graph) instead of "
                   "refusing it")
@click.option("--trace", "trace", metavar="INPUT | TRACE",
              help="with MODEL: an input file (.npy or image) to trace; with --name: a trace "
                   "stored in Neo4j. Adds the contribution map, active fractions and chosen "
                   "pooling positions")
@click.option("--target", metavar="LAYER:INDEX",
              help="with --trace INPUT: the neuron contributions go to (default: --neuron); "
                   "with --inputs also 'predicted'")
@click.option("--inputs", "inputs_path", type=click.Path(), metavar="SET",
              help="with MODEL: aggregate a set of inputs (as `trace --inputs SET --aggregate`"
                   ") and add its section: chosen rate by window position, active-rate "
                   "histograms, the effective graph per layer, the mean contribution map")
@click.option("--preprocess", type=click.Choice(["auto", "none", "caffe", "tf", "torch"]),
              default="auto", show_default=True, help="with --trace INPUT: as for `trace`")
@click.option("--gds/--no-gds", "gds", default=None,
              help="with --name: whole-model sections from Graph Data Science inside Neo4j "
                   "(PageRank and degree per layer, components, communities); default on")
@click.option("--granularity", type=click.Choice(["neuron", "channel"]), default=None,
              help="channel: the whole channel graph's report (weights, degree and strength, "
                   "PageRank per layer); a channel model in Neo4j gets it by itself")
def analyze(model, name, weights, input_shape, no_top, neuron, subgraph, out_dir, fmt, metrics,
            max_cost, max_edges, allow_incomplete, trace, target, inputs_path, preprocess, gds,
            granularity):
    """Write an analysis report (Markdown or HTML, with PNG plots) of a neuron graph.

    MODEL may also be a Parquet dataset directory (`export --format parquet`): then the
    report is the exact per-layer statistics (weights, in-degrees) computed by DuckDB over
    every edge, whatever the size.

    Weight histograms, degree and strength distributions per layer, the receptive-field map
    of --neuron, and PageRank / betweenness / communities on --subgraph (NetworkX), with their
    cost estimated and checked before running. With --name, also PageRank and degree per
    layer, components and communities of the whole model, from Graph Data Science inside
    Neo4j (--no-gds to leave them out). With --trace: the contribution map beside the
    input image, the fraction of active neurons per layer, and where each pooling layer's
    chosen entries sit in the window. With --trace naming an aggregated trace in Neo4j (or
    --inputs SET with MODEL): the chosen rate by window position per pooling layer, the
    active-rate histogram per layer, the effective graph's size per layer and the mean
    contribution map over the input; --neuron is then optional.

    \b
    Example:
      weightgraph analyze vgg16 --weights none --input-shape 32,32,3 \\
          --neuron block3_conv3:1000 --subgraph cone=block3_conv3:1000:2 -o report/
      weightgraph analyze --name vgg16_32 --neuron block3_conv3:1000 -o report/ --format html
      weightgraph analyze vgg16.parquet -o report/     # a Parquet dataset: exact, via DuckDB
      weightgraph analyze vgg16 --neuron block5_pool:0 --trace cat.jpg \\
          --target predictions:281 --metrics "" -o report/
      weightgraph analyze --name vgg16_32 --neuron block2_pool:5 --trace cat -o report/
      weightgraph analyze --name digits_cnn --trace held_out -o report/   # aggregated trace
      weightgraph analyze digits.keras --inputs test.npy --target predicted -o report/
      weightgraph analyze vgg16 --weights none --granularity channel -o report/
      weightgraph analyze resnet18.onnx --input-shape 3,64,64 --neuron logits:3 \\
          --trace x.npy --metrics "" -o report/
      weightgraph analyze --name vgg16_ch -o report/     # a channel model in Neo4j
    """
    from ..analysis import dataset, report
    from ..neo4j.db import Database
    from ..sinks.parquet import is_dataset

    if (model is None) == (name is None):
        raise click.UsageError("give either MODEL (a .keras/.onnx file or an application name) or "
                               "--name (a model loaded in Neo4j)")
    if model is not None and is_dataset(model):
        click.echo(f"wrote {dataset.write_statistics(model, out_dir)}")
        return
    if granularity == "channel" or (granularity is None and name is not None
                                    and _is_channel_model(name)):
        if trace is not None or neuron is not None or subgraph is not None:
            raise click.UsageError("the channel report takes no --neuron, --subgraph or "
                                   "--trace (it covers the whole channel graph)")
        path = _channel_report(model, name, weights, input_shape, no_top, out_dir, fmt,
                               allow_incomplete)
        click.echo(f"wrote {path}")
        return
    if neuron is None and trace is None and inputs_path is None:
        raise click.UsageError("--neuron LAYER:INDEX is required (but for a Parquet dataset "
                               "or a report of an aggregated trace)")
    if inputs_path is not None and (name is not None or trace is not None):
        raise click.UsageError("--inputs SET goes with MODEL (for a model in Neo4j, store the "
                               "aggregated trace with `trace --model ... --inputs SET "
                               "--aggregate --name T` and pass --trace T)")
    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip())
    if neuron is None and subgraph is None:
        chosen = ()  # the metrics need a subgraph: none is named
    db = None
    if name is not None:
        source, traced = name, trace
        db = Database.connect()
    else:
        from ..graph.neuron_graph import NeuronGraph

        source = NeuronGraph.from_model(model, weights=weights, input_shape=input_shape,
                                        include_top=not no_top)
        traced = report.report_trace(source, model, trace_input=trace, inputs=inputs_path,
                                     target=target, neuron=neuron, preprocess=preprocess)
    try:
        if traced is None and target is not None:
            raise click.UsageError("--target goes with --trace")
        path = report.analyze(source, out_dir, neuron=neuron, subgraph=subgraph, fmt=fmt,
                              metrics=chosen, max_cost=max_cost, max_edges=max_edges,
                              driver=db, allow_incomplete=allow_incomplete, trace=traced,
                              gds=gds)
    finally:
        if db is not None:
            db.close()
    click.echo(f"wrote {path}")


def _channel_report(model, name, weights, input_shape, no_top, out_dir, fmt, allow_incomplete):
    """The channel report of a model in Neo4j (``name``) or of ``model``, converted whole."""
    from ..analysis.channels import analyze_channels
    from ..neo4j.db import Database

    if name is not None:
        with Database.connect() as db:
            return analyze_channels(name, out_dir, fmt=fmt, driver=db,
                                    allow_incomplete=allow_incomplete)
    from ..graph.channels import ChannelGraph

    return analyze_channels(ChannelGraph.from_model(
        model, weights=weights, input_shape=input_shape, include_top=not no_top),
        out_dir, fmt=fmt)


def _is_channel_model(name: str) -> bool:
    from ..neo4j.db import Database
    from ..neo4j.models import model_info

    with Database.connect() as db:
        return model_info(db, name).get("granularity") == "channel"


# ---------------------------------------------------------------------------- sql
@click.command("sql")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
@click.option("--threads", type=int, help="DuckDB threads (default: one per core)")
def sql(dataset, query, fmt, threads):
    """Run SQL (DuckDB) over a Parquet dataset written by `export --format parquet`.

    Views: nodes(id, layer, index, op, bias, activation, layer_index),
    edges(src, dst, weight, layer_index) where layer_index is the layer the edge enters,
    and the table layers(layer_index, name, class_name, kind, op, neurons, edges, offset).
    A filter on layer_index reads one layer's files only; one on dst skips row groups.

    \b
    Example:
      weightgraph sql vgg16.parquet "SELECT l.name, e.edges, e.w FROM (SELECT layer_index,
          count(*) AS edges, sum(weight) AS w FROM edges GROUP BY layer_index) e
          JOIN layers l USING (layer_index) ORDER BY layer_index"
      weightgraph sql vgg16.parquet "SELECT src, weight FROM edges WHERE dst = 1234567
          ORDER BY abs(weight) DESC LIMIT 10" --format csv
    """
    from ..analysis.dataset import run_sql

    columns, rows = run_sql(dataset, query, threads=threads)
    click.echo(format_rows(columns, rows, fmt), nl=False)


def format_rows(columns: list[str], rows: list[tuple], fmt: str) -> str:
    """Rows as an aligned text table, JSON (a list of objects) or CSV with a header."""
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue()
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in r]
                                           for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n({len(rows)} row{'s' if len(rows) != 1 else ''})\n"
