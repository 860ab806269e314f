import numpy as np
import pytest

from edgeface.errors import ImageError, ModelError
from edgeface.vision.detect import FULL_RANGE, SHORT_RANGE, FaceDetector, letterbox, make_anchors
from edgeface.vision.photos import identity_folders, read_image


def test_anchor_counts_match_models() -> None:
    assert len(make_anchors(SHORT_RANGE)) == 896
    assert len(make_anchors(FULL_RANGE)) == 2304


def test_letterbox_keeps_aspect_and_centres() -> None:
    square, scale, (pad_x, pad_y) = letterbox(np.full((100, 200, 3), 255, np.uint8), 128)
    assert square.shape == (128, 128, 3) and scale == pytest.approx(0.64)
    assert pad_x == 0 and pad_y == 32
    assert square[:32].max() == 0 and square[32:96].min() == 255


@pytest.mark.slow
def test_full_range_finds_a_face_in_every_photo(faces5, models_dir) -> None:
    detector = FaceDetector(models_dir, model="full")
    photos = [p for files in identity_folders(faces5).values() for p in files]
    found = sum(bool(detector.detect(read_image(p))) for p in photos)
    assert found / len(photos) >= 0.97, f"detection rate {found}/{len(photos)}"


def test_keypoints_lie_inside_the_box_and_eyes_are_ordered(faces5, models_dir) -> None:
    detector = FaceDetector(models_dir, model="full")
    detection = detector.detect(read_image(faces5 / "baejun" / "001.jpg"))[0]
    x, y, w, h = detection.bbox
    right, left = detection.keypoint("right_eye"), detection.keypoint("left_eye")
    assert right[0] < left[0], "right_eye (subject's right) should be on the image left"
    for px, py in detection.keypoints[:4]:
        assert x <= px <= x + w and y <= py <= y + h


def test_tight_crop_found_only_thanks_to_padding(faces5, models_dir) -> None:
    detector = FaceDetector(models_dir, model="full")
    image = read_image(faces5 / "baejun" / "001.jpg")
    face = detector.detect(image)[0]
    x, y, w, h = (int(v) for v in face.bbox)
    tight = np.ascontiguousarray(image[y + h // 8 : y + h - h // 8, x + w // 8 : x + w - w // 8])
    without_padding = FaceDetector(models_dir, model="full", pad_retry=False)
    assert without_padding.detect(tight) == [], "BlazeFace alone is expected to miss a face filling the frame"
    assert detector.detect(tight), "pad retry should find a face that fills the frame"


def test_blank_image_has_no_face(models_dir) -> None:
    assert FaceDetector(models_dir).detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_bad_inputs_have_clear_errors(tmp_path, models_dir) -> None:
    with pytest.raises(ImageError, match="BGR image"):
        FaceDetector(models_dir).detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ModelError, match="not found"):
        FaceDetector(tmp_path)
    (tmp_path / FULL_RANGE.file).write_bytes(b"\0" * 1000)
    with pytest.raises(ModelError, match="sha256"):
        FaceDetector(tmp_path)
