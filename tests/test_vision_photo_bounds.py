"""Hostile photos (issue 22 item 6): each is refused with one line before OpenCV decodes it, so no photo makes
the decoder allocate beyond the pixel cap; the cascade's bordered retries stay small; a replay folder skips
them. The huge files are sparse (a header, then truncate): they use no disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgeface.vision.photos as photos
from edgeface.camera.replay import ReplaySource
from edgeface.errors import ImageError
from edgeface.types import Detection
from edgeface.vision.detect import FaceDetector
from edgeface.vision.encoder import CascadeDetector
from edgeface.vision.photos import read_image
from tests.factories import png_header


def radiance_hdr(width: int, height: int) -> bytes:
    """A Radiance header for width x height (the pixels need not be there: decoders allocate first)."""
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {height} +X {width}\n".encode() + b"\x02\x02"


@pytest.fixture
def decoder_never_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls to cv2.imdecode as `read_image` makes them: a refusal must come before any."""
    calls: list[int] = []
    real = cv2.imdecode

    def counting(data: np.ndarray, flags: int) -> np.ndarray | None:
        calls.append(len(data))
        return real(data, flags)

    monkeypatch.setattr(photos.cv2, "imdecode", counting)
    return calls


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(ImageError) as exc:
        read_image(path)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    for needle in needles:
        assert needle in message, message
    return message


def test_a_radiance_hdr_named_jpg_is_refused_before_decoding(tmp_path: Path, decoder_never_runs) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(radiance_hdr(20000, 20000))
    _refused(path, "not a decodable image", "size cannot be checked before decoding")
    assert decoder_never_runs == []


def test_a_jpeg_followed_by_2_gb_of_zeros_is_refused_by_file_size(tmp_path: Path, decoder_never_runs) -> None:
    from edgeface.util.files import MAX_PHOTO_BYTES

    ok, jpeg = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))
    assert ok
    path = tmp_path / "padded.jpg"
    with open(path, "wb") as handle:
        handle.write(jpeg.tobytes())
        handle.truncate(2 << 30)
    _refused(path, "photo", "2048.0 MiB", f"above the limit of {MAX_PHOTO_BYTES >> 20}.0 MiB")
    assert decoder_never_runs == []


@pytest.mark.parametrize(("width", "height"), [(30000, 1), (1, 30000), (4000, 200), (0, 100), (100, 0)])
def test_degenerate_shapes_are_refused_with_one_line(
    tmp_path: Path, decoder_never_runs, width: int, height: int
) -> None:
    path = tmp_path / f"thin{width}x{height}.png"
    path.write_bytes(png_header(width, height))
    _refused(path, f"{width}x{height}")
    assert decoder_never_runs == []


def test_a_photo_above_the_pixel_cap_is_refused_from_its_header(tmp_path: Path, decoder_never_runs) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(60000, 60000))
    _refused(path, "60000x60000", "above the cap of 40")
    assert decoder_never_runs == []


def test_a_normal_photo_is_still_read(tmp_path: Path, decoder_never_runs) -> None:
    path = tmp_path / "ok.png"
    cv2.imwrite(str(path), np.full((30, 40, 3), 7, np.uint8))
    assert read_image(path).shape == (30, 40, 3)
    assert len(decoder_never_runs) == 1


def test_reading_the_hostile_files_keeps_memory_small(tmp_path: Path) -> None:
    """Peak RSS of a fresh interpreter reading all of them stays far below what decoding any would take."""
    (tmp_path / "hdr.jpg").write_bytes(radiance_hdr(20000, 20000))
    (tmp_path / "thin.png").write_bytes(png_header(30000, 1))
    _, jpeg = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))
    with open(tmp_path / "padded.jpg", "wb") as handle:
        handle.write(jpeg.tobytes())
        handle.truncate(2 << 30)
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from edgeface.errors import ImageError\n"
        "from edgeface.vision.photos import read_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for name in ('hdr.jpg', 'thin.png', 'padded.jpg'):\n"
        "    try:\n"
        "        read_image(Path(sys.argv[1]) / name)\n"
        "        print('read', name)\n"
        "    except ImageError:\n"
        "        pass\n"
        "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, check=True
    )
    before_kib, after_kib = map(int, done.stdout.split())
    assert "read" not in done.stdout
    assert after_kib - before_kib < 64 * 1024  # decoding any of them would take gigabytes


