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


@keras.saving.register_keras_serializable(package="edgeface")
class MaxPReLU(keras.layers.Layer):
    """PReLU written as max(x, alpha * x); equal to PReLU for every alpha in [0, 1].

    Holds a constant (non-trainable) per-channel alpha. Converts to TFLite MUL (by a constant) + MAXIMUM.
    """

    def __init__(self, alpha: list[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha_values = list(alpha or [])

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channels = int(input_shape[-1])
        self.alpha = self.add_weight(
            name="alpha", shape=(channels,), initializer="zeros", trainable=False, dtype="float32"
        )
        if self.alpha_values:
            self.alpha.assign(self.alpha_values)

    def call(self, inputs: Any) -> Any:
        return keras.ops.maximum(inputs, inputs * self.alpha)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["alpha"] = [float(a) for a in keras.ops.convert_to_numpy(self.alpha)]
        return config
