"""Load a Keras 2 `.h5` GhostFaceNet checkpoint (full model or weights-only) into a rebuilt Keras 3 model.

The file's architecture (width, stem stride, embedding size, GDC bias, input size) is recognised from its
weight shapes; weights are matched per layer kind in creation order (Keras 2's automatic names `conv2d_7`
etc. encode it), so a checkpoint saved from a session whose counters did not start at zero still loads.
Every shape is checked; nothing is loaded silently by position.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from edgeface_tools.export import ExportError
from edgeface_tools.export.ghostfacenet import GhostFaceNetConfig, build, conv_channel_plan

log = logging.getLogger(__name__)

# The published GhostFaceNets checkpoints (HamadYA/GhostFaceNets), recognised by content; never downloaded here.
OFFICIAL_CHECKPOINTS: dict[str, dict[str, Any]] = {
    "e4182ca2470dac3eb79974f4d5d54f2abdf66d7e231c6f3df4059a90bded1271": {
        "name": "GhostFaceNet_W1.3_S1_ArcFace.h5",
        "bytes": 17_271_840,
    },
    "9147e4973f7e023d62f640bee5bf4accf20a5416102cb870601c91a283abb333": {
        "name": "GhostFaceNet_W1.3_S2_ArcFace.h5",
        "bytes": 17_169_624,
    },
}

_NAME = re.compile(r"^(?P<kind>.*?)(?:_(?P<index>\d+))?$")
_WIDTHS = tuple(round(0.1 + 0.01 * i, 2) for i in range(391))


def checkpoint_identity(path: Path) -> dict[str, Any]:
    """Card `source` entries of a checkpoint file: name, size, sha256, and whether it is a published one."""
    from edgeface.vision.modelcard import sha256_file

    digest = sha256_file(path)
    known = OFFICIAL_CHECKPOINTS.get(digest)
    identity: dict[str, Any] = {"checkpoint": path.name, "bytes": path.stat().st_size, "sha256": digest}
    if known:
        identity["official"] = f"{known['name']} (GhostFaceNets release, recognised by sha256)"
        log.info("%s is the published %s", path, known["name"])
    else:
        identity["official"] = None
    return identity


def read_h5_weights(path: Path) -> tuple[dict[str, list[np.ndarray]], dict[str, Any] | None]:
    """{layer name: [arrays]} for layers that have weights, and the model config (None if weights-only)."""
    import h5py

    if not path.is_file():
        raise ExportError(f"{path}: checkpoint not found")
    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
            group = f.get("model_weights", f)
            if "layer_names" not in group.attrs:
                raise ExportError(f"{path}: not a Keras 2 .h5 model or weights file (no layer_names)")
            weights: dict[str, list[np.ndarray]] = {}
            for raw in group.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                names = group[name].attrs.get("weight_names", [])
                arrays = [np.asarray(group[name][w.decode() if isinstance(w, bytes) else w]) for w in names]
                if arrays:
                    weights[name] = arrays
    except OSError as exc:
        raise ExportError(f"{path}: cannot read as HDF5 ({exc})") from exc
    if isinstance(config, bytes):
        config = config.decode()
    return weights, (json.loads(config) if config else None)


def _by_kind(names: list[str]) -> dict[str, list[str]]:
    """Group layer names by kind, each list in creation order (the automatic name's counter)."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        match = _NAME.match(name)
        assert match is not None  # every group of _NAME is optional or lazy: it matches any string
        kind, index = match["kind"], int(match["index"] or 0)
        groups.setdefault(kind, []).append((index, name))
    return {kind: [n for _, n in sorted(items)] for kind, items in groups.items()}


def _input_shape(config: dict[str, Any] | None) -> tuple[int, int, int]:
    if config is None:
        return (112, 112, 3)
    for layer in config.get("config", {}).get("layers", []):
        if layer.get("class_name") == "InputLayer":
            shape = layer["config"].get("batch_input_shape") or layer["config"].get("batch_shape")
            return (int(shape[1]), int(shape[2]), int(shape[3]))
    return (112, 112, 3)


def infer_config(weights: dict[str, list[np.ndarray]], config: dict[str, Any] | None) -> GhostFaceNetConfig:
    """Recognise the GhostFaceNet variant from the weight shapes."""
    groups = _by_kind(list(weights))
    missing = [n for n in ("GDC_dw", "GDC_conv", "pre_embedding") if n not in weights]
    if missing or "conv2d" not in groups:
        raise ExportError(f"not a GhostFaceNet checkpoint: layers {missing or ['conv2d']} are missing")
    channels = [int(weights[n][0].shape[-1]) for n in groups["conv2d"]]
    width = next((w for w in _WIDTHS if conv_channel_plan(w) == channels), None)
    if width is None:
        raise ExportError(
            f"checkpoint has {len(channels)} Conv2D layers with output channels {channels[:6]}...; "
            "no GhostFaceNetV1 width in [0.1, 4] gives this plan (is it a GhostNetV2 or another model?)"
        )
    input_shape = _input_shape(config)
    final = int(weights["GDC_dw"][0].shape[0])
    strides = next((s for s in (1, 2) if math.ceil(input_shape[0] / (16 * s)) == final), None)
    if strides is None:
        raise ExportError(f"GDC_dw kernel {final}x{final} fits neither stem stride 1 nor 2 at {input_shape}")
    emb_dim = int(weights["GDC_conv"][0].shape[-1])
    return GhostFaceNetConfig(width, strides, input_shape, emb_dim, gdc_bias=len(weights["GDC_conv"]) == 2)


def pair_layers(model: Any, weights: dict[str, list[np.ndarray]], source: str) -> list[tuple[Any, str]]:
    """(our layer, checkpoint layer name) for every layer with weights, paired per kind in creation order."""
    mine = {layer.name: layer for layer in model.layers if layer.weights}
    theirs, ours = _by_kind(list(weights)), _by_kind(list(mine))
    if {k: len(v) for k, v in theirs.items()} != {k: len(v) for k, v in ours.items()}:
        raise ExportError(
            f"{source}: layer kinds/counts differ from the rebuilt model: "
            f"file {sorted((k, len(v)) for k, v in theirs.items())} vs "
            f"model {sorted((k, len(v)) for k, v in ours.items())}"
        )
    return [
        (mine[name], file_name)
        for kind, names in ours.items()
        for name, file_name in zip(names, theirs[kind], strict=True)
    ]


def assign_weights(model: Any, weights: dict[str, list[np.ndarray]], source: str) -> list[tuple[Any, str]]:
    """Copy checkpoint arrays into `model`, pairing layers per kind in creation order; check every shape.

    Returns the pairing (our layer, checkpoint layer name).
    """
    pairs = pair_layers(model, weights, source)
    for layer, file_name in pairs:
        arrays = weights[file_name]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise ExportError(
                f"{source}: layer {file_name} has weight shapes {got}, {layer.name} needs {expected}"
            )
        layer.set_weights(arrays)
    return pairs


def batchnorm_epsilons(config: dict[str, Any] | None) -> dict[str, float]:
    """{checkpoint layer name: epsilon} of every BatchNormalization in the file's model config."""
    if config is None:
        return {}
    return {
        layer["config"]["name"]: float(layer["config"]["epsilon"])
        for layer in config.get("config", {}).get("layers", [])
        if layer.get("class_name") == "BatchNormalization" and "epsilon" in layer.get("config", {})
    }


def apply_batchnorm_epsilons(pairs: list[tuple[Any, str]], epsilons: dict[str, float], source: str) -> None:
    """Give every rebuilt BN the epsilon it was trained with (the checkpoint's, not Keras' default 1e-3).

    Measured on a real W0.5 checkpoint trained with epsilon 1e-5: keeping 1e-3 gives embeddings at mean
    cosine 0.995 (min 0.991) to the original Keras model; BNs with variances ~1e-5 amplify the difference.
    """
    norms = [(layer, name) for layer, name in pairs if type(layer).__name__ == "BatchNormalization"]
    if not epsilons:
        log.warning(
            "%s: weights-only file, BatchNormalization epsilon unknown; using the builder's defaults "
            "(compare the float32 model with the original before trusting it)",
            source,
        )
        return
    missing = [name for _, name in norms if name not in epsilons]
    if missing:
        raise ExportError(
            f"{source}: model config has no epsilon for BatchNormalization layers {missing[:4]}"
        )
    for layer, name in norms:
        layer.epsilon = epsilons[name]


def load_h5_checkpoint(path: Path) -> Any:
    """Rebuild the checkpoint's GhostFaceNet in Keras 3 (with Keras 2's hard-sigmoid) and load its weights."""
    weights, config = read_h5_weights(path)
    arch = infer_config(weights, config)
    log.info(
        "%s: GhostFaceNetV1 width %g, stem stride %d, %d-d", path, arch.width, arch.strides, arch.emb_dim
    )
    model = build(arch)
    pairs = assign_weights(model, weights, str(path))
    apply_batchnorm_epsilons(pairs, batchnorm_epsilons(config), str(path))
    return model
