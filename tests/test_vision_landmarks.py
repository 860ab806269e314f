"""`LandmarkRefiner` (edgeface/vision/landmarks.py): the face mesh re-estimates the eye, nose and mouth keypoints.

Real face_landmark.tflite on the shared photos. The refiner is also exercised inside the face path by
`test_vision_encoder.py`, `test_pipeline_recognize.py` and `test_export_facerec.py`; here its own rules: the upright crop
geometry, keypoints mapped back into the image (checked by rotating a photo: the refined points must rotate
with it), only the first four keypoints change, and no face means the detection is returned unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.errors import ModelError
from edgeface.types import Detection
from edgeface.vision.detect import FaceDetector
from edgeface.vision.landmarks import MESH_FILE, MESH_SIZE, LandmarkRefiner
from edgeface.vision.photos import identity_folders, read_image
from tests.factories import make_detection


@pytest.fixture(scope="module")
def refiner(models_dir: Path):
    made = LandmarkRefiner(models_dir, num_threads=1)
    yield made
    made.close()


@pytest.fixture(scope="module")
def faces(models_dir: Path, faces5: Path) -> list[tuple[np.ndarray, Detection]]:
    """Two photos of each person with the largest face BlazeFace finds."""
    detector = FaceDetector(models_dir, "full", 1, 0.5, pad_retry=True)
    found = []
    try:
        for photos in identity_folders(faces5).values():
            for path in photos[:2]:
                image = read_image(path)
                detections = detector.detect(image)
                assert detections, path
                found.append((image, max(detections, key=lambda d: d.bbox[2] * d.bbox[3])))
    finally:
        detector.close()
    return found


def eye_distance(detection: Detection) -> float:
    return float(np.linalg.norm(detection.keypoint("left_eye") - detection.keypoint("right_eye")))


def test_the_crop_is_upright_centred_and_scaled_to_the_face(refiner: LandmarkRefiner) -> None:
    detection = make_detection(200, 100, size=80)
    angle = np.radians(20)  # tilt the eye line by 20 degrees around the box centre
    centre = np.array([240.0, 140.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    tilted = Detection(
        detection.bbox, ((detection.keypoints - centre) @ rotation.T + centre).astype(np.float32), 0.9
    )
    matrix = refiner.roi_matrix(tilted)
    right, left = (matrix[:, :2] @ tilted.keypoint(k) + matrix[:, 2] for k in ("right_eye", "left_eye"))
    assert right[1] == pytest.approx(left[1], abs=1e-6) and right[0] < left[0]  # eyes level, in order
    np.testing.assert_allclose(matrix[:, :2] @ centre + matrix[:, 2], [MESH_SIZE / 2] * 2, atol=1e-6)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    assert scale == pytest.approx(MESH_SIZE / (80 * refiner.roi_scale))


def test_refined_keypoints_stay_on_the_face_and_only_four_change(
    refiner: LandmarkRefiner, faces: list[tuple[np.ndarray, Detection]]
) -> None:
    for image, detection in faces:
        points, presence = refiner.mesh(image, detection)
        assert points.shape == (468, 2) and presence > 0.9
        refined = refiner.refine(image, detection)
        assert refined.bbox == detection.bbox and refined.score == detection.score
        np.testing.assert_array_equal(refined.keypoints[4:], detection.keypoints[4:])  # the ears are kept
        moved = np.linalg.norm(refined.keypoints[:4] - detection.keypoints[:4], axis=1) / eye_distance(
            detection
        )
        assert np.all(moved < 0.5), moved  # a correction of BlazeFace's points, not a jump elsewhere
        assert refined.keypoint("right_eye")[0] < refined.keypoint("left_eye")[0]
        x, y, w, h = detection.bbox
        inside = (refined.keypoints[:4] >= [x, y]) & (refined.keypoints[:4] <= [x + w, y + h])
        assert inside.all()


def test_refined_keypoints_rotate_with_the_photo(
    refiner: LandmarkRefiner, faces: list[tuple[np.ndarray, Detection]]
) -> None:
    """The crop is cut upright around the eyes and mapped back: a rotated photo gives rotated points."""
    for image, detection in faces:
        x, y, w, h = detection.bbox
        turn = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), 25, 1.0)
        rotated_image = cv2.warpAffine(image, turn, (image.shape[1], image.shape[0]))
        rotated = Detection(
            detection.bbox, (detection.keypoints @ turn[:, :2].T + turn[:, 2]).astype(np.float32), 0.9
        )
        expected = refiner.refine(image, detection).keypoints[:4] @ turn[:, :2].T + turn[:, 2]
        error = np.linalg.norm(refiner.refine(rotated_image, rotated).keypoints[:4] - expected, axis=1)
        assert np.all(error / eye_distance(detection) < 0.05), error


@pytest.mark.parametrize("fill", ["grey", "noise"])
def test_without_a_face_the_detection_is_returned_unchanged(refiner: LandmarkRefiner, fill: str) -> None:
    image = (
        np.full((400, 400, 3), 128, np.uint8)
        if fill == "grey"
        else np.random.default_rng(0).integers(0, 256, (400, 400, 3), np.uint8)
    )
    detection = make_detection(100, 100, size=120)
    assert refiner.mesh(image, detection)[1] < 0.01
    assert refiner.refine(image, detection) is detection


def test_min_presence_decides_whether_the_mesh_is_trusted(
    refiner: LandmarkRefiner, faces: list[tuple[np.ndarray, Detection]]
) -> None:
    image, detection = faces[0]
    assert refiner.refine(image, detection, min_presence=1.01) is detection  # a probability never exceeds 1
    assert refiner.refine(image, detection, min_presence=0.0) is not detection


def test_a_landmark_model_that_is_not_the_pinned_one_is_refused(tmp_path: Path, models_dir: Path) -> None:
    data = bytearray((models_dir / MESH_FILE).read_bytes())
    data[-1] ^= 0x01
    (tmp_path / MESH_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"face_landmark\.tflite: sha256 does not match the pinned"):
        LandmarkRefiner(tmp_path)
    with pytest.raises(ModelError, match="model file not found"):
        LandmarkRefiner(tmp_path / "empty")
    shutil.copy(models_dir / MESH_FILE, tmp_path / MESH_FILE)
    LandmarkRefiner(tmp_path).close()
