"""GhostFaceNetV1 (Alansari et al., IEEE Access 2023) in Keras, matching the published checkpoints.

The published `GhostFaceNet_W1.3_S{1,2}_ArcFace.h5` files are Keras 2 models: a GhostNet V1 backbone whose
ReLUs were replaced by PReLU (shared over H and W, so alpha has shape (1, 1, C)), squeeze-excite blocks
ending in Keras 2's `hard_sigmoid`, and a GDC head (7x7 depthwise conv over the last map, BN, 1x1 conv to
the embedding, flatten, BN). `width` scales every channel count (rounded to a multiple of 4); `strides` is
the stride of the stem conv (1 gives a 7x7 final map at 112x112 input, 2 gives 4x4).

Layers are named as Keras 2 names them in a fresh session (`conv2d`, `conv2d_1`, ..., PReLUs keep the
`activation_N` name of the ReLU they replaced), so per-class creation order identifies every weight.
Checkpoint loading lives in `ghostfacenet_h5`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """One ghost bottleneck at width 1.0."""

    kernel: int
    stride: int
    expand: int
    out: int
    se_ratio: float


# GhostNet V1 block table (kernel, stride, expansion, output, SE ratio), as in the GhostNet paper.
BLOCKS: tuple[BlockSpec, ...] = tuple(
    BlockSpec(k, s, e, o, se)
    for k, s, e, o, se in (
        (3, 1, 16, 16, 0.0),
        (3, 2, 48, 24, 0.0),
        (3, 1, 72, 24, 0.0),
        (5, 2, 72, 40, 0.25),
        (5, 1, 120, 40, 0.25),
        (3, 2, 240, 80, 0.0),
        (3, 1, 200, 80, 0.0),
        (3, 1, 184, 80, 0.0),
        (3, 1, 184, 80, 0.0),
        (3, 1, 480, 112, 0.25),
        (3, 1, 672, 112, 0.25),
        (5, 2, 672, 160, 0.25),
        (5, 1, 960, 160, 0.0),
        (5, 1, 960, 160, 0.25),
        (5, 1, 960, 160, 0.0),
        (5, 1, 512, 160, 0.25),
    )
)
STEM_CHANNELS = 16
LAST_CHANNELS = 512  # the final 1x1 conv uses the last block's expansion width


def make_divisible(value: float, divisor: int = 4) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True, slots=True)
class GhostFaceNetConfig:
    """Everything that fixes the architecture (and so the checkpoint's weight shapes)."""

    width: float = 1.3
    strides: int = 2
    input_shape: tuple[int, int, int] = (112, 112, 3)
    emb_dim: int = 512
    gdc_bias: bool = True

    def __post_init__(self) -> None:
        if self.strides not in (1, 2):
            raise ValueError(f"strides must be 1 or 2, got {self.strides}")
        if not 0.1 <= self.width <= 4.0:
            raise ValueError(f"width must be in [0.1, 4], got {self.width}")


def conv_channel_plan(width: float) -> list[int]:
    """Output channels of every `Conv2D` in creation order (used to recognise a checkpoint's width)."""
    plan = [make_divisible(STEM_CHANNELS * width)]
    previous = plan[0]
    for block in BLOCKS:
        expand, out = make_divisible(block.expand * width), make_divisible(block.out * width)
        plan.append(expand // 2)
        if block.se_ratio > 0:
            plan += [make_divisible(expand * block.se_ratio), expand]
        plan.append(out // 2)
        if out != previous or block.stride != 1:
            plan.append(out)
        previous = out
    plan.append(make_divisible(LAST_CHANNELS * width))
    return plan


class _Names:
    """Keras 2's automatic layer names: `conv2d`, `conv2d_1`, ... counted per layer kind."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __call__(self, kind: str) -> str:
        count = self._counts.get(kind, 0)
        self._counts[kind] = count + 1
        return kind if count == 0 else f"{kind}_{count}"


class _Builder:
    """Builds the graph with one Keras module (`keras` 3, or `tf_keras` for a true Keras 2 model)."""

    def __init__(self, km: ModuleType, legacy: bool, seed: int | None) -> None:
        self.km, self.layers, self.legacy = km, km.layers, legacy
        self.names = _Names()
        self._seed = seed

    def _init(self, kind: str = "he") -> Any:
        seed = None
        if self._seed is not None:
            seed, self._seed = self._seed, self._seed + 1
        if kind == "glorot":
            return self.km.initializers.GlorotNormal(seed=seed)
        return self.km.initializers.VarianceScaling(
            scale=2.0, mode="fan_out", distribution="truncated_normal", seed=seed
        )

    def conv(self, x: Any, filters: int, kernel: int = 1, padding: str = "same", stride: int = 1) -> Any:
        layer = self.layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, use_bias=False,
            kernel_initializer=self._init(), name=self.names("conv2d"),
        )  # fmt: skip
        return layer(x)

    def dwconv(self, x: Any, kernel: int, stride: int = 1) -> Any:
        layer = self.layers.DepthwiseConv2D(
            kernel, stride, padding="same", use_bias=False,
            depthwise_initializer=self._init(), name=self.names("depthwise_conv2d"),
        )  # fmt: skip
        return layer(x)

    def bn(self, x: Any) -> Any:
        return self.layers.BatchNormalization(axis=-1, name=self.names("batch_normalization"))(x)

    def prelu(self, x: Any) -> Any:
        alpha = self.km.initializers.Constant(0.25)
        return self.layers.PReLU(shared_axes=[1, 2], alpha_initializer=alpha, name=self.names("activation"))(
            x
        )

    def hard_sigmoid(self, x: Any) -> Any:
        name = self.names("activation")
        if self.legacy:
            return self.layers.Activation("hard_sigmoid", name=name)(x)
        from edgeface_tools.export.ghostfacenet_layers import Keras2HardSigmoid

        return Keras2HardSigmoid(name=name)(x)

    def ghost_module(self, x: Any, out: int, activate: bool) -> Any:
        primary = self.bn(self.conv(x, out // 2))
        if activate:
            primary = self.prelu(primary)
        cheap = self.bn(self.dwconv(primary, 3))
        if activate:
            cheap = self.prelu(cheap)
        return self.layers.Concatenate(name=self.names("concatenate"))([primary, cheap])

    def squeeze_excite(self, x: Any, ratio: float) -> Any:
        channels = int(x.shape[-1])
        se = self.layers.GlobalAveragePooling2D(name=self.names("global_average_pooling2d"))(x)
        se = self.layers.Reshape((1, 1, channels), name=self.names("reshape"))(se)
        conv = self.layers.Conv2D
        se = conv(make_divisible(channels * ratio), 1, use_bias=True, kernel_initializer=self._init(),
                  name=self.names("conv2d"))(se)  # fmt: skip
        se = self.prelu(se)
        se = conv(channels, 1, use_bias=True, kernel_initializer=self._init(), name=self.names("conv2d"))(se)
        se = self.hard_sigmoid(se)
        return self.layers.Multiply(name=self.names("multiply"))([x, se])

    def bottleneck(self, x: Any, block: BlockSpec, expand: int, out: int, shortcut: bool) -> Any:
        y = self.ghost_module(x, expand, activate=True)
        if block.stride > 1:
            y = self.bn(self.dwconv(y, block.kernel, block.stride))
        if block.se_ratio > 0:
            y = self.squeeze_excite(y, block.se_ratio)
        y = self.ghost_module(y, out, activate=False)
        if shortcut:
            x = self.bn(self.dwconv(x, block.kernel, block.stride))
            x = self.bn(self.conv(x, out, padding="valid"))
        return self.layers.Add(name=self.names("add"))([x, y])

    def backbone(self, x: Any, config: GhostFaceNetConfig) -> Any:
        stem = make_divisible(STEM_CHANNELS * config.width)
        x = self.prelu(self.bn(self.conv(x, stem, kernel=3, stride=config.strides)))
        previous = stem
        for block in BLOCKS:
            expand, out = (
                make_divisible(block.expand * config.width),
                make_divisible(block.out * config.width),
            )
            shortcut = out != previous or block.stride != 1
            x = self.bottleneck(x, block, expand, out, shortcut)
            previous = out
        x = self.conv(x, make_divisible(LAST_CHANNELS * config.width), padding="valid")
        return self.prelu(self.bn(x))

    def head(self, x: Any, config: GhostFaceNetConfig) -> Any:
        layers = self.layers
        x = layers.DepthwiseConv2D(int(x.shape[1]), use_bias=False, depthwise_initializer=self._init(),
                                   name="GDC_dw")(x)  # fmt: skip
        x = layers.BatchNormalization(momentum=0.99, epsilon=0.001, name="GDC_batchnorm")(x)
        x = layers.Conv2D(config.emb_dim, 1, use_bias=config.gdc_bias, kernel_initializer=self._init("glorot"),
                          name="GDC_conv")(x)  # fmt: skip
        x = layers.Flatten(name="GDC_flatten")(x)
        x = layers.BatchNormalization(momentum=0.99, epsilon=0.001, scale=True, name="pre_embedding")(x)
        return layers.Activation("linear", dtype="float32", name="embedding")(x)

    def model(self, config: GhostFaceNetConfig) -> Any:
        inputs = self.layers.Input(shape=config.input_shape, name="input_1")
        outputs = self.head(self.backbone(inputs, config), config)
        name = f"GhostFaceNetV1_W{config.width:g}_S{config.strides}"
        return self.km.Model(inputs, outputs, name=name)


def build(config: GhostFaceNetConfig, seed: int | None = None, legacy: bool = False) -> Any:
    """Build from a config. `legacy=True` builds with `tf_keras` (a real Keras 2 model, for tests/tools)."""
    if legacy:
        import tf_keras as km
    else:
        import keras as km
    return _Builder(km, legacy, seed).model(config)


def build_ghostfacenet_v1(
    width: float = 1.3,
    strides: int = 2,
    input_shape: tuple[int, int, int] = (112, 112, 3),
    emb_dim: int = 512,
    seed: int | None = None,
    *,
    gdc_bias: bool = True,
) -> Any:
    """A Keras 3 GhostFaceNetV1. `seed` makes the initial weights reproducible.

    `gdc_bias=True` matches the published W1.3 checkpoints (their GDC_conv has a bias).
    """
    config = GhostFaceNetConfig(width, strides, input_shape, emb_dim, gdc_bias)
    return build(config, seed=seed)


def randomize_statistics(model: Any, seed: int, sample: Any = None) -> Any:
    """Random BN scales/offsets and PReLU alphas; with `sample`, BN moving statistics taken from it.

    Returns the model to use (a fresh copy when `sample` is given).

    For tests and benchmarks of untrained models: with Keras' default BN values every BN is the identity and
    every alpha 0.25, which hides mistakes in weight order and activation functions, and without data-based
    statistics the activations of a random 16-block net grow to ~1e10. Works on Keras 3 and tf_keras models.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    for layer in norms:
        values = layer.get_weights()
        shift = 1 if layer.scale else 0
        if layer.scale:
            values[0] = rng.uniform(0.5, 1.5, values[0].shape).astype("float32")
        values[shift] = rng.normal(0.0, 0.2, values[shift].shape).astype("float32")
        layer.set_weights(values)
    for layer in model.layers:
        if type(layer).__name__ == "PReLU":
            layer.set_weights([rng.uniform(0.0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    if sample is not None:
        momenta = [layer.momentum for layer in norms]
        for layer in norms:
            layer.momentum = 0.0
        model(sample, training=True)
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
        # A training-mode call leaves state behind that the TFLite converter cannot freeze (READ_VARIABLE
        # ops): hand back a fresh copy with the same weights.
        fresh = type(model).from_config(model.get_config())
        fresh.set_weights(model.get_weights())
        return fresh
    return model


def load_checkpoint(path: Path) -> Any:
    """Load a published (Keras 2 `.h5`) GhostFaceNet checkpoint into a rebuilt Keras 3 model."""
    from edgeface_tools.export.ghostfacenet_h5 import load_h5_checkpoint

    return load_h5_checkpoint(Path(path))


def count_params_and_mflops(model: Any) -> tuple[int, float]:
    """(parameter count, MFLOPs) where MFLOPs = millions of multiply-accumulates of convs and dense layers.

    This is the convention of the GhostNet and GhostFaceNets papers (one MAC counted as one FLOP); BN,
    activations, adds and pooling are not counted.
    """
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        kernel = layer.get_weights()[0]
        if kind == "Dense":
            macs += int(kernel.size)
        else:  # every output position applies the whole kernel once (depthwise kernels are (k, k, C, 1))
            out_shape = layer.output.shape
            macs += int(out_shape[1]) * int(out_shape[2]) * int(kernel.size)
    return int(model.count_params()), macs / 1e6


def main() -> None:
    """Print parameters and MFLOPs of the published variants (`python -m edgeface_tools.export.ghostfacenet`)."""
    import json

    for strides in (1, 2):
        params, mflops = count_params_and_mflops(build_ghostfacenet_v1(1.3, strides))
        print(json.dumps({"variant": f"W1.3_S{strides}", "params": params, "mflops": round(mflops, 2)}))


if __name__ == "__main__":
    main()
