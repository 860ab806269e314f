"""`build_parts`: one config -> the real face path, the gallery index and the decision rule in force.

Real models (detector, face mesh, int8 embedder) from the checkout's models/. Which threshold wins is
`resolve_rule`'s rule (test_identity_rule.py); here: that the config, the stored gallery's calibration and the
card reach it, that the gallery and index follow the config, and that nothing is left open on an error.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import edgeface.daemon.parts as parts_module
from edgeface.config import Config, parse_config
from edgeface.daemon.parts import Parts, build_parts, check_gallery
from edgeface.errors import GalleryError
from edgeface.identity.calibration import Calibration
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.rule import CardFallback
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.detect import FaceDetector
from edgeface.vision.encoder import CascadeDetector, FaceEncoder
from edgeface.vision.modelcard import load_card
from tests.factories import make_gallery

CARD = DEFAULT_EMBEDDER_CARD
CALIBRATION = Calibration(0.61, 0.04, 0.01, 0.008, 0.9, 12 * 11 * 3, 36, 12, "test")


@pytest.fixture(scope="module")
def embedder_sha(models_dir: Path) -> str:
    return load_card(models_dir / CARD).sha256


def config_for(tmp_path: Path, models_dir: Path, **sections: dict[str, Any]) -> Config:
    raw: dict[str, dict[str, Any]] = {
        "device": {"id": "door1", "state_dir": str(tmp_path / "state")},
        "embedder": {"models_dir": str(models_dir), "num_threads": 1},
    }
    for name, values in sections.items():
        raw[name] = raw.get(name, {}) | values
    return parse_config(raw)


def calibrated_gallery(sha: str, n: int = 12, version: int = 1) -> Gallery:
    return replace(make_gallery(n, model=sha, version=version), calibration=CALIBRATION)


def closed(encoder: FaceEncoder) -> bool:
    """Every model of the encoder released (`TFLiteModel.close` drops its interpreter)."""
    detectors = (
        encoder.detector.detectors if isinstance(encoder.detector, CascadeDetector) else [encoder.detector]
    )
    models = [encoder.embedder._model, *(d._model for d in detectors)]  # type: ignore[attr-defined]
    if encoder.refiner is not None:
        models.append(encoder.refiner._model)
    return all(m._interpreter is None for m in models)


@pytest.fixture
def built() -> Any:
    """Collects every `Parts` a test builds and closes them after it."""
    made: list[Parts] = []

    def build(config: Config, **kwargs: Any) -> Parts:
        made.append(build_parts(config, **kwargs))
        return made[-1]

    yield build
    for parts in made:
        parts.close()


@pytest.fixture
def encoders(monkeypatch: pytest.MonkeyPatch) -> list[FaceEncoder]:
    """The real encoders `build_parts` builds, kept so a test can look at them after an error."""
    made: list[FaceEncoder] = []
    real = parts_module.build_encoder

    def keep(config: Config, *, photos: bool = False) -> FaceEncoder:
        made.append(real(config, photos=photos))
        return made[-1]

    monkeypatch.setattr(parts_module, "build_encoder", keep)
    return made


def test_without_a_stored_gallery_the_parts_start_empty_on_the_cards_fallback(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="edgeface.daemon.parts")
    parts = built(config_for(tmp_path, models_dir))
    assert len(parts.gallery) == 0 and parts.gallery.model_sha256 == embedder_sha == parts.embedder.sha256
    assert parts.gallery.dim == parts.embedder.dim == 128
    assert parts.rule.source == "card" and parts.rule.threshold == pytest.approx(
        CardFallback.of_card(parts.embedder.card).threshold_for(0), abs=1e-6
    )
    assert any("no gallery at" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "state" / "gallery").exists()  # building reads, never creates


def test_a_stored_gallery_decides_with_its_own_calibration(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str
) -> None:
    config = config_for(tmp_path, models_dir)
    GalleryStore(config.gallery_dir).save(calibrated_gallery(embedder_sha, version=3))
    parts = built(config)
    assert parts.gallery.version == 3 and len(parts.gallery) == 12
    assert (parts.rule.threshold, parts.rule.margin, parts.rule.source) == (0.61, 0.04, "gallery")
    assert parts.live.current.rule == parts.rule


def test_the_configs_threshold_and_margin_win_over_the_calibration(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str
) -> None:
    config = config_for(tmp_path, models_dir, match={"threshold": 0.5})
    GalleryStore(config.gallery_dir).save(calibrated_gallery(embedder_sha))
    parts = built(config)
    assert (parts.rule.threshold, parts.rule.margin, parts.rule.source) == (0.5, 0.04, "config")
    both = built(config_for(tmp_path, models_dir, match={"threshold": 0.5, "margin": 0.1}))
    assert (both.live.current.rule.threshold, both.live.current.rule.margin) == (0.5, 0.1)


def test_an_uncalibrated_gallery_logs_that_the_cards_fallback_applies(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str, caplog
) -> None:
    config = config_for(tmp_path, models_dir)
    GalleryStore(config.gallery_dir).save(make_gallery(3, model=embedder_sha, version=1))
    caplog.set_level(logging.WARNING, logger="edgeface.daemon.parts")
    parts = built(config)
    assert parts.rule.source == "card"
    assert parts.rule.threshold == pytest.approx(
        CardFallback.of_card(parts.embedder.card).threshold_for(3), abs=1e-6
    )
    assert any(r.getMessage().startswith(f"threshold {parts.rule.threshold:.4f}:") for r in caplog.records)


def test_a_given_gallery_is_used_instead_of_the_stored_one(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str
) -> None:
    config = config_for(tmp_path, models_dir)
    GalleryStore(config.gallery_dir).save(make_gallery(3, model=embedder_sha, version=1))
    given = calibrated_gallery(embedder_sha, n=5, version=7)
    parts = built(config, gallery=given)
    assert parts.gallery is given and parts.rule.source == "gallery"


def test_a_given_empty_gallery_is_used_too(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str
) -> None:
    """An empty gallery (say, a synced one with everyone removed) is a gallery: not "none given"."""
    config = config_for(tmp_path, models_dir)
    GalleryStore(config.gallery_dir).save(make_gallery(3, model=embedder_sha, version=1))
    empty = Gallery.empty(128, embedder_sha).with_version(2)
    assert built(config, gallery=empty).gallery is empty


@pytest.mark.parametrize(
    ("gallery_section", "kind"),
    [
        ({}, "exact"),
        ({"index": "hnsw"}, "hnsw"),
        ({"exact_below": 12}, "hnsw"),
        ({"exact_below": 13}, "exact"),
    ],
)
def test_the_index_follows_the_gallery_section(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str, gallery_section: dict, kind: str
) -> None:
    section = {**gallery_section, "hnsw_m": 8, "hnsw_ef": 64, "hnsw_ef_construction": 40}
    config = config_for(tmp_path, models_dir, gallery=section)
    parts = built(config, gallery=calibrated_gallery(embedder_sha))
    index = parts.live.current.index
    assert index.kind == kind
    assert (index.settings.m, index.settings.ef, index.settings.ef_construction) == (8, 64, 40)
    hits = index.search(parts.gallery.vectors[4])[0]
    assert hits[0].index == 4 and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_the_gallery_dir_can_be_set_apart_from_the_state_dir(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str
) -> None:
    config = config_for(tmp_path, models_dir, gallery={"dir": str(tmp_path / "elsewhere")})
    GalleryStore(tmp_path / "elsewhere").save(calibrated_gallery(embedder_sha, version=2))
    assert built(config).gallery.version == 2


def test_camera_and_photo_paths_get_their_detectors(tmp_path: Path, models_dir: Path, built) -> None:
    camera = built(config_for(tmp_path, models_dir, detector={"model": "short", "pad_retry": True}))
    assert isinstance(camera.encoder.detector, FaceDetector)
    assert camera.encoder.detector.model == "short" and camera.encoder.detector.pad_retry
    photos = built(
        config_for(tmp_path, models_dir, detector={"model": "short", "pad_retry": True}), photos=True
    )
    cascade = photos.encoder.detector
    assert isinstance(cascade, CascadeDetector)
    assert [d.model for d in cascade.detectors] == ["short", "full"]  # the configured one first
    assert not any(d.pad_retry for d in cascade.detectors)  # the cascade pads itself


def test_the_embedder_options_reach_the_encoder(tmp_path: Path, models_dir: Path, built) -> None:
    default = built(config_for(tmp_path, models_dir))
    assert default.encoder.refiner is not None and default.encoder.flip
    plain = built(config_for(tmp_path, models_dir, embedder={"refine_landmarks": False, "flip": False}))
    assert plain.encoder.refiner is None and not plain.encoder.flip


@pytest.mark.parametrize("bad", ["model", "dim"])
def test_a_stored_gallery_the_embedder_cannot_search_is_refused_and_the_models_closed(
    tmp_path: Path, models_dir: Path, embedder_sha: str, encoders: list[FaceEncoder], bad: str
) -> None:
    config = config_for(tmp_path, models_dir)
    gallery = (
        make_gallery(3, model="cd" * 32) if bad == "model" else make_gallery(3, dim=64, model=embedder_sha)
    )
    GalleryStore(config.gallery_dir).save(gallery.with_version(1))
    message = (
        "Rebuild it with this embedder: `edgeface enroll"
        if bad == "model"
        else "64-d, the embedder gives 128-d"
    )
    with pytest.raises(GalleryError, match=message) as caught:
        build_parts(config)
    assert str(caught.value).startswith(str(config.gallery_dir))
    assert len(encoders) == 1 and closed(encoders[0])


def test_a_given_gallery_of_another_model_is_refused_and_the_models_closed(
    tmp_path: Path, models_dir: Path, encoders: list[FaceEncoder]
) -> None:
    with pytest.raises(
        GalleryError, match=r"gallery was enrolled with an embedder with no card in .* \(sha cdcdcdcdcdcd\)"
    ):
        build_parts(config_for(tmp_path, models_dir), gallery=make_gallery(3, model="cd" * 32))
    assert len(encoders) == 1 and closed(encoders[0])


def test_close_releases_every_model(tmp_path: Path, models_dir: Path, encoders: list[FaceEncoder]) -> None:
    parts = build_parts(config_for(tmp_path, models_dir), photos=True)
    assert not closed(parts.encoder)
    parts.close()
    assert closed(parts.encoder)


def test_use_gallery_swaps_the_index_and_the_rule_follows(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str
) -> None:
    parts = built(config_for(tmp_path, models_dir))
    assert parts.rule.source == "card"
    live = parts.use_gallery(calibrated_gallery(embedder_sha, version=4))
    assert parts.live.current is live and parts.gallery.version == 4 and live.rule is parts.rule
    assert parts.rule.source == "gallery" and parts.rule.threshold == 0.61
    explicit = config_for(tmp_path, models_dir, match={"threshold": 0.7})
    parts.use_gallery(make_gallery(2, model=embedder_sha, version=5), explicit)
    assert parts.config is explicit and parts.rule.threshold == 0.7 and parts.gallery.version == 5


def test_use_gallery_refuses_a_gallery_it_cannot_search_and_keeps_the_running_one(
    tmp_path: Path, models_dir: Path, built, embedder_sha: str
) -> None:
    parts = built(config_for(tmp_path, models_dir), gallery=calibrated_gallery(embedder_sha, version=4))
    before = parts.live.current
    with pytest.raises(GalleryError, match="64-d"):
        parts.use_gallery(make_gallery(3, dim=64, model=embedder_sha))
    assert parts.live.current is before


def test_check_gallery_accepts_a_fitting_gallery_unchanged(embedder_sha: str) -> None:
    class Card:
        sha256, dim = embedder_sha, 128

    gallery = make_gallery(2, model=embedder_sha)
    assert check_gallery(gallery, Card(), Path("g")) is gallery
    with pytest.raises(GalleryError, match=r"^g: gallery vectors are 64-d"):
        check_gallery(make_gallery(2, dim=64, model=embedder_sha), Card(), Path("g"))


def test_models_dir_is_the_configured_one_else_the_default(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parts_module.models_dir(config_for(tmp_path, models_dir)) == models_dir
    monkeypatch.setenv("EDGEFACE_MODELS", str(tmp_path / "from-env"))
    assert parts_module.models_dir(parse_config({})) == tmp_path / "from-env"
