"""The intermediate representation: one spec per layer, and the plan of a whole graph.

The IR is plain data (pydantic), so a plan can be printed, stored as JSON in Neo4j's
``(:Model)`` node, and compared with what a sink received.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class LayerSpec(BaseModel):
    """One layer of the neuron graph, in topological order.

    ``kind`` is ``input`` (given values), ``neurons`` (computes new neurons) or ``alias``
    (shape-only: makes no neurons, its values are other layers' neurons).
    """

    name: str
    index: int = Field(description="position in topological order; the input is 0")
    class_name: str
    kind: str
    op: str | None = Field(None, description="input | sum | max | min | product; None for alias")
    inputs: list[str] = Field(default_factory=list)
    output_shape: list[int]
    neurons: int
    edges: int = Field(description="edges entering the layer, at the plan's granularity")
    offset: int | None = Field(None, description="global id of the layer's first node "
                                                 "(neuron 0, or channel 0 in a channel plan)")
    channels: int | None = Field(None, description="channel nodes (channel plans)")
    channel_axis: int | None = Field(None, description="the output axis holding the "
                                     "channels: the last (Keras) or 0 (ONNX's NCHW)")
    params: dict = Field(default_factory=dict)


class Plan(BaseModel):
    """Sizes and costs of a graph (or subgraph) before any work is done."""

    model: str
    input_shape: list[int]
    layers: list[LayerSpec]
    selection: str = "all"
    granularity: str = Field("neuron", description="neuron | channel: what a node is")
    neurons: int
    nodes: int | None = Field(None, description="nodes at the plan's granularity")
    edges: int = Field(description="edges at the plan's granularity")
    selected_neurons: int | None
    selected_nodes: int | None = None
    selected_edges: int
    estimates: dict = Field(default_factory=dict)

    def layer(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(name)
