"""Per-channel range equalisation through PReLU: an exact float rewrite that int8 per-tensor ranges need.

int8 activations have one scale per tensor, so a tensor whose channels span very different ranges loses the
small channels. A trained GhostFaceNet has such tensors: on the real W0.5 checkpoint the PReLU before the GDC
head spans 2..1289 per channel and the SE-block PReLUs about 100:1, while the layer after them (the GDC
BatchNorm, the SE expand conv) weighs every channel alike.

PReLU is positively homogeneous per channel: PReLU(s*z) = s*PReLU(z) for s > 0 with the same alpha. So for
`producer -> PReLU -> consumers` the producer's output channel c is multiplied by s_c (a BatchNormalization's
gamma and beta, or a conv's kernel column and bias) and every consumer's input channel c by 1/s_c (a depthwise
kernel's channel, a conv kernel's input row): the same function, with channels of equal range in between.
Only PReLUs whose producer feeds nothing else and whose consumers are all convolutions are rewritten.

s_c = (r_max / r_c) ** power, r_c the channel's largest |activation| on the calibration crops. A depthwise
consumer keeps per-channel weight quantisation exact, so power 1 (full equalisation); a dense 1x1 conv shares
one weight scale per output channel across its input rows, so power 0.5 splits the range between activation
and weights (as cross-layer equalisation does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Equalised:
    """One rewritten PReLU: its name, channel range spread before (max/min), and the scale range applied."""

    layer: str
    spread_before: float
    scale_max: float


def _consumers(model: Any, layer: Any) -> list[Any]:
    return [
        other
        for other in model.layers
        for node in other._inbound_nodes
        if any(t._keras_history.operation is layer for t in node.input_tensors)
    ]


def _kind(layer: Any) -> str:
    return type(layer).__name__


def candidates(model: Any) -> list[tuple[Any, Any, list[Any]]]:
    """(producer, PReLU, consumers) triples that can be equalised exactly."""
    found = []
    for layer in model.layers:
        if _kind(layer) != "PReLU":
            continue
        producer = layer.input._keras_history.operation
        consumers = _consumers(model, layer)
        if _kind(producer) not in ("BatchNormalization", "Conv2D") or len(_consumers(model, producer)) != 1:
            continue
        if consumers and all(_kind(c) in ("DepthwiseConv2D", "Conv2D") for c in consumers):
            found.append((producer, layer, consumers))
    return found


def _scale_producer(producer: Any, s: np.ndarray) -> None:
    weights = producer.get_weights()
    if _kind(producer) == "BatchNormalization":
        shift = 1 if producer.scale else 0
        if producer.scale:
            weights[0] = weights[0] * s
        if producer.center:
            weights[shift] = weights[shift] * s
        else:
            raise ValueError(f"{producer.name}: BatchNormalization without scale cannot be equalised")
    else:
        weights[0] = weights[0] * s
        if producer.use_bias:
            weights[1] = weights[1] * s
    producer.set_weights(weights)


def _unscale_consumer(consumer: Any, s: np.ndarray) -> None:
    weights = consumer.get_weights()
    weights[0] = weights[0] / s.reshape(1, 1, -1, 1)
    consumer.set_weights(weights)


def channel_ranges(model: Any, layers: list[Any], sample: np.ndarray) -> list[np.ndarray]:
    """Largest |activation| per channel of each layer's output over `sample`."""
    import keras

    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = probe.predict(sample, verbose=0, batch_size=16)
    if len(layers) == 1:
        outputs = [outputs]
    return [np.abs(o.reshape(-1, o.shape[-1])).max(axis=0).astype(np.float64) for o in outputs]


def equalize_prelu_ranges(model: Any, sample: np.ndarray) -> list[Equalised]:
    """Rewrite `model`'s weights in place (same function); returns what was changed."""
    triples = candidates(model)
    if not triples:
        return []
    ranges = channel_ranges(model, [prelu for _, prelu, _ in triples], sample)
    done = []
    for (producer, prelu, consumers), r in zip(triples, ranges, strict=True):
        r = np.maximum(r, r.max() * 1e-4)  # a dead channel is not blown up beyond 1e4
        power = 1.0 if all(_kind(c) == "DepthwiseConv2D" for c in consumers) else 0.5
        s = ((r.max() / r) ** power).astype(np.float32)
        _scale_producer(producer, s)
        for consumer in consumers:
            _unscale_consumer(consumer, s)
        done.append(Equalised(prelu.name, float(r.max() / r.min()), float(s.max())))
    log.info("equalised the channel ranges of %d PReLU outputs", len(done))
    return done
