"""The options every photo verb shares (edgeface/cli/common.py), parsed by the real `edgeface` parser.

`test_cli.py` and `test_vision_photos.py` run the verbs; here: which values the shared options accept, and the config
they turn into, which must be the daemon's own (same parser, same defaults) unless an option says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeface.cli import build_parser
from edgeface.cli.common import load_encoder, photo_config
from edgeface.config import parse_config
from edgeface.vision.detect import FaceDetector
from edgeface.vision.encoder import CascadeDetector


def parse(*argv: str):
    return build_parser().parse_args(["identify", "--gallery", "g", *argv, "photo.jpg"])


def refused(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(list(argv))
    assert caught.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("text", "value"), [("0.01", 0.01), ("1e-4", 1e-4), ("0.999", 0.999)])
def test_target_fpir_is_a_share_strictly_between_0_and_1(text: str, value: float) -> None:
    args = build_parser().parse_args(
        ["enroll", "--gallery", "g", "--id", "x", "--target-fpir", text, "p.jpg"]
    )
    assert args.target_fpir == value


@pytest.mark.parametrize(("text", "message"), [("0", "must be between 0 and 1"), ("1", "must be between 0 and 1"),
                                                ("-0.1", "must be between 0 and 1"), ("1%", "'1%' is not a number")])  # fmt: skip
def test_other_target_fpirs_are_usage_errors(capsys, text: str, message: str) -> None:
    err = refused(capsys, "enroll", "--gallery", "g", "--id", "x", "--target-fpir", text, "p.jpg")
    assert message in err


@pytest.mark.parametrize(
    ("text", "ok"), [("0.01", True), ("1000", True), ("0.009", False), ("1000.5", False), ("big", False)]
)
def test_max_megapixels_is_0_01_to_1000(capsys, text: str, ok: bool) -> None:
    if ok:
        assert parse("--max-megapixels", text).max_megapixels == float(text)
    else:
        assert "--max-megapixels" in refused(
            capsys, "identify", "--gallery", "g", "--max-megapixels", text, "p.jpg"
        )


def test_without_options_the_photo_config_is_the_daemons_default_face_path() -> None:
    config = photo_config(parse())
    default = parse_config({})
    assert config.embedder == default.embedder and config.detector == default.detector
    assert config.match == default.match and config.gallery == default.gallery


def test_each_option_reaches_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = parse("--models", "/opt/models", "--embedder", "cards/mine.json", "--detector", "short", "--threads", "1",
                 "--no-refine-landmarks", "--no-flip", "--threshold", "0.8", "--margin", "0.05")  # fmt: skip
    config = photo_config(args, gallery=tmp_path / "g")
    assert config.embedder.models_dir == Path("/opt/models")
    assert config.embedder.card == str(tmp_path / "cards" / "mine.json")  # absolute: it wins over models_dir
    assert config.embedder.models_dir / config.embedder.card == tmp_path / "cards" / "mine.json"
    assert (config.embedder.num_threads, config.embedder.refine_landmarks, config.embedder.flip) == (
        1,
        False,
        False,
    )
    assert config.detector.model == "short" and config.gallery_dir == tmp_path / "g"
    assert (config.match.threshold, config.match.margin) == (0.8, 0.05)


def test_values_the_config_refuses_are_refused_like_the_daemons() -> None:
    from edgeface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"embedder\.num_threads: must be in \[1, 16\]"):
        photo_config(parse("--threads", "0"))


def test_load_encoder_builds_the_photo_cascade_with_the_chosen_detector_first(models_dir: Path) -> None:
    encoder = load_encoder(parse("--models", str(models_dir), "--detector", "short", "--threads", "1"))
    try:
        assert isinstance(encoder.detector, CascadeDetector)
        assert [d.model for d in encoder.detector.detectors] == ["short", "full"]
        assert all(isinstance(d, FaceDetector) for d in encoder.detector.detectors)
        assert encoder.refiner is not None and encoder.flip
    finally:
        encoder.close()
