"""Graph-wide channel equalisation: give every activation tensor channels of similar range, exactly.

int8 activations have one scale per tensor. On the shared trained GhostFaceNet W0.5 checkpoint (with only
PReLU-local equalisation) a Keras simulation that rounds every activation tensor to int8 (min/max over the
calibration crops, weights kept float) gives an embedding cosine of 0.93 to float; rounding per channel
instead gives 0.995. The loss is spread over a hundred tensors, not a few (leaving all BatchNorm outputs in
float still only reaches 0.97): the trained PReLU slopes reach |alpha| = 16 and the channel ranges inside
one tensor differ by up to 1000:1.

A per-channel scale s > 0 can be moved through the graph without changing the function:
- Conv2D, DepthwiseConv2D and BatchNormalization take any input and output scales: their weights absorb them
  (a kernel row divided by the input scale, a column multiplied by the output scale; BN's gamma by
  s_out / s_in, beta by s_out, moving mean by s_in);
- PReLU (positively homogeneous), global average pooling, Reshape and Flatten pass a channel's scale through;
  Add and Concatenate tie the scales of their inputs and output (per channel, Concatenate by slices);
  Multiply passes the scale of its data input and needs its gate (a hard sigmoid) unscaled;
- the model's input and output, hard sigmoids and any other layer keep scale 1.
Channels tied together form one group (union-find over (tensor, channel)); a group gets
s = (1 / r) ** power, r its largest |activation| over all its members on the calibration crops. power 1
makes every group's range 1; a dense conv then carries the spread in its per-output-channel-quantised rows,
so a smaller power splits it between activations and weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_PASS_THROUGH = frozenset(
    {"PReLU", "GlobalAveragePooling2D", "Reshape", "Flatten", "Identity", "SqueezeSpatial"}
)
_GATES = frozenset({"Keras2HardSigmoid", "Relu6HardSigmoid", "Activation"})
_FREE = frozenset({"Conv2D", "DepthwiseConv2D", "BatchNormalization"})


@dataclass(frozen=True, slots=True)
class Equalisation:
    """What `equalize_channels` did: number of channel groups, how many scaled, and the scale range."""

    groups: int
    scaled: int
    scale_min: float
    scale_max: float


class _Groups:
    """Union-find over (tensor name, channel)."""

    def __init__(self) -> None:
        self.parent: dict[tuple[str, int], tuple[str, int]] = {}
        self.fixed: set[tuple[str, int]] = set()

    def find(self, node: tuple[str, int]) -> tuple[str, int]:
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: tuple[str, int], b: tuple[str, int]) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb
            if ra in self.fixed:
                self.fixed.add(rb)

    def fix(self, node: tuple[str, int]) -> None:
        self.fixed.add(self.find(node))


def _kind(layer: Any) -> str:
    return type(layer).__name__


def _name(tensor: Any) -> str:
    name: str = tensor._keras_history.operation.name
    return name


def _channels(tensor: Any) -> int:
    return int(tensor.shape[-1])


def channel_groups(model: Any) -> tuple[_Groups, dict[str, int]]:
    """The union-find of tied channels and every tensor's channel count (tensors named by their layer)."""
    from edgeface_tools.export.depthwise_split import graph

    groups, width = _Groups(), {}
    for layer, inputs in graph(model):
        out = layer.name
        width[out] = int(layer.output.shape[-1])
        for c in range(width[out]):
            groups.find((out, c))
        kind = _kind(layer)
        if not inputs:  # the model input
            for c in range(width[out]):
                groups.fix((out, c))
        elif kind in _FREE:
            continue
        elif kind in _PASS_THROUGH or kind == "Add":
            for tensor in inputs:
                for c in range(width[out]):
                    groups.union((_name(tensor), c), (out, c))
        elif kind == "Concatenate" and layer.axis in (-1, len(inputs[0].shape) - 1):
            offset = 0
            for tensor in inputs:
                for c in range(_channels(tensor)):
                    groups.union((_name(tensor), c), (out, offset + c))
                offset += _channels(tensor)
        elif kind == "Multiply" and len(inputs) == 2:
            gated = [_kind(t._keras_history.operation) in _GATES for t in inputs]
            data = gated.index(False) if gated.count(False) == 1 else -1
            for k, tensor in enumerate(inputs):
                for c in range(_channels(tensor)):
                    if k == data:
                        groups.union((_name(tensor), c), (out, c))
                    else:
                        groups.fix((_name(tensor), c))
        else:  # anything else (hard sigmoid, ...): scale 1 on both sides
            for tensor in inputs:
                for c in range(_channels(tensor)):
                    groups.fix((_name(tensor), c))
            for c in range(width[out]):
                groups.fix((out, c))
    for tensor in model.outputs:
        for c in range(_channels(tensor)):
            groups.fix((_name(tensor), c))
    return groups, width


