"""A door scene for the demo and end-to-end tests: some people enrolled, others strangers.

Enrolment uses one part of each enrolled person's photos; the emulated camera shows only photos that were
not enrolled, so a match is earned, not remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeface.camera.scene import Actor, ActorPhoto, SceneSpec
from edgeface.vision.detect import Detects
from edgeface.vision.photos import identity_folders, read_image
from edgeface.vision.quality import yaw_ratio

FRONTAL_YAW = 0.3


@dataclass(frozen=True, slots=True)
class Scenario:
    enrolment: dict[str, list[Path]]  # identity -> photos to enroll
    strangers: tuple[str, ...]
    scene: SceneSpec
    expected: dict[int, str]  # actor index -> expected identity id, or "unknown"


def build_scenario(
    faces_root: Path,
    detector: Detects,
    strangers: int = 1,
    shown_per_person: int = 1,
    seconds_per_visit: float = 2.5,
    gap_s: float = 1.0,
    noise_sigma: float = 3.0,
    seed: int = 0,
) -> Scenario:
    """Identities in name order; the last `strangers` are never enrolled. Each visitor walks towards
    the camera (growing, drifting sideways) under mild blur, noise and lighting changes."""
    folders = identity_folders(faces_root)
    names = sorted(folders)
    enrolled, outsiders = names[: len(names) - strangers], names[len(names) - strangers :]
    enrolment: dict[str, list[Path]] = {}
    actors: list[Actor] = []
    expected: dict[int, str] = {}
    shown: dict[str, list[ActorPhoto]] = {}
    for name in names:
        shown[name] = _shown_photos(folders[name], detector, shown_per_person)
        if name in enrolled:
            enrolment[name] = [p for p in folders[name] if p not in {s.path for s in shown[name]}]
    t = 0.5
    # Round robin, so the same person comes back only after everyone else (beyond the cooldown).
    for round_index in range(shown_per_person):
        for name in names:
            if round_index >= len(shown[name]):
                continue
            side = -1 if len(actors) % 2 else 1
            actors.append(
                Actor(
                    label=name,
                    photos=(shown[name][round_index],),
                    enter=t,
                    exit=t + seconds_per_visit,
                    start=(0.5 + 0.12 * side, 0.48),
                    end=(0.5 - 0.05 * side, 0.45),
                    start_scale=0.3,
                    end_scale=0.42,
                )
            )
            expected[len(actors) - 1] = name if name in enrolled else "unknown"
            t += seconds_per_visit + gap_s
    scene = SceneSpec(
        actors=tuple(actors),
        duration=t,
        seed=seed,
        noise_sigma=noise_sigma,
        blur_sigma=(0.0, 0.8),
        lighting_amplitude=0.1,
    )
    return Scenario(enrolment, tuple(outsiders), scene, expected)


def _shown_photos(photos: list[Path], detector: Detects, count: int) -> list[ActorPhoto]:
    """The last `count` photos with a detectable, roughly frontal face, each with its face box for
    face-centred pasting (a profile photo would be held back by the quality gate, never decided)."""
    chosen: list[ActorPhoto] = []
    for path in reversed(photos):
        faces = detector.detect(read_image(path))
        if faces and yaw_ratio(faces[0]) <= FRONTAL_YAW:
            x, y, w, h = (float(v) for v in faces[0].bbox)
            chosen.append(ActorPhoto(path, (x, y, w, h)))
        if len(chosen) == count:
            break
    return chosen
