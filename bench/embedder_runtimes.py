"""Embedder ms/face under tflite-runtime vs ai-edge-litert, and an embedding cross-check between the two.

tflite-runtime 2.14 (the only runtime on 32-bit Raspberry Pi OS) needs numpy<2, so it lives in its own venv
outside the repository; it needs nothing else (`edgeface.vision.runtime` imports only numpy). To reproduce:

    python3 -m venv /tmp/tflrt
    /tmp/tflrt/bin/pip install "numpy<2" "tflite-runtime==2.14.0"
    python3 bench/embedder_runtimes.py --tflite-python /tmp/tflrt/bin/python \\
        --out bench/results/embedder_tflite_runtime.json
    python3 bench/embedder_runtimes.py --tflite-python /tmp/tflrt/bin/python --quick   # smoke

The main interpreter (numpy 2, ai-edge-litert) times every carded embedder with `bench/embedder.py`'s
round-robin timer (one round-robin per
thread count: with 1- and 2-thread tflite-runtime interpreters alive together its 2-thread ones ran ~25x
slower here, an artefact of co-resident thread pools, not of the runtime), then runs this same file under the venv interpreter (`--worker`) to time the same configs
under tflite-runtime; the passes alternate `--passes` times so both runtimes see the same machine load.
Both embed the same real faces (central crops of /work/shared/data/faces5 photos, normalised per the model
card) through `edgeface.vision.runtime.TFLiteModel`, and the per-face cosine between the runtimes is reported
(pass: built-in kernels agree to >= 0.9999; with XNNPACK, at least as well as ai-edge-litert's own XNNPACK
and built-in kernels agree with each other, since tflite-runtime 2.14 does not delegate the int8 model).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import ROOT, emit, package_version, percentiles
from embedder import Config, card_models, time_round_robin

log = logging.getLogger("bench.embedder_runtimes")

REFERENCE = "ai-edge-litert"
CANDIDATE = "tflite-runtime"
MIN_COSINE = 0.9999
REQUIRED = ("facerec128.int8", "facerec128.float32")
FACES = Path(os.environ.get("EDGEFACE_FACES", "/work/shared/data/faces5"))


def face_inputs(card_path: Path, per_person: int) -> Any:
    """(n, h, w, 3) float32 model inputs: the first photos of each person, centre-cropped, card-normalised."""
    import cv2
    import numpy as np
    from _common import list_identities

    card = json.loads(card_path.read_text())["input"]
    width, height = card["size"]
    faces = []
    for files in list_identities(FACES).values():
        for photo in files[:per_person]:
            image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            if image is None:
                raise OSError(f"cannot decode {photo}")
            h, w = image.shape[:2]
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            crop = cv2.resize(image[top : top + side, left : left + side], (width, height))
            if card["color"] == "RGB":
                crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            faces.append((crop.astype(np.float32) - card["mean"]) / np.asarray(card["std"], np.float32))
    return np.stack(faces).astype(np.float32)


def embed(path: Path, faces: Any, runtime: str, use_xnnpack: bool) -> Any:
    """(n, d) embeddings, one face per invocation (batch 1, as on the device)."""
    import numpy as np

    from edgeface.vision.runtime import TFLiteModel

    with TFLiteModel(path, num_threads=1, runtime=runtime, use_xnnpack=use_xnnpack) as model:
        if model.runtime_name != runtime:
            raise RuntimeError(f"asked for {runtime}, got {model.runtime_name}")
        return np.concatenate([model.run(face[None])[0].reshape(1, -1) for face in faces])


def run_side(spec: dict[str, Any], runtime: str, work: Path, tag: str) -> dict[str, list[float]]:
    """Time every config under `runtime`; write its embeddings of the shared faces to work/<tag>.npz."""
    import numpy as np

    configs = [Config(c["model"], Path(c["path"]), c["threads"], c["xnnpack"]) for c in spec["configs"]]
    samples: dict[str, list[float]] = {}
    for threads in sorted({c.threads for c in configs}):
        group = [c for c in configs if c.threads == threads]
        samples.update(time_round_robin(group, spec["rounds"], spec["per_round"], runtime=runtime))
    faces = np.load(work / "faces.npz")
    embeddings = {
        f"{name}|{'xnnpack' if x else 'builtin'}": embed(Path(path), faces[name], runtime, x)
        for name, path in spec["models"].items()
        for x in (True, False)
    }
    np.savez(work / f"{tag}.npz", **embeddings)
    return samples


def xnnpack_partitions(spec: dict[str, Any], runtime: str) -> dict[str, int]:
    """XNNPACK partitions per model under `runtime`'s default delegate (0 = the model runs on builtin kernels)."""
    from edgeface.vision.runtime import load_interpreter_class

    interpreter_class, _ = load_interpreter_class(runtime)
    out = {}
    for name, path in spec["models"].items():
        interpreter = interpreter_class(model_path=path, num_threads=1)
        interpreter.allocate_tensors()
        out[name] = sum(1 for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE")
    return out


def worker(work: Path, tag: str) -> int:
    """Venv side: time and embed under tflite-runtime, write work/<tag>.json."""
    sys.path.insert(0, str(ROOT))
    spec = json.loads((work / "spec.json").read_text())
    samples = run_side(spec, CANDIDATE, work, tag)
    versions = {"tflite-runtime": package_version("tflite-runtime"), "numpy": package_version("numpy")}
    document = {"samples": samples, "versions": versions, "partitions": xnnpack_partitions(spec, CANDIDATE)}
    (work / f"{tag}.json").write_text(json.dumps(document))
    return 0


def run_worker(python: str, work: Path, tag: str) -> dict[str, Any]:
    """Run this file under the tflite-runtime interpreter; return its samples and versions."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), "--worker", str(work), "--tag", tag],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tflite-runtime worker failed ({python}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads((work / f"{tag}.json").read_text())
    return result


def cosines(work: Path, ref_tag: str, cand_tags: list[str]) -> dict[str, dict[str, float]]:
    """Per (model, delegate): min and mean cosine between reference and every candidate pass's embeddings."""
    import numpy as np

    ref = np.load(work / f"{ref_tag}.npz")
    out: dict[str, dict[str, float]] = {}
    for key in ref.files:
        a = ref[key] / np.linalg.norm(ref[key], axis=1, keepdims=True)
        values = []
        for tag in cand_tags:
            b = np.load(work / f"{tag}.npz")[key]
            values.append(np.sum(a * (b / np.linalg.norm(b, axis=1, keepdims=True)), axis=1))
        cos = np.concatenate(values)
        out[key] = {
            "min": round(float(cos.min()), 7),
            "mean": round(float(cos.mean()), 7),
            "n": int(cos.size),
        }
    return out


def delegate_agreement(work: Path, tags: dict[str, str]) -> dict[str, dict[str, float]]:
    """Within each runtime: min cosine between its XNNPACK and built-in-kernel embeddings, per model."""
    import numpy as np

    out: dict[str, dict[str, float]] = {}
    for runtime, tag in tags.items():
        data = np.load(work / f"{tag}.npz")
        for key in data.files:
            if key.endswith("|xnnpack"):
                a, b = data[key], data[key.replace("|xnnpack", "|builtin")]
                a = a / np.linalg.norm(a, axis=1, keepdims=True)
                b = b / np.linalg.norm(b, axis=1, keepdims=True)
                model = key.split("|")[0]
                out.setdefault(runtime, {})[model] = round(float(np.sum(a * b, axis=1).min()), 7)
    return out


def summarise(samples: dict[str, dict[str, list[float]]]) -> tuple[dict[str, Any], dict[str, float]]:
    """({runtime: {config: median/p95/n}}, {config: tflite-runtime median / ai-edge-litert median})."""
    stats = {
        runtime: {key: {k: round(v, 4) for k, v in percentiles(s).items() if k in ("median", "p95", "n")}
                  for key, s in per.items()}
        for runtime, per in samples.items()
    }  # fmt: skip
    ratio = {
        key: round(stats[CANDIDATE][key]["median"] / stats[REFERENCE][key]["median"], 3)
        for key in stats[REFERENCE]
    }
    return stats, ratio


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite-python", default="/tmp/tflrt/bin/python", help="venv with tflite-runtime")
    parser.add_argument("--quick", action="store_true", help="few repeats, one pass (smoke)")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--passes", type=int, default=2, help="alternating passes per runtime")
    parser.add_argument("--per-person", type=int, default=4, help="faces per person for the cross-check")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="candidate", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Write spec.json and faces.npz for both sides; return the spec."""
    import numpy as np

    paths = card_models(args.models_dir)
    missing = [m for m in REQUIRED if m not in paths]
    if missing:
        raise FileNotFoundError(f"carded models missing: {missing} (run `python3 models/recipe.py embedder`)")
    rounds, per_round = (3, 5) if args.quick else (10, 10)
    spec = {
        "models": {n: str(p) for n, p in paths.items()},
        "configs": [
            {"model": n, "path": str(p), "threads": t, "xnnpack": x}
            for n, p in paths.items()
            for t in args.threads
            for x in (True, False)
        ],
        "rounds": rounds,
        "per_round": per_round,
    }
    (work / "spec.json").write_text(json.dumps(spec))
    cards = {Path(json.loads(c.read_text()).get("file", "")).stem: c for c in args.models_dir.glob("*.json")}
    np.savez(work / "faces.npz", **{n: face_inputs(cards[n], args.per_person) for n in paths})
    return spec


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.tag)
    sys.path.insert(0, str(ROOT))
    passes = 1 if args.quick else args.passes
    samples: dict[str, dict[str, list[float]]] = {REFERENCE: {}, CANDIDATE: {}}
    with tempfile.TemporaryDirectory(prefix="edgeface-bench-rt-") as tmp:
        work = Path(tmp)
        spec = prepare(args, work)
        cand_tags: list[str] = []
        versions: dict[str, Any] = {}
        cand_partitions: dict[str, int] = {}
        for i in range(passes):
            for key, s in run_side(spec, REFERENCE, work, "reference").items():
                samples[REFERENCE].setdefault(key, []).extend(s)
            result = run_worker(args.tflite_python, work, f"candidate{i}")
            for key, s in result["samples"].items():
                samples[CANDIDATE].setdefault(key, []).extend(s)
            cand_tags.append(f"candidate{i}")
            versions, cand_partitions = result["versions"], result["partitions"]
        agreement = cosines(work, "reference", cand_tags)
        within = delegate_agreement(work, {REFERENCE: "reference", CANDIDATE: cand_tags[0]})
    stats, ratio = summarise(samples)
    # The loader is proven on the same kernels: built-in (reference) kernels must agree to MIN_COSINE. With
    # XNNPACK on, tflite-runtime 2.14 does not delegate int8 and runs the reference kernels, while
    # ai-edge-litert's XNNPACK int8 kernels round differently; that case must agree as well as
    # ai-edge-litert agrees with itself across its two kernel sets.
    own = within[REFERENCE]
    matched = all(
        v["min"]
        >= (MIN_COSINE if key.endswith("|builtin") else min(MIN_COSINE, own[key.split("|")[0]]) - 1e-6)
        for key, v in agreement.items()
    )
    params = {
        "quick": args.quick,
        "batch": 1,
        "threads": args.threads,
        "passes": passes,
        "rounds_per_pass": spec["rounds"],
        "invocations_per_round": spec["per_round"],
        "faces": {"dir": str(FACES), "per_person": args.per_person, "crop": "central square"},
        "runtime": {
            REFERENCE: {
                "ai-edge-litert": package_version("ai-edge-litert"),
                "numpy": package_version("numpy"),
            },
            CANDIDATE: versions,
        },
        "min_cosine": MIN_COSINE,
    }
    results = {
        "ms_per_face": stats,
        "ratio_tflite_runtime_over_ai_edge_litert": ratio,
        "embedding_cosine": agreement,
        "embeddings_match": matched,
        "xnnpack_vs_builtin_min_cosine": within,
        "xnnpack_partitions": {REFERENCE: xnnpack_partitions(spec, REFERENCE), CANDIDATE: cand_partitions},
    }
    emit("embedder_runtimes", params, results, args.out)
    if not matched:
        log.error("tflite-runtime embeddings differ from ai-edge-litert's (min cosine < %s)", MIN_COSINE)
    return 0 if matched else 1


if __name__ == "__main__":
    sys.exit(main())
