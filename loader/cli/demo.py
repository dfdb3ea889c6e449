"""``weightgraph demo``: the main job end to end, on a trained network and a real input."""

from __future__ import annotations

import click

__all__ = ["demo"]


@click.command()
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False),
              help="where the GraphML files, the input picture and the report go")
@click.option("--weights", default="auto", show_default=True,
              type=click.Choice(["auto", "imagenet", "trained", "none"]),
              help="auto: VGG16 with ImageNet weights if cached in ~/.keras/models (or "
                   "downloadable), else a CNN trained here on scikit-learn's digits; imagenet, "
                   "trained, none (VGG16, random weights) force one")
@click.option("--image", type=click.Path(dir_okay=False),
              help="an image or .npy file to show the network instead of the bundled cat "
                   "photograph or held-out digit")
@click.option("--offline", is_flag=True,
              help="never try to download the ImageNet weights (also WEIGHTGRAPH_OFFLINE=1)")
@click.option("--quiet", is_flag=True, help="no progress bars")
def demo(out, weights, image, offline, quiet):
    """End to end on a trained network: choose it (VGG16 with ImageNet weights on a cat
    photograph, or a CNN trained here on handwritten digits), plan it, trace the input
    (pooling choices, active neurons, contributions to the predicted class), load it (or the
    cone of its strongest evidence) into Neo4j, verify, store the trace, run named queries,
    export GraphML from Neo4j and write an analysis report; then say where to look. For the
    digits CNN also aggregate the 360 held-out digits: the pooling edges never chosen, the
    neurons never firing, and the effective graph checked to give Keras's 360 predictions.

    \b
    Example:
      weightgraph demo --out out
      weightgraph demo --weights trained --image my_digit.png --out out/mine
    """
    from ..demo import run_demo

    run_demo(out, weights=weights, image=image, progress=not quiet, download=not offline)
