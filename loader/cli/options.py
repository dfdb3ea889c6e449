"""Option parsing shared by the CLI modules (``cli`` and ``cli_analysis``)."""

from __future__ import annotations

import click


def parse_shape(ctx, param, value):
    """Click callback: ``32,32,3`` (or ``32x32x3``) -> (32, 32, 3)."""
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"want H,W,C (e.g. 32,32,3), got {value!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise click.BadParameter(f"want positive sizes, got {value!r}")
    return shape
