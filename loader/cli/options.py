"""Options shared by the CLI commands: a model and its selection, an input shape."""

from __future__ import annotations

import click

from ..errors import WeightgraphError


INPUT_SHAPE_HELP = ("the input's shape without the batch axis, in the model's own layout: "
                    "H,W,C for Keras (application names; fully convolutional files), "
                    "C,H,W for an NCHW .onnx file (fixes its dynamic dimensions)")


def parse_shape(ctx, param, value):
    """Click callback: ``32,32,3`` (or ``32x32x3``) -> (32, 32, 3); the layout is the
    model's own (``3,32,32`` for an NCHW ONNX file)."""
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"want sizes separated by commas, in the model's layout (e.g. 32,32,3 for Keras, "
                                f"3,32,32 for ONNX), got {value!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise click.BadParameter(f"want positive sizes, got {value!r}")
    return shape


def model_options(selection=True, granularity=False):
    """MODEL (a .keras/.h5/.onnx file or a keras.applications name), --weights, --input-shape, --no-top, (``selection``) --layers / --cone and
    (``granularity``) --granularity neuron|channel."""
    def deco(fn):
        opts = [
            click.argument("model"),
            click.option("--weights", default="default", show_default=True,
                         help="imagenet (default for application names), none (random), or "
                              "a weights file (Keras; an .onnx file carries its weights)"),
            click.option("--input-shape", callback=parse_shape,
                         help=INPUT_SHAPE_HELP),
            click.option("--no-top", "no_top", is_flag=True,
                         help="application names: leave out the dense classifier"),
        ]
        if selection:
            opts += [
                click.option("--layers", "layer_range", metavar="FIRST:LAST",
                             help="inclusive layer range; the neurons feeding FIRST come along "
                                  "as sources"),
                click.option("--cone", metavar="LAYER:INDEX[:DEPTH]",
                             help="every neuron and edge upstream of one neuron (at channel "
                                  "granularity LAYER:CHANNEL[:DEPTH])"),
            ]
        if granularity:
            opts.append(click.option(
                "--granularity", type=click.Choice(["neuron", "channel"]), default="neuron",
                show_default=True, help="neuron: a node per neuron; channel: a node per "
                                        "(layer, channel), an edge per connected channel pair"))
        for opt in reversed(opts):
            fn = opt(fn)
        return fn
    return deco


def open_graph(model, weights, input_shape, no_top, layer_range=None, cone=None, name=None,
               granularity="neuron"):
    """The :class:`~loader.graph.NeuronGraph` (or, at ``granularity="channel"``, the
    :class:`~loader.graph.channels.ChannelGraph`) the model options describe."""
    from ..graph.channels import ChannelGraph
    from ..graph.neuron_graph import NeuronGraph

    cls = ChannelGraph if granularity == "channel" else NeuronGraph
    return cls.from_model(model, weights=weights, input_shape=input_shape,
                          include_top=not no_top, layers=layer_range, cone=cone, name=name)


def loaded_selection_options(fn):
    """--layers / --cone / --cypher (with --param) of a model loaded in Neo4j, as
    :func:`loader.neo4j.pull.plan_pull` takes them (``layer_range``, ``cone``, ``cypher``,
    ``params``)."""
    opts = [
        click.option("--layers", "layer_range", metavar="FIRST:LAST",
                     help="inclusive layer range; the neurons feeding FIRST come along as "
                          "sources"),
        click.option("--cone", metavar="LAYER:INDEX[:DEPTH]",
                     help="everything upstream of one neuron"),
        click.option("--cypher", metavar="FILE_OR_TEXT",
                     help="a .cypher file (or statement) returning src, dst, weight per edge; "
                          "$model is the model name"),
        click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
                     help="parameter of the --cypher statement; repeatable"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def output_format(output: str, fmt: str | None) -> str:
    """``graphml`` or ``parquet`` for an ``-o`` path and a ``--format`` (None: from the name);
    a one-line error where they do not fit."""
    graphml_name = output.endswith(".graphml") or output.endswith(".graphml.gz")
    fmt = fmt or ("graphml" if graphml_name else None)
    if fmt is None:
        raise WeightgraphError(f"say --format parquet for a dataset directory, or give a "
                               f".graphml/.graphml.gz file: {output}")
    if fmt == "graphml" and not graphml_name:
        raise WeightgraphError(f"output must end in .graphml or .graphml.gz: {output}")
    return fmt
