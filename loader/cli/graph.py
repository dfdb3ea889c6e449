"""``weightgraph plan`` and ``export``: a model's neuron graph, before and without Neo4j."""

from __future__ import annotations

import click

from ..terminal import human, seconds
from .options import model_options, open_graph, output_format

__all__ = ["plan", "export"]


@click.command()
@model_options(granularity=True)
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON")
def plan(model, weights, input_shape, no_top, layer_range, cone, granularity, as_json):
    """Sizes and costs of a model's neuron (or channel) graph, before any work.

    Per layer: class, op, output shape, neurons, edges; totals; estimated GraphML, NetworkX,
    Neo4j and Parquet sizes and times, the bulk-load time and the GDS projection's heap (from
    constants measured by the benchmarks in bench/, loader/graph/costs.py); whether the graph
    fits this machine (free disk where the local server's stores go, memory), and if not why.

    \b
    Example:
      weightgraph plan vgg16 --weights none
      weightgraph plan resnet50 --weights none --input-shape 64,64,3 --json
      weightgraph plan vgg16 --weights none --granularity channel --json
      weightgraph plan resnet18.onnx --input-shape 3,224,224
    """
    import json

    g = open_graph(model, weights, input_shape, no_top, layer_range, cone,
                   granularity=granularity)
    p = g.plan()
    machine = _machine(p.estimates)
    if as_json:
        click.echo(json.dumps({**p.model_dump(), "machine": machine}, indent=2))
        return
    channel = p.granularity == "channel"
    unit = "channels" if channel else "neurons"
    click.echo(f"model {p.model}   input {tuple(p.input_shape)}   selection: {p.selection}   "
               f"granularity: {p.granularity}")
    header = f"{'#':>4}  {'layer':<34} {'class':<24} {'op':<8} {'output':<18} {unit:>12} {'edges':>16}"
    click.echo(header)
    click.echo("-" * len(header))
    for s in p.layers:
        nodes = (s.channels or 0) if channel else s.neurons
        click.echo(f"{s.index:>4}  {s.name[:34]:<34} {s.class_name[:24]:<24} {s.op or '-':<8} "
                   f"{str(tuple(s.output_shape)):<18} {nodes:>12,} {s.edges:>16,}")
    click.echo("-" * len(header))
    click.echo(f"total: {p.nodes:,} {unit}, {p.edges:,} edges"
               + (f" ({p.neurons:,} neurons)" if channel else ""))
    if p.selection != "all":
        click.echo(f"selected: {p.selected_nodes:,} {unit}, {p.selected_edges:,} edges")
    e = p.estimates
    click.echo(f"estimates for the selection: GraphML {human(e['graphml_bytes'])} "
               f"(~{seconds(e['graphml_seconds'])}), NetworkX {human(e['networkx_bytes'])} in "
               f"memory, Neo4j store {human(e['neo4j_store_bytes'])} (online "
               f"~{seconds(e['neo4j_online_seconds'])}, bulk ~{seconds(e['neo4j_bulk_seconds'])})")
    click.echo(f"  Parquet dataset {human(e['parquet_bytes'])} (~{seconds(e['parquet_seconds'])})")
    click.echo(f"  bulk load ~{seconds(e['neo4j_bulk_seconds'])} (import files "
               f"{human(e['bulk_files_bytes'])}), GDS projection with weights "
               f"~{human(e['gds_projection_bytes'])} of heap")
    if machine["fits"]:
        click.echo(f"this machine: fits ({human(machine['disk_free_bytes'])} free at "
                   f"{machine['store_dir']}, {human(machine['memory_bytes'])} of memory)")
    else:
        click.echo("this machine: cannot fit: " + "; ".join(machine["cannot_fit"]))


def _machine(estimates: dict) -> dict:
    """Whether the estimates fit this machine: free disk where the local server's stores go
    (its nearest existing parent), total memory; the reasons when not."""
    import os
    import shutil
    from pathlib import Path

    from ..graph.costs import machine_fit
    from ..neo4j.local_server import LocalNeo4j

    place = Path(LocalNeo4j.from_environment().home) / "data"
    while not place.exists() and place != place.parent:
        place = place.parent
    free = shutil.disk_usage(place).free
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    reasons = machine_fit(estimates, disk_free=free, memory=memory)
    return {"store_dir": str(place), "disk_free_bytes": free, "memory_bytes": memory,
            "fits": not reasons, "cannot_fit": reasons}


# ---------------------------------------------------------------------------- export
@click.command()
@model_options(granularity=True)
@click.option("-o", "--output", required=True, type=click.Path(),
              help="FILE.graphml, FILE.graphml.gz, or a dataset DIR with --format parquet")
@click.option("--format", "fmt", type=click.Choice(["graphml", "parquet"]),
              help="default: graphml for .graphml/.graphml.gz outputs")
@click.option("--batch-size", default=1 << 20, show_default=True,
              help="edges per batch (and per Parquet row group)")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Parquet: processes writing tiles at once (e.g. the number of cores)")
@click.option("--parquet-encoding", type=click.Choice(["fast", "compact"]), default="fast",
              show_default=True,
              help="Parquet: fast (byte-split ids, lz4) or compact (delta ids, zstd; ~half "
                   "the bytes, three fifths of the speed)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def export(model, weights, input_shape, no_top, layer_range, cone, granularity, output, fmt,
           batch_size, workers, parquet_encoding, quiet):
    """Write the neuron (or channel) graph, or a selection, as GraphML or as a Parquet dataset,
    streaming in bounded memory.

    A Parquet dataset is a directory: graph.json, nodes/ and edges/ partitioned by
    layer_index (Hive style), read by DuckDB (`weightgraph sql`), pyarrow, Polars and Spark.
    It is written to a hidden temporary directory and renamed at the end, so a failed or
    killed export leaves nothing at DIR.

    \b
    Example:
      weightgraph export vgg16 --weights none --input-shape 32,32,3 \\
          --layers block1_conv1:block1_pool -o block1.graphml.gz
      weightgraph export model.keras --cone dense:3 -o cone.graphml
      weightgraph export resnet18.onnx --input-shape 3,64,64 -o resnet18.parquet --format parquet
      weightgraph export vgg16 --weights none -o vgg16.parquet --format parquet --workers 2
      weightgraph export vgg16 --weights none --granularity channel -o vgg16.channels.graphml.gz
      weightgraph export vgg16 --weights none --granularity channel -o vgg16_ch.parquet \\
          --format parquet
    """
    fmt = output_format(output, fmt)
    if fmt == "parquet":
        from ..sinks.parquet import check_target

        check_target(output)  # before the model is loaded
    g = open_graph(model, weights, input_shape, no_top, layer_range, cone,
                   granularity=granularity)
    if fmt == "parquet" and granularity == "channel":
        from ..sinks.channel_parquet import write_channel_parquet

        stats = write_channel_parquet(g, output, batch_size=batch_size, progress=not quiet)
    elif fmt == "parquet":
        from ..sinks.parquet import write_parquet

        stats = write_parquet(g, output, batch_size=batch_size, workers=workers,
                              encoding=parquet_encoding, progress=not quiet)
    else:
        from ..sinks.graphml import write_graphml

        stats = write_graphml(g, output, batch_size=batch_size, progress=not quiet)
    click.echo(f"wrote {output}: {stats['nodes']:,} nodes, {stats['edges']:,} edges, "
               f"{human(stats['bytes'])} in {seconds(stats['seconds'])} "
               f"({stats['edges_per_s']:,.0f} edges/s)")
