"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class WeightgraphError(Exception):
    """Base class: anything weightgraph reports to a user as a clear, one-line error."""


class ModelLoadError(WeightgraphError):
    """The model could not be loaded (missing or corrupt file, unknown name, bad input shape)."""


class UnsupportedLayerError(WeightgraphError):
    """A layer cannot be expressed as a neuron graph. Raised before anything is written."""

    def __init__(self, layer_name: str, class_name: str, reason: str = ""):
        self.layer_name = layer_name
        self.class_name = class_name
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"layer {layer_name!r} ({class_name}) cannot be expressed as a neuron graph{detail}"
        )


class SelectionError(WeightgraphError):
    """A --layers or --cone selection that does not name the model's layers or neurons."""


class TooLargeError(WeightgraphError):
    """A request would exceed a size limit the user can raise."""


class ServerError(WeightgraphError):
    """The server could not be started, stopped or imported into (the message says why)."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (a driver's ``message`` when it has one): what
    a one-line error quotes of a cause."""
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
