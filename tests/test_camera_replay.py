"""Replay of image folders and video files (written here with cv2.VideoWriter), real time or as fast."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.camera import CameraError, CameraSpec, EndOfStream, open_source
from edgeface.camera.replay import ReplaySource


def _read_all(source, limit: int = 1000) -> list:
    frames = []
    for _ in range(limit):
        try:
            frame = source.read(5.0)
        except EndOfStream:
            break
        assert frame is not None, "as-fast-as-possible replay returned None"
        frames.append(frame)
    return frames


def _write_video(path: Path, count: int, size: tuple[int, int] = (160, 120)) -> list[np.ndarray]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    if not writer.isOpened():
        pytest.fail("this OpenCV cannot write MJPG/AVI")
    frames = []
    for i in range(count):
        image = np.full((size[1], size[0], 3), 0, np.uint8)
        image[:, :, i % 3] = 40 + 15 * i  # a different flat colour per frame, to check order
        writer.write(image)
        frames.append(image)
    writer.release()
    return frames


def _check_stamps(frames: list) -> None:
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(frames))


def test_folder_of_real_photos_plays_in_name_order_as_fast_as_possible(faces5: Path) -> None:
    folder = faces5 / "khanh"
    names = sorted(p.name for p in folder.glob("*.jpg"))
    with ReplaySource(folder, fps=1.0, realtime=False, name="door") as source:
        frames = _read_all(source)
    assert len(frames) == len(names)
    _check_stamps(frames)
    first = cv2.imread(str(folder / names[0]))
    assert frames[0].image.shape == first.shape and np.array_equal(frames[0].image, first)
    assert {f.camera for f in frames} == {"door"}


def test_realtime_replay_follows_the_fps_schedule(faces5: Path) -> None:
    with ReplaySource(faces5 / "chipu", fps=20.0, realtime=True, size=(64, 48)) as source:
        start = time.monotonic()
        frames = [source.read(1.0) for _ in range(11)]
        elapsed = time.monotonic() - start
    assert all(f is not None for f in frames)
    assert elapsed >= 0.45  # 10 periods of 50 ms: paced, never early (a busy host may only make it later)
    gaps = np.diff([f.ts for f in frames])
    assert np.median(gaps) >= 0.04


def test_realtime_replay_returns_none_when_the_next_frame_is_not_due(faces5: Path) -> None:
    with ReplaySource(faces5 / "chipu", fps=2.0, realtime=True) as source:
        assert source.read(1.0) is not None
        assert source.read(0.01) is None
        assert source.read(1.0) is not None


def test_video_file_written_by_videowriter_is_read_back_in_order(tmp_path: Path) -> None:
    written = _write_video(tmp_path / "clip.avi", 12)
    with ReplaySource(tmp_path / "clip.avi", fps=10.0, realtime=False) as source:
        frames = _read_all(source)
    assert len(frames) == len(written)
    _check_stamps(frames)
    for frame, original in zip(frames, written, strict=True):
        assert np.abs(frame.image.astype(int) - original.astype(int)).mean() < 6  # MJPG is lossy


def test_loop_restarts_a_video(tmp_path: Path) -> None:
    _write_video(tmp_path / "clip.avi", 4)
    with ReplaySource(tmp_path / "clip.avi", realtime=False, loop=True) as source:
        frames = [source.read(1.0) for _ in range(10)]
    assert [f.seq for f in frames if f is not None] == list(range(10))
    assert np.array_equal(frames[0].image, frames[4].image)


def test_open_source_replay_fits_photos_into_the_spec_size(faces5: Path) -> None:
    spec = CameraSpec(kind="replay", path=faces5 / "baejun", width=320, height=240, realtime=False)
    photo = cv2.imread(str(sorted((faces5 / "baejun").glob("*.jpg"))[0]))  # portrait, 287x414
    with open_source(spec) as source:
        frame = source.read(1.0)
    assert frame is not None and frame.image.shape == (240, 320, 3)
    new_w = round(photo.shape[1] * 240 / photo.shape[0])
    x0 = (320 - new_w) // 2
    assert not frame.image[:, :x0].any() and not frame.image[:, x0 + new_w :].any()  # black bars
    inner = frame.image[:, x0 : x0 + new_w]
    expected = cv2.resize(photo, (new_w, 240), interpolation=cv2.INTER_AREA)
    assert np.abs(inner.astype(int) - expected.astype(int)).mean() < 1


def test_replay_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="neither a folder nor a file"):
        ReplaySource(tmp_path / "missing")
    with pytest.raises(CameraError, match="holds no images"):
        ReplaySource(tmp_path)
    (tmp_path / "bad.avi").write_bytes(b"not a video")
    with pytest.raises(CameraError, match="cannot decode video"):
        ReplaySource(tmp_path / "bad.avi")
    broken = tmp_path / "photos"
    broken.mkdir()
    (broken / "001.jpg").write_bytes(b"\xff\xd8 truncated")
    with ReplaySource(broken, realtime=False) as source, pytest.raises(CameraError, match=r"001\.jpg"):
        source.read(1.0)
