"""Named, parameterised Cypher queries from ``queries/*.cypher``, run read-only.

A query file starts with ``//`` header lines, then holds one Cypher statement::

    // name: top_inputs
    // description: The $k strongest incoming connections of a neuron, by |weight|.
    //   (an indented comment line continues the previous field)
    // params: $model (string), $layer (string), $index (int), $k (int, default 10)
    // returns: id, layer, index, weight
    MATCH (n:Neuron {model: $model, layer: $layer, index: $index})<-[w:W]-(s:Neuron) ...

Parameters are always sent separately from the text (never formatted into it), so a value that
holds Cypher is only data. A query runs read-only twice over: it is first ``EXPLAIN``-ed and
refused unless the planner calls it read-only (``summary.query_type == 'r'``), then it runs in
a READ-mode managed transaction (``session.execute_read``), where the server rejects and rolls
back any write that got past the first check.

Examples
--------
>>> from loader.db import connect
>>> driver = connect()
>>> result = run_query(driver, "top_inputs", {"model": "vgg16", "layer": "fc2", "index": 7})
>>> result.columns
['id', 'layer', 'index', 'weight']
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import neo4j
from neo4j.exceptions import ClientError, Neo4jError
from pydantic import BaseModel

from ..errors import WeightgraphError

__all__ = ["QueryParam", "NamedQuery", "QueryResult", "QueryError", "QueryNotFound",
           "WriteQueryRefused", "MissingParameters", "queries_dir", "list_queries",
           "load_query", "parse_query", "parse_params", "parse_value", "run_query",
           "read_only_check"]

# queries/ sits next to the package in the repository (and in the Docker image);
# WEIGHTGRAPH_QUERIES_DIR points elsewhere, e.g. for an installed wheel.
_DEFAULT_DIR = Path(__file__).resolve().parents[2] / "queries"
_FIELDS = ("name", "description", "params", "returns", "procedure")
_TYPES = {"string", "int", "float", "bool", "list", "map", "any"}


class QueryError(WeightgraphError):
    """A named query that cannot be found, parsed or run."""


class QueryNotFound(QueryError):
    """No query file or named query matches."""


class MissingParameters(QueryError):
    """Parameters the query needs were not given."""


class WriteQueryRefused(QueryError):
    """The query would write to the database; named queries are read-only."""


class QueryParam(BaseModel):
    """One ``$param`` of a query header: ``$k (int, default 10)``."""

    name: str
    type: str = "any"
    required: bool = True
    default: Any = None


class NamedQuery(BaseModel):
    """A query file: its header fields and its Cypher ``text`` (header comments included)."""

    name: str
    description: str = ""
    params: list[QueryParam] = []
    returns: list[str] = []
    text: str
    path: Path | None = None
    # A Python function of this module (see PROCEDURES) that computes the same result as the
    # statement where one statement cannot do it well (e.g. unbounded layer-by-layer loops).
    procedure: str | None = None

    def param(self, name: str) -> QueryParam | None:
        return next((p for p in self.params if p.name == name), None)


class QueryResult(BaseModel):
    """Rows of a query: ``columns`` names and ``rows`` of plain Python values."""

    columns: list[str]
    rows: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


# ---------------------------------------------------------------------------- files
def queries_dir() -> Path:
    """Where named queries live: ``$WEIGHTGRAPH_QUERIES_DIR``, the repository's ``queries/``,
    or (installed) the copy packaged as ``loader.named_queries``."""
    if os.environ.get("WEIGHTGRAPH_QUERIES_DIR"):
        return Path(os.environ["WEIGHTGRAPH_QUERIES_DIR"])
    if _DEFAULT_DIR.is_dir():  # a checkout (editable install)
        return _DEFAULT_DIR
    # Installed: pyproject.toml packages queries/ as loader.named_queries.
    from importlib.resources import files

    return Path(str(files("loader.named_queries")))


def list_queries(directory: str | os.PathLike | None = None) -> list[NamedQuery]:
    """Every ``*.cypher`` file of the queries directory, parsed, sorted by name.

    Examples
    --------
    >>> [q.name for q in list_queries()][:3]
    ['dead_relus', 'degree_distribution', 'layer_weight_stats']
    """
    folder = Path(directory) if directory is not None else queries_dir()
    if not folder.is_dir():
        raise QueryNotFound(f"no queries directory at {folder} (set WEIGHTGRAPH_QUERIES_DIR)")
    return sorted((parse_query(p.read_text(encoding="utf-8"), path=p)
                   for p in folder.glob("*.cypher")), key=lambda q: q.name)


def load_query(name_or_file: str | os.PathLike) -> NamedQuery:
    """A named query (``"top_inputs"``) or a ``.cypher`` file path, parsed.

    Raises
    ------
    QueryNotFound
        Unknown name (the message lists the known ones) or missing file.
    """
    text = str(name_or_file)
    path = Path(text)
    if path.suffix == ".cypher" or os.sep in text or path.is_file():
        if not path.is_file():
            raise QueryNotFound(f"query file not found: {path}")
        return parse_query(path.read_text(encoding="utf-8"), path=path)
    known = list_queries()
    for q in known:
        if q.name == text:
            return q
    names = ", ".join(q.name for q in known) or "(none)"
    raise QueryNotFound(f"no named query {text!r}; known queries: {names}")


def parse_query(text: str, *, path: Path | None = None, name: str | None = None) -> NamedQuery:
    """Parse the ``//`` header of a query text.

    A text without a header is accepted too (``name`` defaults to the file stem or
    ``"adhoc"``): its parameters are then the ``$names`` its statement uses, all required.
    """
    fields: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("//"):
            break
        body = stripped[2:]
        m = re.match(r"\s*(\w+)\s*:(.*)$", body)
        if m and m.group(1).lower() in _FIELDS:
            current = m.group(1).lower()
            fields[current] = m.group(2).strip()
        elif current is not None and body.strip():
            fields[current] += " " + body.strip()
    statement = statement_of(text)
    if not statement:
        raise QueryError(f"{path or 'query'}: no Cypher statement after the header")
    declared = _parse_params(fields.get("params", ""), path)
    known = {p.name for p in declared}
    used = [p for p in statement_parameters(statement) if p not in known]
    params = declared + [QueryParam(name=p) for p in used]
    returns = [r.strip() for r in fields.get("returns", "").split(",") if r.strip()]
    qname = fields.get("name") or name or (path.stem if path is not None else "adhoc")
    procedure = fields.get("procedure") or None
    if procedure is not None and procedure not in PROCEDURES:
        raise QueryError(f"{path or 'query'}: unknown procedure {procedure!r}; known: "
                         + ", ".join(sorted(PROCEDURES)))
    return NamedQuery(name=qname, description=fields.get("description", ""), params=params,
                      returns=returns, text=text, path=path, procedure=procedure)


def statement_of(text: str) -> str:
    """The Cypher statement without comments and without a trailing ``;``."""
    body = _strip_comments(text).strip()
    if body.endswith(";"):
        body = body[:-1].rstrip()
    if ";" in _strip_strings(body):
        raise QueryError("a query file holds one statement; found ';' between statements")
    return body


def statement_parameters(statement: str) -> list[str]:
    """``$names`` used by a statement, in order of first use (strings and comments ignored)."""
    seen: dict[str, None] = {}
    for m in re.finditer(r"\$(`[^`]+`|\w+)", _strip_strings(_strip_comments(statement))):
        seen.setdefault(m.group(1).strip("`"), None)
    return list(seen)


def _parse_params(spec: str, path) -> list[QueryParam]:
    params = []
    for m in re.finditer(r"\$(\w+)\s*(?:\(([^)]*)\))?", spec):
        name, inside = m.group(1), (m.group(2) or "").strip()
        ptype, required, default = "any", True, None
        for part in (p.strip() for p in inside.split(",") if p.strip()):
            low = part.lower()
            if low in _TYPES:
                ptype = low
            elif low == "optional":
                required = False
            elif low.startswith("default"):
                required = False
                raw = part[len("default"):].strip()
                default = None if raw.lower() == "null" else _coerce(raw, ptype, name)
            else:
                raise QueryError(f"{path or 'query'}: cannot read parameter ${name} ({inside}): "
                                 "want (type[, default VALUE]) with type one of "
                                 + ", ".join(sorted(_TYPES)))
        params.append(QueryParam(name=name, type=ptype, required=required, default=default))
    return params


def _strip_comments(text: str) -> str:
    out, i, n = [], 0, len(text)
    quote = None
    while i < n:
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and quote != "`" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _strip_strings(text: str) -> str:
    return re.sub(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"", "''", text)


# ---------------------------------------------------------------------------- parameters
def parse_value(raw: str) -> Any:
    """Infer a parameter's type from its text: int, float, bool, null, JSON list/map, else str.

    Examples
    --------
    >>> [parse_value(v) for v in ("3", "0.5", "true", "[1, 2]", "conv1")]
    [3, 0.5, True, [1, 2], 'conv1']
    """
    text = raw.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", low):
            return float(text)
    except ValueError:
        pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return raw


def _coerce(raw: str, ptype: str, name: str) -> Any:
    """The text of a parameter as its declared type (``string`` keeps the text as given)."""
    if ptype == "string":
        return raw
    if ptype == "any":
        return parse_value(raw)
    value = parse_value(raw)
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool),
          "list": lambda v: isinstance(v, list),
          "map": lambda v: isinstance(v, dict)}[ptype]
    if value is None or not ok(value):
        raise QueryError(f"parameter ${name} wants {ptype}, got {raw!r}")
    return float(value) if ptype == "float" else value


def parse_params(pairs, query: NamedQuery | None = None) -> dict[str, Any]:
    """``["k=3", "layer=conv1"]`` -> ``{"k": 3, "layer": "conv1"}``.

    A parameter the query declares is converted to its declared type (a ``string`` parameter
    keeps its text exactly, so ``layer=007`` stays ``"007"``); others are inferred by
    :func:`parse_value`. Everything after the first ``=`` is the value.
    """
    params: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        key = key.strip().lstrip("$")
        if not sep or not key:
            raise QueryError(f"parameters are key=value, got {pair!r}")
        declared = query.param(key) if query is not None else None
        params[key] = _coerce(raw, declared.type, key) if declared else parse_value(raw)
    return params


def bind_params(query: NamedQuery, params: dict[str, Any] | None) -> dict[str, Any]:
    """The parameters to send: defaults filled in, missing required ones reported together."""
    bound = dict(params or {})
    missing = []
    for p in query.params:
        if p.name in bound:
            continue
        if p.required:
            missing.append(p)
        else:
            bound[p.name] = p.default
    if missing:
        names = ", ".join(f"${p.name} ({p.type})" for p in missing)
        raise MissingParameters(
            f"query {query.name!r} needs {names}; pass "
            + " ".join(f"--param {p.name}=..." for p in missing)
            + " on the command line or params={...} in Python")
    return bound


# ---------------------------------------------------------------------------- running
def run_query(driver: neo4j.Driver, name_or_file: str | os.PathLike | NamedQuery,
              params: dict[str, Any] | None = None, *, database: str | None = None,
              timeout: float | None = None, procedure: bool = True) -> QueryResult:
    """Run a named query (or a ``.cypher`` file) read-only and return its rows.

    Parameters
    ----------
    driver : neo4j.Driver
        From :func:`loader.db.connect`.
    name_or_file : str, path or NamedQuery
        ``"top_inputs"``, ``"queries/top_inputs.cypher"``, or a parsed query.
    params : dict
        Query parameters (``$model`` and the others its header lists); defaults fill the rest.
    database : str, optional
        Defaults to the configured ``NEO4J_DATABASE``.
    timeout : float, optional
        Seconds; the server stops the transaction after this long.
    procedure : bool
        Where the header names a ``procedure`` (``receptive_field``), run that Python function
        (same parameters, same columns) instead of the statement; ``False`` runs the statement.

    Returns
    -------
    QueryResult
        ``columns`` and ``rows``; nodes and relationships become dicts of their properties.

    Raises
    ------
    WriteQueryRefused
        The query would write: nothing is run and the database is unchanged.
    MissingParameters
        A required parameter is missing; the message names all of them.

    Examples
    --------
    >>> run_query(driver, "neuron", {"model": "small", "layer": "conv1", "index": 0}).records()
    """
    query = name_or_file if isinstance(name_or_file, NamedQuery) else load_query(name_or_file)
    bound = bind_params(query, params)
    if procedure and query.procedure:
        return PROCEDURES[query.procedure](driver, **bound, database=database, timeout=timeout)
    statement = statement_of(query.text)
    db = database or _default_database()
    read_only_check(driver, statement, bound, database=db, label=query.name)
    try:
        columns, records = _run_read(driver, statement, bound, database=db, timeout=timeout,
                                     label=query.name)
    except ClientError as exc:
        raise QueryError(f"query {query.name!r} failed: {_one_line(exc)}") from None
    return QueryResult(columns=columns, rows=[[_plain(v) for v in r] for r in records])


def _run_read(driver, statement: str, params: dict, *, database: str, timeout, label: str):
    """Run a checked statement in a READ transaction; returns (columns, raw records)."""

    @neo4j.unit_of_work(timeout=timeout)
    def work(tx):
        result = tx.run(statement, params)
        return list(result.keys()), [record.values() for record in result]

    try:
        with _read_session(driver, database) as session:
            return session.execute_read(work)
    except ClientError as exc:
        if _is_write_refusal(exc):
            raise WriteQueryRefused(_refusal(label, "the server refused a write: "
                                                    + _one_line(exc))) from None
        raise
    except Neo4jError as exc:
        raise QueryError(f"query {label!r} failed: {_one_line(exc)}") from None


# ---------------------------------------------------------------------------- procedures
_INT64_MAX = (1 << 63) - 1
# Concurrent read transactions per stage of receptive_field (Neo4j Community runs each query
# on one core), and the most frontier neurons sent in one of them.
RF_WORKERS = max(2, min(8, os.cpu_count() or 2))
RF_PAGE = 20_000


def receptive_field(driver: neo4j.Driver, model: str, layer: str, index: int, *,
                    database: str | None = None, timeout: float | None = None,
                    workers: int = RF_WORKERS) -> QueryResult:
    """Every input neuron reaching a neuron, with the number of paths from each.

    The named query ``receptive_field`` as a procedure: the stage of
    ``queries/receptive_field_step.cypher`` is sent once per layer of the cone, highest
    ``layer_index`` first, with the path counts of that layer's frontier neurons; the server
    returns each source neuron once with the paths summed over its edges (so Bolt carries
    neurons, never edges, and no path is enumerated). The frontier is kept here, so there is
    no depth limit. Counts are exact integers while they fit in 64 bits; past 2^63-1 Neo4j's
    ``sum()`` turns them into floats (exact to ~16 digits), and so does this function.

    Every edge of the cone is read once, and Neo4j Community runs a query on one core
    (~1.7M edges/s here), so a stage's frontier is split over ``workers`` concurrent read
    transactions: the cost is the cone's edges divided by the server cores it gets.

    Returns
    -------
    QueryResult
        Columns ``id, layer, index, paths, complete`` (``complete`` is always true here), one
        row per input neuron, by id.

    Examples
    --------
    >>> rf = receptive_field(driver, "vgg16_32", "block3_conv3", 1000)
    >>> max(rf.column("paths"))
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    db = database or _default_database()
    deadline = None if timeout is None else time.monotonic() + timeout
    found = _run_read(driver, "MATCH (n:Neuron {model: $model, layer: $layer, index: $index}) "
                              "RETURN n.id, n.layer, n.layer_index, n.index, n.op",
                      {"model": model, "layer": layer, "index": index}, database=db,
                      timeout=timeout, label="receptive_field")[1]
    if not found:
        raise QueryError(_no_neuron(driver, db, model, layer, index))
    tid, tlayer, tli, tindex, top = found[0]
    columns = ["id", "layer", "index", "paths", "complete"]
    if top == "input":
        return QueryResult(columns=columns, rows=[[tid, tlayer, tindex, 1, True]])
    step = load_query("receptive_field_step")
    statement = statement_of(step.text)
    read_only_check(driver, statement, {"model": model, "frontier": []}, database=db,
                    label=step.name)

    def run_step(frontier: list[tuple[int, int | float]]):
        # A count past 2^63-1 cannot travel as a Bolt integer: it goes as a float.
        pairs = [[i, float(p) if p > _INT64_MAX else p] for i, p in frontier]
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        try:
            return _run_read(driver, statement, {"model": model, "frontier": pairs},
                             database=db, timeout=left, label=step.name)[1]
        except ClientError as exc:
            raise QueryError(f"query 'receptive_field' failed: {_one_line(exc)}") from None

    pending: dict[int, dict[int, int | float]] = {tli: {tid: 1}}
    reached: dict[int, list] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while pending:
            frontier = list(pending.pop(max(pending)).items())
            parts = max(1, min(workers, len(frontier) // 64), -(-len(frontier) // RF_PAGE))
            size = -(-len(frontier) // parts)
            chunks = [frontier[a:a + size] for a in range(0, len(frontier), size)]
            for rows in pool.map(run_step, chunks):
                for sid, slayer, sli, sindex, is_input, paths in rows:
                    if is_input:
                        entry = reached.setdefault(sid, [sid, slayer, sindex, 0, True])
                        entry[3] += paths
                    else:
                        bucket = pending.setdefault(sli, {})
                        bucket[sid] = bucket.get(sid, 0) + paths
    return QueryResult(columns=columns, rows=[reached[i] for i in sorted(reached)])


def _no_neuron(driver, database, model, layer, index) -> str:
    models = [r[0] for r in _run_read(driver, "MATCH (m:Model) RETURN m.name ORDER BY m.name", {},
                                      database=database, timeout=None, label="models")[1]]
    if model not in models:
        return (f"no model {model!r} in Neo4j; loaded models: "
                + (", ".join(models) or "(none)"))
    return f"model {model!r} has no neuron {layer}:{index} (check the layer name and index)"


PROCEDURES = {"receptive_field": receptive_field}


def read_only_check(driver: neo4j.Driver, statement: str, params: dict[str, Any] | None = None,
                    *, database: str | None = None, label: str = "query") -> str:
    """``EXPLAIN`` the statement and refuse it unless the planner calls it read-only.

    ``summary.query_type`` is ``'r'`` (read only), ``'rw'``, ``'w'`` (write only) or ``'s'``
    (schema write). EXPLAIN plans without executing, so the check itself cannot write. It runs
    as an auto-commit READ transaction, because ``CALL { ... } IN TRANSACTIONS`` cannot even be
    explained inside a managed transaction.

    Returns
    -------
    str
        The query type, ``'r'``.
    """
    try:
        with _read_session(driver, database or _default_database()) as session:
            summary = session.run("EXPLAIN " + statement, params or {}).consume()
    except ClientError as exc:
        if _is_write_refusal(exc):
            raise WriteQueryRefused(_refusal(label, _one_line(exc))) from None
        raise QueryError(f"query {label!r} is not valid Cypher: {_one_line(exc)}") from None
    except Neo4jError as exc:
        raise QueryError(f"query {label!r} cannot be planned: {_one_line(exc)}") from None
    kind = summary.query_type
    if kind != "r":
        what = {"rw": "reads and writes", "w": "writes", "s": "changes the schema"}.get(
            kind, f"is of type {kind!r}")
        raise WriteQueryRefused(_refusal(label, f"the planner says it {what}"))
    return kind


def _refusal(label: str, why: str) -> str:
    return (f"query {label!r} refused: weightgraph runs queries read-only and {why}; nothing was "
            "run and the database is unchanged (write with `weightgraph load`, or in "
            "Neo4j Browser / cypher-shell)")


def _is_write_refusal(exc: Neo4jError) -> bool:
    code = exc.code or ""
    message = (exc.message or "").lower()
    return (code.endswith("AccessMode") or code.endswith("ForbiddenDueToTransactionType")
            or "in read access mode" in message or "read only" in message)


def _read_session(driver: neo4j.Driver, database: str):
    # Deprecation notices (e.g. for id()) would be logged on stderr for every query a user runs;
    # they are the server's business, not the user's.
    return driver.session(database=database, default_access_mode=neo4j.READ_ACCESS,
                          notifications_min_severity=neo4j.NotificationMinimumSeverity.OFF)


def _default_database() -> str:
    from ..config import Settings

    return Settings().neo4j_database


def _plain(value: Any) -> Any:
    """Driver values as plain Python: nodes and relationships become property dicts."""
    from neo4j.graph import Node, Path as GraphPath, Relationship

    if isinstance(value, Node):
        return dict(value)
    if isinstance(value, Relationship):
        return {**dict(value), "_type": value.type,
                "_start": dict(value.start_node) if value.start_node else None,
                "_end": dict(value.end_node) if value.end_node else None}
    if isinstance(value, GraphPath):
        return [dict(n) for n in value.nodes]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "iso_format"):  # neo4j.time types
        return value.iso_format()
    return value


def _one_line(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    lines = str(msg).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
