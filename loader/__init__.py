"""weightgraph: the neuron-level weighted graph of a Keras CNN.

The import package is ``loader``; see :class:`loader.graph.NeuronGraph` to start.
"""

import os

# Quiet TensorFlow before anything imports it. weightgraph runs Keras only to read layers and,
# in tests, as the oracle: oneDNN's fused kernels buy no speed that matters here, and turning
# them off also silences their start-up banner on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
