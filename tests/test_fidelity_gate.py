"""The int8 fidelity gate: passes with real aligned calibration crops, fails with a broken calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeface.vision.modelcard import load_card
from edgeface.vision.runtime import TFLiteModel

pytestmark = pytest.mark.export

ROOT = Path(__file__).resolve().parents[1]
PER_PERSON = 2  # photos per identity in each of the calibration and held-out parts: keeps the tests fast


@pytest.fixture(scope="module")
def tarball() -> Path:
    from edgeface_tools.export import facerecnet

    return facerecnet.cached_tarball(ROOT / "models" / "cache").tarball


@pytest.fixture(scope="module")
def model(tarball: Path) -> Any:
    from edgeface_tools.export import facerecnet

    return facerecnet.build_facerec(facerecnet.read_weights(tarball))


def _first_per_person(paths: tuple[Path, ...]) -> list[Path]:
    chosen: dict[str, list[Path]] = {}
    for path in paths:
        bucket = chosen.setdefault(path.parent.name, [])
        if len(bucket) < PER_PERSON:
            bucket.append(path)
    return [p for bucket in chosen.values() for p in bucket]


@pytest.fixture(scope="module")
def crops(faces5: Path, models_dir: Path) -> dict[str, np.ndarray]:
    from edgeface_tools.export import calibration, facerecnet

    spec = facerecnet.embedder_spec({}, "facerec128")
    split = calibration.split_photos(faces5)
    calib, _, _ = calibration.aligned_crops(
        _first_per_person(split.calibration), spec.align_spec(), spec.input_spec(), models_dir
    )
    held, labels, _ = calibration.aligned_crops(
        _first_per_person(split.held_out), spec.align_spec(), spec.input_spec(), models_dir
    )
    return {"calibration": calib, "held_out": held, "labels": labels}


@pytest.fixture(scope="module")
def float_model(model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeface_tools.export import quantize

    return quantize.convert_float32(model, tmp_path_factory.mktemp("float") / "facerec.float32.tflite")


def _int8_report(model: Any, float_model: Path, calibration: np.ndarray, crops: dict[str, np.ndarray]) -> Any:
    from edgeface_tools.export import fidelity, quantize

    int8 = quantize.convert_int8(model, calibration, float_model.parent / "facerec.int8.tflite")
    with TFLiteModel(int8) as runner:
        assert runner.input_dtype == np.int8 and np.dtype(runner.outputs[0]["dtype"]) == np.int8
    return fidelity.measure(float_model, int8, crops["held_out"], crops["labels"])


def test_split_is_deterministic_and_disjoint(faces5: Path) -> None:
    from edgeface_tools.export import calibration

    first, second = calibration.split_photos(faces5), calibration.split_photos(faces5)
    assert first == second
    assert not set(first.calibration) & set(first.held_out)
    assert (
        faces5 / "baejun" / "001.jpg" in first.calibration and faces5 / "baejun" / "002.jpg" in first.held_out
    )


def test_gate_passes_with_real_aligned_calibration(model: Any, float_model: Path, crops: dict) -> None:
    from edgeface_tools.export import fidelity

    report = _int8_report(model, float_model, crops["calibration"], crops)
    assert report.n == len(crops["held_out"]) == 5 * PER_PERSON
    assert report.cosine_mean >= 0.99 and report.cosine_p01 > 0.98
    assert report.auc_float is not None and report.auc_int8 is not None
    fidelity.gate(report, min_mean=0.99)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda c: np.maximum(c, 0.0), id="activations-clipped-to-one-sign"),
        pytest.param(lambda c: np.zeros_like(c[:4]), id="constant-image"),
    ],
)
def test_gate_fails_with_broken_calibration(model: Any, float_model: Path, crops: dict, broken: Any) -> None:
    from edgeface_tools.export import ExportError, fidelity

    report = _int8_report(model, float_model, broken(crops["calibration"]).astype(np.float32), crops)
    assert report.cosine_mean < 0.99
    with pytest.raises(ExportError, match=r"mean cosine to float32 0\.\d{4} < 0\.9900"):
        fidelity.gate(report, min_mean=0.99)


def test_verification_auc_matches_pair_counting() -> None:
    from edgeface_tools.export import fidelity

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(12, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array(list("aaabbbcccddd"))
    pos, neg = [], []
    for i in range(12):
        for j in range(i + 1, 12):
            (pos if labels[i] == labels[j] else neg).append(float(vectors[i] @ vectors[j]))
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    assert fidelity.verification_auc(vectors, labels) == pytest.approx(expected)
    separated = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert fidelity.verification_auc(separated, np.array(list("aabb"))) == 1.0


def test_cli_writes_model_and_cards_and_refuses_below_the_gate(
    faces5: Path, models_dir: Path, tarball: Path, tmp_path: Path
) -> None:
    from edgeface_tools.export import cli

    photos = tmp_path / "photos"
    for person in sorted(p for p in faces5.iterdir() if p.is_dir()):
        (photos / person.name).mkdir(parents=True)
        for src in sorted(person.iterdir())[: 2 * PER_PERSON]:
            (photos / person.name / src.name).symlink_to(src)
    common = ["--calibration", str(photos), "--tarball", str(tarball), "--models-dir", str(models_dir)]

    assert cli.main(["facerec", *common, "--out", str(tmp_path / "ok")]) == 0
    card = load_card(tmp_path / "ok" / "facerec128.int8.json")
    card.verify_file()
    with TFLiteModel(card.file) as runner:
        card.verify_tensors(runner.input_shape, runner.input_dtype, int(runner.outputs[0]["shape"][-1]))
    raw = json.loads(card.path.read_text())
    assert raw["calibration"]["n"] == raw["fidelity"]["n"] == 5 * PER_PERSON
    assert raw["fidelity"]["cosine_mean"] >= 0.99
    assert load_card(tmp_path / "ok" / "facerec128.float32.json").input.dtype == "float32"

    # Real int8 fidelity is ~0.999 here, so a gate of 0.99999 must refuse to write the int8 model.
    strict = tmp_path / "strict"
    assert cli.main(["facerec", *common, "--out", str(strict), "--min-cosine", "0.99999"]) == 1
    assert not list(strict.glob("*int8*")) and not list(strict.glob(".*int8*"))


def test_int8_conversion_refuses_a_float_fallback(tmp_path: Path) -> None:
    """COS has no int8 kernel: the converter leaves it in float behind a DEQUANTIZE, which must not pass."""
    import keras
    from edgeface_tools.export import ExportError, quantize

    inputs = keras.Input((8, 8, 3), batch_size=1)
    features = keras.layers.Lambda(keras.ops.cos)(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Flatten()(features))
    calibration = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    with pytest.raises(ExportError, match=r"non-integer tensors: .*Cos \(float32\)"):
        quantize.convert_int8(model, calibration, tmp_path / "cos.int8.tflite")
    assert not (tmp_path / "cos.int8.tflite").exists()


def test_cli_help_documents_inputs_calibration_output_and_gate(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeface_tools.export import cli

    parser = cli.build_parser()
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["ghostfacenet", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--checkpoint FILE.h5",
        "--width",
        "--strides",
        "--calibration DIR",
        "--out DIR",
        "--min-cosine",
    ):
        assert option in text
    # A checkpoint and an architecture are alternatives, and one of them is required.
    common = ["--calibration", "photos", "--out", "out"]
    for wrong in (["--checkpoint", "a.h5", "--width", "1.3"], []):
        with pytest.raises(SystemExit) as done:
            parser.parse_args(["ghostfacenet", *common, *wrong])
        assert done.value.code == 2
    args = parser.parse_args(["ghostfacenet", *common, "--width", "1.3", "--strides", "1"])
    assert (args.width, args.strides, args.seed, args.min_cosine, args.refine_landmarks) == (
        1.3,
        1,
        0,
        0.99,
        True,
    )