# --- the detection cascade's retries ----------------------------------------------------------------------
class Recording:
    """A real detector that records the size of every image it is given."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner, self.model, self.pixels = inner, inner.model, []

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.pixels.append(image.shape[0] * image.shape[1])
        return self.inner.detect(image)

    def close(self) -> None:
        self.inner.close()


def test_the_cascade_retries_of_a_36_mp_faceless_photo_stay_within_the_retry_cap(models_dir: Path) -> None:
    from edgeface.vision.detect import MAX_RETRY_PIXELS

    recording = [Recording(FaceDetector(models_dir, model, pad_retry=False)) for model in ("full", "short")]
    cascade = CascadeDetector(recording)
    try:
        assert cascade.detect(np.zeros((6000, 6000, 3), np.uint8)) == []
    finally:
        cascade.close()
    for detector in recording:
        first, *retries = detector.pixels
        assert first == 36_000_000 and len(retries) == 3  # the photo itself, then three bordered retries
        assert max(retries) <= MAX_RETRY_PIXELS  # unbounded, the 100% border alone is 324 MP (1 GB)


def test_the_padded_retry_of_a_single_detector_is_bounded_too(models_dir: Path) -> None:
    from edgeface.vision.detect import MAX_RETRY_PIXELS

    detector = FaceDetector(models_dir, "full", pad_retry=True)
    seen: list[int] = []
    once = detector._detect_once

    def recording(image: np.ndarray) -> list[Detection]:
        seen.append(image.shape[0] * image.shape[1])
        return once(image)

    detector._detect_once = recording  # type: ignore[method-assign]
    try:
        assert detector.detect(np.zeros((5000, 5000, 3), np.uint8)) == []
    finally:
        detector.close()
    assert seen[0] == 25_000_000 and len(seen) == 2 and seen[1] <= MAX_RETRY_PIXELS


def test_a_detection_in_a_shrunk_framed_image_maps_back_onto_the_photo() -> None:
    from edgeface.vision.detect import MAX_RETRY_PIXELS, framed, unframed

    image = np.zeros((4000, 3000, 3), np.uint8)
    view, scale, pad = framed(image, 1.0)
    assert view.shape[0] * view.shape[1] <= MAX_RETRY_PIXELS and scale < 1
    x, y, size = 1000.0, 2000.0, 400.0  # a face box on the photo, as the detector would see it framed
    keypoints = np.array([[x + 100, y + 150], [x + 300, y + 150]], np.float32)
    seen = Detection(
        (x * scale + pad, y * scale + pad, size * scale, size * scale), keypoints * scale + pad, 0.9
    )
    back = unframed(seen, scale, pad)
    assert np.allclose(back.bbox, (x, y, size, size), atol=1e-3)
    assert np.allclose(back.keypoints, keypoints, atol=1e-3)


def test_faces_are_still_found_on_real_photos_through_the_bounded_cascade(
    faces5: Path, models_dir: Path
) -> None:
    cascade = CascadeDetector([FaceDetector(models_dir, "full"), FaceDetector(models_dir, "short")])
    try:
        photo = read_image(sorted((faces5 / "baejun").iterdir())[0])
        big = cv2.resize(photo, (photo.shape[1] * 6, photo.shape[0] * 6))  # retries of this are shrunk
        small_faces, big_faces = cascade.detect(photo), cascade.detect(big)
    finally:
        cascade.close()
    assert small_faces and big_faces
    x, y, w, _ = big_faces[0].bbox
    sx, sy, sw, sh = small_faces[0].bbox
    assert abs(x / 6 - sx) < sw * 0.2 and abs(y / 6 - sy) < sh * 0.2 and abs(w / 6 - sw) < sw * 0.2


# --- the daemon's replay source ---------------------------------------------------------------------------
def test_a_replay_folder_skips_hostile_files_with_one_line_each(tmp_path: Path, caplog) -> None:
    (tmp_path / "a.jpg").write_bytes(radiance_hdr(20000, 20000))
    (tmp_path / "b.png").write_bytes(png_header(30000, 1))
    with open(tmp_path / "c.jpg", "wb") as handle:
        handle.write(b"\xff\xd8\xff")
        handle.truncate(1 << 30)
    cv2.imwrite(str(tmp_path / "d.png"), np.full((48, 64, 3), 9, np.uint8))
    source = ReplaySource(tmp_path, realtime=False, name="door")
    try:
        frame = source.read(timeout=1.0)
    finally:
        source.close()
    assert frame is not None and frame.image.shape == (48, 64, 3)
    assert source.skipped == 3
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and all("\n" not in line for line in skipped)
    assert "a.jpg: not a decodable image" in skipped[0] and "30000x1" in skipped[1] and "c.jpg" in skipped[2]
