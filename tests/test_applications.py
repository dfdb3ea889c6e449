"""keras.applications models (weights=None, small inputs): converted, forward-equivalent, and
with every layer's planned and enumerated neurons and edges equal to the counts from Keras's
shapes (tests/keras_graph.py).

Models with a layer that cannot be expressed fail with the clear error instead; the README
lists them.
"""

import keras
import pytest

from loader.errors import UnsupportedLayerError
from loader.graph.neuron_graph import NeuronGraph
from oracle import assert_equivalent

pytestmark = pytest.mark.slow  # every test builds a whole keras.applications model

SUPPORTED = {
    "VGG16": (32, 32, 3), "VGG19": (32, 32, 3), "ResNet50": (32, 32, 3),
    "ResNet50V2": (32, 32, 3), "MobileNet": (32, 32, 3), "MobileNetV2": (32, 32, 3),
    "MobileNetV3Small": (32, 32, 3), "DenseNet121": (32, 32, 3), "InceptionV3": (75, 75, 3),
    "Xception": (71, 71, 3), "EfficientNetB0": (32, 32, 3), "NASNetMobile": (32, 32, 3),
    "EfficientNetV2B0": (32, 32, 3), "MobileNetV3Large": (32, 32, 3),
}

REFUSED = {
    "ConvNeXtTiny": ("LayerNormalization", (32, 32, 3)),
    "InceptionResNetV2": ("CustomScaleLayer", (75, 75, 3)),
}


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_application_matches_keras(name):
    model = getattr(keras.applications, name)(weights=None, input_shape=SUPPORTED[name])
    # Hundreds of millions of edges: counted per layer, not held to check that none repeats
    # (the forward-equivalence cases check that, on every layer kind).
    assert_equivalent(model, distinct_edges=False)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_application_with_inexpressible_layer_is_refused_clearly(name):
    cls, shape = REFUSED[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=shape)
    with pytest.raises(UnsupportedLayerError, match=cls) as info:
        NeuronGraph.from_model(model)
    assert "cannot be expressed" in str(info.value)
    assert "\n" not in str(info.value)
