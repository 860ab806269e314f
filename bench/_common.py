"""Shared helpers for the bench scripts: host description, JSON output, percentiles, the 80/20 split.

Only the standard library is imported at module level, so a bench script can pin BLAS/OpenMP thread counts
(environment variables) before it imports numpy. Output format: docs/design.md §10, one JSON object
``{"bench", "host", "params", "results"}`` on stdout.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
GALLERY_FRACTION = 0.8


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_version(name: str) -> str | None:
    """Installed distribution version, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def host_info() -> dict[str, object]:
    """Describe the machine and interpreter the numbers were measured on."""
    return {
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_bytes": _mem_total_bytes(),
        "python": platform.python_version(),
        "numpy": package_version("numpy"),
        "git_commit": _git_commit(),
        "loadavg_at_end": list(os.getloadavg()),
        "utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def emit(bench: str, params: dict[str, Any], results: dict[str, Any], out: Path | None = None) -> None:
    """Print one docs/design.md §10 JSON object on stdout; also write it to ``out`` when given."""
    document = {"bench": bench, "host": host_info(), "params": params, "results": results}
    text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        log.info("wrote %s", out)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values (numpy's default 'linear' method)."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def percentiles(samples: Sequence[float]) -> dict[str, float | int]:
    """median, p95, p99, min, max and count of ``samples`` (p99 of < 100 samples is close to the max)."""
    if not samples:
        raise ValueError("percentiles() needs at least one sample, got none")
    ordered = sorted(float(s) for s in samples)
    return {
        "median": _quantile(ordered, 0.5),
        "p95": _quantile(ordered, 0.95),
        "p99": _quantile(ordered, 0.99),
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def gallery_count(n_files: int) -> int:
    """80% of an identity's photos, rounded half up, keeping at least one gallery and one probe photo."""
    if n_files < 2:
        raise ValueError(f"an identity needs at least 2 photos for an 80/20 split, got {n_files}")
    return min(max(math.floor(GALLERY_FRACTION * n_files + 0.5), 1), n_files - 1)


def split_80_20(
    files_by_identity: dict[str, list[Path]], seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Stratified 80/20 gallery/probe split, identical for every method evaluated on the same photos.

    One ``numpy.random.default_rng(seed)`` per call; identities are visited in sorted name order; each
    identity's file list is sorted, permuted with ``rng.permutation`` and the first ``gallery_count(n)``
    files become its gallery, the rest its probes.
    """
    import numpy as np  # local: keep this module importable before thread counts are pinned

    rng = np.random.default_rng(seed)
    gallery: dict[str, list[Path]] = {}
    probes: dict[str, list[Path]] = {}
    for identity in sorted(files_by_identity):
        files = sorted(files_by_identity[identity])
        order = rng.permutation(len(files))
        cut = gallery_count(len(files))
        gallery[identity] = [files[i] for i in order[:cut]]
        probes[identity] = [files[i] for i in order[cut:]]
    return gallery, probes


def list_identities(
    root: Path, suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png")
) -> dict[str, list[Path]]:
    """``{identity: sorted photo paths}`` for a ``root/<identity>/<photo>`` tree."""
    if not root.is_dir():
        raise FileNotFoundError(f"photo directory not found: {root} (set EDGEFACE_FACES or pass --faces)")
    found = {
        d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in suffixes)
        for d in sorted(root.iterdir())
        if d.is_dir()
    }
    found = {name: files for name, files in found.items() if files}
    if not found:
        raise FileNotFoundError(f"no <identity>/<photo> images under {root}")
    return found


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc/self/status VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError("VmRSS not found in /proc/self/status (Linux only)")


FRAME_SIZE = (640, 480)
FACE_CROP_PX = 300  # central square crop of a photo is pasted at this size (dlib's face box: ~130 px median)


def _paste(frame: Any, crop: Any, cx: int, cy: int) -> None:
    """Paste ``crop`` centred at (cx, cy), clipped to the frame borders."""
    side = crop.shape[0]
    x0, y0 = cx - side // 2, cy - side // 2
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + side, frame.shape[1]), min(y0 + side, frame.shape[0])
    frame[fy0:fy1, fx0:fx1] = crop[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]


def make_frames(photos: list[Path], n_faces: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` deterministic 640x480 BGR frames with ``n_faces`` pasted photos on a neutral grey background.

    Each pasted photo is its central square crop resized to FACE_CROP_PX, centred in one of three columns
    (neighbouring crops overlap at their borders, faces do not) with a seeded vertical offset. The face
    extent is not measured here: the benches report the detected box widths. The same
    (photos, n_faces, count, seed) always gives the same frames, so edgeface and its peers see identical input.
    """
    import cv2  # local: importing this module stays cheap
    import numpy as np

    if not 0 <= n_faces <= 3:
        raise ValueError(f"n_faces must be 0..3 (three columns), got {n_faces}")
    rng = np.random.default_rng(seed)
    width, height = FRAME_SIZE
    frames = []
    for _ in range(count):
        noise = rng.normal(0.0, 4.0, (height, width, 1))
        frame = np.clip(128.0 + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
        for col in sorted(rng.permutation(3)[:n_faces]):
            image = cv2.imread(str(photos[int(rng.integers(len(photos)))]), cv2.IMREAD_COLOR)
            if image is None:
                raise OSError("cannot decode a photo for the synthetic frames (check the faces directory)")
            h, w = image.shape[:2]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            crop = cv2.resize(image[top : top + side, left : left + side], (FACE_CROP_PX, FACE_CROP_PX))
            cy = int(rng.integers(height // 2 - 60, height // 2 + 61))
            _paste(frame, crop, width * (2 * int(col) + 1) // 6, cy)
        frames.append(frame)
    return frames
