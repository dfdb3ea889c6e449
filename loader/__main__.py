"""``python -m loader``: the ``weightgraph`` command without its console script."""

from .cli import main

main()
