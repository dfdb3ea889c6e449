"""The end-to-end demo behind the README's first command (and the compose ``loader`` service).

VGG16 (random weights unless told otherwise: nothing to download) at 32x32, the upstream cone
of one ``block2_pool`` neuron (~2.8M relationships, about half a minute online): plan, load,
verify, three named queries, a GraphML export pulled back from Neo4j, and an analysis report.
"""

from __future__ import annotations

from pathlib import Path

import click

from .config import Settings
from .graph.neuron_graph import NeuronGraph
from .neo4j.db import Database
from .neo4j.load import load
from .neo4j.models import verify
from .neo4j.pull import pull_to_graphml
from .neo4j.queries import run_query

DEMO = {"model": "vgg16", "input_shape": (32, 32, 3), "cone": "block2_pool:1000",
        "name": "vgg16_demo"}


def run_demo(out_dir: str | Path = "out", *, weights: str = "none", progress: bool = True,
             echo=click.echo) -> dict:
    """Run the demo; returns the paths and figures it printed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    with Database.connect(settings) as db:
        echo(f"1/6 plan: {DEMO['model']} at {DEMO['input_shape']}, cone {DEMO['cone']}")
        g = NeuronGraph.from_model(DEMO["model"], weights=weights,
                                   input_shape=DEMO["input_shape"], cone=DEMO["cone"],
                                   name=DEMO["name"])
        plan = g.plan()
        echo(f"    whole model {plan.neurons:,} neurons, {plan.edges:,} edges; "
             f"the cone {plan.selected_neurons:,} neurons, {plan.selected_edges:,} edges")
        echo("2/6 load into Neo4j (online, batched Bolt transactions)")
        summary = load(g, DEMO["name"], driver=db, replace=True, progress=progress)
        echo("    " + summary.line())
        echo("3/6 verify counts and weight sums per layer")
        v = verify(DEMO["name"], driver=db)
        echo(f"    {'every layer matches the plan' if v.ok else 'MISMATCH'}")
        echo("4/6 named queries (queries/*.cypher)")
        summary_rows = run_query(db, "model_summary", {"model": DEMO["name"]})
        for row in summary_rows.records()[:6]:
            echo("    " + ", ".join(f"{k}={row[k]}" for k in list(row)[:4]))
        # block2_pool:1000 is row 0, column 7, channel 104 of its 8x8x128 output; its window
        # starts at block2_conv2 row 0, column 14: index (0 * 16 + 14) * 128 + 104 = 1896.
        top = run_query(db, "top_inputs", {"model": DEMO["name"], "layer": "block2_conv2",
                                               "index": 1896, "k": 3})
        for row in top.records():
            echo(f"    top_inputs(block2_conv2:1896): {row}")
        rf = run_query(db, "receptive_field", {"model": DEMO["name"],
                                                   "layer": "block2_pool", "index": 1000})
        echo(f"    receptive_field(block2_pool:1000): {len(rf)} input neurons reach it")
        echo("5/6 GraphML export, pulled back from Neo4j")
        graphml = out / f"{DEMO['name']}.graphml.gz"
        pull_to_graphml(DEMO["name"], graphml, driver=db, progress=progress)
        echo(f"    {graphml}")
        echo("6/6 analysis report")
        from .analysis.report import analyze

        report = analyze(DEMO["name"], out / "report", neuron="block2_pool:1000",
                         driver=db)
        echo(f"    {report}")
        http = settings.neo4j_uri.replace("bolt://", "http://").rsplit(":", 1)[0] + ":7474"
        echo("")
        echo(f"Neo4j Browser: {http}/browser/  (user {settings.neo4j_user}; try "
             f"MATCH (n:Neuron {{model: '{DEMO['name']}', layer: 'block2_pool'}})<-[w:W]-(m) "
             "RETURN n, w, m LIMIT 50)")
        echo(f"GraphML: {graphml}   report: {report}")
        return {"graphml": graphml, "report": report, "summary": summary}
