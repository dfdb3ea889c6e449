"""``weightgraph trace``: resolve a model's graph for one input (values, pooling choices, active
neurons, contributions), to GraphML or into Neo4j; ``trace delete`` and ``trace list`` for
traces stored in Neo4j."""

from __future__ import annotations

import click

from ..errors import WeightgraphError
from ..terminal import human, seconds
from .options import INPUT_SHAPE_HELP, open_graph, parse_shape

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
    neuron's contribution (value x gradient) to one output.

    \b
    weightgraph trace MODEL --input FILE [--preprocess auto|none|caffe|tf|torch]
        [--target LAYER:INDEX] [--layers A:B | --cone L:I[:D]] [--active-only] [-o OUT.graphml[.gz]]
    weightgraph trace --model NAME --input FILE --name TRACE [--target LAYER:INDEX] [--replace]
    weightgraph trace list [--model NAME]
    weightgraph trace delete --name TRACE

    \b
    Example:
      weightgraph trace vgg16 --input cat.jpg --target predictions:281 \\
          --cone block3_pool:1000 --active-only -o cat_cone.graphml.gz
      weightgraph trace model.keras --input x.npy -o trace.graphml
      weightgraph trace model.onnx --input x.npy -o trace.graphml
    """


@trace_group.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", required=False)
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help=".npy array (exact, with or without the batch axis) or an image "
                   "(.png, .jpg), resized to the model's input")
@click.option("--preprocess", type=click.Choice(["auto", "none", "caffe", "tf", "torch"]),
              default="auto", show_default=True,
              help="images: auto = the keras.applications family's preprocess_input for "
                   "application names, none otherwise; .npy: auto = none")
@click.option("--target", metavar="LAYER:INDEX",
              help="compute every upstream neuron's contribution to this neuron")
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
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="FILE.graphml or FILE.graphml.gz (without: print the summary only)")
@click.option("--model", "loaded", metavar="NAME",
              help="a model loaded in Neo4j, instead of MODEL: store the trace there")
@click.option("--name", "trace_name", help="Neo4j: the trace's name")
@click.option("--replace", is_flag=True, help="Neo4j: replace a trace of that name")
@click.option("--quiet", is_flag=True, help="no progress bar")
def run(model, input_path, preprocess, target, weights, input_shape, no_top, layer_range, cone,
        active_only, output, loaded, trace_name, replace, quiet):
    """Trace one input through MODEL (a .keras/.onnx file or a keras.applications name) or through a model
    loaded in Neo4j (--model NAME). With --target and no --layers/--cone, the GraphML holds
    the target's cone.

    \b
    Example:
      weightgraph trace vgg16 --input cat.jpg --target predictions:281 -o cat.graphml.gz
      weightgraph trace model.keras --input x.npy --active-only -o active.graphml
      weightgraph trace resnet18.onnx --input-shape 3,64,64 --input cat.jpg --preprocess torch \
          --target logits:281 -o cat.graphml.gz
      weightgraph trace --model vgg16_demo --input cat.jpg --name cat --target block2_pool:1000
    """
    if (model is None) == (loaded is None):
        raise click.UsageError("give either MODEL (a file or an application name) or "
                               "--model NAME (a model loaded in Neo4j)")
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
        click.echo(f"{r['name']}  model {r['model']}  target {r['target'] or '-'}  "
                   f"input {r['input']}  {r['neurons']:,} neurons in {r['chunks']:,} chunks")


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
