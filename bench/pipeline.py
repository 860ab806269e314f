"""Pipeline benchmark (docs/design.md §10): frames/s, frame-to-event latency, per-stage ms, RSS,
start-to-READY.

Offline: 640x480 emulated frames with 0, 1 and 3 faces (visitors replaced every 1.5 s, so tracks keep
needing decisions) are rendered first, then fed to the recognizer as fast as it takes them.
Live: the whole daemon (real-time emulated camera at 15 fps, real mosquitto, spool, MQTT events).

    python bench/pipeline.py [--quick] [--out bench/results/pipeline.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentiles

from edgeface.camera.emulated import EmulatedSource
from edgeface.camera.scene import Actor, SceneSpec, locate_faces
from edgeface.daemon.parts import Parts, build_encoder, build_parts
from edgeface.daemon.service import Daemon
from edgeface.demo.localbroker import local_broker
from edgeface.demo.runner import demo_config, enroll
from edgeface.demo.scenario import build_scenario
from edgeface.identity.gallery import GalleryStore
from edgeface.pipeline.recognize import Recognizer
from edgeface.types import Frame
from edgeface.vision.detect import Detects
from edgeface.vision.photos import identity_folders

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces5"
SLOTS = {0: (), 1: (0.5,), 3: (0.2, 0.5, 0.8)}


def busy_scene(faces_root: Path, detector: Detects, n_faces: int, duration: float) -> SceneSpec:
    folders = identity_folders(faces_root)
    photos = [p for files in folders.values() for p in files[-6:]]
    located = [p for p in locate_faces(photos, detector) if p.face_box is not None]
    actors, k = [], 0
    for slot, x in enumerate(SLOTS[n_faces]):
        t = 0.2 * slot
        while t < duration:
            photo = located[k % len(located)]
            k += 1
            scale = 0.3 if n_faces == 1 else 0.2
            actors.append(Actor(f"v{k}", (photo,), t, t + 1.2, (x, 0.5), (x, 0.48), scale, scale * 1.1))
            t += 1.8  # 0.6 s without a face between visitors: one person does not become the next
    return SceneSpec(actors=tuple(actors), duration=duration, noise_sigma=3.0, blur_sigma=(0.0, 0.8), seed=1)


def render(source: EmulatedSource, count: int, fps: float) -> list[Frame]:
    """`count` frames rendered ahead of time, each stamped with its scene time, as a live camera would."""
    frames = []
    for i in range(count):
        frame = source.read(1.0)
        if frame is None:  # a source that is not paced in real time never waits, so this is a fault
            raise RuntimeError(f"the emulated source gave no frame {i} within 1 s")
        frames.append(replace(frame, ts=i / fps))
    return frames


def offline(
    faces_root: Path, n_faces: int, seconds: float, parts: Parts, fps: float = 15.0
) -> dict[str, Any]:
    source = EmulatedSource(
        busy_scene(faces_root, parts.encoder.detector, n_faces, seconds), fps=fps, realtime=False
    )
    frames = render(source, int(seconds * fps), fps)
    config = parts.config
    recognizer = Recognizer(
        parts.encoder.detector,
        parts.encoder,
        parts.live,
        config.quality,
        config.match,
        every_n_frames=config.detector.every_n_frames,
    )
    per_frame, deciding = [], []
    started = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        decisions = recognizer.process(frame)
        ms = (time.perf_counter() - t0) * 1e3
        per_frame.append(ms)
        if decisions:
            deciding.append(ms)
    elapsed = time.perf_counter() - started
    return {
        "faces": n_faces,
        "frames": len(frames),
        "fps": round(len(frames) / elapsed, 1),
        "frame_ms": percentiles(per_frame),
        "deciding_frame_ms": percentiles(deciding) if deciding else None,
        "stage_ms": recognizer.latency.summary(),
        "decisions": len(deciding),
    }


def live(faces_root: Path, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, local_broker(Path(tmp)) as port:
        encoder = build_encoder(demo_config(Path(tmp) / "state", port), photos=True)
        scenario = build_scenario(faces_root, encoder.detector, shown_per_person=3)
        enroll(encoder, scenario, GalleryStore(Path(tmp) / "state" / "gallery"))
        encoder.close()
        source = EmulatedSource(scenario.scene, fps=15.0, realtime=True, name="door")
        daemon = Daemon(demo_config(Path(tmp) / "state", port), source=source)
        started = time.monotonic()
        runner = threading.Thread(target=daemon.run)
        runner.start()
        daemon.ready.wait(60)
        ready_s = time.monotonic() - started
        runner.join(timeout=seconds)
        rss_mb = current_rss_mb()
        daemon.request_stop()
        runner.join()
        elapsed = time.monotonic() - started - ready_s
        return {
            "camera_fps": 15.0,
            "processed_fps": round(daemon.frames_processed / elapsed, 1),
            "dropped_frames": daemon.frames.dropped,
            "events": daemon.events_published,
            "start_to_ready_s": round(ready_s, 2),
            "start_to_ready_note": "Daemon.run() to READY (models, gallery, MQTT connect); Python already started",
            "rss_mb_while_running": rss_mb,
            "stage_ms": daemon.recognizer.latency.summary(),
        }


def current_rss_mb() -> float:
    """Resident memory of this process now (the live-daemon child: models, gallery, camera, MQTT)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    parser.add_argument("--faces", type=Path, default=FACES)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--live-only", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.live_only:  # the child process below: a fresh interpreter, so its RSS is the daemon's own
        print(json.dumps(live(args.faces, args.live_only)))
        return
    seconds, live_seconds = (4.0, 10.0) if args.quick else (30.0, 60.0)
    config = demo_config(Path(tempfile.gettempdir()), 1883)
    encoder = build_encoder(config, photos=True)
    scenario = build_scenario(args.faces, encoder.detector)
    with tempfile.TemporaryDirectory() as tmp:
        gallery = enroll(encoder, scenario, GalleryStore(Path(tmp)))
    encoder.close()
    parts = build_parts(config, gallery=gallery)  # the camera face path, as the daemon builds it
    results: dict[str, Any] = {
        f"offline_{n}_faces": offline(args.faces, n, seconds, parts) for n in (0, 1, 3)
    }
    child = subprocess.run(
        [sys.executable, __file__, "--faces", str(args.faces), "--live-only", str(live_seconds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    results["live_daemon"] = json.loads(child.stdout)
    # The offline runs' peak includes their pre-rendered frames (~0.9 MB each): not the daemon's size.
    results["offline_peak_rss_mb_including_prerendered_frames"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    emit(
        "pipeline",
        {"resolution": [640, 480], "offline_seconds": seconds, "live_seconds": live_seconds,
         "detector": config.detector.model, "refine_landmarks": config.embedder.refine_landmarks,
         "embedder": parts.embedder.card.name, "flip": config.embedder.flip, "threads": config.embedder.num_threads, "quick": args.quick},
        results,
        args.out,
    )  # fmt: skip


if __name__ == "__main__":
    main()
