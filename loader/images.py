"""Pictures without TensorFlow, beside the input readers of :mod:`loader.inputs`: scikit-image's
bundled photographs, their centered square resized, and the ImageNet (``caffe``) preprocessing
of a picture and its inverse, for showing an input again.

>>> x = imagenet_input(square_resize(photograph("chelsea"), 224))   # what VGG16 reads
>>> caffe_picture(x).shape
(224, 224, 3)
"""

from __future__ import annotations

import numpy as np

from .inputs import InputFileError, preprocess

__all__ = ["photograph", "square_resize", "imagenet_input", "caffe_picture"]

# The ImageNet channel means that ``caffe`` preprocessing subtracts, in RGB order.
_CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939])


def photograph(name: str = "chelsea") -> np.ndarray:
    """One of scikit-image's bundled photographs (``chelsea``, ``coffee``, ``astronaut``,
    ``rocket``: files inside the wheel, nothing fetched), uint8 (H, W, 3)."""
    import skimage.data

    if name not in ("chelsea", "coffee", "astronaut", "rocket"):
        raise InputFileError(f"no bundled photograph {name!r}: chelsea, coffee, astronaut, rocket")
    return np.asarray(getattr(skimage.data, name)())


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The centered square of ``image`` (uint8 (H, W, 3)) resized to (size, size, 3), bilinear
    (Pillow, as ``keras.utils.load_img`` resizes)."""
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    return np.asarray(crop.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def imagenet_input(image: np.ndarray) -> np.ndarray:
    """What VGG16 reads for an RGB image already at its input size: ``preprocess_input``
    (``caffe``: RGB -> BGR, ImageNet channel means subtracted), float64; computed by
    :func:`loader.inputs.preprocess`, bit for bit as Keras computes it."""
    return preprocess(image, "caffe")


def caffe_picture(x: np.ndarray) -> np.ndarray:
    """The RGB picture (uint8) of a ``caffe``-preprocessed input: BGR -> RGB, the means added
    back, clipped to 0..255."""
    return np.clip(x[..., ::-1] + _CAFFE_MEAN_RGB, 0, 255).astype(np.uint8)
