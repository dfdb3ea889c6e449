"""One input for a trace, from a file: a ``.npy`` array or an image, and its preprocessing.

* ``.npy``: the exact array, of the model input's shape, with or without a batch axis of 1.
  No preprocessing unless asked for (``caffe``, ``tf``, ``torch``): ``auto`` means none, the
  array is taken to be what the model reads.
* An image (``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.gif``): read with Pillow (through
  ``keras.utils.load_img``), resized to the model's (H, W), as RGB (3 channels), grayscale (1)
  or RGBA (4), values 0..255. ``--preprocess auto`` applies the ``preprocess_input`` of the
  ``keras.applications`` family the model comes from (VGG16 and ResNet50: ``caffe``,
  MobileNetV2: ``tf``, ...) when the model was given by its application name, and nothing
  otherwise (a model file, or a family whose models preprocess inside, like EfficientNet).

Every failure is a one-line :class:`InputFileError`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..errors import WeightgraphError, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
PREPROCESS = ("auto", "none", "caffe", "tf", "torch")


class InputFileError(WeightgraphError):
    """An input (a file or an array) that cannot be read or does not fit the model."""


def fit_array(a, shape, what: str) -> np.ndarray:
    """``a`` as a float64 array of ``shape`` (a batch axis of 1 is dropped), or a one-line
    :class:`InputFileError` naming ``what`` (a file, an input layer)."""
    a = np.asarray(a)
    shape = tuple(int(s) for s in shape)
    if a.dtype.kind not in "biuf":
        raise InputFileError(f"{what}: not a numeric array (dtype {a.dtype})")
    if a.shape == (1,) + shape:
        a = a[0]
    if a.shape != shape:
        raise InputFileError(f"{what}: the model wants shape {shape} (or {(1,) + shape}), "
                             f"the array has {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputFileError(f"{what}: the array holds NaN or infinite values")
    return a


def application_family(model_name) -> str | None:
    """``"vgg16"`` -> ``"keras.src.applications.vgg16"`` (the module holding the family's
    ``preprocess_input``); None for anything that is not a ``keras.applications`` name."""
    if not isinstance(model_name, str) or Path(model_name).suffix in (".keras", ".h5", ".hdf5"):
        return None
    import keras

    from .model import _normalise, application_names

    names = application_names()
    key = _normalise(model_name)
    if key not in names:
        return None
    return getattr(keras.applications, names[key]).__module__


def preprocess(x: np.ndarray, mode: str, family: str | None = None) -> np.ndarray:
    """Apply ``mode`` (``none``, ``caffe``, ``tf``, ``torch``, or ``auto``: the family's own
    ``preprocess_input``, none without a family) to a (H, W, C) float array."""
    if mode not in PREPROCESS:
        raise InputFileError(f"--preprocess wants one of {', '.join(PREPROCESS)}, got {mode!r}")
    if mode == "none" or (mode == "auto" and family is None):
        return x
    x = np.array(x, dtype=np.float32)[None]
    if mode == "auto":
        fn = importlib.import_module(family).preprocess_input
        out = fn(x)
    else:
        from keras.applications import imagenet_utils

        if x.shape[-1] != 3:
            raise InputFileError(f"--preprocess {mode} wants 3 channels, the input has "
                                 f"{x.shape[-1]}")
        out = imagenet_utils.preprocess_input(x, mode=mode)
    return np.asarray(out, dtype=np.float64)[0]


def read_input(path, shape, *, mode: str = "auto", family: str | None = None) -> np.ndarray:
    """The array a trace reads from ``path``, for a model input of ``shape``.

    Parameters
    ----------
    path : ``.npy`` or an image file.
    shape : the model input's shape (no batch axis).
    mode : ``auto`` (default), ``none``, ``caffe``, ``tf`` or ``torch``.
    family : :func:`application_family` of the model, for ``auto``.

    Returns
    -------
    float64 array of ``shape``.
    """
    path = Path(path)
    shape = tuple(int(s) for s in shape)
    if mode not in PREPROCESS:
        raise InputFileError(f"--preprocess wants one of {', '.join(PREPROCESS)}, got {mode!r}")
    if not path.is_file():
        raise InputFileError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as exc:  # numpy raises ValueError, OSError, EOFError, ...
            raise InputFileError(f"{path} is not a readable .npy array ({one_line(exc)})") \
                from None
        return preprocess(fit_array(a, shape, str(path)), "none" if mode == "auto" else mode)
    if suffix not in IMAGE_SUFFIXES:
        raise InputFileError(f"{path}: want a .npy array or an image "
                             f"({', '.join(IMAGE_SUFFIXES)})")
    if len(shape) != 3 or shape[-1] not in (1, 3, 4):
        raise InputFileError(f"{path}: an image needs a model input (H, W, 1|3|4), this one "
                             f"is {shape}")
    from keras.utils import img_to_array, load_img

    color = {1: "grayscale", 3: "rgb", 4: "rgba"}[shape[-1]]
    try:
        img = load_img(path, color_mode=color, target_size=shape[:2], interpolation="bilinear")
        # Pillow decodes lazily: a file cut after its header fails here, not in load_img.
        a = img_to_array(img, dtype="float32").astype(np.float64)
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError, ...
        raise InputFileError(f"{path} is not a readable image ({one_line(exc)})") from None
    return preprocess(a, mode, family)
