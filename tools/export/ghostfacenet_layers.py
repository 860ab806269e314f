"""Keras 3 layers needed to reproduce GhostFaceNet's Keras 2 definition exactly.

Imported lazily (it defines Keras classes, so importing it imports Keras).
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="edgeface")
class Keras2HardSigmoid(keras.layers.Layer):
    """Keras 2's `hard_sigmoid`: clip(0.2 * x + 0.5, 0, 1).

    Keras 3 redefined `hard_sigmoid` as relu6(x + 3) / 6 (slope 1/6, saturating at +-3); the published
    GhostFaceNet checkpoints were trained with the Keras 2 function (slope 0.2, saturating at +-2.5).
    """

    def call(self, inputs: Any) -> Any:
        return keras.ops.clip(inputs * 0.2 + 0.5, 0.0, 1.0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape


class _ConstantPerChannel(keras.layers.Layer):
    """Base for activations with constant per-channel values held in the config (no trainable weights)."""

    def __init__(self, alpha: list[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = [float(a) for a in alpha]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="edgeface")
class AffineReluPReLU(_ConstantPerChannel):
    """PReLU(z) = a*z + relu((1-a)*z), written with ops that XNNPACK runs in int8.

    Exact for every alpha <= 1 (then 1-a >= 0 and relu((1-a)z) = (1-a)relu(z)); channels with alpha > 1 use
    a*z - relu((a-1)*z). TFLite gets MUL, MUL with a fused RELU, and ADD (SUB/MUL for mixed signs): all
    delegated in int8, unlike PRELU, MAXIMUM and a standalone RELU.
    """

    def call(self, inputs: Any) -> Any:
        import numpy as np

        alpha = np.asarray(self.alpha, "float32")
        gain = np.abs(1.0 - alpha)
        positive = keras.ops.relu(inputs * gain)
        if np.all(alpha <= 1.0):
            return inputs * alpha + positive
        if np.all(alpha >= 1.0):
            return inputs * alpha - positive
        return inputs * alpha + positive * np.sign(1.0 - alpha).astype("float32")


@keras.saving.register_keras_serializable(package="edgeface")
class Relu6HardSigmoid(keras.layers.Layer):
    """Keras 2's hard sigmoid clip(0.2z + 0.5, 0, 1), written as relu6(1.2z + 3) / 6 (equal for every z).

    The 1.2 and +3 fold into the preceding conv and relu6 fuses into it; clip(., 0, 1) would become
    MINIMUM + RELU, which XNNPACK does not run in int8.
    """

    def call(self, inputs: Any) -> Any:
        return keras.ops.relu6(inputs * 1.2 + 3.0) * (1.0 / 6.0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape


@keras.saving.register_keras_serializable(package="edgeface")
class SqueezeSpatial(keras.layers.Layer):
    """(N, 1, 1, C) -> (N, C) with a static shape (Flatten's dynamic batch adds SHAPE/PACK ops in TFLite)."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.squeeze(inputs, axis=(1, 2))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[3])
