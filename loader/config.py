"""Connection and batching settings, from the environment or a ``.env`` file.

Examples
--------
>>> settings = Settings()                      # NEO4J_URI, NEO4J_USER, NEO4J_PASSWORD, ...
>>> Settings(neo4j_password="s3cret-pass").neo4j_uri
'bolt://127.0.0.1:7687'
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", case_sensitive=False)

    neo4j_uri: str = "bolt://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    neo4j_database: str = "neo4j"
    # Neo4j's HTTP port, where Neo4j Browser is (`weightgraph browser` prints its URL on the
    # host of NEO4J_URI); the local server listens there too.
    neo4j_http_port: int = 7474
    # Online load: relationships per UNWIND transaction and parallel writers (see loader.load
    # and bench/bench_load.py for the figures behind these defaults).
    weightgraph_batch_size: int = 30_000
    weightgraph_workers: int = 4
