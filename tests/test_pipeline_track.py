from edgeface.pipeline.track import IouTracker, iou
from tests.factories import make_detection as det


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 1 / 3) < 1e-9


def test_moving_face_keeps_its_track_and_new_face_gets_a_new_one() -> None:
    tracker = IouTracker()
    first = tracker.update([det(100, 100)], 0.0)[0][0]
    second = tracker.update([det(105, 102), det(400, 300)], 0.1)
    ids = sorted(t.track_id for t, _ in second)
    assert first.track_id in ids and len(set(ids)) == 2
    assert first.frames_seen == 2


def test_tracks_expire() -> None:
    tracker = IouTracker(max_age_s=0.5)
    tracker.update([det(0, 0)], 0.0)
    assert tracker.expire(0.4) == []
    assert len(tracker.expire(0.6)) == 1 and tracker.tracks == {}
