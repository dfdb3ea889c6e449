"""Query files and read-only execution: the text side of the named queries and the checks
that keep them read-only.

A query file starts with ``//`` header lines, then holds one Cypher statement::

    // name: top_inputs
    // description: The $k strongest incoming connections of a neuron, by |weight|.
    //   (an indented comment line continues the previous field)
    // params: $model (string), $layer (string), $index (int), $k (int, default 10)
    // returns: id, layer, index, weight
    MATCH (n:Neuron {model: $model, layer: $layer, index: $index})<-[w:W]-(s:Neuron) ...

Parameters are always sent separately from the text (never formatted into it), so a value that
holds Cypher is only data. A statement runs read-only twice over: it is first ``EXPLAIN``-ed and
refused unless the planner calls it read-only (``summary.query_type == 'r'``), then it runs in
a READ-mode managed transaction (``session.execute_read``), where the server rejects and rolls
back any write that got past the first check.

The queries ship inside the package (``loader/named_queries`` in a wheel, ``queries/`` in a
checkout) and are read through :mod:`importlib.resources`, so an installed weightgraph finds
them wherever it runs.
"""

from __future__ import annotations

import json
import os
import re
from importlib.resources import abc as resources_abc, files
from pathlib import Path
from typing import Any

import neo4j
from neo4j.exceptions import ClientError, Neo4jError
from pydantic import BaseModel

from ..errors import WeightgraphError, one_line
from .db import Database

# A checkout (editable install) reads the repository's queries/ itself, so an edit there shows
# at once; WEIGHTGRAPH_QUERIES_DIR points elsewhere.
_CHECKOUT_DIR = Path(__file__).resolve().parents[2] / "queries"
# The procedures a header may name (loader.neo4j.queries.PROCEDURES maps them to functions).
PROCEDURE_NAMES = ("receptive_field",)
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
    # A Python function (loader.neo4j.queries.PROCEDURES) that computes the same result as the
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
def queries_dir() -> resources_abc.Traversable:
    """Where named queries live: ``$WEIGHTGRAPH_QUERIES_DIR``, the repository's ``queries/``
    (a checkout), or the copy packaged as ``loader/named_queries`` (an installed wheel).

    The result is a :class:`~importlib.resources.abc.Traversable` (a ``Path`` on a file system):
    read it with ``iterdir()``, ``/`` and ``read_text()``, never through ``str()``.
    """
    if os.environ.get("WEIGHTGRAPH_QUERIES_DIR"):
        return Path(os.environ["WEIGHTGRAPH_QUERIES_DIR"])
    if _CHECKOUT_DIR.is_dir():
        return _CHECKOUT_DIR
    return files("loader") / "named_queries"


def list_queries(directory: str | os.PathLike | resources_abc.Traversable | None = None
                 ) -> list[NamedQuery]:
    """Every ``*.cypher`` file of the queries directory, parsed, sorted by name.

    Examples
    --------
    >>> [q.name for q in list_queries()][:3]
    ['dead_relus', 'degree_distribution', 'layer_weight_stats']
    """
    if directory is None:
        folder = queries_dir()
    elif isinstance(directory, (str, os.PathLike)):
        folder = Path(directory)
    else:
        folder = directory
    if not folder.is_dir():
        raise QueryNotFound(f"no queries directory at {folder} (set WEIGHTGRAPH_QUERIES_DIR)")
    found = (parse_query(item.read_text(encoding="utf-8"), path=_as_path(item),
                         name=item.name.removesuffix(".cypher"))
             for item in folder.iterdir() if item.name.endswith(".cypher") and item.is_file())
    return sorted(found, key=lambda q: q.name)


def _as_path(item: resources_abc.Traversable) -> Path | None:
    """A file-system path for a Traversable that is one (always, outside zip imports)."""
    return item if isinstance(item, Path) else None


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
    if procedure is not None and procedure not in PROCEDURE_NAMES:
        raise QueryError(f"{path or 'query'}: unknown procedure {procedure!r}; known: "
                         + ", ".join(PROCEDURE_NAMES))
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


def run_read(db: Database, statement: str, params: dict, *, timeout, label: str):
    """Run a checked statement in a READ transaction; returns (columns, raw records)."""

    @neo4j.unit_of_work(timeout=timeout)
    def work(tx):
        result = tx.run(statement, params)
        return list(result.keys()), [record.values() for record in result]

    try:
        with db.session(read=True) as session:
            return session.execute_read(work)
    except ClientError as exc:
        if _is_write_refusal(exc):
            raise WriteQueryRefused(_refusal(label, "the server refused a write: "
                                                    + one_line(exc))) from None
        raise
    except Neo4jError as exc:
        raise QueryError(f"query {label!r} failed: {one_line(exc)}") from None


def read_only_check(db: Database, statement: str, params: dict[str, Any] | None = None,
                    *, label: str = "query") -> str:
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
        summary = db.explain(statement, params)
    except ClientError as exc:
        if _is_write_refusal(exc):
            raise WriteQueryRefused(_refusal(label, one_line(exc))) from None
        raise QueryError(f"query {label!r} is not valid Cypher: {one_line(exc)}") from None
    except Neo4jError as exc:
        raise QueryError(f"query {label!r} cannot be planned: {one_line(exc)}") from None
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


def plain(value: Any) -> Any:
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
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if hasattr(value, "iso_format"):  # neo4j.time types
        return value.iso_format()
    return value
