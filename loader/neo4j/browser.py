"""Neo4j Browser as users expect it: a weightgraph guide generated from ``queries/``, a graph
style for neuron graphs, and a small server that hands both to the Browser.

What Neo4j Browser 5.24 (the one the local server and ``neo4j:5.26`` ship) does with them,
read from its sources (``neo4j/neo4j-browser`` at tag 5.24.0) and checked by hand against the
real server:

* ``:guide URL`` fetches an HTML page and shows it in the **sidebar**: the page's
  ``<title>`` is the guide's name and every ``<slide>`` element one slide (``:play URL``
  still shows the older carousel frame in the result stream; the sidebar stays in place while
  results come in, so the guide is a ``:guide``). ``/browser/?cmd=guide&arg=URL`` runs that
  command as the page opens, before anyone has logged in.
* A ``<pre class="code runnable">`` block gets a play icon: clicking the icon runs the block,
  clicking the text puts it into the editor.
* The fetch is a cross-origin ``fetch()`` with ``Pragma`` and ``Cache-Control`` headers, so
  Chromium sends a CORS preflight (``OPTIONS``) first: the guide server must answer both for
  the Browser's origin.
* Guide and ``:style URL`` fetches are allowed only from hosts on a list: before login the
  Browser's own ``guides.neo4j.com, localhost``, after login the server's
  ``browser.remote_content_hostname_whitelist`` (read with ``CALL dbms.clientConfig()``;
  Neo4j 5.26's default is ``guides.neo4j.com,localhost``). Ports do not matter. So the guide
  is served on the loopback interface and addressed as ``localhost``: ``127.0.0.1`` would be
  refused before login whatever the server allows. :func:`check_allowlist` checks the server.
* ``:param [{a, b}] => { RETURN 1 AS a, 'x' AS b }`` sets several parameters from one
  server-side ``RETURN``, so integers stay integers (``:params {a: 1}`` goes through
  JavaScript numbers and sends floats: ``LIMIT $k`` then fails) and ``null`` works (the
  Browser refuses to run a clicked command that ends in ``null``).
* GraSS selects on labels only (``node.Conv``; every rule that matches applies, later rules
  win) and interpolates properties into captions (``'{layer}:{index}'``). The CSS-like
  GraSS parser drops any value holding a second ``:``, so ``queries/weightgraph.grass`` is
  the JSON form of GraSS, which ``:style`` and file drops read first. Every label the style
  sizes or colours has a colour in it, in rule order (size labels first, kinds after):
  otherwise the Browser gives a label without one an automatic colour that would paint over
  the layer kind.

Colouring by layer kind and sizing by degree therefore need labels, which a load does not
write: :func:`label_for_style` adds one kind label (:data:`KIND_LABELS`) and one degree-class
label (:data:`DEGREE_CLASSES`) to every neuron (or channel) of a model. They are additive and
exact (kind from the model's layers table, degree counted in the graph), every query ignores
them, and ``weightgraph browser --no-labels`` does without them.

Examples
--------
>>> from loader.neo4j import browser
>>> from loader.neo4j.db import Database
>>> with Database.connect() as db, browser.GuideServer() as server:
...     target = browser.resolve_target(db, "digits_cnn")
...     browser.label_for_style(db, target.model)
...     guide = browser.build_guide(db, target, base_url=server.base_url)
...     server.publish(guide)
...     print(server.browser_url("http://127.0.0.1:7474/browser/"))
...     server.serve_forever()          # until Ctrl-C
"""

from __future__ import annotations

import html
import http.server
import ipaddress
import json
import math
import re
import shlex
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import neo4j

from ..errors import WeightgraphError
from ..graph.selection import parse_neuron
from ..sinks.neo4j_labels import labels_of
from ..terminal import progress
from .cypher import NamedQuery, list_queries, queries_dir
from .db import Database, using
from .models import LayerTable, ModelNotFound, loaded_models, require_complete
from .queries import run_query
from .traces import list_traces, trace_info

