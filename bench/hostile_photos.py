"""Peak memory of reading hostile photos and of the detection cascade on a large faceless photo.

Each case runs in a fresh interpreter (so `ru_maxrss` is that case's own peak): a Radiance HDR named .jpg, a
valid JPEG followed by 2 GiB of zeros (sparse: no disk is used), a 30000x1 PNG, a 60000x60000 PNG header,
and the photo cascade (two BlazeFace ranges, bordered retries) on a 6000x6000 (36 MP) black photo.

    python bench/hostile_photos.py [--out bench/results/hostile_photos.json]   # about 15 s
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, emit

CASES = ("hdr_named_jpg", "jpeg_plus_2gib_zeros", "png_30000x1", "png_60000x60000", "cascade_36mp_faceless")

CHILD = r"""
import json, resource, struct, sys, zlib
from pathlib import Path
import cv2, numpy as np
case, folder, models = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

def png(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(3 * width + 1)))

path = folder / case
if case == "hdr_named_jpg":
    path.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n" + b"\x02\x02\x4e\x20" * 4)
elif case == "jpeg_plus_2gib_zeros":
    with open(path, "wb") as handle:
        handle.write(cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes())
        handle.truncate(2 << 30)
elif case == "png_30000x1":
    path.write_bytes(png(30000, 1))
elif case == "png_60000x60000":
    path.write_bytes(png(60000, 60000))
from edgeface.errors import ImageError
from edgeface.vision.detect import FaceDetector
from edgeface.vision.encoder import CascadeDetector
from edgeface.vision.photos import read_image
cascade = CascadeDetector([FaceDetector(models, "full"), FaceDetector(models, "short")])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if case == "cascade_36mp_faceless":
    outcome = f"{len(cascade.detect(np.zeros((6000, 6000, 3), np.uint8)))} faces"
else:
    try:
        outcome = f"decoded {read_image(path).shape}"
    except ImageError as exc:
        outcome = "refused: " + str(exc).split(": ", 1)[1][:120]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "rss_before_mib": before // 1024, "rss_peak_mib": peak // 1024}))
"""


def run_case(case: str, folder: Path, models: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, case, str(folder), str(models)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rss_growth_mib"] = int(str(result["rss_peak_mib"])) - int(str(result["rss_before_mib"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--quick", action="store_true", help="accepted for the smoke test; the bench is quick"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = {case: run_case(case, Path(folder), args.models) for case in CASES}
    emit("hostile_photos", {"quick": args.quick, "cases": list(CASES)}, results, args.out)


if __name__ == "__main__":
    main()
