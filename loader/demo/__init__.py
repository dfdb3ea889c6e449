"""The end-to-end demo behind the README's first command (and the compose ``loader`` service):
a trained network deciding on a real input.

It picks the best network it can have without asking (:func:`choose_network`):

* ``imagenet``: VGG16 with its ImageNet weights, when they are in Keras's cache
  (``$KERAS_HOME/models`` or ``~/.keras/models``) or can be downloaded there (a quick
  connection probe first: offline, the fallback is immediate). It is shown scikit-image's
  bundled cat photograph (``skimage.data.chelsea()``, center-cropped to a square, resized to
  224x224, ``keras.applications.vgg16.preprocess_input``) and prints its top-5 classes. The
  whole VGG16 (15 billion edges) cannot go into Neo4j here: the demo loads the cone of the
  ``block2_conv1`` neuron that contributes most to the predicted class (its whole cone, down
  to the pixels: about 1.4 million edges).
* ``trained``: a small CNN (two convolutions with max pooling, two dense layers; 9,258
  parameters) trained here, deterministically, on scikit-learn's bundled handwritten digits
  (:func:`digits_model`), shown a held-out digit. It goes into Neo4j whole.
* ``none``: VGG16 with random weights at 32x32 (the cat photograph resized), the cone of its
  strongest ``block2_conv1`` neuron: how the tool works, on a network that knows nothing.

Then, whatever the network: plan, trace the input through the whole graph (values, pooling
choices, active neurons, each neuron's contribution to the predicted class), load into Neo4j,
verify, store the trace, named queries, GraphML (the loaded graph and the active subgraph, both
pulled back from Neo4j) and the analysis report with the contribution map over the input. For
the digits CNN also the held-out set (360 digits) aggregated (:func:`held_out_set`): the
pooling edges never chosen, the neurons never firing, and the effective graph, executed on
the 360 digits, checked to give Keras's 360 predictions.

>>> model, split = digits_model(seed=0)       # the trained digits CNN, also a test fixture
>>> split.accuracy                            # held-out accuracy
0.9777777777777777

Its parts: :mod:`.digits` (the digits CNN, a fixture too), :mod:`.imagenet` (VGG16's ImageNet
weights and class names: Keras's cache, else a download when reachable), :mod:`.steps` (one
function per step) and :mod:`loader.images` (the bundled photograph and its preprocessing,
beside the input readers); :func:`run_demo` is the pipeline.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from ..config import Settings
from ..errors import WeightgraphError, one_line
from ..images import caffe_picture, imagenet_input, photograph, square_resize
from ..inputs import read_input
from . import steps
from .digits import DigitsSplit, digits_model, trained_digits
# Re-exported: loader.demo stays the one place to reach the demo's names. choose_network reads
# VGG16_WEIGHTS_URL from here, so a test (or a mirror) can redirect it on this module.
from .imagenet import (CLASS_INDEX_FILE, OFFLINE_ENV, PROBE_TIMEOUT,  # noqa: F401
                       VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL, find_imagenet_weights, keras_cache,
                       top_classes)
from .steps import HeldOut, held_out_set  # noqa: F401

__all__ = ["digits_model", "trained_digits", "DigitsSplit", "choose_network", "Network",
           "find_imagenet_weights", "photograph", "imagenet_input", "top_classes", "run_demo",
           "held_out_set", "WEIGHT_CHOICES"]

WEIGHT_CHOICES = ("auto", "imagenet", "trained", "none")

# The layer whose strongest neuron's whole cone (down to the pixels) the demo loads for VGG16:
# about 1.4 million edges inside the image (block2_pool's is 6.8 million: four minutes of
# online load on a busy two-core machine, measured; block2_conv1's about one).
VGG_CONE_LAYER = "block2_conv1"


@dataclass
class Network:
    """What the demo runs.

    Attributes
    ----------
    kind : ``imagenet``, ``trained`` or ``none``.
    model : the Keras model.
    name : its model name in Neo4j.
    x : the input, as the model reads it (float64, no batch axis).
    shown : the input as a picture (uint8), for the report.
    target : the trace's target, ``"LAYER:INDEX"``: the predicted class's output neuron.
    cone_layer : the layer whose strongest neuron's cone is loaded; None: the whole model.
    lines : what the demo says about the network and its prediction.
    """

    kind: str
    model: object
    name: str
    x: np.ndarray
    shown: np.ndarray
    target: str
    cone_layer: str | None
    lines: list = field(default_factory=list)


def choose_network(weights: str = "auto", *, image: str | os.PathLike | None = None,
                   download: bool = True, echo=click.echo) -> Network:
    """The network the demo runs (see the module's docstring), and its input.

    Parameters
    ----------
    weights : ``auto`` (ImageNet VGG16 if it can be had, else the digits CNN, saying why in
        one line), ``imagenet`` (an error when the weights cannot be had), ``trained``,
        ``none``.
    image : an image or ``.npy`` file to show the network instead of the bundled one (read as
        ``weightgraph trace`` reads inputs; for the digits CNN an image becomes 8x8 gray,
        0..255 scaled to the digits' 0..16). Read before anything is trained or loaded: a
        file that cannot be read, or does not fit the model, is a one-line error.
    download : try to download the ImageNet weights when they are not cached.
    """
    if weights not in WEIGHT_CHOICES:
        raise WeightgraphError(f"--weights wants one of {', '.join(WEIGHT_CHOICES)}, "
                               f"got {weights!r}")
    path = None
    if weights in ("auto", "imagenet"):
        path, how = find_imagenet_weights(download=download, url=VGG16_WEIGHTS_URL)
        if path is None and weights == "imagenet":
            raise WeightgraphError(f"--weights imagenet: {how}")
        if path is None:
            echo(f"no ImageNet weights for VGG16 ({how}): using a small CNN trained here on "
                 "scikit-learn's digits instead")
        else:
            echo(f"VGG16 with ImageNet weights ({how})")
    if path is not None:
        return _vgg16(path, 224, image, "vgg16_imagenet", "imagenet", download)
    if weights == "none":
        echo("VGG16 with random weights at 32x32: how the tool works, on a network that knows "
             "nothing")
        return _vgg16(None, 32, image, "vgg16_random", "none", False)
    return _digits(image, echo)


def _vgg16(weights_path: Path | None, size: int, image, name: str, kind: str,
           download: bool) -> Network:
    import keras

    if image is not None:
        x = read_input(image, (size, size, 3), mode="caffe")
        shown = caffe_picture(x)
        what = Path(image).name
    else:
        shown = square_resize(photograph("chelsea"), size)
        x = imagenet_input(shown)
        what = "scikit-image's cat photograph (chelsea)"
    model = keras.applications.VGG16(weights=None, input_shape=(size, size, 3))
    if weights_path is not None:
        try:
            model.load_weights(str(weights_path))
        except Exception as exc:  # h5py / Keras: a truncated or foreign file
            raise WeightgraphError(f"{weights_path} does not hold VGG16's weights "
                                   f"({one_line(exc)})") from None
    probabilities = model.predict(x[None].astype("float32"), verbose=0)[0]
    top = top_classes(probabilities, download=download)
    lines = [f"input: {what} at {size}x{size}, preprocess_input (caffe)", "top-5 classes:"]
    lines += [f"  {p:7.2%}  {label} ({i})" for i, label, p in top]
    return Network(kind, model, name, x, shown, f"predictions:{top[0][0]}", VGG_CONE_LAYER,
                   lines)


def _digits(image, echo) -> Network:
    x = None
    if image is not None:  # read first: a bad file fails before any training
        x = read_input(image, (8, 8, 1), mode="none")
        if Path(image).suffix.lower() != ".npy":
            x = x * (16.0 / 255.0)
    echo("training the digits CNN (scikit-learn's 1,797 8x8 digits, seed 0) ...")
    model, split = trained_digits(0)
    lines = [f"trained in {split.seconds:.1f} s: {split.accuracy:.1%} of the "
             f"{len(split.y_test)} held-out digits right"]
    if x is None:
        x = split.x_test[0].astype(np.float64)
        what = f"held-out digit #0 (label {int(split.y_test[0])})"
    else:
        what = Path(image).name
    logits = model.predict(x[None].astype("float32"), verbose=0)[0]
    predicted = int(logits.argmax())
    lines.append(f"input: {what}; predicted {predicted} (logit {logits[predicted]:.3f})")
    shown = np.clip(x * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return Network("trained", model, "digits_cnn", x, shown, f"logits:{predicted}", None, lines)


# ---------------------------------------------------------------------------- the pipeline
def run_demo(out_dir: str | Path = "out", *, weights: str = "auto", image=None,
             progress: bool = True, download: bool = True, name: str | None = None,
             echo=click.echo) -> dict:
    """Run the demo; returns the paths and figures it printed.

    ``name`` replaces the network's model name in Neo4j (``digits_cnn``, ``vgg16_imagenet``,
    ``vgg16_random``); the model of that name is replaced, and so is its trace.

    Steps: choose the network (:func:`choose_network`), plan, trace the input through the
    whole graph, load (the whole model, or the cone of the neuron of ``cone_layer`` that
    contributes most to the prediction), verify, store the trace in Neo4j, the held-out set
    (digits CNN), named queries, GraphML (loaded graph and active subgraph, from Neo4j),
    report: one function each in :mod:`loader.demo.steps`.
    """
    from ..neo4j.db import Database

    started = time.perf_counter()
    out = Path(out_dir)
    settings = Settings()
    with Database.connect(settings) as db:  # connect first: no server, no training
        net = choose_network(weights, image=image, download=download, echo=echo)
        net.name = name or net.name
        for line in net.lines:
            echo("    " + line)
        shown_path = _save_picture(net, out)
        whole = steps.plan(net, echo)
        t = steps.trace_input(whole, net, shown_path, echo)
        g, neuron, summary = steps.load(db, whole, net, t, progress, echo)
        trace_name, stored = steps.store_trace(db, net, shown_path, neuron, echo)
        held_out = None
        if net.kind == "trained":
            held_out = steps.held_out(db, whole, net, out, progress, echo)
        else:
            steps.skip_held_out(echo)
        steps.named_queries(db, g, net, neuron, trace_name, echo)
        graphml, active = steps.graphml(db, net, out, trace_name, progress, echo)
        report = steps.report(db, net, out, neuron, t, echo)
        http = (settings.neo4j_uri.replace("bolt://", "http://").rsplit(":", 1)[0] + ":"
                + os.environ.get("NEO4J_HTTP_PORT", "7474"))
        echo("")
        echo(f"Neo4j Browser: {http}/browser/  (user {settings.neo4j_user}; "
             f"`weightgraph browser --model {net.name}` opens it with a guide to every named "
             "query, styled)")
        echo(f"GraphML: {graphml}   report: {report}   "
             + (f"held-out set: {held_out.report}   " if held_out is not None else "")
             + f"({time.perf_counter() - started:.0f} s)")
        return {"network": net, "graphml": graphml, "active": active, "report": report,
                "summary": summary, "trace": t, "stored": stored, "held_out": held_out}


def _save_picture(net: Network, out: Path) -> Path:
    """The input as the network sees it, ``OUT/<name>_input.png`` (the stored trace and the
    report point at it)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{net.name}_input.png"
    Image.fromarray(net.shown[..., 0] if net.shown.shape[-1] == 1 else net.shown).save(path)
    return path