__all__ = ["KIND_LABELS", "DEGREE_CLASSES", "STYLE_FILE", "GUIDE_FILE", "BrowserError",
           "GuideTarget", "Slide", "Guide", "GuideServer", "layer_kind", "style_text",
           "resolve_target", "label_for_style", "build_guide", "cypher_literal",
           "check_allowlist", "host_allowed", "browser_url"]

#: The style, shipped beside the named queries (``queries/`` in a checkout, the package's
#: ``named_queries`` when installed) and served by :class:`GuideServer` at ``/STYLE_FILE``.
STYLE_FILE = "weightgraph.grass"
GUIDE_FILE = "weightgraph.html"
#: The slide that opens the guide: the loaded model's layers, next to the style.
FIRST_QUERY = "model_summary"
#: Layer kind labels, by the layer's class (Keras class or ONNX op type).
KIND_LABELS = ("Input", "Conv", "Pooling", "Dense", "Other")
_DENSE_CLASSES = {"Dense", "EinsumDense", "Gemm", "MatMul"}
#: Degree classes (in + out edges): (first degree above the class, label); powers of ten.
#: The last bound is the largest 32-bit integer: Neo4j plans ``COUNT { (n)--() } < b`` as a
#: degree check that takes no larger ``b``.
DEGREE_CLASSES = ((10, "Degree0to9"), (100, "Degree10to99"), (1000, "Degree100to999"),
                  (10_000, "Degree1000to9999"), (2**31 - 1, "Degree10000plus"))
#: Nodes labelled per transaction.
LABEL_CHUNK = 20_000
#: Neuron layers tried, besides the guide's neuron and the trace's target, before a slide's
#: query is given parameters it answers no row for.
PROBE_LAYERS = 8


class BrowserError(WeightgraphError):
    """The guide cannot be built or served as asked (the message says why and what to do)."""


# ---------------------------------------------------------------------------- the style
def layer_kind(layer: dict) -> str:
    """The kind label of a layer of a model's layers table (``graph_data['layers']``).

    ``Input`` for the input, ``Conv`` for any convolution (Conv1D/2D/3D, depthwise, separable,
    transposed; ONNX ``Conv``/``ConvTranspose``), ``Pooling`` for max, average and global
    pooling, ``Dense`` for Dense (ONNX ``Gemm``/``MatMul``), ``Other`` for the rest (batch
    normalisation, activations, merges, upsampling, ...).

    Examples
    --------
    >>> layer_kind({"class_name": "MaxPooling2D", "op": "max"})
    'Pooling'
    """
    cls = str(layer.get("class_name") or "")
    if layer.get("kind") == "input" or layer.get("op") == "input" or cls == "InputLayer":
        return "Input"
    if "Conv" in cls:
        return "Conv"
    if "Pool" in cls:
        return "Pooling"
    if cls in _DENSE_CLASSES:
        return "Dense"
    return "Other"


def style_text() -> str:
    """The shipped GraSS (JSON form), as :class:`GuideServer` serves it."""
    return (queries_dir() / STYLE_FILE).read_text(encoding="utf-8")


def _style_rules() -> dict[str, dict[str, str]]:
    return json.loads(style_text())


# ---------------------------------------------------------------------------- target
@dataclass
class GuideTarget:
    """What the guide's parameters are set for: a complete model and, optionally, a trace."""

    model: str
    info: dict                   # the parsed (:Model) node
    trace: str | None = None
    trace_node: dict | None = None

    @property
    def vocabulary(self):
        return labels_of(self.info.get("granularity"))


