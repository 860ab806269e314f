"""Keras 3 layers needed to reproduce GhostFaceNet's Keras 2 definition exactly.

Imported lazily (it defines Keras classes, so importing it imports Keras).
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="edgeface")
class Keras2HardSigmoid(keras.layers.Layer):  # type: ignore[misc]  # keras ships no types: Layer is Any
    """Keras 2's `hard_sigmoid`: clip(0.2 * x + 0.5, 0, 1).

    Keras 3 redefined `hard_sigmoid` as relu6(x + 3) / 6 (slope 1/6, saturating at +-3); the published
    GhostFaceNet checkpoints were trained with the Keras 2 function (slope 0.2, saturating at +-2.5).
    """

    def call(self, inputs: Any) -> Any:
        return keras.ops.clip(inputs * 0.2 + 0.5, 0.0, 1.0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape


class _ConstantPerChannel(keras.layers.Layer):  # type: ignore[misc]  # keras ships no types: Layer is Any
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
    """PReLU(z) = z + relu((a-1)*z) for alpha <= 1, written with ops that XNNPACK runs in int8.

    For z > 0 the relu term is 0; for z < 0 it adds (a-1)z, giving a*z. Channels with alpha > 1 use
    z - relu((1-a)*z). TFLite gets one MUL by a constant with a fused RELU and one ADD (SUB; a sign MUL
    for mixed alphas): delegated in int8, unlike PRELU, MAXIMUM and a standalone RELU, and z itself is not
    requantised on the way.
    """

    def call(self, inputs: Any) -> Any:
        import numpy as np

        alpha = np.asarray(self.alpha, "float32")
        negative = keras.ops.relu(inputs * -np.abs(1.0 - alpha))
        if np.all(alpha <= 1.0):
            return inputs + negative
        if np.all(alpha >= 1.0):
            return inputs - negative
        return inputs + negative * np.sign(1.0 - alpha).astype("float32")


@keras.saving.register_keras_serializable(package="edgeface")
class Relu6HardSigmoid(keras.layers.Layer):  # type: ignore[misc]  # keras ships no types: Layer is Any
    """Keras 2's hard sigmoid clip(0.2z + 0.5, 0, 1), written as relu6(1.2z + 3) / 6 (equal for every z).

    The 1.2 and +3 fold into the preceding conv and relu6 fuses into it; clip(., 0, 1) would become
    MINIMUM + RELU, which XNNPACK does not run in int8.
    """

    def call(self, inputs: Any) -> Any:
        return keras.ops.relu6(inputs * 1.2 + 3.0) * (1.0 / 6.0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape


@keras.saving.register_keras_serializable(package="edgeface")
class SqueezeSpatial(keras.layers.Layer):  # type: ignore[misc]  # keras ships no types: Layer is Any
    """(N, 1, 1, C) -> (N, C) with a static shape (Flatten's dynamic batch adds SHAPE/PACK ops in TFLite)."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.squeeze(inputs, axis=(1, 2))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[3])
