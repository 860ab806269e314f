"""The photo face path finds every face a user gives it, tight crops and ID-style photos included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.face_path import tight_crop
from edgeface.config import parse_config
from edgeface.daemon.parts import build_encoder
from edgeface.errors import ComparableFacesError, NoFaceError
from edgeface.types import Detection
from edgeface.vision.encoder import (
    DOMINANT_AREA_RATIO,
    CascadeDetector,
    EncodedFace,
    FaceEncoder,
    dominant_face,
)
from edgeface.vision.photos import identity_folders, read_image
from tests.factories import face_tile, make_detection, side_by_side, unit_vectors


@pytest.fixture(scope="module")
def encoders(models_dir: Path):
    config = parse_config({"embedder": {"models_dir": str(models_dir)}})
    photo, camera = build_encoder(config, photos=True), build_encoder(config)
    yield photo, camera
    photo.close()
    camera.close()


@pytest.mark.slow
def test_every_faces5_photo_and_its_tight_crop_gives_a_face(encoders, faces5: Path) -> None:
    photo, camera = encoders
    assert isinstance(photo.detector, CascadeDetector)
    paths = [p for files in identity_folders(faces5).values() for p in files]
    missed, tight, stages = [], [], set()
    for path in paths:
        image = read_image(path)
        faces = photo.encode(image)
        if not faces:
            missed.append(path.name)
            continue
        tight.append((path, tight_crop(image, faces[0].detection, 0.05)))
    assert not missed, f"no face in {missed}"
    for path, crop in tight:
        assert photo.detector.detect(crop), f"no face in the tight crop of {path}"
        stages.add(photo.detector.last_stage)
    # the cascade is needed: the camera's single detector misses many of the tight crops
    assert sum(not camera.detector.detect(crop) for _, crop in tight) > len(tight) // 10
    assert len(stages) > 1, stages


def test_flip_averaging_embeds_the_crop_and_its_mirror(encoders, faces5: Path) -> None:
    photo, _ = encoders
    image = read_image(faces5 / "khanh" / "003.jpg")
    face = photo.encode_largest(image)
    crop = photo.crop(image, face.detection)
    once, mirror = photo.embedder.embed([crop, np.ascontiguousarray(crop[:, ::-1])])
    expected = (once + mirror) / np.linalg.norm(once + mirror)
    assert np.allclose(face.embedding, expected, atol=1e-5)
    plain = FaceEncoder(photo.detector, photo.embedder, photo.refiner, flip=False)
    assert np.allclose(plain.encode_largest(image).embedding, once / np.linalg.norm(once), atol=1e-5)


# --- the dominant-face rule: which face a photo is of ------------------------------------------------------
def encoded(width: float, height: float, seed: int) -> EncodedFace:
    keypoints = make_detection(0, 0, 50).keypoints
    return EncodedFace(Detection((0.0, 0.0, width, height), keypoints, 0.9), unit_vectors(1, seed=seed)[0])


@pytest.mark.parametrize(
    ("width", "taken"),
    [(19.9, False), (20.0, True), (20.1, True)],  # areas 199, 200, 201 beside a 10x10 face: ratio 1.99/2/2.01
)
def test_the_dominant_face_rule_at_its_boundary(width: float, taken: bool) -> None:
    assert DOMINANT_AREA_RATIO == 2.0
    big, small = encoded(width, 10.0, 0), encoded(10.0, 10.0, 1)
    if not taken:
        with pytest.raises(ComparableFacesError, match=r"^group\.jpg: 2 faces of comparable size"):
            dominant_face([small, big], "group.jpg")
        assert dominant_face([small, big], "group.jpg", largest=True).face is big  # --largest-face
        return
    chosen = dominant_face([small, big], "group.jpg")  # in any order: the rule sorts by area
    assert chosen.face is big and chosen.passed_over == 1
    assert chosen.area_ratio == pytest.approx(width * 10.0 / 100.0)
    note = chosen.note("group.jpg")
    assert note is not None and note.startswith("group.jpg: 2 faces, took the largest")


def test_one_face_is_taken_without_a_note_and_none_is_named() -> None:
    alone = dominant_face([encoded(30.0, 30.0, 0)], "solo.jpg")
    assert alone.passed_over == 0 and alone.area_ratio is None and alone.note("solo.jpg") is None
    with pytest.raises(NoFaceError, match=r"^wall\.jpg: no face found$"):
        dominant_face([], "wall.jpg")
    # the third face counts too: the largest must dominate every other, so the runner-up decides
    faces = [encoded(30.0, 30.0, 0), encoded(14.0, 14.0, 1), encoded(25.0, 25.0, 2)]
    with pytest.raises(ComparableFacesError, match="3 faces"):
        dominant_face(faces, "three.jpg")


def test_real_faces_side_by_side_comparable_refused_and_dominant_taken(encoders, faces5: Path) -> None:
    photo, _ = encoders
    khanh, chipu = faces5 / "khanh" / "003.jpg", faces5 / "chipu" / "004.jpg"
    own = photo.encode_photo(read_image(khanh), str(khanh)).face.embedding
    with pytest.raises(ComparableFacesError, match=r"^pair\.jpg: 2 faces of comparable size"):
        photo.encode_photo(
            side_by_side(face_tile(photo, khanh, 220), face_tile(photo, chipu, 210)), "pair.jpg"
        )
    # the same two people, the second small in the background: khanh's face is taken
    image = side_by_side(face_tile(photo, khanh, 220), face_tile(photo, chipu, 100))
    chosen = photo.encode_photo(image, "bystander.jpg")
    assert chosen.passed_over == 1 and chosen.area_ratio is not None and chosen.area_ratio > 3.0
    assert float(chosen.face.embedding @ own) > 0.9, "the dominant face is khanh's"
    # near the boundary on real detections (tile areas 1.6x and 2.6x apart): the rule follows the boxes
    for small, expect_taken in ((174, False), (136, True)):
        faces = photo.encode(side_by_side(face_tile(photo, khanh, 220), face_tile(photo, chipu, small)))
        assert len(faces) == 2
        ratio = (
            faces[0].detection.bbox[2]
            * faces[0].detection.bbox[3]
            / (faces[1].detection.bbox[2] * faces[1].detection.bbox[3])
        )
        assert (ratio >= DOMINANT_AREA_RATIO) == expect_taken, ratio
        if expect_taken:
            assert dominant_face(faces, "near.jpg").face is faces[0]
        else:
            with pytest.raises(ComparableFacesError):
                dominant_face(faces, "near.jpg")