def resolve_target(driver: Database | neo4j.Driver | None, model: str | None = None,
                   trace: str | None = None, *, database: str | None = None) -> GuideTarget:
    """The model (and trace) a guide is for, checked; one-line errors otherwise.

    Parameters
    ----------
    model : str, optional
        A loaded model; default the trace's model, else the only loaded model.
    trace : str, optional
        A stored trace of that model; default its only trace, if it has exactly one.

    Raises
    ------
    ModelNotFound, loader.neo4j.models.ModelIncomplete, loader.neo4j.traces.TraceNotFound
        Unknown or incomplete model, unknown trace (each lists what there is).
    BrowserError
        No model given and not exactly one loaded; a trace of another model.
    """
    with using(driver, database) as db:
        trace_node = trace_info(db, trace) if trace is not None else None
        if model is None and trace_node is not None:
            model = trace_node["model"]
        if model is None:
            names = loaded_models(db)
            if len(names) != 1:
                raise (ModelNotFound("no model in Neo4j: load one with `weightgraph load`")
                       if not names else
                       BrowserError(f"{len(names)} models are loaded ({', '.join(names)}): "
                                    "choose one with --model NAME"))
            model = names[0]
        info = require_complete(db, model)
        if trace_node is not None and trace_node["model"] != model:
            raise BrowserError(f"trace {trace!r} is of model {trace_node['model']!r}, not "
                               f"{model!r}: pass --model {trace_node['model']} or another trace")
        if trace is None:
            traces = list_traces(db, model=model)
            if len(traces) == 1:
                trace, trace_node = traces[0]["name"], trace_info(db, traces[0]["name"])
    return GuideTarget(model=model, info=info, trace=trace, trace_node=trace_node)


# ---------------------------------------------------------------------------- labels
_SET_LABELS = """
MATCH (n:Neuron {model: $model})
WHERE n.id >= $lo AND n.id < $hi AND NOT $kind IN labels(n)
WITH n, head([c IN $classes WHERE COUNT { (n)--() } < c[0] | c[1]]) AS degree_class
SET n:$($kind), n:$(degree_class)
RETURN degree_class, count(*) AS nodes
"""


def label_for_style(driver: Database | neo4j.Driver | None, model: str, *,
                    database: str | None = None, progress_bar: bool = False) -> dict[str, int]:
    """Add the style's labels to every neuron (channel) of a model: its layer's kind
    (:data:`KIND_LABELS`) and its degree class (:data:`DEGREE_CLASSES`, in + out edges).

    Idempotent: nodes that already carry their kind label are skipped. Labels are additive:
    no property changes, every named query, ``verify``, ``pull`` and the exports ignore them,
    and deleting the model deletes them with its nodes. Writes in transactions of
    :data:`LABEL_CHUNK` nodes (by id range, through the ``(model, id)`` index).

    Returns
    -------
    dict of str to int
        Nodes labelled now, per label (empty when all were labelled already).

    Examples
    --------
    >>> label_for_style(None, "digits_cnn")
    {'Input': 64, 'Conv': 1088, 'Degree0to9': 98, ...}
    """
    with using(driver, database) as db:
        info = require_complete(db, model)
        vocabulary = labels_of(info.get("granularity"))
        table = LayerTable(info["graph_data"]["layers"])
        statement = vocabulary.cypher(_SET_LABELS)
        classes = [list(c) for c in DEGREE_CLASSES]
        done: dict[str, int] = {}
        total = sum(int(layer.get(vocabulary.unit) or 0) for layer in table.neuron_layers)
        with progress(total, "style labels", enabled=progress_bar, unit="node") as bar:
            for layer in table.neuron_layers:
                kind = layer_kind(layer)
                start, count = int(layer["offset"]), int(layer.get(vocabulary.unit) or 0)
                for lo in range(start, start + count, LABEL_CHUNK):
                    hi = min(lo + LABEL_CHUNK, start + count)
                    for r in db.write(statement, model=model, lo=lo, hi=hi, kind=kind,
                                      classes=classes):
                        done[kind] = done.get(kind, 0) + r["nodes"]
                        done[r["degree_class"]] = done.get(r["degree_class"], 0) + r["nodes"]
                    bar.update(hi - lo)
    return done


