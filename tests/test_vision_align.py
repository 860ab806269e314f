import numpy as np
import pytest

from edgeface.types import Detection
from edgeface.vision.align import align_face, similarity_transform
from edgeface.vision.modelcard import AlignSpec

ARCFACE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [56.1396, 92.2848]])


def test_recovers_a_known_similarity_exactly() -> None:
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([5.0, -3.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.array([[10.0, 20.0], [50.0, 18.0], [30.0, 40.0], [31.0, 60.0]])
    target = source @ (scale * rotation).T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix, np.hstack([scale * rotation, shift[:, None]]), atol=1e-9)


def test_golden_matrix_for_arcface_template() -> None:
    # Eyes 60 px apart, level, face centred at (200, 150): a pure scale + shift, no rotation.
    source = np.array([[170.0, 130.0], [230.0, 130.0], [200.0, 165.0], [200.0, 200.0]])
    matrix = similarity_transform(source, ARCFACE)
    assert abs(matrix[0, 1]) < 0.01 and abs(matrix[1, 0]) < 0.01  # no rotation
    assert matrix[0, 0] == pytest.approx(0.5836, abs=2e-3)
    mapped = source @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - ARCFACE).max() < 4.0


def test_never_reflects() -> None:
    source = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 8.0]])
    mirrored = source * np.array([-1.0, 1.0])
    matrix = similarity_transform(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_rejects_mismatched_point_sets() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        similarity_transform(np.zeros((4, 2)), np.zeros((3, 2)))


def test_align_face_puts_keypoints_on_template() -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    points = np.array(
        [[170.0, 130.0], [230.0, 130.0], [200.0, 165.0], [200.0, 200.0], [150, 140], [250, 140]]
    )
    for x, y in points[:4]:
        image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    detection = Detection((150, 100, 100, 120), points.astype(np.float32), 0.9)
    spec = AlignSpec(ARCFACE, ("right_eye", "left_eye", "nose_tip", "mouth_center"))
    crop = align_face(image, detection, spec, (112, 112))
    assert crop.shape == (112, 112, 3)
    bright = np.argwhere(crop[..., 0] > 60)
    for x, y in ARCFACE:
        assert np.min(np.hypot(bright[:, 1] - x, bright[:, 0] - y)) < 4.0