def channel_absmax(model: Any, names: list[str], sample: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    """Largest |activation| per channel of each named layer's output over `sample` (run a batch at a time)."""
    import keras

    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(sample), batch):
        outputs = probe(sample[start : start + batch], training=False)
        for name, value in zip(names, outputs, strict=True):
            value = np.abs(np.asarray(value, np.float64)).reshape(-1, value.shape[-1]).max(axis=0)
            found[name] = np.maximum(found.get(name, value), value)
    return found


def _scale_weights(layer: Any, s_in: np.ndarray, s_out: np.ndarray) -> None:
    weights = layer.get_weights()
    kind = _kind(layer)
    if kind == "Conv2D":
        weights[0] = weights[0] * (s_out[None, None, None, :] / s_in[None, None, :, None])
        if layer.use_bias:
            weights[1] = weights[1] * s_out
    elif kind == "DepthwiseConv2D":
        if weights[0].shape[-1] != 1:
            raise ValueError(f"{layer.name}: depth multiplier {weights[0].shape[-1]} is not supported")
        weights[0] = weights[0] * (s_out / s_in)[None, None, :, None]
        if layer.use_bias:
            weights[1] = weights[1] * s_out
    else:  # BatchNormalization: gamma, beta, moving mean, moving variance
        if not (layer.scale and layer.center):
            raise ValueError(f"{layer.name}: BatchNormalization without gamma and beta cannot be rescaled")
        weights[0] = weights[0] * (s_out / s_in)
        weights[1] = weights[1] * s_out
        weights[2] = weights[2] * s_in
    layer.set_weights([w.astype(np.float32) for w in weights])


def equalize_channels(model: Any, sample: np.ndarray, power: float = 1.0) -> Equalisation:
    """Rescale `model`'s weights in place (same function) so each channel group has range about 1."""
    from edgeface_tools.export.depthwise_split import graph

    groups, width = channel_groups(model)
    order = graph(model)
    ranges = channel_absmax(model, [layer.name for layer, inputs in order if inputs], sample)
    peak: dict[tuple[str, int], float] = {}
    for name, r in ranges.items():
        for c, value in enumerate(r):
            root = groups.find((name, c))
            peak[root] = max(peak.get(root, 0.0), float(value))
    top = max(peak.values())
    scale = {
        root: 1.0 if root in groups.fixed else float(max(value, top * 1e-6) ** -power)
        for root, value in peak.items()
    }

    def vector(name: str) -> np.ndarray:
        return np.asarray([scale.get(groups.find((name, c)), 1.0) for c in range(width[name])], np.float32)

    for layer, inputs in order:
        if _kind(layer) in _FREE:
            _scale_weights(layer, vector(_name(inputs[0])), vector(layer.name))
    moved = [v for root, v in scale.items() if root not in groups.fixed]
    result = Equalisation(len(scale), len(moved), min(moved, default=1.0), max(moved, default=1.0))
    log.info("channel equalisation: %s", result)
    return result
