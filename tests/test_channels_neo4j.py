"""The channel graph in Neo4j: ``(:Channel)-[:CW {weight, edges, total, kernel}]->(:Channel)``
loaded online (exactly once, resumable), verified, pulled back and deleted; named queries, the
channel report's statistics, and (no Neo4j) the channel Parquet dataset.

Oracles: the loaded graph is read back with plain Cypher (no weightgraph reader) and compared
with the neuron graph aggregated by (layer, channel) with numpy (tests/test_channels.py) and
with the Keras weights read from the layers; query answers are compared with NetworkX on the
pulled graph. The bulk test rebuilds the database and lives in test_channels_bulk.py.
"""

from __future__ import annotations

import json

import keras
import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers

import loader
from loader.cli import main
from loader.graph.channels import ChannelGraph
from loader.graph.neuron_graph import NeuronGraph
from loader.neo4j.load import LoadError, load
from loader.neo4j.models import (ModelIncomplete, ModelStateError, delete_model, model_exists,
                                 verify)
from loader.neo4j.queries import run_query
from oracle import randomise_weights
from shared_models import shared_model
from pictures import assert_picture
from test_channels import aggregate_neuron_edges


@shared_model
def channel_model():
    """Convolutions, batch normalisation, a residual add, max pooling and a dense top."""
    inp = keras.Input((7, 8, 3))
    x = layers.Conv2D(5, 3, padding="same", name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    s = layers.Conv2D(5, 1, name="shortcut")(inp)
    x = layers.Add(name="add")([x, s])
    x = layers.MaxPooling2D(2, name="pool")(x)
    out = layers.Dense(4, name="dense")(layers.Flatten(name="flatten")(x))
    model = randomise_weights(keras.Model(inp, out))
    bn = model.get_layer("bn")
    rng = np.random.default_rng(3)
    bn.set_weights([rng.uniform(0.5, 2, 5).astype("f4"), rng.normal(size=5).astype("f4"),
                    rng.normal(size=5).astype("f4"), rng.uniform(0.5, 2, 5).astype("f4")])
    return model


def read_channels(driver, name):
    """Nodes and edges of a loaded channel model, by plain Cypher: ({id: props},
    {(src, dst): props})."""
    nodes = {r["id"]: r["p"] for r in driver.execute_query(
        "MATCH (c:Channel {model: $m}) RETURN c.id AS id, properties(c) AS p", m=name).records}
    edges = {(r["s"], r["d"]): r["p"] for r in driver.execute_query(
        "MATCH (a:Channel {model: $m})-[r:CW]->(b:Channel) "
        "RETURN a.id AS s, b.id AS d, properties(r) AS p", m=name).records}
    return nodes, edges


def assert_loaded_channel_graph(driver, name, cg: ChannelGraph, model):
    v = verify(name, driver=driver)
    assert v.ok, "\n".join(v.lines())
    nodes, edges = read_channels(driver, name)
    # The neuron graph aggregated by (layer, channel) with numpy: the same edge set and sums.
    codes, src, dst, n, total = aggregate_neuron_edges(cg.neurons)
    to_code = {}
    for i in cg.node_masks:
        e = cg.entries[i]
        for c in range(cg.n_channels(i)):
            to_code[cg.channel_offset(i) + c] = codes[e.name] + c
    want = {(int(s), int(d)): (int(k), float(t)) for s, d, k, t in zip(src, dst, n, total)}
    got = {(to_code[s], to_code[d]): (p["edges"], p["total"]) for (s, d), p in edges.items()}
    assert got.keys() == want.keys()
    for key, (k, t) in want.items():
        assert got[key][0] == k, key
        assert got[key][1] == pytest.approx(t, rel=1e-5, abs=1e-6), key
    # Every edge as the ChannelGraph streams it, kernel bit for bit (float32 -> float64).
    for b in cg.iter_edge_batches():
        for r, (s, d) in enumerate(zip(b.src.tolist(), b.dst.tolist())):
            p = edges[(s, d)]
            assert p["weight"] == float(b.weight[r])
            if b.kernel is None:
                assert "kernel" not in p
            else:
                assert p["kernel"] == b.kernel[r].astype(np.float64).tolist()
    # Kernels equal the Keras weights read directly: conv kernel[..., i, j] flattened.
    conv = model.get_layer("conv").get_weights()[0]
    li = next(i for i, e in enumerate(cg.entries) if e.name == "conv")
    for (s, d), p in edges.items():
        if nodes[d]["layer_index"] == li:
            i, j = nodes[s]["channel"], nodes[d]["channel"]
            assert p["kernel"] == conv[:, :, i, j].reshape(-1).astype(np.float64).tolist()
            assert p["weight"] == pytest.approx(np.abs(conv[:, :, i, j]).sum(), rel=1e-6)
    gamma, _, _, var = model.get_layer("bn").get_weights()
    eps = model.get_layer("bn").epsilon
    bn = [p for (s, d), p in edges.items() if nodes[d]["layer"] == "bn"]
    assert len(bn) == 5
    for (s, d), p in edges.items():
        if nodes[d]["layer"] == "bn":
            j = nodes[d]["channel"]
            assert p["kernel"] == pytest.approx([gamma[j] / np.sqrt(var[j] + eps)], rel=1e-6)
    # Node attributes: neurons per channel (the positions of the layer's output in Keras),
    # bias shared by the channel's neurons.
    bias = model.get_layer("conv").get_weights()[1]
    for c in nodes.values():
        shape = model.get_layer(c["layer"]).output.shape[1:]
        assert c["neurons"] == int(np.prod(shape[:-1])), c
        if c["layer"] == "conv":
            assert c["bias"] == float(bias[c["channel"]])
    assert len(nodes) == cg.n_nodes and len(edges) == cg.n_edges


def test_channel_online_load_reads_back_the_channel_graph(driver, model_name):
    model = channel_model()
    cg = ChannelGraph(NeuronGraph.from_model(model))
    name = model_name("ch")
    summary = load(cg, name, driver=driver, batch_size=60)  # values per transaction
    assert summary.relationships == cg.n_edges and summary.unit == "channels"
    assert_loaded_channel_graph(driver, name, cg, model)
    m = model_exists(driver, name)
    assert m["granularity"] == "channel" and m["state"] == "complete"
    # Nothing of it reads as neurons, and no batch went in twice.
    assert driver.execute_query("MATCH (n:Neuron {model: $m}) RETURN count(n) AS c",
                                m=name).records[0]["c"] == 0
    assert driver.execute_query("MATCH (b:LoadBatch {model: $m}) WITH b.key AS k, count(*) AS c"
                                " WHERE c > 1 RETURN count(*) AS dup", m=name
                                ).records[0]["dup"] == 0
    n_batches = driver.execute_query("MATCH (b:LoadBatch {model: $m}) WHERE b.key STARTS WITH"
                                     " 'e:' RETURN count(b) AS c", m=name).records[0]["c"]
    assert n_batches > 5  # the small batch size cut the layers into several transactions

    # Resume: the last layer's relationships and their batch records gone, state loading (as
    # a load killed there leaves it); --resume writes exactly those again.
    last = max(cg.edge_masks)
    driver.execute_query("MATCH (:Channel {model: $m, layer_index: $li})<-[r:CW]-() DELETE r",
                         m=name, li=last)
    driver.execute_query("MATCH (b:LoadBatch {model: $m}) WHERE b.key STARTS WITH $k DELETE b",
                         m=name, k=f"e:{last}:")
    driver.execute_query("MATCH (m:Model {name: $m}) SET m.state = 'loading'", m=name)
    assert not verify(name, driver=driver).ok
    with pytest.raises(ModelIncomplete, match="--granularity channel --name .* --resume"):
        loader.pull(name, driver=driver)
    again = load(cg, name, driver=driver, batch_size=9999, resume=True)  # recorded size wins
    assert again.skipped_batches == n_batches - sum(
        1 for b in cg.iter_edge_batches(60) if b.layer_index == last) + len(cg.node_masks)
    assert_loaded_channel_graph(driver, name, cg, model)
    # Resuming as a neuron graph is refused: the model in Neo4j is another graph.
    driver.execute_query("MATCH (m:Model {name: $m}) SET m.state = 'loading'", m=name)
    with pytest.raises(LoadError, match="channel granularity"):
        load(cg.neurons, name, driver=driver, resume=True)


def test_verify_detects_tampered_channel_properties_and_delete_removes_all(driver, model_name):
    model = channel_model()
    cg = ChannelGraph(NeuronGraph.from_model(model))
    name = model_name("cht")
    load(cg, name, driver=driver)
    assert verify(name, driver=driver).ok
    for prop, change in (("kernel", "r.kernel = [x IN r.kernel | x * 1.5]"),
                         ("total", "r.total = r.total + 0.25"), ("edges", "r.edges = r.edges + 1")):
        rec = driver.execute_query(
            "MATCH (:Channel {model: $m, layer: 'conv', channel: 1})<-[r:CW]-() WITH r LIMIT 1 "
            "WITH r, properties(r) AS before SET " + change + " RETURN before", m=name
        ).records[0]["before"]
        v = verify(name, driver=driver)
        assert not v.ok and any(f"differs: {prop}" in line for line in v.lines()), prop
        driver.execute_query(
            "MATCH (:Channel {model: $m, layer: 'conv', channel: 1})<-[r:CW]-() "
            "WHERE r.weight = $w SET r = $before", m=name, w=rec["weight"], before=rec)
        assert verify(name, driver=driver).ok
    result = CliRunner().invoke(main, ["verify", "--name", name])
    assert result.exit_code == 0 and "channels" in result.output
    deleted = delete_model(driver, name)
    assert deleted >= cg.n_nodes + cg.n_edges
    left = driver.execute_query(
        "OPTIONAL MATCH (c:Channel {model: $m}) WITH count(c) AS c "
        "OPTIONAL MATCH (b:LoadBatch {model: $m}) WITH c, count(b) AS b "
        "OPTIONAL MATCH (m:Model {name: $m}) RETURN c, b, count(m) AS m", m=name).records[0]
    assert (left["c"], left["b"], left["m"]) == (0, 0, 0)


def test_pull_of_a_channel_model_is_the_channel_graph(driver, model_name, tmp_path):
    model = channel_model()
    cg = ChannelGraph(NeuronGraph.from_model(model))
    name = model_name("chp")
    load(cg, name, driver=driver)
    G = loader.pull(name, driver=driver)
    H = loader.to_networkx(cg)
    assert G.graph["granularity"] == "channel"
    assert json.loads(G.graph["layers"]) == json.loads(H.graph["layers"])
    assert dict(G.nodes(data=True)) == dict(H.nodes(data=True))
    assert {(s, d): a for s, d, a in G.edges(data=True)} == {
        (s, d): a for s, d, a in H.edges(data=True)}
    # A layer range: its channels, the edges entering them, and their sources.
    part = loader.pull(name, layers="add:pool", driver=driver)
    want = loader.to_networkx(ChannelGraph(NeuronGraph.from_model(model), layers="add:pool"))
    assert set(part.edges) == set(want.edges) and set(part.nodes) == set(want.nodes)
    cone = loader.pull(name, cone="dense:2:2", driver=driver)
    want = loader.to_networkx(ChannelGraph(NeuronGraph.from_model(model), cone="dense:2:2"))
    assert set(cone.edges) == set(want.edges) and set(cone.nodes) == set(want.nodes)
    out = tmp_path / "pulled.graphml"
    result = CliRunner().invoke(main, ["pull", "--name", name, "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    back = nx.read_graphml(out, node_type=int)
    assert back.graph["granularity"] == "channel"
    assert back.number_of_edges() == cg.n_edges
    s, d, a = next((s, d, a) for s, d, a in H.edges(data=True) if "kernel" in a)
    assert json.loads(back.edges[s, d]["kernel"]) == a["kernel"]
    # The neuron dataset's columns cannot hold channels: one line, nothing written.
    result = CliRunner().invoke(main, ["pull", "--name", name, "-o", str(tmp_path / "ch.parquet"),
                                       "--format", "parquet", "--quiet"])
    assert result.exit_code == 1 and "is a channel model" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "ch.parquet").exists()
    # Readers of neurons refuse a channel model with one line (nothing is read as neurons).
    from loader.analysis.report import analyze

    np.save(tmp_path / "x.npy", np.zeros((7, 8, 3), "f4"))
    with pytest.raises(ModelStateError, match="is a channel graph"):
        loader.trace_loaded(driver, name, tmp_path / "x.npy", name=f"{name}_t",
                            target="dense:0")
    with pytest.raises(ModelStateError, match="is a channel graph"):
        analyze(name, tmp_path / "r", neuron="dense:0", driver=driver)


def test_named_queries_on_a_channel_model_match_networkx(driver, model_name):
    model = channel_model()
    cg = ChannelGraph(NeuronGraph.from_model(model))
    name = model_name("chq")
    load(cg, name, driver=driver)
    G = loader.pull(name, driver=driver)
    by_layer = {}
    for n, a in G.nodes(data=True):
        by_layer.setdefault(a["layer"], []).append(n)
    target = next(n for n in by_layer["dense"] if G.nodes[n]["channel"] == 2)
    rows = run_query(driver, "top_inputs", {"model": name, "layer": "dense", "index": 2,
                                            "k": 3}).records()
    want = sorted(G.in_edges(target, data=True), key=lambda e: (-abs(e[2]["weight"]), e[0]))[:3]
    assert [r["id"] for r in rows] == [s for s, _, _ in want]
    assert [r["weight"] for r in rows] == [a["weight"] for _, _, a in want]
    assert [r["index"] for r in rows] == [G.nodes[s]["channel"] for s, _, _ in want]
    source = next(n for n in by_layer["conv"] if G.nodes[n]["channel"] == 0)
    rows = run_query(driver, "top_outputs", {"model": name, "layer": "conv", "index": 0,
                                             "k": 2}).records()
    want = sorted(G.out_edges(source, data=True), key=lambda e: (-abs(e[2]["weight"]), e[1]))[:2]
    assert [r["id"] for r in rows] == [d for _, d, _ in want]
    stats = {r["layer"]: r for r in run_query(driver, "layer_weight_stats",
                                              {"model": name}).records()}
    for layer, ids in by_layer.items():
        ws = np.array([a["weight"] for _, _, a in G.in_edges(ids, data=True)])
        if not len(ws):
            assert layer not in stats
            continue
        r = stats[layer]
        assert r["edges"] == len(ws)
        assert r["mean"] == pytest.approx(ws.mean()) and r["std"] == pytest.approx(ws.std())
        assert (r["min"], r["max"]) == (ws.min(), ws.max())
    summary = {r["layer"]: r for r in run_query(driver, "model_summary",
                                                {"model": name}).records()}
    assert summary.keys() == by_layer.keys()
    for layer, ids in by_layer.items():
        r = summary[layer]
        assert r["neurons"] == len(ids)  # the layer's nodes: channels here
        assert r["edges_in"] == sum(G.in_degree(n) for n in ids)
        assert r["edges_out"] == sum(G.out_degree(n) for n in ids)


def test_load_command_at_channel_granularity(driver, model_name, tmp_path):
    model = channel_model()
    path = tmp_path / "m.keras"
    model.save(path)
    name = model_name("chcli")
    result = CliRunner().invoke(main, ["load", str(path), "--granularity", "channel",
                                       "--name", name, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "channels" in result.output
    cg = ChannelGraph(NeuronGraph.from_model(keras.models.load_model(path)))
    assert_loaded_channel_graph(driver, name, cg, model)
    again = CliRunner().invoke(main, ["load", str(path), "--granularity", "channel",
                                      "--name", name, "--quiet"])
    assert again.exit_code != 0 and "already in Neo4j" in again.output


def test_channel_statistics_equal_networkx_on_the_graph_and_on_its_neo4j_load(
        driver, model_name, tmp_path):
    from loader.analysis.channels import analyze_channels, channel_statistics

    model = channel_model()
    cg = ChannelGraph(NeuronGraph.from_model(model))
    G = loader.to_networkx(cg)
    name = model_name("cha")
    load(cg, name, driver=driver)
    pr = nx.pagerank(G, weight="weight")
    for source in (cg, name):
        st = channel_statistics(source, driver=driver)
        for n in G.nodes:
            assert st.in_degree[n] == G.in_degree(n) and st.out_degree[n] == G.out_degree(n)
            assert st.in_strength[n] == pytest.approx(G.in_degree(n, weight="weight"))
            assert st.out_strength[n] == pytest.approx(G.out_degree(n, weight="weight"))
            assert st.pagerank[n] == pytest.approx(pr[n], rel=1e-4)
        for s in st.layers:
            ids = [n for n, a in G.nodes(data=True) if a["layer"] == s.layer["name"]]
            ws = [a["weight"] for _, _, a in G.in_edges(ids, data=True)]
            assert s.neurons == len(ids) and s.edges == len(ws)
            if ws:
                assert (s.min, s.max) == (min(ws), max(ws))
                assert s.mean == pytest.approx(np.mean(ws)) and s.counts.sum() == len(ws)
    out = analyze_channels(name, tmp_path / "r", driver=driver)
    text = out.read_text()
    assert "PageRank per layer" in text and f"{cg.n_edges:,} channel edges" in text
    assert {p.name for p in (tmp_path / "r").glob("*.png")} >= {
        "weights.png", "degree.png", "strength.png", "pagerank.png"}
    result = CliRunner().invoke(main, ["analyze", "--name", name, "-o", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    # Narrow boxes (a layer's channels rank alike): 0.34% of the pixels coloured; none without.
    assert_picture(tmp_path / "c" / "pagerank.png", min_colour=0.002)


def test_channel_parquet_dataset_holds_the_channel_graph(tmp_path):
    import pyarrow.parquet as pq

    model = channel_model()
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "ch.parquet"
    result = CliRunner().invoke(main, ["export", str(path), "--granularity", "channel",
                                       "-o", str(out), "--format", "parquet", "--quiet"])
    assert result.exit_code == 0, result.output
    cg = ChannelGraph(NeuronGraph.from_model(keras.models.load_model(path)))
    H = loader.to_networkx(cg)
    meta = json.loads((out / "graph.json").read_text())
    assert (meta["granularity"], meta["nodes"], meta["edges"]) == ("channel", cg.n_nodes,
                                                                    cg.n_edges)
    edges = pq.read_table(out / "edges").to_pylist()
    assert len(edges) == cg.n_edges
    for e in edges:
        want = H.edges[e["src"], e["dst"]]
        assert (e["edges"], e["total"], e["weight"]) == (want["edges"], want["total"],
                                                         want["weight"])
        assert e["kernel"] == want.get("kernel")  # float32 values, None without a kernel
        assert H.nodes[e["dst"]]["layer_index"] == e["layer_index"]
    nodes = {r["id"]: r for r in pq.read_table(out / "nodes").to_pylist()}
    assert nodes.keys() == set(H.nodes)
    for n, a in H.nodes(data=True):
        r = nodes[n]
        assert (r["layer"], r["channel"], r["neurons"]) == (a["layer"], a["channel"],
                                                            a["neurons"])
        assert r["bias"] == a.get("bias") and r["activation"] == a.get("activation")
    sql = CliRunner().invoke(main, ["sql", str(out), "SELECT count(*) AS n, sum(edges) AS e "
                                                     "FROM edges", "--format", "csv"])
    assert sql.exit_code == 0, sql.output
    assert f"{cg.n_edges},{sum(a['edges'] for _, _, a in H.edges(data=True))}" in sql.output
    refused = CliRunner().invoke(main, ["analyze", str(out), "-o", str(tmp_path / "r")])
    assert refused.exit_code != 0 and "channel dataset" in refused.output
