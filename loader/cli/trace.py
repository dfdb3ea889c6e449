"""``weightgraph trace``: resolve a model's graph for one input (values, pooling choices, active
neurons, contributions), to GraphML or into Neo4j; ``trace delete`` and ``trace list`` for
traces stored in Neo4j."""

from __future__ import annotations

import click

from ..errors import WeightgraphError
from ..terminal import human, seconds
from .options import INPUT_SHAPE_HELP, open_graph, output_format, parse_shape

__all__ = ["trace_group"]


class _DefaultGroup(click.Group):
    """``trace MODEL ...`` runs the ``run`` command; ``trace delete|list ...`` the others."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["run"] + list(args)
        return super().parse_args(ctx, args)


@click.group("trace", cls=_DefaultGroup)
def trace_group():
    """Resolve the graph for one input: every neuron's value, which entry each max-pooling
    neuron takes (edge attribute chosen), which neurons are active, and with --target each
    neuron's contribution (value x gradient) to one output. Over a set of inputs (--inputs
    SET --aggregate): per neuron mean_value, active_rate, mean contributions, per pooling edge
    chosen_rate, and the effective graph (--effective).

    \b
    weightgraph trace MODEL --input FILE [--preprocess auto|none|caffe|tf|torch]
        [--target LAYER:INDEX] [--layers A:B | --cone L:I[:D]] [--active-only] [-o OUT.graphml[.gz]]
    weightgraph trace MODEL --inputs SET --aggregate [--target LAYER:INDEX|predicted]
        [--effective [--min-rate R]] [--batch-size B]
        [-o OUT.graphml[.gz] | -o DIR --format parquet]
    weightgraph trace --model NAME --input FILE --name TRACE [--target LAYER:INDEX] [--replace]
    weightgraph trace --model NAME --inputs SET --aggregate --name TRACE [--target ...] [--replace]
    weightgraph trace list [--model NAME]
    weightgraph trace delete --name TRACE

    \b
    Example:
      weightgraph trace vgg16 --input cat.jpg --target predictions:281 \\
          --cone block3_pool:1000 --active-only -o cat_cone.graphml.gz
      weightgraph trace model.keras --input x.npy -o trace.graphml
      weightgraph trace model.keras --inputs test_set.npy --aggregate --target predicted \\
          --effective -o effective.graphml.gz
      weightgraph trace model.onnx --input x.npy -o trace.graphml
    """


@trace_group.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", required=False)
@click.option("--input", "input_path", type=click.Path(dir_okay=False),
              help=".npy array (exact, with or without the batch axis) or an image "
                   "(.png, .jpg), resized to the model's input")
@click.option("--inputs", "inputs_path", type=click.Path(), metavar="SET",
              help="a set of inputs (with --aggregate): a .npy array of N inputs, a directory "
                   "of images or .npy files, or a .parquet/.csv file of rows (one input per "
                   "row, flattened)")
@click.option("--aggregate", is_flag=True,
              help="with --inputs: one graph of per-neuron mean_value, active_rate, "
                   "nonzero_rate (and mean_contribution, mean_abs_contribution with --target) "
                   "and per pooling edge chosen_rate over the set")
@click.option("--effective", is_flag=True,
              help="with --aggregate: keep the pooling edges with chosen_rate > --min-rate and "
                   "drop the neurons never active and 0 on every input (with their edges); "
                   "prints what remains per layer")
@click.option("--min-rate", type=float, default=0.0, show_default=True,
              help="with --effective: the chosen_rate a pooling edge must exceed to stay")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="with --inputs: inputs per pass (default: what fits 2 GiB of arrays)")
@click.option("--workers", type=click.IntRange(min=1),
              help="with --inputs: threads running parts of each batch (default: the cores, "
                   "at most 4)")
@click.option("--format", "fmt", type=click.Choice(["graphml", "parquet"]),
              help="with --aggregate: parquet writes a dataset directory (-o DIR) with the "
                   "attributes as extra columns; default from the -o name")
@click.option("--preprocess", type=click.Choice(["auto", "none", "caffe", "tf", "torch"]),
              default="auto", show_default=True,
              help="images: auto = the keras.applications family's preprocess_input for "
                   "application names, none otherwise; .npy: auto = none")
@click.option("--target", metavar="LAYER:INDEX",
              help="compute every upstream neuron's contribution to this neuron; with "
                   "--inputs also 'predicted': each input's own largest output")
@click.option("--weights", default="default", show_default=True,
              help="imagenet (default for application names), none (random), or a weights file")
@click.option("--input-shape", callback=parse_shape, help=INPUT_SHAPE_HELP)
@click.option("--no-top", "no_top", is_flag=True, help="leave out the dense classifier")
@click.option("--layers", "layer_range", metavar="FIRST:LAST",
              help="export this inclusive layer range (values cover the whole model)")
@click.option("--cone", metavar="LAYER:INDEX[:DEPTH]",
              help="export the cone of one neuron (default with --target: the target's cone)")
@click.option("--active-only", is_flag=True,
              help="keep active neurons, edges between them, and only the chosen edge of "
                   "each max/min neuron")
@click.option("-o", "--output", type=click.Path(),
              help="FILE.graphml or FILE.graphml.gz, or DIR with --format parquet (without: "
                   "print the summary only)")
@click.option("--model", "loaded", metavar="NAME",
              help="a model loaded in Neo4j, instead of MODEL: store the trace there")
@click.option("--name", "trace_name", help="Neo4j: the trace's name")
@click.option("--replace", is_flag=True, help="Neo4j: replace a trace of that name")
@click.option("--quiet", is_flag=True, help="no progress bar")
def run(model, input_path, inputs_path, aggregate, effective, min_rate, batch_size, workers,
        fmt, preprocess, target, weights, input_shape, no_top, layer_range, cone, active_only,
        output, loaded, trace_name, replace, quiet):
    """Trace one input (--input) or aggregate a set of inputs (--inputs SET --aggregate)
    through MODEL (a .keras/.onnx file or a keras.applications name) or through a model loaded in Neo4j
    (--model NAME). With --target LAYER:INDEX and no --layers/--cone, the output holds the
    target's cone.

    \b
    Example:
      weightgraph trace vgg16 --input cat.jpg --target predictions:281 -o cat.graphml.gz
      weightgraph trace model.keras --input x.npy --active-only -o active.graphml
      weightgraph trace resnet18.onnx --input-shape 3,64,64 --input cat.jpg --preprocess torch \\
          --target logits:281 -o cat.graphml.gz
      weightgraph trace --model vgg16_demo --input cat.jpg --name cat --target block2_pool:1000
      weightgraph trace model.keras --inputs test_images/ --aggregate --target predicted \\
          -o set.parquet --format parquet
      weightgraph trace model.keras --inputs test.npy --aggregate --effective -o eff.graphml.gz
      weightgraph trace --model digits_cnn --inputs test.npy --aggregate --name held_out \\
          --target predicted
    """
    if (model is None) == (loaded is None):
        raise click.UsageError("give either MODEL (a file or an application name) or "
                               "--model NAME (a model loaded in Neo4j)")
    if (input_path is None) == (inputs_path is None):
        raise click.UsageError("give either --input FILE (one input) or --inputs SET "
                               "--aggregate (a set of inputs)")
    if inputs_path is not None or aggregate or effective:
        _run_set(model, inputs_path, aggregate, effective, min_rate, batch_size, workers, fmt,
                 preprocess, target, weights, input_shape, no_top, layer_range, cone,
                 active_only, output, loaded, trace_name, replace, quiet)
        return
    if target == "predicted":
        raise click.UsageError("--target predicted goes with --inputs SET --aggregate; for one "
                               "input name the neuron (LAYER:INDEX)")
    if fmt is not None:
        raise click.UsageError("--format goes with --aggregate (a trace of one input writes "
                               "GraphML)")
    if output and not (output.endswith(".graphml") or output.endswith(".graphml.gz")):
        raise WeightgraphError(f"output must end in .graphml or .graphml.gz: {output}")
    if loaded is not None:
        _run_neo4j(loaded, input_path, preprocess, target, trace_name, replace, layer_range,
                   cone, active_only, output, quiet)
        return
    if trace_name or replace:
        raise click.UsageError("--name and --replace are for traces stored in Neo4j (--model)")
    from ..graph.trace import trace
    from ..inputs import application_family, read_input

    if target and not layer_range and not cone:
        cone = target
    g = open_graph(model, weights, input_shape, no_top, layer_range, cone)
    shape = next(e.output.shape for e in g.entries if e.kind == "input")
    family = application_family(model)
    x = read_input(input_path, shape, mode=preprocess, family=family)
    used = preprocess if preprocess != "auto" else (
        "none" if family is None or input_path.lower().endswith(".npy") else
        f"auto ({family.rsplit('.', 1)[-1]})")
    t = trace(g, x, target=target,
              info={"model": model, "input": input_path, "preprocess": used})
    for line in summary_lines(t):
        click.echo(line)
    if output:
        from ..sinks.graphml import write_graphml

        stats = write_graphml(t.subgraph(active_only=active_only), output,
                              progress=not quiet)
        click.echo(f"wrote {output}: {stats['nodes']:,} nodes, {stats['edges']:,} edges, "
                   f"{human(stats['bytes'])} in {seconds(stats['seconds'])}")


def summary_lines(t) -> list[str]:
    """What a trace shows on the terminal."""
    g = t.graph
    n = g.total_neurons
    info = t.info
    lines = [f"traced {info.get('model', g.name)} on {info.get('input', 'the input')} "
             f"(preprocess {info.get('preprocess', 'none')}): {n:,} neurons, "
             f"{t.active.mean():.1%} active; forward {seconds(t.seconds['forward'])}"
             + (f", backward {seconds(t.seconds['backward'])}" if 'backward' in t.seconds
                else "")]
    if t.target is not None:
        inputs = [e for e in g.entries if e.kind == "input"]
        total = sum(float(t.contribution[e.op.offset:e.op.offset + e.op.n_neurons].sum())
                    for e in inputs)
        lines.append(f"target {t.target} = {t.values[t.target_id]:.6g}; input contributions "
                     f"(gradient x input) sum to {total:.6g}")
    return lines


@trace_group.command("list", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "loaded", metavar="NAME", help="only the traces of this model")
def list_command(loaded):
    """List the traces stored in Neo4j.

    \b
    Example:
      weightgraph trace list --model vgg16_demo
    """
    from ..neo4j.traces import list_traces

    rows = list_traces(None, model=loaded)
    if not rows:
        click.echo("no traces")
    for r in rows:
        what = (f"aggregate of {r['n']:,} inputs {r['input']}" if r["kind"] == "aggregate"
                else f"input {r['input']}")
        click.echo(f"{r['name']}  model {r['model']}  target {r['target'] or '-'}  "
                   f"{what}  {r['neurons']:,} neurons in {r['chunks']:,} chunks")


@trace_group.command("delete", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--name", "trace_name", required=True, help="the trace's name")
def delete_command(trace_name):
    """Delete a trace stored in Neo4j (its model stays).

    \b
    Example:
      weightgraph trace delete --name cat
    """
    from ..neo4j.traces import delete_trace

    n = delete_trace(None, trace_name)
    click.echo(f"deleted trace {trace_name}: {n:,} nodes")


def _run_neo4j(loaded, input_path, preprocess, target, trace_name, replace, layer_range, cone,
               active_only, output, quiet):
    from ..neo4j.traces import trace_loaded

    if not trace_name:
        raise click.UsageError("--model NAME stores the trace in Neo4j: give it a --name")
    if layer_range or cone or active_only or output:
        raise click.UsageError("with --model, read the trace back with `weightgraph pull "
                               "--trace NAME` (--layers/--cone/--active-only/-o)")
    result = trace_loaded(None, loaded, input_path, name=trace_name, target=target,
                          preprocess=preprocess, replace=replace, progress=not quiet)
    for line in result.lines():
        click.echo(line)


# ---------------------------------------------------------------------------- sets
def _run_set(model, inputs_path, aggregate, effective, min_rate, batch_size, workers, fmt,
             preprocess, target, weights, input_shape, no_top, layer_range, cone, active_only,
             output, loaded, trace_name, replace, quiet):
    """``trace --inputs SET --aggregate``: the aggregated trace of a set, to a file or Neo4j."""
    if inputs_path is None:
        raise click.UsageError("--aggregate and --effective go with --inputs SET")
    if not aggregate and not effective:
        raise click.UsageError("--inputs SET traces a data set: add --aggregate (one graph of "
                               "rates and means over the set)")
    if active_only:
        raise click.UsageError("--active-only is for one input; over a set use --effective")
    if min_rate < 0 or min_rate >= 1:
        raise click.UsageError("--min-rate is a rate in [0, 1)")
    if loaded is not None:
        _run_set_neo4j(loaded, inputs_path, preprocess, target, trace_name, replace,
                       batch_size, workers, layer_range, cone, effective, output, quiet)
        return
    if trace_name or replace:
        raise click.UsageError("--name and --replace are for traces stored in Neo4j (--model)")
    from ..graph.trace_set import trace_set
    from ..input_sets import read_input_set
    from ..inputs import application_family

    fmt = output_format(output, fmt) if output else None
    if fmt == "parquet":
        from ..sinks.parquet import check_target

        check_target(output)  # before any work
    if target not in (None, "predicted") and not layer_range and not cone:
        cone = target
    g = open_graph(model, weights, input_shape, no_top, layer_range, cone)
    shape = next(e.output.shape for e in g.entries if e.kind == "input")
    family = application_family(model)
    inputs = read_input_set(inputs_path, shape, mode=preprocess, family=family)
    used = preprocess if preprocess != "auto" else (
        f"auto ({family.rsplit('.', 1)[-1]})" if family and inputs.kind == "directory"
        else "none")
    ts = trace_set(g, inputs, target=target, batch_size=batch_size, workers=workers,
                   progress=not quiet, preprocess=used, info={"model": model})
    for line in set_summary_lines(ts, min_rate if effective else None):
        click.echo(line)
    if output:
        sub = ts.subgraph(effective=effective, min_rate=min_rate)
        if fmt == "parquet":
            from ..sinks.parquet import write_parquet

            stats = write_parquet(sub, output, progress=not quiet)
        else:
            from ..sinks.graphml import write_graphml

            stats = write_graphml(sub, output, progress=not quiet)
        click.echo(f"wrote {output}: {stats['nodes']:,} nodes, {stats['edges']:,} edges, "
                   f"{human(stats['bytes'])} in {seconds(stats['seconds'])}")


def set_summary_lines(ts, min_rate: float | None = None) -> list[str]:
    """What an aggregated trace shows on the terminal: the set, the time, per layer the
    neurons never active and the pooling edges never chosen, and with ``min_rate`` the
    effective graph's size per layer."""
    info = ts.info
    per_s = ts.n / ts.seconds["total"] if ts.seconds["total"] > 0 else float("inf")
    lines = [f"traced {ts.n:,} inputs of {info.get('inputs')} through "
             f"{info.get('model') or (ts.graph.name if ts.graph is not None else '')} "
             f"(preprocess {info.get('preprocess', 'none')}) in {seconds(ts.seconds['total'])} "
             f"({per_s:,.1f} inputs/s, batches of {ts.batch_size})"]
    if ts.target is not None:
        line = f"target {ts.target}"
        if ts.target == "predicted" and ts.predicted is not None:
            import numpy as np

            counts = np.bincount(ts.predicted)
            line += (f" (largest output of {ts.predicted_layer}; per class: "
                     + ", ".join(f"{c}: {k}" for c, k in enumerate(counts) if k)[:300] + ")")
        lines.append(line)
    rows = ts.layer_summary(min_rate)
    header = ["layer", "neurons", "never active", "mean active", "pooling edges",
              "never chosen", "padding"]
    if min_rate is not None:
        header += ["kept neurons", "edges", "kept edges"]
    table = []
    for r in rows:
        cells = [r["layer"], f"{r['neurons']:,}", f"{r['never_active']:,}",
                 f"{r['mean_active_rate']:.1%}"]
        if "pooling_edges" in r:
            cells += [f"{r['pooling_edges']:,}", f"{r['never_chosen']:,}",
                      f"{r['padding_share']:.1%}"]
        else:
            cells += ["", "", ""]
        if min_rate is not None:
            cells += [f"{r['kept_neurons']:,}", f"{r['edges']:,}", f"{r['kept_edges']:,}"]
        table.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in table)) for i, h in enumerate(header)]
    lines.append("  ".join(h.rjust(w) if i else h.ljust(w)
                           for i, (h, w) in enumerate(zip(header, widths))))
    for c in table:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w)
                               for i, (v, w) in enumerate(zip(c, widths))))
    never_chosen = sum(r.get("never_chosen", 0) for r in rows)
    pooling = sum(r.get("pooling_edges", 0) for r in rows)
    never_active = sum(r["never_active"] for r in rows)
    lines.append(f"pooling edges never chosen: {never_chosen:,} of {pooling:,}; neurons never "
                 f"active: {never_active:,} of {sum(r['neurons'] for r in rows):,}")
    if min_rate is not None:
        kept_n = sum(r["kept_neurons"] for r in rows)
        kept_e = sum(r["kept_edges"] for r in rows)
        total_n = sum(r["neurons"] for r in rows)
        total_e = sum(r["edges"] for r in rows)
        lines.append(f"effective graph (chosen_rate > {min_rate:g}): {kept_n:,} of {total_n:,} "
                     f"neurons ({kept_n / max(1, total_n):.1%}), {kept_e:,} of {total_e:,} edges "
                     f"({kept_e / max(1, total_e):.1%})")
    return lines


def _run_set_neo4j(loaded, inputs_path, preprocess, target, trace_name, replace, batch_size,
                   workers, layer_range, cone, effective, output, quiet):
    from ..neo4j.trace_sets import trace_set_loaded

    if not trace_name:
        raise click.UsageError("--model NAME stores the trace in Neo4j: give it a --name")
    if layer_range or cone or output or effective:
        raise click.UsageError("with --model, read the trace back with `weightgraph pull "
                               "--trace NAME [--effective]` (--layers/--cone/-o)")
    result = trace_set_loaded(None, loaded, inputs_path, name=trace_name, target=target,
                              preprocess=preprocess, replace=replace, batch_size=batch_size,
                              workers=workers, progress=not quiet)
    for line in result.lines():
        click.echo(line)
    for line in set_summary_lines(result.trace_set)[1:]:
        click.echo(line)
