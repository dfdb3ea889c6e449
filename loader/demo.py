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
"""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import click
import numpy as np

from .config import Settings
from .errors import WeightgraphError, one_line
from .inputs import InputFileError, read_input

__all__ = ["digits_model", "trained_digits", "DigitsSplit", "choose_network", "Network",
           "find_imagenet_weights", "photograph", "imagenet_input", "top_classes", "run_demo",
           "held_out_set", "WEIGHT_CHOICES"]

WEIGHT_CHOICES = ("auto", "imagenet", "trained", "none")

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

# The layer whose strongest neuron's whole cone (down to the pixels) the demo loads for VGG16:
# about 1.4 million edges inside the image (block2_pool's is 6.8 million: four minutes of
# online load on a busy two-core machine, measured; block2_conv1's about one).
VGG_CONE_LAYER = "block2_conv1"


# ---------------------------------------------------------------------------- the digits CNN
@dataclass
class DigitsSplit:
    """The digits the CNN was trained and tested on: ``x`` (N, 8, 8, 1) float32 in 0..16 as
    scikit-learn gives them, ``y`` int64 labels; ``accuracy`` on the held-out split;
    ``seconds`` of training."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    accuracy: float
    seconds: float


def digits_model(seed: int = 0, *, epochs: int = 10, test_size: int = 360):
    """A small CNN trained on scikit-learn's bundled handwritten digits (1,797 8x8 images).

    Deterministic: the held-out split is a permutation from ``seed``, and Keras's seeds
    (Python, NumPy, TensorFlow) are set from it before the weights are made; the same seed
    gives the same weights and accuracy in every run (on one machine: float32 sums are not
    promised the same across CPUs). About 5 s of training (10 epochs) on two cores; 97.8%
    of the 360 held-out digits right.

    Layers: ``digit`` (8, 8, 1) in 0..16 -> ``scale`` (Rescaling 1/16) -> ``conv1`` (16 3x3,
    same, ReLU) -> ``pool1`` (2x2 max) -> ``conv2`` (32 3x3, same, ReLU) -> ``pool2`` ->
    ``flatten`` -> ``fc`` (32, ReLU) -> ``logits`` (10, linear).

    Returns
    -------
    (keras.Model, DigitsSplit)

    Examples
    --------
    >>> model, split = digits_model()
    >>> model.predict(split.x_test[:1]).argmax(), split.y_test[0]
    """
    import keras
    from keras import layers
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype("float32")[..., None]
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:test_size], order[test_size:]
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="digit")
    h = layers.Rescaling(1 / 16.0, name="scale")(inp)
    h = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(h)
    h = layers.MaxPooling2D(2, name="pool1")(h)
    h = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D(2, name="pool2")(h)
    h = layers.Dense(32, activation="relu", name="fc")(layers.Flatten(name="flatten")(h))
    model = keras.Model(inp, layers.Dense(10, name="logits")(h), name="digits_cnn")
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)  # XLA would only add compile time on a model this small
    started = time.perf_counter()
    model.fit(x[train], y[train], epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    seconds = time.perf_counter() - started
    predicted = model.predict(x[test], batch_size=512, verbose=0).argmax(axis=1)
    accuracy = float((predicted == y[test]).mean())
    return model, DigitsSplit(x[train], y[train], x[test], y[test], accuracy, seconds)


@functools.lru_cache(maxsize=2)
def trained_digits(seed: int = 0):
    """:func:`digits_model`, trained once per process (the demo and tests share it: do not
    change the model it returns)."""
    return digits_model(seed)


# ---------------------------------------------------------------------------- ImageNet
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
    (``caffe``: RGB -> BGR, ImageNet channel means subtracted), float64."""
    from keras.applications.vgg16 import preprocess_input

    return np.asarray(preprocess_input(np.array(image, dtype=np.float32)[None]),
                      dtype=np.float64)[0]


def top_classes(probabilities: np.ndarray, *, k: int = 5, download: bool = True,
                timeout: float = PROBE_TIMEOUT) -> list[tuple[int, str, float]]:
    """The ``k`` most probable ImageNet classes: ``(class number, name, probability)``.

    Names come from Keras's ``imagenet_class_index.json`` (what ``decode_predictions``
    reads), found in Keras's cache or downloaded there when reachable; without it the name is
    ``"class N"``. The order is ``decode_predictions``'s (``argsort``, highest first).
    """
    import json

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


# ---------------------------------------------------------------------------- the choice
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
        shown = np.clip(x[..., ::-1] + np.array([123.68, 116.779, 103.939]), 0, 255)
        shown = shown.astype(np.uint8)
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


# ---------------------------------------------------------------------------- the demo
def run_demo(out_dir: str | Path = "out", *, weights: str = "auto", image=None,
             progress: bool = True, download: bool = True, name: str | None = None,
             echo=click.echo) -> dict:
    """Run the demo; returns the paths and figures it printed.

    ``name`` replaces the network's model name in Neo4j (``digits_cnn``, ``vgg16_imagenet``,
    ``vgg16_random``); the model of that name is replaced, and so is its trace.

    Steps: choose the network (:func:`choose_network`), plan, trace the input through the
    whole graph, load (the whole model, or the cone of the neuron of ``cone_layer`` that
    contributes most to the prediction), verify, store the trace in Neo4j, named queries,
    GraphML (loaded graph and active subgraph, from Neo4j), report.
    """
    from PIL import Image

    from .analysis.report import analyze
    from .graph.neuron_graph import NeuronGraph
    from .graph.trace import trace
    from .neo4j.db import Database
    from .neo4j.load import load
    from .neo4j.models import verify
    from .neo4j.pull import pull_to_graphml
    from .neo4j.queries import run_query
    from .neo4j.traces import pull_trace, trace_loaded

    started = time.perf_counter()
    out = Path(out_dir)
    settings = Settings()
    with Database.connect(settings) as db:  # connect first: no server, no training
        net = choose_network(weights, image=image, download=download, echo=echo)
        net.name = name or net.name
        for line in net.lines:
            echo("    " + line)
        out.mkdir(parents=True, exist_ok=True)
        shown_path = out / f"{net.name}_input.png"
        Image.fromarray(net.shown[..., 0] if net.shown.shape[-1] == 1 else net.shown) \
            .save(shown_path)

        echo(f"1/8 plan: {net.model.name}")
        whole = NeuronGraph.from_model(net.model, name=net.name)
        plan = whole.plan()
        echo(f"    {plan.neurons:,} neurons, {plan.edges:,} edges")

        echo(f"2/8 trace the input through the whole graph, target {net.target} "
             "(the predicted class)")
        t = trace(whole, net.x, target=net.target, info={"input": str(shown_path)})
        echo(f"    forward {t.seconds['forward']:.1f} s, backward {t.seconds['backward']:.1f} s;"
             f" {t.active.mean():.1%} of the neurons active; {net.target} = "
             f"{t.values[t.target_id]:.4g}")
        for row in t.layer_summary():
            if "chosen_positions" in row:
                counts = np.asarray(row["chosen_positions"]).reshape(-1)
                echo(f"    {row['layer']}: chosen window positions "
                     + " ".join(f"{c:,}" for c in counts) + f" ({row['tied']:,} ties)")

        if net.cone_layer is None:
            g, neuron, why = whole, net.target, "the whole model"
        else:
            c = t.layer(net.cone_layer, "contribution").reshape(-1)
            index = int(np.argmax(c))
            neuron = f"{net.cone_layer}:{index}"
            g = NeuronGraph.from_model(net.model, name=net.name, cone=neuron)
            why = (f"the cone of {neuron}, the {net.cone_layer} neuron contributing most "
                   f"({c[index]:.3g}) to {net.target} (the whole model is too big to load here)")
        p = g.plan()
        echo(f"3/8 load into Neo4j: {why}: {p.selected_neurons:,} neurons, "
             f"{p.selected_edges:,} edges")
        summary = load(g, net.name, driver=db, replace=True, progress=progress)
        echo("    " + summary.line())
        v = verify(net.name, driver=db)
        echo(f"    verify: {'every layer matches the plan' if v.ok else 'MISMATCH'}")
        if not v.ok:
            raise WeightgraphError(f"model {net.name!r} does not match its plan after loading")

        trace_name = f"{net.name}_input"
        echo(f"4/8 the trace, computed from Neo4j and stored as {trace_name!r} (target {neuron})")
        stored = trace_loaded(db, net.name, shown_path, name=trace_name, target=neuron,
                              x=net.x, replace=True)
        for line in stored.lines():
            echo("    " + line)

        held_out = None
        if net.kind == "trained":
            held_out = _held_out_step(db, whole, net, out, progress, echo)
        else:
            echo("5/8 the held-out set: only for the digits CNN (no labelled set ships for "
                 "VGG16 here)")

        echo("6/8 named queries (queries/*.cypher)")
        for row in run_query(db, "model_summary", {"model": net.name}).records()[:4]:
            echo("    model_summary: " + ", ".join(f"{k}={row[k]}" for k in list(row)[:4]))
        layer, index = neuron.rsplit(":", 1)
        for row in run_query(db, "top_inputs", {"model": net.name, "layer": layer,
                                                "index": int(index), "k": 3}).records():
            echo(f"    top_inputs({neuron}): {row}")
        for row in run_query(db, "top_contributors", {"model": net.name, "trace": trace_name,
                                                      "layer": None, "k": 3}).records():
            echo(f"    top_contributors: {row}")
        pool = _pool_neuron(db, g, net.name, trace_name)
        if pool is not None:
            rows = run_query(db, "pooling_choices", {"model": net.name, "layer": pool[0],
                                                     "index": pool[1],
                                                     "trace": trace_name}).records()
            picked = [r for r in rows if r["chosen"]]
            echo(f"    pooling_choices({pool[0]}:{pool[1]}): {len(rows)} candidates, chose "
                 + (f"{picked[0]['layer']}:{picked[0]['index']} = {picked[0]['value']:.4g}"
                    if picked else "none"))

        echo("7/8 GraphML, pulled back from Neo4j")
        graphml = out / f"{net.name}.graphml.gz"
        pull_to_graphml(net.name, graphml, driver=db, progress=progress)
        active = out / f"{net.name}_active.graphml.gz"
        stats = pull_trace(trace_name, active_only=True, path=active, driver=db)
        echo(f"    {graphml}; the active subgraph ({stats['nodes']:,} neurons, "
             f"{stats['edges']:,} edges, with values): {active}")

        echo("8/8 analysis report")
        report = analyze(net.name, out / "report", neuron=neuron, trace=t, driver=db)
        echo(f"    {report}")
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


@dataclass
class HeldOut:
    """What the demo found on the held-out set (:func:`held_out_set`).

    Attributes
    ----------
    trace_set : the aggregated trace (contributions to each digit's predicted class).
    never_chosen : layer -> (pooling edges never chosen, pooling edges).
    never_active : layer -> (neurons never firing, neurons).
    effective : (neurons, edges) of the effective graph (chosen_rate > 0) and of the whole.
    predictions : the effective graph's prediction for each input (executed), and Keras's.
    """

    trace_set: object
    never_chosen: dict
    never_active: dict
    effective: tuple
    predictions: np.ndarray
    keras_predictions: np.ndarray
    report: object = None

    @property
    def agree(self) -> int:
        return int((self.predictions == self.keras_predictions).sum())


def held_out_set(graph, model, x: np.ndarray, *, progress: bool = False) -> HeldOut:
    """Aggregate the held-out inputs ``x`` over ``graph`` (the digits CNN's), with each input's
    contributions to its own predicted class; execute the effective graph (chosen_rate > 0)
    on every input and compare its predictions with Keras's.

    Examples
    --------
    >>> model, split = trained_digits(0)
    >>> h = held_out_set(NeuronGraph.from_model(model), model, split.x_test)
    >>> h.agree                      # of 360
    360
    """
    from .graph.forward import execute_networkx
    from .graph.trace_set import trace_set
    from .sinks.networkx import to_networkx

    ts = trace_set(graph, x, target="predicted", progress=progress,
                   info={"inputs": f"the {len(x)} held-out digits", "model": graph.name})
    rows = ts.layer_summary(0.0)
    never_chosen = {r["layer"]: (r["never_chosen"], r["pooling_edges"]) for r in rows
                    if "pooling_edges" in r}
    never_active = {r["layer"]: (r["never_active"], r["neurons"]) for r in rows
                    if r["never_active"]}
    effective = (sum(r["kept_neurons"] for r in rows), sum(r["kept_edges"] for r in rows),
                 sum(r["neurons"] for r in rows), sum(r["edges"] for r in rows))
    outputs = execute_networkx(to_networkx(ts.subgraph(effective=True)), x)
    last = ts.predicted_layer
    mine = outputs[last].reshape(len(x), -1).argmax(axis=1)
    theirs = np.asarray(model.predict(np.asarray(x, np.float32), batch_size=512, verbose=0))
    return HeldOut(ts, never_chosen, never_active, effective, mine,
                   theirs.reshape(len(x), -1).argmax(axis=1))


def _held_out_step(db, whole, net: Network, out: Path, progress: bool, echo) -> HeldOut:
    """The demo's step 5 for the digits CNN: the held-out set, aggregated, stored, reported."""
    from .analysis.report import analyze
    from .neo4j.queries import run_query
    from .neo4j.trace_sets import trace_set_loaded

    _, split = trained_digits(0)
    x = split.x_test.astype(np.float64)
    echo(f"5/8 the held-out set: {len(x)} digits through the graph in batches, contributions "
         "to each one's predicted class")
    h = held_out_set(whole, net.model, x, progress=progress)
    ts = h.trace_set
    echo(f"    {ts.seconds['total']:.2f} s ({ts.n / ts.seconds['total']:,.0f} digits/s, "
         f"batches of {ts.batch_size})")
    chosen = sum(v[0] for v in h.never_chosen.values())
    edges = sum(v[1] for v in h.never_chosen.values())
    echo(f"    pooling edges never chosen: {chosen:,} of {edges:,} ("
         + ", ".join(f"{k} {a:,} of {b:,}" for k, (a, b) in h.never_chosen.items()) + ")")
    never = sum(v[0] for v in h.never_active.values())
    echo(f"    neurons never firing (active_rate 0): {never:,} of {whole.total_neurons:,} ("
         + ", ".join(f"{k} {a:,} of {b:,}" for k, (a, b) in h.never_active.items()) + ")")
    kn, ke, n, e = h.effective
    echo(f"    effective graph (chosen_rate > 0): {kn:,} of {n:,} neurons, {ke:,} of {e:,} "
         f"edges; executed on the {ts.n} digits it gives Keras's prediction for {h.agree} "
         f"of {ts.n}")
    if h.agree != ts.n:
        raise WeightgraphError(f"the effective graph's predictions differ from Keras's on "
                               f"{ts.n - h.agree} held-out digits")
    set_name = f"{net.name}_held_out"
    stored = trace_set_loaded(db, net.name, x, name=set_name, target="predicted", replace=True)
    echo(f"    stored in Neo4j as {set_name!r} ({stored.chunks} chunks); named queries:")
    usage: dict = {}
    for row in run_query(db, "pooling_usage", {"model": net.name, "trace": set_name}).records():
        usage.setdefault(row["layer"], []).append(row)
    for layer, rows in usage.items():
        echo(f"    pooling_usage({layer}): share of choices by window position "
             + " ".join(f"{r['share']:.1%}" for r in rows) + "; never chosen "
             + " ".join(str(r["never_chosen"]) for r in rows))
    for row in run_query(db, "never_active", {"model": net.name, "trace": set_name,
                                              "k": 5}).records():
        if row["never_active"]:
            echo(f"    never_active({row['layer']}): {row['never_active']} of "
                 f"{row['neurons']}, first {row['indexes']}")
    report = analyze(net.name, out / "report_held_out", trace=set_name, metrics=(), gds=False,
                     driver=db)
    echo(f"    report of the set: {report}")
    h.report = report
    return h


def _pool_neuron(db, g, model: str, trace_name: str) -> tuple[str, int] | None:
    """The max-pooling neuron that contributes most to the stored trace's target, in the
    deepest max-pooling layer the trace holds (named query ``top_contributors``)."""
    from .neo4j.queries import run_query

    pools = [e.name for e in g.entries if e.op is not None and e.op.op == "max"]
    for layer in reversed(pools):
        rows = run_query(db, "top_contributors", {"model": model, "trace": trace_name,
                                                  "layer": layer, "k": 1}).records()
        if rows:
            return layer, int(rows[0]["index"])
    return None
