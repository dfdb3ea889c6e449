""".env and the Neo4j password: where the local server and the scripts read their settings.

The password comes from ``NEO4J_PASSWORD`` in the environment, else from the project's
``.env`` (``$WEIGHTGRAPH_ENV_FILE``, else ``./.env``), and is generated there (mode 600) when
neither has one.

Examples
--------
>>> password, generated = ensure_password(".env")
>>> env_value("NEO4J_HEAP_SIZE", ".env", "4g")
'4g'
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dotenv import dotenv_values, set_key

from ..errors import ServerError, one_line

__all__ = ["USER", "MIN_PASSWORD_LENGTH", "default_env_file", "read_env_file", "env_value",
           "password_source", "ensure_password"]

USER = "neo4j"
#: Neo4j's dbms.security.auth_minimum_password_length default: a shorter initial password
#: makes neo4j-admin fail with a stack trace, so it is refused here first, in one line.
MIN_PASSWORD_LENGTH = 8
_ENV_FILE_HEADER = "# Local secrets for weightgraph (gitignored). Written by weightgraph server.\n"


def default_env_file() -> Path:
    """The project's ``.env``: ``$WEIGHTGRAPH_ENV_FILE``, else ``.env`` in the working directory
    (where :class:`loader.config.Settings` reads it)."""
    return Path(os.environ.get("WEIGHTGRAPH_ENV_FILE") or ".env")


def read_env_file(env_file: str | os.PathLike) -> dict[str, str]:
    """The non-empty values of a dotenv file (none when it does not exist).

    Parameters
    ----------
    env_file : path-like
        A dotenv file: ``KEY=value`` lines, optional ``export``, quotes and comments.

    Returns
    -------
    dict of str to str
        Empty values (``NEO4J_PASSWORD=``, as in ``.env.example``) are left out: they mean
        "not set", as in the script.
    """
    if not Path(env_file).is_file():
        return {}
    return {k: v for k, v in dotenv_values(env_file).items() if v}


def env_value(name: str, env_file: str | os.PathLike, default: str | None = None) -> str | None:
    """``name`` from the environment, else from ``env_file``, else ``default``.

    The precedence of :class:`loader.config.Settings`, for the settings it does not model
    (``NEO4J_HEAP_SIZE``, ``NEO4J_PAGECACHE_SIZE``). An empty value counts as unset.

    Examples
    --------
    >>> env_value("NEO4J_HEAP_SIZE", ".env", "4g")   # doctest: +SKIP
    '4g'
    """
    return os.environ.get(name) or read_env_file(env_file).get(name) or default


def password_source(env_file: str | os.PathLike) -> str:
    """Where :func:`ensure_password` takes the password from, for messages."""
    if os.environ.get("NEO4J_PASSWORD"):
        return "NEO4J_PASSWORD (environment)"
    return f"NEO4J_PASSWORD in {env_file}"


def ensure_password(env_file: str | os.PathLike) -> tuple[str, bool]:
    """The Neo4j password, generated into ``env_file`` when there is none yet.

    ``NEO4J_PASSWORD`` from the environment wins, then ``NEO4J_PASSWORD`` in ``env_file``.
    When neither is set, a random one (``secrets.token_hex(12)``) is written to ``env_file``
    together with ``NEO4J_USER=neo4j`` (unless a user is already there); other lines are kept,
    an empty ``NEO4J_PASSWORD=`` line is filled in place, and the file is made mode 600
    because it now holds a secret.

    Parameters
    ----------
    env_file : path-like
        The project's ``.env`` (created when missing).

    Returns
    -------
    password : str
    generated : bool
        True when the password was generated and written just now.

    Raises
    ------
    ServerError
        The password is shorter than Neo4j accepts, or ``env_file`` cannot be written.
    """
    password = os.environ.get("NEO4J_PASSWORD") or read_env_file(env_file).get("NEO4J_PASSWORD")
    generated = not password
    if generated:
        password = secrets.token_hex(12)
        _write_credentials(Path(env_file), password)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ServerError(
            f"the password from {password_source(env_file)} has {len(password)} characters; "
            f"Neo4j requires at least {MIN_PASSWORD_LENGTH} "
            "(dbms.security.auth_minimum_password_length)")
    return password, generated


def _write_credentials(env_file: Path, password: str) -> None:
    try:
        if not env_file.exists():
            # Created 600 from the start: the password must never be readable by others.
            fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_ENV_FILE_HEADER)
        # Unquoted values: the file is also sourced by shells (scripts/test, set -a; . ./.env),
        # and a hex password and 'neo4j' need no quoting.
        set_key(env_file, "NEO4J_PASSWORD", password, quote_mode="never")
        if not read_env_file(env_file).get("NEO4J_USER"):
            set_key(env_file, "NEO4J_USER", USER, quote_mode="never")
        os.chmod(env_file, 0o600)
    except OSError as exc:
        raise ServerError(f"cannot write the generated password to {env_file}: "
                          f"{exc.strerror or one_line(exc)}") from None
