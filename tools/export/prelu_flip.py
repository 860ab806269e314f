"""Move PReLU slopes below -1 into the layer before: an exact rewrite that stops int8 amplifying its input.

A PReLU with slope a < -1 outputs |a|*|z| for z < 0, so the int8 rounding step of its input z comes out |a|
times larger on that side (the trained GhostFaceNet W0.5 checkpoint has slopes down to -16.4). For a < 0,
with z' = a*z (the producer's output channel multiplied by a):

    PReLU_a(z) = PReLU_(1/a)(z')       (z > 0: z'/a = z;  z < 0: z' = a*z)

so the producer (a BatchNormalization's gamma and beta, or a conv's kernel column and bias) takes the factor
a, and the PReLU keeps slope 1/a, in (-1, 0): now the input's rounding reaches the output with gain 1 on
the large side and 1/|a| on the other. Only channels with a < -1 are flipped (for -1 < a < 0 it would make
things worse), and only for PReLUs whose producer feeds nothing else.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def flip_steep_negative_slopes(model: Any) -> int:
    """Rewrite `model`'s weights in place (same function); returns the number of channels flipped."""
    from edgeface_tools.export.depthwise_split import graph

    order = graph(model)
    uses: dict[str, int] = {}
    for _, inputs in order:
        for tensor in inputs:
            name = tensor._keras_history.operation.name
            uses[name] = uses.get(name, 0) + 1
    flipped = 0
    for layer, inputs in order:
        if type(layer).__name__ != "PReLU":
            continue
        producer = inputs[0]._keras_history.operation
        kind = type(producer).__name__
        if uses.get(producer.name) != 1 or kind not in ("BatchNormalization", "Conv2D"):
            continue
        (alpha,) = layer.get_weights()
        steep = alpha.reshape(-1) < -1.0
        if not steep.any():
            continue
        factor = np.where(steep, alpha.reshape(-1), 1.0).astype(np.float32)
        weights = producer.get_weights()
        if kind == "BatchNormalization":
            if not (producer.scale and producer.center):
                continue
            weights[0], weights[1] = weights[0] * factor, weights[1] * factor
        else:
            weights[0] = weights[0] * factor
            if producer.use_bias:
                weights[1] = weights[1] * factor
        producer.set_weights(weights)
        layer.set_weights([np.where(steep, 1.0 / alpha.reshape(-1), alpha.reshape(-1)).reshape(alpha.shape)])
        flipped += int(steep.sum())
    log.info("moved %d PReLU slopes below -1 into the layer before", flipped)
    return flipped
