"""Named, parameterised Cypher queries from ``queries/*.cypher``, run read-only.

The files, their headers and the read-only checks are :mod:`loader.neo4j.cypher`; this module
runs a named query, or the Python procedure its header names where one statement cannot do
the job well (``receptive_field``: an unbounded layer-by-layer loop).

Examples
--------
>>> from loader.neo4j.db import Database
>>> with Database.connect() as db:
...     result = run_query(db, "top_inputs", {"model": "vgg16", "layer": "fc2", "index": 7})
>>> result.columns
['id', 'layer', 'index', 'weight']
"""

from __future__ import annotations

import os
from typing import Any

import neo4j
from neo4j.exceptions import ClientError

from ..errors import one_line
from .cypher import (MissingParameters, NamedQuery, QueryError, QueryNotFound, QueryParam,
                     QueryResult, WriteQueryRefused, bind_params, list_queries, load_query,
                     parse_params, parse_query, parse_value, plain, queries_dir,
                     read_only_check, run_read, statement_of)
from .db import Database, using
from .models import require_complete
from .receptive_field import receptive_field

__all__ = ["QueryParam", "NamedQuery", "QueryResult", "QueryError", "QueryNotFound",
           "WriteQueryRefused", "MissingParameters", "queries_dir", "list_queries",
           "load_query", "parse_query", "parse_params", "parse_value", "run_query",
           "read_only_check", "receptive_field", "PROCEDURES"]

# Python functions that compute what a query's statement computes, named by its header's
# ``procedure`` field; same parameters, same columns.
PROCEDURES = {"receptive_field": receptive_field}


def run_query(driver: Database | neo4j.Driver | None, name_or_file: str | os.PathLike | NamedQuery,
              params: dict[str, Any] | None = None, *, database: str | None = None,
              timeout: float | None = None, procedure: bool = True,
              allow_incomplete: bool = False) -> QueryResult:
    """Run a named query (or a ``.cypher`` file) read-only and return its rows.

    Parameters
    ----------
    driver : Database or neo4j.Driver, optional
        Where to run (see :func:`loader.neo4j.db.using`); None connects from the settings.
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
    allow_incomplete : bool
        Where the query takes ``$model``, it runs only on a model whose state is ``complete``
        (:func:`loader.neo4j.models.require_complete`) unless this is True.

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
    loader.neo4j.models.ModelNotFound, loader.neo4j.models.ModelIncomplete
        ``$model`` names no model, or one that is not ``complete``.

    Examples
    --------
    >>> run_query(driver, "neuron", {"model": "small", "layer": "conv1", "index": 0}).records()
    """
    query = name_or_file if isinstance(name_or_file, NamedQuery) else load_query(name_or_file)
    bound = bind_params(query, params)
    with using(driver, database) as db:
        if isinstance(bound.get("model"), str):
            require_complete(db, bound["model"], allow_incomplete)
        if procedure and query.procedure:
            return PROCEDURES[query.procedure](db, **bound, timeout=timeout)
        statement = statement_of(query.text)
        read_only_check(db, statement, bound, label=query.name)
        try:
            columns, records = run_read(db, statement, bound, timeout=timeout, label=query.name)
        except ClientError as exc:
            raise QueryError(f"query {query.name!r} failed: {one_line(exc)}") from None
    return QueryResult(columns=columns, rows=[[plain(v) for v in r] for r in records])
