"""VGG16's ImageNet weights and class names for the demo: found in Keras's cache, else
downloaded there when the network allows (a quick connection probe first; ``WEIGHTGRAPH_OFFLINE=1``
never tries). Every lookup answers in one line, never with an exception.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ..errors import one_line

__all__ = ["keras_cache", "find_imagenet_weights", "top_classes", "VGG16_WEIGHTS_FILE",
           "VGG16_WEIGHTS_URL", "CLASS_INDEX_FILE", "PROBE_TIMEOUT", "OFFLINE_ENV"]

# Keras's own names for VGG16's ImageNet weights and the class index (keras.applications.vgg16
# and imagenet_utils): the same file names in the same cache folder, so a file Keras fetched
# once is found here, and one fetched here is Keras's.
VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
VGG16_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                     + VGG16_WEIGHTS_FILE)
VGG16_WEIGHTS_MD5 = "64373286793e3c8b2b4e3219cbf3544b"
CLASS_INDEX_FILE = "imagenet_class_index.json"
CLASS_INDEX_URL = ("https://storage.googleapis.com/download.tensorflow.org/data/"
                   + CLASS_INDEX_FILE)
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"
PROBE_TIMEOUT = 3.0  # seconds: offline, DNS fails at once; a dead route should not stall the demo
OFFLINE_ENV = "WEIGHTGRAPH_OFFLINE"  # set to 1: never try to download anything


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, else ``~/.keras/models``
    (``/tmp/.keras/models`` when the home folder is not writable), as Keras decides it;
    read at each call, so a changed ``KERAS_HOME`` counts."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "models"


def _reachable(url: str, timeout: float) -> str | None:
    """None when a TCP connection to ``url``'s host opens within ``timeout``; else why not."""
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        return f"{OFFLINE_ENV} is set"
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"{parts.hostname} cannot be reached: {one_line(exc)}"
    return None


def _fetch(file_name: str, url: str, md5: str, *, download: bool,
           timeout: float) -> tuple[Path | None, str]:
    """A file in Keras's cache, fetched there first when it is missing and the network
    allows; ``(path, how)`` or ``(None, why not)``, always quickly when offline."""
    path = keras_cache() / file_name
    if path.is_file():
        return path, f"cached at {path}"
    if not download:
        return None, f"no {file_name} in {path.parent}"
    why = _reachable(url, timeout)
    if why is not None:
        return None, f"no {file_name} in {path.parent}, and {why}"
    import keras

    try:
        got = keras.utils.get_file(file_name, url, cache_subdir="models",
                                   cache_dir=str(path.parent.parent), file_hash=md5)
    except Exception as exc:  # urllib's and Keras's errors: any failure means no file
        return None, f"no {file_name} in {path.parent}, and its download failed: {one_line(exc)}"
    return Path(got), f"downloaded to {got}"


def find_imagenet_weights(*, download: bool = True, url: str = VGG16_WEIGHTS_URL,
                          timeout: float = PROBE_TIMEOUT) -> tuple[Path | None, str]:
    """VGG16's ImageNet weights file in Keras's cache (:func:`keras_cache`), downloaded there
    first when missing and reachable (``WEIGHTGRAPH_OFFLINE=1``: never).

    Returns
    -------
    (Path, how) or (None, why not): one line either way, never an exception.
    """
    return _fetch(VGG16_WEIGHTS_FILE, url, VGG16_WEIGHTS_MD5, download=download,
                  timeout=timeout)


def top_classes(probabilities: np.ndarray, *, k: int = 5, download: bool = True,
                timeout: float = PROBE_TIMEOUT) -> list[tuple[int, str, float]]:
    """The ``k`` most probable ImageNet classes: ``(class number, name, probability)``.

    Names come from Keras's ``imagenet_class_index.json`` (what ``decode_predictions``
    reads), found in Keras's cache or downloaded there when reachable; without it the name is
    ``"class N"``. The order is ``decode_predictions``'s (``argsort``, highest first).
    """
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    top = p.argsort()[-k:][::-1]
    path, _ = _fetch(CLASS_INDEX_FILE, CLASS_INDEX_URL, CLASS_INDEX_MD5, download=download,
                     timeout=timeout)
    names = {}
    if path is not None:
        try:
            names = {int(key): str(v[1]) for key, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            names = {}
    return [(int(i), names.get(int(i), f"class {int(i)}"), float(p[i])) for i in top]
