import json
import shutil

import numpy as np
import pytest

from edgeface.errors import ModelError
from edgeface.vision.embed import Embedder
from edgeface.vision.modelcard import load_card, sha256_file
from edgeface.vision.runtime import TFLiteModel, dequantize, quantize


def test_quantize_round_trip_uses_tensor_scale_and_zero_point() -> None:
    detail = {"name": "x", "dtype": np.int8, "quantization": (0.5, -3)}
    q = quantize(np.array([-100.0, 0.0, 1.0, 100.0]), detail)
    assert q.dtype == np.int8 and list(q) == [-128, -3, -1, 127]
    np.testing.assert_allclose(dequantize(q, detail), [-62.5, 0.0, 1.0, 65.0])


def test_missing_model_names_the_file(tmp_path) -> None:
    with pytest.raises(ModelError, match=r"missing\.tflite: model file not found"):
        TFLiteModel(tmp_path / "missing.tflite")


def test_corrupt_model_names_the_file(tmp_path) -> None:
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(b"TFL3" + bytes(range(256)) * 4)
    with pytest.raises(ModelError, match=r"corrupt\.tflite: not a loadable TFLite model"):
        TFLiteModel(bad)


def make_card(tmp_path, models_dir, **overrides) -> object:
    model = tmp_path / "model.tflite"
    shutil.copy(models_dir / "face_landmark.tflite", model)
    card = {
        "format": "edgeface-model/1",
        "kind": "embedder",
        "name": "wrong",
        "file": "model.tflite",
        "sha256": sha256_file(model),
        "input": {"size": [192, 192], "color": "RGB", "mean": 0, "std": 255, "dtype": "float32"},
        "align": {
            "template": [[60, 80], [130, 80], [96, 120], [96, 150]],
            "points": ["right_eye", "left_eye", "nose_tip", "mouth_center"],
        },
        "output": {"dim": 128, "normalized": False},
    } | overrides
    path = tmp_path / "model.json"
    path.write_text(json.dumps(card))
    return path


def test_card_whose_tensors_do_not_match_is_refused(tmp_path, models_dir) -> None:
    # face_landmark.tflite outputs 1404 values, not the 128 the card claims.
    with pytest.raises(ModelError, match=r"output dim 1404 != card output\.dim 128"):
        Embedder(make_card(tmp_path, models_dir))
    with pytest.raises(ModelError, match="input shape"):
        Embedder(
            make_card(
                tmp_path,
                models_dir,
                input={"size": [112, 112], "color": "RGB", "mean": 0, "std": 1, "dtype": "float32"},
            )
        )


def test_card_sha256_mismatch_is_refused(tmp_path, models_dir) -> None:
    with pytest.raises(ModelError, match="does not match card"):
        Embedder(make_card(tmp_path, models_dir, sha256="0" * 64))


def test_card_that_is_not_json_or_incomplete(tmp_path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_card(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"format": "edgeface-model/1", "kind": "embedder"}))
    with pytest.raises(ModelError, match="missing or has a malformed field"):
        load_card(tmp_path / "b.json")
