"""The emulated camera: scripted scenes of real photos, ground truth per frame, checked against pixels
and against the real BlazeFace detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.camera import CameraSpec, EndOfStream, open_source
from edgeface.camera.emulated import EmulatedSource
from edgeface.camera.scene import Actor, ActorPhoto, Occluder, Scene, SceneSpec, locate_faces, walk_in_scene
from edgeface.vision.photos import read_image


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax1, bx1) - max(a[0], b[0])), max(0.0, min(ay1, by1) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


@pytest.fixture(scope="module")
def detector(models_dir: Path):
    from edgeface.vision.detect import FaceDetector

    instance = FaceDetector(models_dir)
    yield instance
    instance.close()


def _actor(photo: ActorPhoto, **kw) -> Actor:
    defaults = {"enter": 1.0, "exit": 3.0, "start": (0.3, 0.4), "end": (0.6, 0.5), "start_scale": 0.2}
    return Actor("khanh", (photo,), **{**defaults, "end_scale": 0.4, **kw})


def test_pasted_pixels_are_the_photo_where_the_truth_says(faces5: Path) -> None:
    path = faces5 / "khanh" / "001.jpg"
    photo = read_image(path)
    h, w = photo.shape[:2]
    face = (w * 0.3, h * 0.2, w * 0.4, h * 0.4)  # any box: the geometry must follow it
    scene = Scene(SceneSpec(actors=(_actor(ActorPhoto(path, face), start_scale=0.3, end_scale=0.3),)))
    image, truth = scene.render(2.0)
    assert len(truth) == 1 and truth[0].label == "khanh" and truth[0].photo == path
    fx, fy, fw, fh = truth[0].face
    assert fh == pytest.approx(0.3 * 480, abs=1.0)
    assert fx + fw / 2 == pytest.approx(0.45 * 640, abs=1.0) and fy + fh / 2 == pytest.approx(
        0.45 * 480, abs=1.0
    )
    crop = photo[int(face[1]) : int(face[1] + face[3]), int(face[0]) : int(face[0] + face[2])]
    expected = cv2.resize(crop, (round(fw), round(fh)), interpolation=cv2.INTER_AREA)
    got = image[round(fy) : round(fy) + expected.shape[0], round(fx) : round(fx) + expected.shape[1]]
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 8
    outside = np.ones(image.shape[:2], bool)
    x, y, rw, rh = (round(v) for v in truth[0].region)
    outside[y : y + rh, x : x + rw] = False
    assert np.array_equal(image[outside], scene.background[outside])


def test_actors_enter_move_grow_and_leave(faces5: Path) -> None:
    scene = Scene(SceneSpec(actors=(_actor(ActorPhoto(faces5 / "khanh" / "002.jpg", (10, 10, 50, 60))),)))
    assert scene.truth(0.99) == () and scene.truth(3.0) == ()
    first, last = scene.truth(1.0)[0], scene.truth(2.98)[0]
    assert first.face[3] == pytest.approx(0.2 * 480, abs=1) and last.face[3] == pytest.approx(
        0.4 * 480, abs=2
    )
    assert first.face[0] + first.face[2] / 2 == pytest.approx(0.3 * 640, abs=1)
    assert last.face[0] + last.face[2] / 2 == pytest.approx(0.6 * 640, abs=3)
    assert scene.duration == 3.0


def test_whole_photo_is_pasted_when_no_face_box_is_known(faces5: Path) -> None:
    path = faces5 / "chipu" / "001.jpg"
    scene = Scene(SceneSpec(actors=(_actor(ActorPhoto(path), start_scale=0.5, end_scale=0.5),)))
    truth = scene.truth(2.0)[0]
    assert truth.face is None and truth.region[3] == pytest.approx(240, abs=1)


def test_same_seed_same_pixels_and_camera_effects_change_them(faces5: Path) -> None:
    actor = _actor(ActorPhoto(faces5 / "sontung" / "001.jpg"))
    noisy = SceneSpec(actors=(actor,), seed=7, noise_sigma=6.0, blur_sigma=(0.5, 1.5), lighting_amplitude=0.3)
    a, _ = Scene(noisy).render(1.5, 22)
    b, _ = Scene(noisy).render(1.5, 22)
    c, _ = Scene(noisy).render(1.5, 23)
    clean, _ = Scene(SceneSpec(actors=(actor,), seed=7)).render(1.5, 22)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - clean.astype(int)).mean() > 2
    lit = SceneSpec(seed=7, lighting_amplitude=0.3, lighting_period=4.0)
    bright, dark = Scene(lit).render(1.0)[0].mean(), Scene(lit).render(3.0)[0].mean()
    assert bright > dark * 1.3


def test_occluder_covers_the_face_and_reports_how_much(faces5: Path) -> None:
    actor = _actor(
        ActorPhoto(faces5 / "baejun" / "001.jpg", (60, 40, 120, 140)), start_scale=0.3, end_scale=0.3
    )
    occluder = Occluder((0.0, 0.0, 0.45, 1.0), enter=1.5, color=(0, 0, 255))
    scene = Scene(SceneSpec(actors=(actor,), occluder=occluder))
    assert scene.truth(1.2)[0].occluded == 0.0
    image, truth = scene.render(2.0)
    fx, _, fw, _ = truth[0].face
    assert truth[0].occluded == pytest.approx((0.45 * 640 - fx) / fw, abs=0.02)
    assert (image[:, :280] == (0, 0, 255)).all()


def test_emulated_source_plays_the_scene_and_ends(faces5: Path) -> None:
    spec = CameraSpec(kind="emulated", faces=faces5, fps=10.0, realtime=False, width=320, height=240)
    with open_source(spec) as source:
        frames = []
        with pytest.raises(EndOfStream, match="scripted scene ended"):
            while True:
                frames.append(source.read(1.0))
        labels = {t.label for f in frames for t in source.truth(f.seq)}
    assert labels == {"baejun", "chipu", "khanh", "sontung", "thaotam"}
    assert len(frames) == source.frame_count == round(source.scene.duration * 10)
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert frames[0].image.shape == (240, 320, 3)


def test_emulated_source_loops_with_the_same_truth() -> None:
    with EmulatedSource(SceneSpec(duration=0.5), fps=10.0, realtime=False, loop=True) as source:
        frames = [source.read(1.0) for _ in range(12)]
        assert source.scene_time(7) == pytest.approx(0.2)
    assert np.array_equal(frames[2].image, frames[7].image)


@pytest.mark.slow
def test_detector_finds_each_face_where_the_truth_says(faces5: Path, detector) -> None:
    people = {d.name: locate_faces(sorted(d.glob("*.jpg"))[:2], detector) for d in sorted(faces5.iterdir())}
    assert all(people.values()), "the detector found no face in some person's first photos"
    camera = SceneSpec(seed=5, noise_sigma=3.0, blur_sigma=(0.0, 1.0), lighting_amplitude=0.15)
    scene = walk_in_scene(people, seconds_each=2.0, gap=0.5, base=camera)
    with EmulatedSource(scene, fps=5.0, realtime=False) as source:
        frames = [source.read(1.0) for _ in range(source.frame_count or 0)]
        truths = [source.truth(f.seq) for f in frames]
    faces = hits = false_alarms = 0
    for frame, truth in zip(frames, truths, strict=True):
        found = detector.detect(frame.image)
        for actor in truth:
            faces += 1
            hits += any(_iou(d.bbox, actor.face) >= 0.5 for d in found)
        false_alarms += sum(not any(_iou(d.bbox, a.face) > 0.1 for a in truth) for d in found)
    assert faces >= 40
    assert hits / faces >= 0.9, f"detected {hits}/{faces} emulated faces"
    assert false_alarms <= 0.05 * len(frames)


def test_realtime_emulated_source_paces_frames() -> None:
    with EmulatedSource(SceneSpec(width=64, height=48), fps=20.0, realtime=True) as source:
        frames = [source.read(1.0) for _ in range(7)]
    assert all(f is not None for f in frames)
    assert frames[-1].ts - frames[0].ts >= 0.27  # 6 periods of 50 ms, minus scheduling slack


def test_emulated_spec_with_a_missing_faces_folder_is_a_camera_error(tmp_path: Path) -> None:
    from edgeface.camera import CameraError

    with pytest.raises(CameraError, match=r"camera cam0: .*missing"):
        open_source(CameraSpec(kind="emulated", faces=tmp_path / "missing"))
