"""One input for a trace, from a file: a ``.npy`` array or an image, and its preprocessing.

Format-neutral (no framework is imported here), so a trace of an ONNX model reads its input
without TensorFlow:

* ``.npy``: the exact array, of the model input's shape, with or without a batch axis of 1.
  No preprocessing unless asked for (``caffe``, ``tf``, ``torch``): ``auto`` means none, the
  array is taken to be what the model reads.
* An image (``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.gif``): read with Pillow, resized
  (bilinear) to the model's (H, W), as RGB (3 channels), grayscale (1) or RGBA (4), values
  0..255 — what ``keras.utils.load_img`` gives. A channels-first input ``(C, H, W)`` (ONNX's
  NCHW) gets the same image with its channels moved first. ``--preprocess auto`` applies the
  ``preprocess_input`` of the ``keras.applications`` family the model comes from (VGG16 and
  ResNet50: ``caffe``, MobileNetV2: ``tf``, ...) when the model was given by its application
  name (then Keras is imported to run it), and nothing otherwise (a model file, or a family
  whose models preprocess inside, like EfficientNet). ``caffe``, ``tf`` and ``torch`` are the
  formulas of ``keras.applications.imagenet_utils``, computed here in float32 as Keras does
  (a test compares them bit for bit).

Every failure is a one-line :class:`InputFileError`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np

from .errors import WeightgraphError, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
PREPROCESS = ("auto", "none", "caffe", "tf", "torch")
_COLOR = {1: "L", 3: "RGB", 4: "RGBA"}

# keras.applications names (lower case, no separators) -> the family module holding their
# preprocess_input. A table, so that resolving a name needs no TensorFlow; a test checks it
# against keras.applications itself.
_FAMILIES = (
    (r"convnext(tiny|small|base|large|xlarge)", "convnext"),
    (r"densenet(121|169|201)", "densenet"),
    (r"efficientnetb[0-7]", "efficientnet"),
    (r"efficientnetv2(b[0-3]|s|m|l)", "efficientnet_v2"),
    (r"inceptionresnetv2", "inception_resnet_v2"),
    (r"inceptionv3", "inception_v3"),
    (r"mobilenet", "mobilenet"),
    (r"mobilenetv2", "mobilenet_v2"),
    (r"mobilenetv3(small|large)", "mobilenet_v3"),
    (r"nasnet(mobile|large)", "nasnet"),
    (r"resnet(50|101|152)", "resnet"),
    (r"resnet(50|101|152)v2", "resnet_v2"),
    (r"vgg16", "vgg16"),
    (r"vgg19", "vgg19"),
    (r"xception", "xception"),
)


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
    if not isinstance(model_name, str) or Path(model_name).suffix:
        return None
    key = model_name.lower().replace("_", "").replace("-", "")
    for pattern, family in _FAMILIES:
        if re.fullmatch(pattern, key):
            return f"keras.src.applications.{family}"
    return None


def preprocess(x: np.ndarray, mode: str, family: str | None = None) -> np.ndarray:
    """Apply ``mode`` (``none``, ``caffe``, ``tf``, ``torch``, or ``auto``: the family's own
    ``preprocess_input``, none without a family) to a (H, W, C) float array."""
    if mode not in PREPROCESS:
        raise InputFileError(f"--preprocess wants one of {', '.join(PREPROCESS)}, got {mode!r}")
    if mode == "none" or (mode == "auto" and family is None):
        return x
    x = np.array(x, dtype=np.float32)
    if mode == "auto":
        out = importlib.import_module(family).preprocess_input(x[None])[0]
        return np.asarray(out, dtype=np.float64)
    if x.shape[-1] != 3:
        raise InputFileError(f"--preprocess {mode} wants 3 channels, the input has "
                             f"{x.shape[-1]}")
    # keras.applications.imagenet_utils, channels_last, in float32 and in Keras's order.
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x.astype(np.float64)
    if mode == "torch":
        x /= 255.0
        mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    else:  # caffe: RGB -> BGR, zero-centred, not scaled
        x = x[..., ::-1]
        mean, std = [103.939, 116.779, 123.68], None
    for c in range(3):
        x[..., c] -= mean[c]
        if std is not None:
            x[..., c] /= std[c]
    return x.astype(np.float64)


def image_layout(shape) -> tuple[tuple[int, int], int, bool] | None:
    """((H, W), channels, channels_first) of an image-shaped input, or None."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        return None
    if shape[-1] in _COLOR:
        return shape[:2], shape[-1], False
    if shape[0] in _COLOR:
        return shape[1:], shape[0], True
    return None


def read_image(path, size: tuple[int, int], channels: int) -> np.ndarray:
    """An image file as a float64 (H, W, channels) array of 0..255 values, resized
    (bilinear) to ``size`` (what ``keras.utils.load_img`` + ``img_to_array`` give)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            mode = _COLOR[channels]
            if not (mode == "L" and img.mode in ("L", "I;16", "I")) and img.mode != mode:
                img = img.convert(mode)
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(img, dtype=np.float32)
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError, ...
        raise InputFileError(f"{path} is not a readable image ({one_line(exc)})") from None
    if a.ndim == 2:
        a = a[:, :, None]
    return a.astype(np.float64)


def read_input(path, shape, *, mode: str = "auto", family: str | None = None) -> np.ndarray:
    """The array a trace reads from ``path``, for a model input of ``shape``.

    Parameters
    ----------
    path : ``.npy`` or an image file.
    shape : the model input's shape (no batch axis): ``(H, W, C)``, or ``(C, H, W)`` for a
        channels-first (ONNX) model.
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
        a = fit_array(a, shape, str(path))
        if mode in ("auto", "none"):
            return a
        layout = image_layout(shape)
        if layout is not None and layout[2]:  # preprocess in (H, W, C), then back
            return np.moveaxis(preprocess(np.moveaxis(a, 0, -1), mode), -1, 0)
        return preprocess(a, mode)
    if suffix not in IMAGE_SUFFIXES:
        raise InputFileError(f"{path}: want a .npy array or an image "
                             f"({', '.join(IMAGE_SUFFIXES)})")
    layout = image_layout(shape)
    if layout is None:
        raise InputFileError(f"{path}: an image needs a model input (H, W, 1|3|4) or "
                             f"(1|3|4, H, W), this one is {shape}")
    size, channels, first = layout
    a = preprocess(read_image(path, size, channels), mode, family)
    return np.moveaxis(a, -1, 0) if first else a
