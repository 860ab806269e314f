"""The user's path, measured: `edgeface enroll` then `edgeface identify` with no threshold given.

For each split, half the identities (rounded down) are enrolled with `--k` photos each through
`edgeface enroll --folders` (which calibrates the gallery's threshold on those photos), then every other
photo goes through `edgeface identify --json`: the enrolled people's remaining photos measure DIR (matched to
the right identity), the strangers' photos FPIR (matched to anyone). The commands run as a user runs them,
one process each.

    python bench/enroll_identify.py [--folders ../shared/data/faces5] [--k 5] [--splits 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from _common import emit, percentiles

from edgeface.vision.photos import identity_folders

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces5"
EDGEFACE = [str(Path(sys.executable).with_name("edgeface"))]  # the console script beside this interpreter


def run_split(folders: dict[str, list[Path]], seed: int, k: int, work: Path) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    names = list(rng.permutation(sorted(folders)))
    enrolled, strangers = names[: len(names) // 2], names[len(names) // 2 :]
    root = work / f"split{seed}"
    probes: dict[Path, str] = {}
    for name in enrolled:
        photos = [folders[name][i] for i in rng.permutation(len(folders[name]))]
        (root / "people" / name).mkdir(parents=True)
        for photo in photos[:k]:
            (root / "people" / name / photo.name).symlink_to(photo)
        probes |= {Path(p): name for p in photos[k:]}
    probes |= {p: "unknown" for name in strangers for p in folders[name]}
    gallery = root / "gallery"
    enroll = subprocess.run([*EDGEFACE, "enroll", "--gallery", str(gallery), "--folders", str(root / "people"), "--largest-face"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    identify = subprocess.run([*EDGEFACE, "identify", "--gallery", str(gallery), "--json", *map(str, probes)],
                              capture_output=True, text=True, check=False)  # fmt: skip
    rows = [json.loads(line) for line in identify.stdout.splitlines()]
    answer: dict[str, str] = {}
    for row in rows:  # a photo with several faces counts by its first (largest) face
        if row["image"] not in answer:
            answer[row["image"]] = row["identity"]["id"] if row["decision"] == "match" else "unknown"
    genuine = [answer.get(str(p), "unknown") == who for p, who in probes.items() if who != "unknown"]
    stranger = [answer.get(str(p), "unknown") != "unknown" for p, who in probes.items() if who == "unknown"]
    return {
        "seed": seed,
        "enrolled": enrolled,
        "dir": float(np.mean(genuine)),
        "fpir": float(np.mean(stranger)),
        "genuine_probes": len(genuine),
        "stranger_probes": len(stranger),
        "threshold": rows[0]["threshold"] if rows else None,
        "threshold_source": rows[0]["threshold_source"] if rows else None,
        "calibration": enroll.stdout.strip().splitlines()[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=Path, default=FACES)
    parser.add_argument("--k", type=int, default=5, help="enrolment photos per person")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    folders = identity_folders(args.folders)
    with tempfile.TemporaryDirectory() as work:
        splits = [run_split(folders, seed, args.k, Path(work)) for seed in range(args.splits)]
    results = {
        "dir": percentiles([s["dir"] for s in splits]) | {"mean": float(np.mean([s["dir"] for s in splits]))},
        "fpir": percentiles([s["fpir"] for s in splits])
        | {"mean": float(np.mean([s["fpir"] for s in splits]))},
        "splits": splits,
    }
    params = {
        "folders": str(args.folders),
        "k": args.k,
        "splits": args.splits,
        "command": "edgeface enroll/identify",
    }
    emit("enroll_identify", params, results, args.out)


if __name__ == "__main__":
    main()
