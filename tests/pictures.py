"""What a test can check of a picture the product draws: a PNG of a real size that shows its
data (read back with Pillow, not judged by the file's byte count)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def assert_picture(path, *, min_size=(300, 200), min_colour=0.01) -> tuple[int, int, float]:
    """``path`` is a PNG of at least ``min_size`` (width, height) pixels, not of one colour,
    and at least ``min_colour`` of its pixels are coloured (their red, green and blue differ by
    more than 60 of 255). The figures draw their background, axes and text in white, black
    and grey and their data in colour (bars, boxes, colour maps), so a figure whose plot was
    left out has no coloured pixel (measured: 0.0% for the PageRank figure's axes alone,
    12% with its boxes).

    Returns (width, height, coloured fraction)."""
    with Image.open(path) as im:
        assert im.format == "PNG", (path, im.format)
        width, height = im.size
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(np.int16)
    assert width >= min_size[0] and height >= min_size[1], (path, width, height)
    assert (pixels != pixels[0]).any(), f"{path}: a blank picture of one colour"
    coloured = float(((pixels.max(axis=1) - pixels.min(axis=1)) > 60).mean())
    assert coloured >= min_colour, f"{path}: only {coloured:.2%} of the pixels are coloured"
    return width, height, coloured