# ---------------------------------------------------------------------------- parameters
def cypher_literal(value: Any) -> str:
    """``value`` written as a Cypher literal, for the guide's ``:param`` blocks (the one
    place where values must be text: the Browser evaluates the block on the server).

    Strings are single-quoted with backslash escapes, so any text reads back as itself;
    floats keep their exact value (``repr``); lists and maps recurse.

    Examples
    --------
    >>> cypher_literal({"layer": "it's", "index": 3, "w": [0.5, None]})
    "{layer: 'it\\\\'s', index: 3, w: [0.5, null]}"
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "0.0 / 0.0"
        if math.isinf(value):
            return "1.0 / 0.0" if value > 0 else "-1.0 / 0.0"
        return repr(value).replace("e+", "e")
    if isinstance(value, str):
        escaped = "".join(_STRING_ESCAPES.get(c, c if c >= " " else f"\\u{ord(c):04x}")
                          for c in value)
        return f"'{escaped}'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(cypher_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_identifier(k)}: {cypher_literal(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no Cypher literal for {type(value).__name__}")


_STRING_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _identifier(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else \
        "`" + name.replace("`", "``") + "`"


def param_command(params: dict[str, Any]) -> str:
    """The Browser command that sets ``params`` in one block, typed by the server:
    ``:param [{model, k}] => { RETURN 'm' AS model, 10 AS k }``."""
    names = ", ".join(_identifier(k) for k in params)
    values = ", ".join(f"{cypher_literal(v)} AS {_identifier(k)}" for k, v in params.items())
    return f":param [{{{names}}}] => {{ RETURN {values} }}"


@dataclass(frozen=True)
class _Neuron:
    layer: str
    index: int
    id: int


def _candidates(target: GuideTarget) -> list[_Neuron]:
    """Neurons a slide's parameters may point at, best first: the guide's own neuron (the
    middle of the first pooling layer, else of the first layer after the input), the trace's
    target, then the middle of every other layer from the bottom up."""
    table = LayerTable(target.info["graph_data"]["layers"])
    unit = target.vocabulary.unit

    def middle(layer) -> _Neuron:
        index = int(layer.get(unit) or 1) // 2
        return _Neuron(layer["name"], index, int(layer["offset"]) + index)

    layers = table.neuron_layers
    inner = [l for l in layers if layer_kind(l) != "Input"] or layers
    first = next((l for l in inner if layer_kind(l) == "Pooling"), inner[0] if inner else None)
    found = [middle(first)] if first is not None else []
    if target.trace_node and target.trace_node.get("target"):
        lname, index = parse_neuron(target.trace_node["target"])
        layer = table.by_name.get(lname)
        if layer is not None and layer.get("offset") is not None:
            found.append(_Neuron(lname, index, int(layer["offset"]) + index))
    for layer in inner:
        if len(found) >= PROBE_LAYERS + 2:
            break
        if all(n.layer != layer["name"] for n in found):
            found.append(middle(layer))
    return found


def _needs_neuron(query: NamedQuery) -> bool:
    return any(p.required and p.name in ("layer", "index", "frontier") for p in query.params)


def _needs_trace(query: NamedQuery) -> bool:
    return any(p.required and p.name == "trace" for p in query.params)


def _params_for(query: NamedQuery, target: GuideTarget, neuron: _Neuron | None
                ) -> tuple[dict[str, Any], list[str]]:
    """Every parameter of ``query`` (optional ones at their defaults, so that no value left
    by another slide leaks in) and the required ones it has no value for."""
    params: dict[str, Any] = {}
    unknown = []
    for p in query.params:
        if p.name == "model":
            params[p.name] = target.model
        elif p.name == "trace":
            params[p.name] = target.trace
            if p.required and target.trace is None:
                unknown.append(p.name)
        elif not p.required:
            params[p.name] = p.default
        elif neuron is not None and p.name in ("layer", "index", "frontier"):
            params[p.name] = {"layer": neuron.layer, "index": neuron.index,
                              "frontier": [[neuron.id, 1]]}[p.name]
        else:
            params[p.name] = None
            unknown.append(p.name)
    return params, unknown


def _first_answered(db: Database, query: NamedQuery, target: GuideTarget,
                    candidates: list[_Neuron], timeout: float) -> _Neuron | None:
    """The first candidate neuron ``query`` returns a row for (it runs read-only, as
    ``weightgraph query`` runs it; an error or a timeout counts as no row)."""
    for neuron in candidates:
        try:
            if len(run_query(db, query, _params_for(query, target, neuron)[0],
                             timeout=timeout)) > 0:
                return neuron
        except (WeightgraphError, neo4j.exceptions.Neo4jError):
            continue
    return None


# ---------------------------------------------------------------------------- the guide
@dataclass
class Slide:
    """One slide: its title, the query it runs (None for the closing slide) with the
    parameters of its ``:param`` block, and its HTML."""

    title: str
    html: str
    query: NamedQuery | None = None
    params: dict[str, Any] | None = None
    note: str = ""


@dataclass
class Guide:
    """A weightgraph guide for Neo4j Browser: ``html()`` is the page ``:guide`` reads."""

    target: GuideTarget
    slides: list[Slide]
    style_url: str
    python: str = ""          # the closing slide's Python code
    example: Slide | None = None   # the query slide that code runs
    seconds: float = 0.0
    queries_dir: str = field(default="")

    @property
    def title(self) -> str:
        return f"weightgraph: {self.target.model}"

    def html(self) -> str:
        body = "\n".join(f"<slide>\n{s.html}\n</slide>" for s in self.slides)
        return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{_e(self.title)}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _block(text: str, **data: str) -> str:
    attrs = "".join(f' data-{k}="{_e(v)}"' for k, v in data.items())
    return f'<pre class="code runnable"{attrs}>{_e(text)}</pre>'


def _query_html(query: NamedQuery, params: dict, note: str, heading: str = "h3") -> str:
    parts = [f"<{heading}>{_e(query.name)}</{heading}>",
             f"<p>{_e(query.description)}</p>" if query.description else "",
             f'<p class="note"><em>{_e(note)}</em></p>' if note else "",
             "<p>Set its parameters, then run it (the play icon runs a block; clicking "
             "the text puts it into the editor):</p>",
             _block(param_command(params), params=query.name),
             _block(query.text.strip(), query=query.name)]
    return "\n".join(p for p in parts if p)


def _legend() -> str:
    rules = _style_rules()
    chips = []
    for kind in KIND_LABELS:
        rule = rules.get(f"node.{kind}", {})
        chips.append(f'<span style="background:{_e(rule.get("color", "#A5ABB6"))};'
                     f'color:{_e(rule.get("text-color-internal", "#FFFFFF"))};'
                     f'padding:1px 6px;border-radius:8px">{_e(kind)}</span>')
    sizes = ", ".join(f"{label.removeprefix('Degree')} "
                      f"{rules.get(f'node.{label}', {}).get('diameter', '?')}"
                      for _, label in DEGREE_CLASSES)
    return (f"<p>Neurons are coloured by layer kind: {' '.join(chips)}; captioned "
            "<code>layer:index</code> (channels <code>layer:channel</code>); sized by degree "
            f"(in + out edges): {_e(sizes)}. <code>W</code> and <code>CW</code> edges show "
            "their weight.</p>")


def _models_table(db: Database) -> str:
    rows = db.read("MATCH (m:Model) RETURN m.name AS name, "
                   "coalesce(m.granularity, 'neuron') AS granularity, "
                   "coalesce(m.state, 'complete') AS state, m.nodes AS nodes, "
                   "m.edges AS edges ORDER BY name")
    traces: dict[str, int] = {}
    for t in list_traces(db):
        traces[t["model"]] = traces.get(t["model"], 0) + 1

    def number(v):
        return f"{v:,}" if isinstance(v, int) else ("" if v is None else _e(v))

    def row(cells, tag="td"):
        return "<tr>" + "".join(f'<{tag} style="padding:0 8px 0 0;text-align:left">{c}</{tag}>'
                                for c in cells) + "</tr>"

    body = "".join(row([_e(r["name"]), _e(r["granularity"]), _e(r["state"]),
                        number(r["nodes"]), number(r["edges"]), traces.get(r["name"], 0)])
                   for r in rows)
    return ("<table>" + row(["model", "granularity", "state", "nodes", "edges", "traces"], "th")
            + body + "</table>")


def _python_slide(target: GuideTarget, example: Slide | None,
                  neuron: _Neuron | None) -> tuple[str, str]:
    """The closing slide's HTML and its Python code."""
    lines = ["import loader", ""]
    if neuron is not None:
        cone = f"{neuron.layer}:{neuron.index}:2"
        lines += [f"G = loader.pull({target.model!r}, cone={cone!r})"
                  "   # nx.DiGraph, node keys = neuron ids",
                  "print(G.number_of_nodes(), G.number_of_edges())"]
    if example is not None and example.query is not None:
        lines += [f"rows = loader.run_query(None, {example.query.name!r}, {example.params!r})"
                  ".records()   # read-only, as in the Browser"]
    if target.trace:
        lines += [f"A = loader.pull_trace({target.trace!r}, active_only=True)"
                  "   # the active subgraph, with values"]
    code = "\n".join(lines)
    cli = []
    if neuron is not None:
        cli.append(f"weightgraph pull --name {shlex.quote(target.model)} --cone "
                   f"{shlex.quote(cone)} -o cone.graphml.gz")
    if example is not None and example.query is not None:
        ps = "".join(f" -p {shlex.quote(f'{k}={v if isinstance(v, str) else json.dumps(v)}')}"
                     for k, v in example.params.items() if k != "model" and v is not None)
        cli.append(f"weightgraph query {example.query.name} --model "
                   f"{shlex.quote(target.model)}{ps}")
    page = ("<h3>Into NetworkX</h3>\n<p>The same graph and queries from Python: "
            "<code>loader.pull</code> brings a model or a selection back as an "
            "<code>nx.DiGraph</code> keyed by neuron id (the ids you see here), "
            "<code>loader.run_query</code> runs a named query read-only.</p>\n"
            f'<pre class="code" data-python="1">{_e(code)}</pre>\n'
            "<p>Or on the command line:</p>\n"
            f'<pre class="code">{_e(chr(10).join(cli))}</pre>')
    return page, code


