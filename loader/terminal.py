"""What a person reads on a terminal: progress bars, sizes and durations.

Progress bars draw only on a terminal: written to a log or a pipe, tqdm's carriage-return
frames would fill it with half-lines, so there they are off unless forced.
"""

from __future__ import annotations

import sys


def progress(total: int | None, desc: str, *, enabled: bool = True, unit: str = "it",
             file=None):
    """A tqdm bar on stderr, drawn only when ``enabled`` and stderr is a terminal.

    Examples
    --------
    >>> with progress(1000, "edges", unit="edge") as bar:
    ...     bar.update(1000)
    """
    from tqdm import tqdm

    stream = file or sys.stderr
    on_terminal = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=stream,
                disable=not (enabled and on_terminal), dynamic_ncols=True, smoothing=0.05)


def human(n: float, unit: str = "B") -> str:
    """``1.23 GB``-style size with SI prefixes: ``human(2.5e9) == '2.5 GB'``."""
    for prefix in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.3g} {prefix}{unit}" if prefix else f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.3g} E{unit}"


def seconds(s: float) -> str:
    """A duration as seconds, minutes or hours, whichever reads best."""
    if s < 90:
        return f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
