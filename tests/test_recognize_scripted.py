"""The per-frame recognizer's rules with scripted detections and embeddings (no models): when it decides, on
what, and how its settings, the quality gate, the lores stream and reconfigure() change that. The same
recognizer on emulated video with the real models is in test_pipeline_recognize.py."""

from __future__ import annotations

import numpy as np

from edgeface.pipeline.match_settings import MatchSettings
from edgeface.pipeline.recognize import Recognizer
from edgeface.types import Frame
from edgeface.vision.quality_settings import QualitySettings
from tests.factories import (
    ScriptedEncoder,
    fixed_rule,
    go_live,
    make_detection,
    make_gallery,
    textured,
    unit_vectors,
)

GALLERY = make_gallery(3, dim=32, seed=4)
STRANGER = unit_vectors(1, 32, seed=99)[0]


def recognizer(
    encoder: ScriptedEncoder,
    threshold: float = 0.5,
    settings: MatchSettings | None = None,
    allowed: bool = True,
    every_n_frames: int = 1,
) -> Recognizer:
    return Recognizer(
        encoder.detector,
        encoder,
        go_live(GALLERY, threshold, 0.05),
        QualitySettings(),
        settings or MatchSettings(),
        every_n_frames=every_n_frames,
        matching_allowed=lambda: allowed,
    )


IMAGE = textured(shape=(240, 320))


def frames(count: int, start: int = 0, dt: float = 0.1) -> list[Frame]:
    return [Frame(IMAGE, (start + i) * dt, start + i) for i in range(count)]


def run(rec: Recognizer, count: int, start: int = 0) -> list[list]:
    return [rec.process(frame) for frame in frames(count, start)]


def test_one_match_after_min_frames_then_settled() -> None:
    encoder = ScriptedEncoder([make_detection(50, 50, 100)], GALLERY.vectors[1])
    out = run(recognizer(encoder), 6)
    assert [len(d) for d in out] == [0, 0, 1, 0, 0, 0]
    decision = out[2][0]
    assert decision.match.decision == "match" and decision.match.identity is not None
    assert decision.match.identity.id == GALLERY.ids[1] and decision.frames == 3 and decision.kind == "first"
    assert decision.frame_ts == 0.2 and decision.gallery_version == GALLERY.version
    assert decision.bbox == (50, 50, 100, 100)


def test_a_stranger_is_unknown_with_the_threshold_it_was_held_to() -> None:
    out = run(recognizer(ScriptedEncoder([make_detection(50, 50, 100)], STRANGER), threshold=0.6), 3)
    (decision,) = out[2]
    assert decision.match.decision == "unknown" and decision.match.identity is None
    assert decision.match.threshold == 0.6


def test_faces_failing_the_quality_gate_are_never_embedded_or_decided() -> None:
    encoder = ScriptedEncoder([make_detection(50, 50, 30)], GALLERY.vectors[0])  # 30 px < 40 px
    rec = recognizer(encoder)
    assert not any(run(rec, 10))
    assert encoder.embedded == 0 and rec.rejected_faces == 10


def test_max_wait_decides_on_fewer_faces() -> None:
    encoder = ScriptedEncoder([make_detection(50, 50, 100)], GALLERY.vectors[2])
    rec = recognizer(encoder, settings=MatchSettings(min_frames=50, max_wait_ms=250))
    out = run(rec, 5)
    assert [len(d) for d in out] == [0, 0, 0, 1, 0]
    assert out[3][0].frames == 4


def test_a_decision_carries_the_newest_aligned_crops_of_its_track_bounded() -> None:
    encoder = ScriptedEncoder([make_detection(50, 50, 100)], GALLERY.vectors[2])
    out = run(recognizer(encoder, settings=MatchSettings(min_frames=3)), 3)
    assert [int(c[0, 0, 0]) for c in out[2][0].crops] == [0, 1, 2]
    many = ScriptedEncoder([make_detection(50, 50, 100)], GALLERY.vectors[2])
    out = run(recognizer(many, settings=MatchSettings(min_frames=50, max_wait_ms=1450)), 16)
    (decision,) = [d for frame in out for d in frame]
    assert decision.frames > 10  # more faces than a track keeps crops of: the newest 10 are carried
    assert [int(c[0, 0, 0]) for c in decision.crops] == list(range(decision.frames - 10, decision.frames))


def test_detect_every_other_frame() -> None:
    encoder = ScriptedEncoder([make_detection(50, 50, 100)], GALLERY.vectors[0])
    run(recognizer(encoder, every_n_frames=2), 6)
    assert len(encoder.seen_shapes) == 3


def test_detection_runs_on_lores_and_boxes_map_back_to_the_image() -> None:
    encoder = ScriptedEncoder([make_detection(25, 25, 50)], GALLERY.vectors[0])  # in lores pixels
    rec = recognizer(encoder)
    lores = IMAGE[::2, ::2].copy()
    out = [rec.process(Frame(IMAGE, i * 0.1, i, lores=lores)) for i in range(3)]
    assert encoder.seen_shapes == [lores.shape] * 3
    assert out[2][0].bbox == (50.0, 50.0, 100.0, 100.0)


def test_matching_not_allowed_turns_a_match_into_unknown() -> None:
    encoder = ScriptedEncoder([make_detection(50, 50, 100)], GALLERY.vectors[1])
    (decision,) = run(recognizer(encoder, allowed=False), 3)[2]
    assert decision.match.decision == "unknown" and decision.match.score > 0.99


def test_reconfigure_decides_new_tracks_with_the_new_rule() -> None:
    encoder = ScriptedEncoder([make_detection(50, 50, 100)], GALLERY.vectors[1])
    rec = recognizer(encoder, threshold=0.5)
    assert run(rec, 3)[2][0].match.threshold == 0.5
    rec.live.publish(GALLERY, fixed_rule(0.999_999, 0.05))  # the same gallery goes live with a new rule
    encoder.faces = [make_detection(200, 120, 100)]  # someone else, elsewhere: a new track
    encoder.person = GALLERY.vectors[1] * 0.8 + GALLERY.vectors[0] * 0.2
    encoder.person /= np.linalg.norm(encoder.person)
    later = [d for step in run(rec, 3, start=100) for d in step]
    assert [(d.match.decision, d.match.threshold) for d in later] == [("unknown", 0.999_999)]