def build_guide(driver: Database | neo4j.Driver | None, target: GuideTarget, *,
                base_url: str, database: str | None = None, probe_timeout: float = 10.0
                ) -> Guide:
    """The weightgraph guide for ``target``, generated from every file of ``queries/``.

    Slides: first the loaded models, the ``:style`` block and ``model_summary``; then one
    per named query (those reading the model as a whole, then those about one neuron, then
    those reading a trace; by name within each), each with its description, a ``:param``
    block setting all its parameters for the model (and trace) and the query file's text as
    a runnable block; last, how to pull a result into NetworkX.

    A query about one neuron (``$layer``, ``$index``) gets the guide's neuron (the middle of
    the first pooling layer) if it answers a row there, else the first of the trace's target
    and the middle neuron of each layer that does (each try is the query itself, read-only,
    with ``probe_timeout`` seconds).

    Parameters
    ----------
    target : GuideTarget
        From :func:`resolve_target`.
    base_url : str
        Where :class:`GuideServer` serves: the ``:style`` block reads the style from there.
    """
    t0 = time.monotonic()
    queries = {q.name: q for q in list_queries()}
    if FIRST_QUERY not in queries:
        raise BrowserError(f"no {FIRST_QUERY}.cypher in {queries_dir()}: the guide opens with it")
    candidates = _candidates(target)
    style_url = f"{base_url.rstrip('/')}/{STYLE_FILE}"

    def group(q: NamedQuery) -> int:
        return 2 if _needs_trace(q) else 1 if any(p.required and p.name != "model"
                                                  for p in q.params) else 0

    order = sorted((q for q in queries.values() if q.name != FIRST_QUERY),
                   key=lambda q: (group(q), q.name))
    slides: list[Slide] = []
    with using(driver, database) as db:
        first = queries[FIRST_QUERY]
        params, _ = _params_for(first, target, None)
        trace_line = (f" Parameters are set for trace <code>{_e(target.trace)}</code> too."
                      if target.trace else "")
        slides.append(Slide(
            title=target.model, query=first, params=params,
            html="\n".join([
                f"<h3>weightgraph: {_e(target.model)}</h3>",
                f"<p class=\"lead\">The {target.vocabulary.granularity} graph of "
                f"<code>{_e(target.model)}</code>: one slide per named query of weightgraph's "
                f"<code>queries/</code>, each with its parameters already set for this model."
                f"{trace_line}</p>",
                "<h4>Loaded models</h4>", _models_table(db),
                "<h4>Style</h4>", _legend(), _block(f":style {style_url}", style="1"),
                _query_html(first, params, "", heading="h4")])))
        for query in order:
            neuron, note = None, ""
            if _needs_neuron(query) and candidates:
                neuron = candidates[0]
                if target.trace is not None or not _needs_trace(query):
                    neuron = _first_answered(db, query, target, candidates, probe_timeout)
                    if neuron is None:
                        neuron = candidates[0]
                        note = ("No row for any neuron tried: set other values with :param "
                                "before running it.")
            params, unknown = _params_for(query, target, neuron)
            if "trace" in unknown:
                note = ("This query reads a stored trace and none is chosen: run "
                        f"`weightgraph trace --model {target.model} --input FILE --name T`, "
                        f"then `weightgraph browser --model {target.model} --trace T`.")
            elif unknown:
                note = ("No value is chosen for " + ", ".join(f"${u}" for u in unknown)
                        + ": set it with :param before running the query.")
            slide = Slide(title=query.name, query=query, params=params, note=note,
                          html=_query_html(query, params, note))
            slides.append(slide)
        # From Python: the cone of the guide's neuron, and the first slide's query.
        example = slides[0]
        page, code = _python_slide(target, example, candidates[0] if candidates else None)
        slides.append(Slide(title="Into NetworkX", html=page))
    return Guide(target=target, slides=slides, style_url=style_url, python=code,
                 example=example, seconds=time.monotonic() - t0,
                 queries_dir=str(queries_dir()))


