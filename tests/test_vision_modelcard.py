"""Model cards (docs/design.md §3, edgeface/vision/modelcard.py): the shipped card, what a card may
abbreviate, and the checks a card makes of its model file and tensors.

`test_runtime_and_cards.py` refuses cards whose model does not load or match through the `Embedder`; here the
card on its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeface.errors import ModelError
from edgeface.identity.rule import CardFallback
from edgeface.vision.modelcard import CARD_FORMAT, InputSpec, load_card, sha256_file, write_card

CARD = "facerec128.int8.json"


def minimal(**overrides: Any) -> dict[str, Any]:
    return {
        "format": CARD_FORMAT,
        "kind": "detector",
        "name": "tiny",
        "file": "tiny.tflite",
        "sha256": "0" * 64,
        "input": {"size": [128, 96], "color": "BGR", "mean": 127.5, "std": 127.5, "dtype": "float32"},
    } | overrides


def test_the_shipped_embedder_card(models_dir: Path) -> None:
    card = load_card(models_dir / CARD)
    assert (card.kind, card.name, card.output_dim, card.output_normalized) == (
        "embedder",
        "facerec128",
        128,
        False,
    )
    assert card.file == (models_dir / "facerec128.int8.tflite").resolve() and card.file.is_absolute()
    assert card.input.size == (150, 150) and card.input.dtype == "int8" and card.input.color == "RGB"
    assert len(card.input.mean) == len(card.input.std) == 3
    assert card.align is not None and card.align.template.shape == (4, 2)
    assert card.align.points == ("right_eye", "left_eye", "nose_tip", "mouth_center")
    decision = CardFallback.of_card(card)
    assert decision is not None and len(decision.shape.quantiles) >= 2
    card.verify_file()  # the committed model is the one the card pins


def test_the_model_file_is_found_next_to_the_card_from_any_working_directory(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(models_dir.parent)
    relative = load_card(Path(models_dir.name) / CARD)
    monkeypatch.chdir(tmp_path)
    assert relative.file.is_file() and relative.file == load_card(models_dir / CARD).file


def test_a_scalar_mean_or_std_applies_to_all_three_channels(tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    write_card(path, minimal())
    card = load_card(path)
    assert card.input == InputSpec((128, 96), "BGR", (127.5,) * 3, (127.5,) * 3, "float32")
    assert card.align is None and card.decision is None and card.output_dim == 0


def test_normalize_subtracts_the_mean_and_divides_by_the_std_per_channel() -> None:
    spec = InputSpec((1, 2), "RGB", (0.0, 100.0, 255.0), (255.0, 50.0, 1.0), "float32")
    pixels = np.array([[[[255, 100, 255], [0, 200, 0]]]], np.uint8)
    out = spec.normalize(pixels)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[[1.0, 0.0, 0.0], [0.0, 2.0, -255.0]]]])


def test_write_then_load_keeps_the_card(tmp_path: Path) -> None:
    raw = minimal(kind="embedder", output={"dim": 64, "normalized": True}, extra={"note": "kept"})
    path = tmp_path / "tiny.json"
    write_card(path, raw)
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "format"')  # indented for reviewable diffs
    card = load_card(path)
    assert card.raw == raw and card.output_dim == 64 and card.output_normalized


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (minimal(format="edgeface-model/2"), r"format 'edgeface-model/2', expected 'edgeface-model/1'"),
        (
            minimal(input={"size": [128], "color": "BGR", "mean": 0, "std": 1, "dtype": "float32"}),
            "malformed field",
        ),
        (
            minimal(input={"size": [128, 96], "color": "BGR", "mean": "x", "std": 1, "dtype": "float32"}),
            "malformed field",
        ),
        (minimal(output={"dim": "wide"}), "malformed field"),
        (minimal(align={"template": [[1, 2]]}), "malformed field"),
        ([1, 2], "malformed field"),
    ],
)
def test_malformed_cards_are_model_errors_naming_the_card(tmp_path: Path, raw: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match=message) as caught:
        load_card(path)
    assert str(caught.value).startswith(str(path))


def test_a_missing_card_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nothing\.json: model card not found"):
        load_card(tmp_path / "nothing.json")


def test_verify_file_names_a_missing_or_different_model(tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    write_card(path, minimal())
    card = load_card(path)
    with pytest.raises(ModelError, match=r"tiny\.tflite: model file named by card .*tiny\.json not found"):
        card.verify_file()
    (tmp_path / "tiny.tflite").write_bytes(b"not the pinned model")
    with pytest.raises(ModelError, match="does not match card"):
        card.verify_file()
    write_card(path, minimal(sha256=sha256_file(tmp_path / "tiny.tflite")))
    load_card(path).verify_file()


def test_verify_tensors_checks_shape_and_dtype_and_the_output_dim_of_embedders_only(tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    write_card(path, minimal())
    detector = load_card(path)
    detector.verify_tensors((1, 128, 96, 3), np.dtype(np.float32), output_dim=7)  # detectors: dim unchecked
    with pytest.raises(
        ModelError, match=r"input shape \(1, 96, 128, 3\) does not match card size \[128, 96\]x3"
    ):
        detector.verify_tensors((1, 96, 128, 3), np.dtype(np.float32), 7)
    with pytest.raises(ModelError, match="input dtype int8 != card float32"):
        detector.verify_tensors((1, 128, 96, 3), np.dtype(np.int8), 7)
    write_card(path, minimal(kind="embedder", output={"dim": 64}))
    with pytest.raises(ModelError, match=r"output dim 7 != card output\.dim 64"):
        load_card(path).verify_tensors((1, 128, 96, 3), np.dtype(np.float32), 7)


def test_sha256_file_reads_in_blocks_and_matches_hashlib(tmp_path: Path) -> None:
    data = (
        np.random.default_rng(0).integers(0, 256, (3 << 20) + 17, np.uint8).tobytes()
    )  # several 1 MiB blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
