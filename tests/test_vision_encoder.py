"""The photo face path finds every face a user gives it, tight crops and ID-style photos included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.face_path import tight_crop
from edgeface.config import parse_config
from edgeface.daemon.parts import build_encoder
from edgeface.vision.encoder import CascadeDetector, FaceEncoder
from edgeface.vision.photos import identity_folders, read_image


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