# ---------------------------------------------------------------------------- allowlist
def host_allowed(allowlist: str, url: str) -> bool:
    """Whether Neo4j Browser fetches ``url`` with this ``remote_content_hostname_whitelist``:
    ``*``, or the URL's host name alone or with its scheme (``localhost``,
    ``http://localhost``) in the comma-separated list; ports do not count (the Browser's
    ``hostIsAllowed``)."""
    if allowlist.strip() == "*":
        return True
    parts = urlsplit(url)
    entries = {e.strip().rstrip("/") for e in allowlist.split(",")}
    return parts.hostname in entries or f"{parts.scheme}://{parts.hostname}" in entries


def check_allowlist(driver: Database | neo4j.Driver | None, url: str, *,
                    database: str | None = None) -> str:
    """The server's ``browser.remote_content_hostname_whitelist`` if it lets the Browser fetch
    ``url`` after login; a one-line :class:`BrowserError` with the setting to add otherwise."""
    with using(driver, database) as db:
        try:
            rows = db.read("CALL dbms.clientConfig() YIELD name, value "
                           "WHERE name = 'browser.remote_content_hostname_whitelist' "
                           "RETURN value")
        except neo4j.exceptions.ClientError:
            rows = []  # not allowed to read the settings: Neo4j's default is assumed
    allowlist = rows[0]["value"] if rows else "guides.neo4j.com,localhost"
    if not host_allowed(allowlist, url):
        host = urlsplit(url).hostname
        raise BrowserError(
            f"the Neo4j server's browser.remote_content_hostname_whitelist ({allowlist!r}) does "
            f"not allow {host}, where the guide is served: add it, e.g. "
            f"browser.remote_content_hostname_whitelist={allowlist},{host} in neo4j.conf "
            f"(local server: conf/extra.conf; docker compose: "
            f"NEO4J_browser_remote__content__hostname__whitelist) and restart Neo4j")
    return allowlist


