"""Give a depthwise conv its own, range-equalised copy of an input that is also used elsewhere.

In a ghost module the primary 1x1 conv output feeds both the module's concat and its cheap depthwise conv.
Its channels can span very different ranges (1316:1 for `batch_normalization_14` of the shared trained
GhostFaceNet W0.5 checkpoint), so on one int8 scale the small channels are a few steps wide, and the
depthwise conv (its BN folded in) multiplies exactly those channels back up. Measured on that checkpoint by
quantising one Keras layer output at a time (per tensor, everything else float): that tensor alone takes the
embedding cosine to 0.756, while its concat half is harmless (0.9999 alone).

`channel_scales` cannot even this out: the tensor's channel scales are tied, through the concat, to the
residual add after it. So the depthwise conv gets a copy of the chain that makes its input
(Conv2D -> BatchNormalization [-> PReLU]) whose output channel c is s_c times larger (`_scaled_weights`),
and its own kernel channel c is divided by s_c: the same function, with an input whose channels have equal
ranges. Each copy costs one 1x1 conv (int8, delegated), so only depthwise convs whose input rounding alone
makes a noise-to-signal power of at least `MIN_NOISE` at their output are split (`int8_noise`).
On the shared checkpoint after `channel_scales`: int8 mean cosine 0.737 without copies, 0.971 with the 16
that pass 1e-3, 0.970 with all 32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SUFFIX = "_dwcopy"
MIN_NOISE = 1e-3


@dataclass(frozen=True, slots=True)
class Split:
    """One depthwise conv given its own equalised input: names, and the input's channel spread (max/min)."""

    depthwise: str
    source: str
    spread_before: float
    noise_before: float  # int8_noise of the shared input


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


def int8_noise(model: Any, chain: list[Any], sample: np.ndarray) -> float:
    """Noise-to-signal power at the depthwise conv's output (through the BatchNormalization after it) when
    only its input is rounded to one int8 scale over its calibration range, everything else float."""
    import keras

    source, depthwise = chain[-2], chain[-1]
    after = [c for c in _consumers(model).get(depthwise.name, []) if _kind(c) == "BatchNormalization"]
    x = np.asarray(keras.Model(model.inputs, source.output).predict(sample, verbose=0, batch_size=16))
    low, high = min(0.0, float(x.min())), max(0.0, float(x.max()))
    step = (high - low) / 255.0 or 1.0
    rounded = np.round((x - low) / step) * step + low

    def run(value: np.ndarray) -> np.ndarray:
        y = depthwise(value)
        return np.asarray(after[0](y, training=False) if len(after) == 1 else y, np.float64)

    reference = run(x)
    return float(np.sum((run(rounded) - reference) ** 2) / max(np.sum(reference**2), 1e-30))


def _scaled_weights(layer: Any, s: np.ndarray) -> list[np.ndarray]:
    """Weights of a copy of `layer` whose output channel c is s_c times the original's (s_c >= 1).

    The conv kernel itself is scaled, not just the BatchNormalization after it: with identical kernels the
    converter merges the two convs into one, and the two BatchNormalizations can then no longer fold
    into it (each becomes a MUL by a per-tensor-quantised constant and an ADD). The BatchNormalization sees
    s*z, so its mean and variance follow (the variance keeps the original epsilon exact) and its gamma and
    beta carry the scale to the output. PReLU keeps alpha (PReLU(s*z) = s*PReLU(z) for s > 0).
    """
    weights: list[np.ndarray] = layer.get_weights()
    if _kind(layer) == "Conv2D":
        weights[0] = weights[0] * s
        if layer.use_bias:
            weights[1] = weights[1] * s
    elif _kind(layer) == "BatchNormalization":  # gamma, beta, moving mean, moving variance
        gamma, beta, mean, variance = weights
        eps = float(layer.epsilon)
        weights = [gamma * s, beta * s, mean * s, (s * s * (variance + eps) - eps).astype(variance.dtype)]
    return weights


def _copy(layer: Any) -> Any:
    config = {**layer.get_config(), "name": layer.name + SUFFIX}
    return type(layer).from_config(config)


def split_depthwise_inputs(
    model: Any, sample: np.ndarray, min_noise: float = MIN_NOISE
) -> tuple[Any, list[Split]]:
    """A new model computing the same function, each candidate depthwise conv whose `int8_noise` is at
    least `min_noise` fed by its own equalised copy (each copy costs a 1x1 conv, so only where it matters).

    Layers that are not copied are shared with `model` (same weights). `sample` are calibration crops.
    """
    import keras
    from edgeface_tools.export.channel_scales import channel_absmax

    noise = {chain[-1].name: int8_noise(model, chain, sample) for chain, _ in candidates(model)}
    found = [(chain, source) for chain, source in candidates(model) if noise[chain[-1].name] >= min_noise]
    if not found:
        return model, []
    absmax = channel_absmax(model, [chain[-2].name for chain, _ in found], sample)
    ranges = [absmax[chain[-2].name] for chain, _ in found]
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
            copy.set_weights(_scaled_weights(original, s))
        depthwise = _copy(layer)
        x = depthwise(x)
        weights = layer.get_weights()
        weights[0] = weights[0] / s.reshape(1, 1, -1, 1)
        depthwise.set_weights(weights)
        tensors[layer.name] = x
        done.append(Split(layer.name, chain[-1].name, float(r.max() / r.min()), noise[layer.name]))
    outputs = [tensors[_producer(t).name] for t in model.outputs]
    log.info("gave %d depthwise convs an equalised copy of their shared input", len(done))
    return keras.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=model.name), done
