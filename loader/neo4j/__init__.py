"""The one door to Neo4j. Every statement goes through :class:`loader.neo4j.db.Database`
(driver, database choice, transaction kind); nothing outside this package opens a session.

Modules: ``db`` (connection, Database), ``schema``, ``models`` (Model node, checksums,
verify, delete), ``load`` (online and bulk), ``pull`` (Neo4j -> NetworkX / GraphML),
``cypher`` (query files, read-only execution), ``queries`` (named queries),
``receptive_field``, ``traces`` (traces of loaded models, stored per neuron), ``gds`` (Graph
Data Science: projections, algorithms), ``server`` (local or compose server control).
"""