# ---------------------------------------------------------------------------- serving
def browser_url(neo4j_browser: str, guide_url: str) -> str:
    """The Neo4j Browser address that opens ``guide_url`` in its sidebar as the page loads
    (``/browser/?cmd=guide&arg=URL``; the Browser runs ``:guide`` and ``:play`` from the URL
    without asking)."""
    return f"{neo4j_browser.split('?')[0]}?cmd=guide&arg={quote(guide_url, safe='')}"


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


def browser_origins(neo4j_browser: str) -> set[str]:
    """The origins Neo4j Browser's page may have: that of ``neo4j_browser``, and, when it is
    on this machine, the same port under every loopback name."""
    parts = urlsplit(neo4j_browser)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    origins = {f"{parts.scheme}://{parts.netloc}"}
    if _is_loopback(parts.hostname):
        origins |= {f"{parts.scheme}://{name}:{port}" for name in _LOOPBACK_NAMES}
    return origins


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin and origin in self.server.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
        self.send_header("Vary", "Origin")

    def do_OPTIONS(self) -> None:  # noqa: N802 (http.server's naming)
        # The Browser's fetch sends Pragma and Cache-Control, so Chromium asks first.
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        requested = self.headers.get("Access-Control-Request-Headers")
        if requested:
            self.send_header("Access-Control-Allow-Headers", requested)
        if self.headers.get("Access-Control-Request-Private-Network") == "true":
            self.send_header("Access-Control-Allow-Private-Network", "true")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, body: bool) -> None:
        path = self.path.split("?")[0].split("#")[0]
        found = self.server.files.get("/" + GUIDE_FILE if path == "/" else path)
        if found is None:
            payload, ctype, status = b"not found\n", "text/plain; charset=utf-8", 404
        else:
            (payload, ctype), status = found, 200
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        self._send(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(body=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, tuple[bytes, str]]
    origins: set[str]
    log = None


class GuideServer:
    """The guide and the style over HTTP, on the loopback interface, with CORS for Neo4j
    Browser's origin; Python's standard library ``http.server``.

    Paths: ``/weightgraph.html`` (also ``/``), ``/weightgraph.grass``; anything else is 404.
    It binds in the constructor (``port=0``: a free port), so that :attr:`base_url` is known
    before the guide that refers to it is built; :meth:`publish` sets the guide.

    Parameters
    ----------
    port : int
        0 for any free port.
    bind : str
        The address to listen on: loopback by default. In a container whose port is
        published to the host's loopback, ``0.0.0.0``.
    neo4j_browser : str
        Neo4j Browser's address: its origin (and its loopback aliases) may read the files.
    log : callable, optional
        Called with one line per request.
    """

    def __init__(self, port: int = 0, bind: str = "127.0.0.1", *,
                 neo4j_browser: str = "http://127.0.0.1:7474/browser/", log=None):
        try:
            self._httpd = _HTTPServer((bind, port), _Handler)
        except OSError as exc:
            raise BrowserError(f"cannot serve the guide on {bind}:{port}: "
                               f"{exc.strerror or exc}") from None
        self._httpd.origins = browser_origins(neo4j_browser)
        self._httpd.files = {f"/{STYLE_FILE}": (style_text().encode(),
                                               "application/json; charset=utf-8")}
        self._httpd.log = log
        self.neo4j_browser = neo4j_browser
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://localhost:PORT``: ``localhost``, because the Browser's allowlist before
        login holds ``localhost`` and not ``127.0.0.1``."""
        return f"http://localhost:{self.port}"

    @property
    def guide_url(self) -> str:
        return f"{self.base_url}/{GUIDE_FILE}"

    def browser_url(self, neo4j_browser: str | None = None) -> str:
        """The one Neo4j Browser URL that opens this server's guide."""
        return browser_url(neo4j_browser or self.neo4j_browser, self.guide_url)

    def publish(self, guide: Guide) -> None:
        self._httpd.files[f"/{GUIDE_FILE}"] = (guide.html().encode(), "text/html; charset=utf-8")

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C raises KeyboardInterrupt here)."""
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> GuideServer:
        """Serve from a background thread (tests, notebooks); :meth:`close` stops it."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.2})
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> GuideServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
