"""Give a depthwise conv its own, range-equalised copy of an input that is also used elsewhere.

Where a trained GhostFaceNet loses int8 fidelity (measured on the shared W0.5 checkpoint by quantising one
Keras layer output at a time, per tensor, everything else in float): almost all of it comes from the primary
1x1 conv output of two ghost modules (`batch_normalization_14` alone: embedding cosine 0.756,
`batch_normalization_8`: 0.845; every other tensor alone stays above 0.98). That tensor feeds both the
module's concat and its cheap 3x3 depthwise conv. Its channels span very different ranges, so on one int8
scale the small channels are a few steps wide, and the depthwise conv (its BN folded in) multiplies exactly
those channels back up. The concat half of the same tensor is harmless (0.9999 alone).

The equalisation in `equalize` cannot fix this in place: scaling channel c of the tensor by s_c would also
scale the concat half, which feeds a residual add. So the depthwise conv gets a copy of the chain that makes
its input (Conv2D -> BatchNormalization [-> PReLU]), whose BatchNormalization gamma and beta are multiplied
by s_c (PReLU is positively homogeneous, so the copy's PReLU keeps alpha), and its own kernel channel c is
divided by s_c: the same function, with an input whose channels have equal ranges. The price is one extra
1x1 conv per split module, all int8 and delegated like the original.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SUFFIX = "_dwcopy"


@dataclass(frozen=True, slots=True)
class Split:
    """One depthwise conv given its own equalised input: names, and the input's channel spread (max/min)."""

    depthwise: str
    source: str
    spread_before: float


def _kind(layer: Any) -> str:
    return type(layer).__name__


def _producer(tensor: Any) -> Any:
    return tensor._keras_history.operation


def graph(model: Any) -> list[tuple[Any, list[Any]]]:
    """(layer, its input tensors) of `model`'s own graph, in topological order.

    Read from the tensors' history rather than `layer._inbound_nodes[0]`, which for a layer shared with
    another model (as `prelu.make_delegate_friendly` and this module leave them) may be that model's node.
    """
    order: list[tuple[Any, list[Any]]] = []
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(t, False) for t in reversed(model.outputs)]
    while stack:
        tensor, expanded = stack.pop()
        layer, node_index, _ = tensor._keras_history
        if id(layer) in seen:
            continue
        inputs = list(layer._inbound_nodes[node_index].input_tensors)
        if expanded:
            seen.add(id(layer))
            order.append((layer, inputs))
            continue
        stack.append((tensor, True))
        stack.extend((t, False) for t in inputs if id(t._keras_history.operation) not in seen)
    return order


def _consumers(model: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for layer, inputs in graph(model):
        for tensor in inputs:
            found.setdefault(_producer(tensor).name, []).append(layer)
    return found


def _chain(source: Any, inputs: dict[str, list[Any]], consumers: dict[str, list[Any]]) -> list[Any] | None:
    """Conv2D -> BatchNormalization [-> PReLU] ending at `source`, inner links used once; else None."""
    chain = [source]
    if _kind(source) == "PReLU":
        chain.insert(0, _producer(inputs[source.name][0]))
    if _kind(chain[0]) != "BatchNormalization" or not chain[0].scale or not chain[0].center:
        return None
    chain.insert(0, _producer(inputs[chain[0].name][0]))
    if _kind(chain[0]) != "Conv2D":
        return None
    if any(len(consumers.get(layer.name, [])) != 1 for layer in chain[:-1]):
        return None
    return chain


def candidates(model: Any) -> list[tuple[list[Any], Any]]:
    """([Conv2D, BatchNormalization, (PReLU,) DepthwiseConv2D], the conv's input tensor) for every depthwise
    conv whose input is also used by another layer and is made by such a chain."""
    consumers = _consumers(model)
    inputs = {layer.name: sources for layer, sources in graph(model)}
    found = []
    for layer, sources in graph(model):
        if _kind(layer) != "DepthwiseConv2D":
            continue
        source = _producer(sources[0])
        if len(consumers.get(source.name, [])) < 2:
            continue
        chain = _chain(source, inputs, consumers)
        if chain is not None:
            found.append(([*chain, layer], inputs[chain[0].name][0]))
    return found


def _copy(layer: Any) -> Any:
    config = {**layer.get_config(), "name": layer.name + SUFFIX}
    return type(layer).from_config(config)


def split_depthwise_inputs(model: Any, sample: np.ndarray) -> tuple[Any, list[Split]]:
    """A new model computing the same function, each candidate depthwise conv fed by its own equalised copy.

    Layers that are not copied are shared with `model` (same weights). `sample` are calibration crops.
    """
    import keras
    from edgeface_tools.export.equalize import channel_ranges

    found = candidates(model)
    if not found:
        return model, []
    ranges = channel_ranges(model, [chain[-2] for chain, _ in found], sample)
    by_depthwise = {
        chain[-1].name: (chain[:-1], _producer(source).name, r)
        for (chain, source), r in zip(found, ranges, strict=True)
    }
    tensors: dict[str, Any] = {}
    inputs = keras.layers.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
    done: list[Split] = []
    for layer, sources in graph(model):
        if not sources:
            tensors[layer.name] = inputs
            continue
        args = [tensors[_producer(t).name] for t in sources]
        if layer.name not in by_depthwise:
            tensors[layer.name] = layer(args if len(args) > 1 else args[0])
            continue
        chain, source, r = by_depthwise[layer.name]
        r = np.maximum(r, r.max() * 1e-4)  # a dead channel is not blown up beyond 1e4
        s = (r.max() / r).astype(np.float32)
        x = tensors[source]
        for original in chain:
            copy = _copy(original)
            x = copy(x)
            weights = original.get_weights()
            if _kind(original) == "BatchNormalization":  # gamma, beta, moving mean, moving variance
                weights[0], weights[1] = weights[0] * s, weights[1] * s
            copy.set_weights(weights)
        depthwise = _copy(layer)
        x = depthwise(x)
        weights = layer.get_weights()
        weights[0] = weights[0] / s.reshape(1, 1, -1, 1)
        depthwise.set_weights(weights)
        tensors[layer.name] = x
        done.append(Split(layer.name, chain[-1].name, float(r.max() / r.min())))
    outputs = [tensors[_producer(t).name] for t in model.outputs]
    log.info("gave %d depthwise convs an equalised copy of their shared input", len(done))
    return keras.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=model.name), done
