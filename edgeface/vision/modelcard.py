"""Model cards (docs/design.md §3): everything the runtime needs to know about a model file, as data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ModelError
from edgeface.util.files import (
    MAX_CARD_BYTES,
    MAX_MODEL_BYTES,
    FileRefused,
    open_regular,
    read_text,
    write_atomic,
)

CARD_FORMAT = "edgeface-model/1"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    try:
        with open_regular(path, MAX_MODEL_BYTES, "model") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileRefused as exc:
        raise ModelError(str(exc)) from None
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class InputSpec:
    size: tuple[int, int]  # (H, W)
    color: str  # "RGB" | "BGR"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dtype: str

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) in the card's colour order -> float32 model input."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return (pixels.astype(np.float32) - mean) / std


@dataclass(frozen=True, slots=True)
class AlignSpec:
    template: np.ndarray  # (K, 2) target points in the crop, pixels
    points: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelCard:
    path: Path  # the card's own path
    kind: str
    name: str
    file: Path  # resolved model file path
    sha256: str
    input: InputSpec
    output_dim: int
    output_normalized: bool
    align: AlignSpec | None
    # The fallback threshold model (embedders), as the card states it; edgeface.identity.rule reads it.
    decision: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def verify_file(self) -> None:
        """Raise ModelError unless the model file exists and its sha256 matches the card."""
        if not self.file.is_file():
            raise ModelError(f"{self.file}: model file named by card {self.path} not found")
        actual = sha256_file(self.file)
        if actual != self.sha256:
            raise ModelError(
                f"{self.file}: sha256 {actual[:16]}... does not match card {self.path} "
                f"({self.sha256[:16]}...); the file is corrupt or not the model the card describes"
            )

    def verify_tensors(self, input_shape: tuple[int, ...], input_dtype: np.dtype, output_dim: int) -> None:
        """Raise ModelError unless the loaded model's tensors are what the card says."""
        h, w = self.input.size
        if tuple(input_shape[1:]) != (h, w, 3):
            raise ModelError(f"{self.file}: input shape {input_shape} does not match card size {[h, w]}x3")
        if np.dtype(input_dtype).name != self.input.dtype:
            raise ModelError(
                f"{self.file}: input dtype {np.dtype(input_dtype).name} != card {self.input.dtype}"
            )
        if self.kind == "embedder" and output_dim != self.output_dim:
            raise ModelError(f"{self.file}: output dim {output_dim} != card output.dim {self.output_dim}")


def _tuple3(value: Any) -> tuple[float, ...]:
    if isinstance(value, int | float):
        return (float(value),) * 3
    return tuple(float(v) for v in value)


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object")
    return value


def load_card(card_path: str | Path) -> ModelCard:
    """Parse and validate a card; the model file is resolved relative to the card."""
    path = Path(card_path)
    try:
        raw = json.loads(read_text(path, MAX_CARD_BYTES, "model card"))
    except FileRefused as exc:
        raise ModelError(f"{path}: model card not found" if exc.missing else str(exc)) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"{path}: model card is not valid JSON ({exc})") from exc
    try:
        if raw["format"] != CARD_FORMAT:
            raise ModelError(f"{path}: format {raw['format']!r}, expected {CARD_FORMAT!r}")
        spec = raw["input"]
        align = raw.get("align")
        return ModelCard(
            path=path,
            kind=raw["kind"],
            name=raw["name"],
            file=(path.parent / raw["file"]).resolve(),
            sha256=raw["sha256"],
            input=InputSpec(
                size=(int(spec["size"][0]), int(spec["size"][1])),
                color=spec["color"],
                mean=_tuple3(spec["mean"]),
                std=_tuple3(spec["std"]),
                dtype=spec["dtype"],
            ),
            output_dim=int(raw.get("output", {}).get("dim", 0)),
            output_normalized=bool(raw.get("output", {}).get("normalized", False)),
            align=AlignSpec(np.asarray(align["template"], np.float64), tuple(align["points"]))
            if align
            else None,
            decision=_mapping(raw["decision"], "decision") if "decision" in raw else None,
            raw=raw,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"{path}: model card is missing or has a malformed field ({exc!r})") from exc


def embedder_named(models: Path, sha256: str) -> str:
    """`<card name> (sha <12 hex>)` for the embedder card in `models` with this sha256, for messages that
    must name a model a gallery was enrolled with; a model with no card there is named by its sha alone."""
    for path in sorted(models.glob("*.json")) if models.is_dir() else []:
        try:
            card = load_card(path)
        except ModelError:
            continue
        if card.kind == "embedder" and card.sha256 == sha256:
            return f"{card.name} (sha {sha256[:12]})"
    return f"an embedder with no card in {models} (sha {sha256[:12]})"


def write_card(card_path: str | Path, card: dict[str, Any]) -> None:
    write_atomic(card_path, (json.dumps(card, indent=2) + "\n").encode(), "model card")
