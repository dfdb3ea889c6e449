"""``python -m loader.cli``: the ``weightgraph`` command without its console script."""

from . import main

main()
