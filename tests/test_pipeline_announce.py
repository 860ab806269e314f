"""The `Announcer`'s rules (docs/design.md §5), decision by decision on a scripted clock.

`test_pipeline_recognize.py` runs the same announcer behind the recognizer on emulated video; here each rule is
pinned on its own: the identity cooldown per camera, the stranger cooldown by face likeness at the
decision threshold, corrections naming the event they correct, and the bounded memory of event ids.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from edgeface.pipeline.announce import MAX_REMEMBERED, Announcer, AnnounceVerdict
from edgeface.pipeline.recognize import Recognition
from edgeface.types import Identity, Match
from tests.factories import unit_vectors

COOLDOWN = 10.0
THRESHOLD = 0.5


def decision(
    who: str | None,
    track: int = 1,
    camera: str = "door",
    embedding: np.ndarray | None = None,
    kind: Literal["first", "correction"] = "first",
    threshold: float = THRESHOLD,
) -> Recognition:
    """A track decision: a match for `who`, or `unknown` when `who` is None."""
    identity = Identity(who, who.title()) if who else None
    match = Match("match" if who else "unknown", identity, 0.8 if who else 0.2, 0.3, threshold)
    face = embedding if embedding is not None else unit_vectors(1, seed=track)[0]
    return Recognition(camera, track, match, 3, (0.0, 0.0, 50.0, 50.0), 0.0, 1, face, kind)


def face_at_cosine(base: np.ndarray, cosine: float, seed: int = 7) -> np.ndarray:
    """A unit vector whose cosine with the unit vector `base` is exactly `cosine`."""
    other = unit_vectors(1, dim=base.shape[0], seed=seed)[0]
    other = other - (other @ base) * base
    other /= np.linalg.norm(other)
    return (cosine * base + np.sqrt(1 - cosine**2) * other).astype(np.float32)


def send(announcer: Announcer, d: Recognition, now: float, event_id: str = "") -> AnnounceVerdict:
    """Consider `d` and, when it is let out, record it as the daemon does after publishing."""
    verdict = announcer.consider(d, now)
    if verdict.announce:
        announcer.announced(d, event_id or f"event-{d.camera}-{d.track_id}-{now}", now)
    return verdict


# --- identities -------------------------------------------------------------------------------------------
def test_the_same_identity_on_the_same_camera_waits_out_the_cooldown() -> None:
    announcer = Announcer(COOLDOWN)
    assert send(announcer, decision("khanh", track=1), 0.0).announce
    held = send(announcer, decision("khanh", track=2), COOLDOWN - 0.01)
    assert not held.announce and held.reason == "khanh again within the cooldown"
    assert send(announcer, decision("khanh", track=3), COOLDOWN).announce  # the cooldown is [0, 10)


def test_the_cooldown_runs_from_the_last_announced_event_not_the_last_held_one() -> None:
    announcer = Announcer(COOLDOWN)
    send(announcer, decision("khanh", track=1), 0.0)
    assert not send(announcer, decision("khanh", track=2), 9.0).announce  # held back: not recorded
    assert send(announcer, decision("khanh", track=3), 10.5).announce


def test_other_identities_and_other_cameras_are_not_held_back() -> None:
    announcer = Announcer(COOLDOWN)
    send(announcer, decision("khanh", camera="door"), 0.0)
    assert send(announcer, decision("chipu", track=2, camera="door"), 1.0).announce
    assert send(announcer, decision("khanh", track=3, camera="garage"), 1.0).announce
    assert not send(announcer, decision("khanh", track=4, camera="garage"), 2.0).announce


def test_a_decision_that_was_never_published_does_not_start_a_cooldown() -> None:
    announcer = Announcer(COOLDOWN)
    assert announcer.consider(decision("khanh", track=1), 0.0).announce  # publish failed: no `announced`
    assert announcer.consider(decision("khanh", track=2), 1.0).announce


def test_a_zero_cooldown_announces_every_decision() -> None:
    announcer = Announcer(0.0)
    face = unit_vectors(1)[0]
    for n in range(3):
        assert send(announcer, decision("khanh", track=n), 0.0).announce
        assert send(announcer, decision(None, track=10 + n, embedding=face), 0.0).announce


# --- strangers --------------------------------------------------------------------------------------------
def test_a_stranger_whose_face_matches_a_recent_one_at_the_threshold_is_held_back() -> None:
    announcer = Announcer(COOLDOWN)
    first = unit_vectors(1, seed=1)[0]
    assert send(announcer, decision(None, track=1, embedding=first), 0.0).announce
    same = face_at_cosine(first, THRESHOLD + 1e-4)
    held = send(announcer, decision(None, track=2, embedding=same), 5.0)
    assert not held.announce and held.reason == "the same stranger again within the cooldown"
    other = face_at_cosine(first, THRESHOLD - 1e-3)
    assert send(announcer, decision(None, track=3, embedding=other), 5.0).announce


def test_the_stranger_likeness_uses_the_threshold_of_the_new_decision() -> None:
    announcer = Announcer(COOLDOWN)
    first = unit_vectors(1, seed=1)[0]
    send(announcer, decision(None, track=1, embedding=first), 0.0)
    face = face_at_cosine(first, 0.6)
    assert not send(announcer, decision(None, track=2, embedding=face, threshold=0.55), 1.0).announce
    assert send(announcer, decision(None, track=3, embedding=face, threshold=0.65), 1.0).announce


def test_a_stranger_is_remembered_per_camera_and_only_for_the_cooldown() -> None:
    announcer = Announcer(COOLDOWN)
    face = unit_vectors(1, seed=1)[0]
    send(announcer, decision(None, track=1, camera="door", embedding=face), 0.0)
    assert send(announcer, decision(None, track=2, camera="garage", embedding=face), 1.0).announce
    assert not send(
        announcer, decision(None, track=3, camera="door", embedding=face), COOLDOWN - 0.01
    ).announce
    assert send(announcer, decision(None, track=4, camera="door", embedding=face), COOLDOWN).announce


def test_a_stranger_does_not_hold_back_a_known_person_or_the_other_way_round() -> None:
    announcer = Announcer(COOLDOWN)
    face = unit_vectors(1, seed=1)[0]
    send(announcer, decision("khanh", track=1, embedding=face), 0.0)
    assert send(announcer, decision(None, track=2, embedding=face), 1.0).announce
    assert send(announcer, decision("chipu", track=3, embedding=face), 2.0).announce


# --- corrections ------------------------------------------------------------------------------------------
def test_a_correction_names_the_unknown_event_of_its_track_even_within_the_cooldown() -> None:
    announcer = Announcer(COOLDOWN)
    send(announcer, decision("khanh", track=1), 0.0, "event-khanh")
    send(announcer, decision(None, track=2), 1.0, "event-unknown")
    verdict = send(announcer, decision("khanh", track=2, kind="correction"), 2.0)
    assert verdict == AnnounceVerdict(True, "event-unknown")


def test_a_correction_without_a_published_unknown_is_a_plain_decision() -> None:
    announcer = Announcer(COOLDOWN)
    send(announcer, decision("khanh", track=1), 0.0)
    held = announcer.consider(decision("khanh", track=2, kind="correction"), 1.0)
    assert not held.announce and held.corrects is None
    fresh = announcer.consider(decision("chipu", track=3, kind="correction"), 1.0)
    assert fresh == AnnounceVerdict(True, None)


def test_a_correction_looks_up_its_own_camera_and_track() -> None:
    announcer = Announcer(COOLDOWN)
    send(announcer, decision(None, track=2, camera="door"), 0.0, "door-unknown")
    assert (
        announcer.consider(decision("khanh", track=2, camera="garage", kind="correction"), 1.0).corrects
        is None
    )
    assert (
        announcer.consider(decision("khanh", track=3, camera="door", kind="correction"), 1.0).corrects is None
    )
    assert announcer.consider(decision("khanh", track=2, camera="door", kind="correction"), 1.0).corrects == (
        "door-unknown"
    )


def test_a_first_decision_never_claims_to_correct_anything() -> None:
    announcer = Announcer(COOLDOWN)
    send(announcer, decision(None, track=2), 0.0, "event-unknown")
    assert announcer.consider(decision("khanh", track=2), 1.0) == AnnounceVerdict(True, None)


@pytest.mark.parametrize("refreshed", [False, True])
def test_event_ids_are_remembered_for_the_newest_tracks_only(refreshed: bool) -> None:
    announcer = Announcer(0.0)  # no cooldown: every decision is let out and remembered
    send(announcer, decision(None, track=0), 0.0, "event-0")
    for track in range(1, MAX_REMEMBERED):
        send(announcer, decision(None, track=track), 0.0)
    if refreshed:  # announced again: the newest, so the oldest is now track 1
        send(announcer, decision(None, track=0), 0.0, "event-0-again")
    send(announcer, decision(None, track=MAX_REMEMBERED), 0.0)  # one beyond the bound
    correction = announcer.consider(decision("khanh", track=0, kind="correction"), 0.0)
    assert correction.corrects == ("event-0-again" if refreshed else None)
    oldest_kept = 2 if refreshed else 1
    kept = announcer.consider(decision("khanh", track=oldest_kept, kind="correction"), 0.0)
    assert kept.corrects == f"event-door-{oldest_kept}-0.0"
    if refreshed:
        assert announcer.consider(decision("khanh", track=1, kind="correction"), 0.0).corrects is None
