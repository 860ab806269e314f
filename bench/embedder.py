"""Embedder speed benchmark: ms/face at batch 1 under ai-edge-litert, XNNPACK on/off, 1 and 2 threads.

Models: every `.tflite` embedder with a card in models/ (the shipped int8 and its float32 sibling), plus,
when TensorFlow is importable, GhostFaceNetV1 W1.3 S2 with random weights exported fresh into a temporary
directory in four forms: original and delegate-friendly (`edgeface_tools.export.prelu`), each int8 and float32,
and a trained GhostFaceNet checkpoint (`--ghostfacenet-checkpoint`, default the shared W0.5 S2 file) as
`edgeface-export` converts it, int8 beside float32.
All runners are created first and timed round-robin (one block of invocations per runner per round), so the
numbers are side by side under the same machine load. Time per face includes input quantisation and output
dequantisation (`edgeface.vision.runtime.TFLiteModel.run`), as on the device.

    python bench/embedder.py --quick                         # CI smoke, ~1 min (export dominates)
    python bench/embedder.py --out bench/results/embedder.json
    python bench/embedder.py --no-ghostfacenet --no-ghostfacenet-checkpoint --xnnpack-only \
        --out bench/results/embedder_sface.json      # SFace vs facerec128, int8 and float32 (issue 18)

MACs per face are counted from each .tflite graph (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import ROOT, emit, package_version, percentiles

log = logging.getLogger("bench.embedder")

GHOSTFACENET = {"width": 1.3, "strides": 2, "seed": 0}
_EXPORT_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from edgeface_tools.export.ghostfacenet import build_ghostfacenet_v1, randomize_statistics
from edgeface_tools.export.prelu import make_delegate_friendly
from edgeface_tools.export.quantize import convert_float32, convert_int8
out, width, strides, seed, n_cal = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tag, forms = sys.argv[6], sys.argv[7].split(",")
rng = np.random.default_rng(seed)
calibration = rng.normal(0.0, 0.5, (n_cal, 112, 112, 3)).astype("float32")
model = randomize_statistics(build_ghostfacenet_v1(width, strides, seed=seed), seed, calibration[:8])
if tag == "xnnpack":
    model = make_delegate_friendly(model)
if "float32" in forms:
    convert_float32(model, out / f"ghostfacenet_{tag}.float32.tflite")
if "int8" in forms:
    convert_int8(model, calibration, out / f"ghostfacenet_{tag}.int8.tflite")
"""
SHARED_CHECKPOINT = (
    ROOT.parent / "shared" / "data" / "ghostfacenet" / "ghostfacenetv1_w0.5_s2_dsitweed_epoch16.h5"
)
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces5"
_CHECKPOINT_SCRIPT = """
import argparse, sys
from pathlib import Path
from edgeface_tools.export import calibration, cli
from edgeface_tools.export.quantize import convert_float32
out, checkpoint, faces, models = (Path(a) for a in sys.argv[1:5])
args = argparse.Namespace(checkpoint=checkpoint, calibration=faces, models_dir=models, refine_landmarks=True)
model, _ = cli._ghostfacenet_model(args)  # loaded, flipped, equalised, split, delegate-friendly: as the tool
spec = cli.ghostfacenet_spec("bench", (112, 112), 512, {})
crops, _, _ = calibration.aligned_crops(
    calibration.split_photos(faces).calibration, spec.align_spec(), spec.input_spec(), models
)
reference = convert_float32(model, out / "ghostfacenet_checkpoint.float32.tflite")
cli.convert_int8_tuned(model, reference, crops, out / "ghostfacenet_checkpoint.int8.tflite")  # as the tool
"""


@dataclass(frozen=True, slots=True)
class Config:
    """One timed runner: a model file under one thread count and delegate setting."""

    model: str
    path: Path
    threads: int
    xnnpack: bool

    @property
    def key(self) -> str:
        return f"{self.model}|t{self.threads}|{'xnnpack' if self.xnnpack else 'builtin'}"


def card_models(models_dir: Path) -> dict[str, Path]:
    """{file stem: path} of every embedder .tflite with a card (kind 'embedder') in models_dir."""
    found: dict[str, Path] = {}
    for card in sorted(models_dir.glob("*.json")):
        try:
            raw = json.loads(card.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and raw.get("kind") == "embedder" and (models_dir / raw["file"]).is_file():
            found[Path(raw["file"]).stem] = models_dir / raw["file"]
    return found


def export_ghostfacenet(out: Path, n_cal: int, quick: bool) -> dict[str, Path]:
    """Export the GhostFaceNet files in two parallel subprocesses (original, rewritten), away from the timing.

    `quick` skips the original float32 file (the rewritten float32 one runs the same float graph, and the
    four conversions alone take about a minute here).
    """
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        log.warning("TensorFlow not importable: GhostFaceNet variants skipped (install the export extra)")
        return {}
    common = [str(out), str(GHOSTFACENET["width"]), str(GHOSTFACENET["strides"]), str(GHOSTFACENET["seed"])]
    jobs = {"original": "int8" if quick else "float32,int8", "xnnpack": "float32,int8"}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = {
        tag: subprocess.Popen(
            [sys.executable, "-c", _EXPORT_SCRIPT, *common, str(n_cal), tag, forms],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag, forms in jobs.items()
    }
    for tag, proc in procs.items():
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"GhostFaceNet {tag} export failed:\n{stderr[-3000:]}")
    return {p.stem: p for p in sorted(out.glob("ghostfacenet_*.tflite"))}


def export_checkpoint(out: Path, checkpoint: Path, models_dir: Path) -> dict[str, Path]:
    """float32 and int8 of a trained GhostFaceNet checkpoint, made by the export tool's own steps (no gate)."""
    if not checkpoint.is_file():
        raise SystemExit(
            f"GhostFaceNet checkpoint not found: {checkpoint} (or pass --no-ghostfacenet-checkpoint)"
        )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [str(out), str(checkpoint), str(SHARED_FACES), str(models_dir)]
    done = subprocess.run(
        [sys.executable, "-c", _CHECKPOINT_SCRIPT, *args], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"GhostFaceNet checkpoint export failed:\n{done.stderr[-3000:]}")
    return {p.stem: p for p in sorted(out.glob("ghostfacenet_checkpoint.*.tflite"))}


def time_round_robin(
    configs: list[Config], rounds: int, per_round: int, runtime: str | None = None
) -> dict[str, list[float]]:
    """ms per face for each config; runners timed in turn, `per_round` invocations each per round.

    `runtime` picks the TFLite runtime by name (`edgeface.vision.runtime`); None keeps its preference order.
    """
    import numpy as np

    from edgeface.vision.runtime import TFLiteModel

    runners = {
        c.key: TFLiteModel(c.path, num_threads=c.threads, runtime=runtime, use_xnnpack=c.xnnpack)
        for c in configs
    }
    samples: dict[str, list[float]] = {key: [] for key in runners}
    try:
        rng = np.random.default_rng(0)
        inputs = {
            key: rng.normal(0, 0.5, (1, *r.input_shape[1:])).astype(np.float32) for key, r in runners.items()
        }
        for key, runner in runners.items():
            for _ in range(3):
                runner.run(inputs[key])
        for _ in range(rounds):
            for key, runner in runners.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    runner.run(inputs[key])
                    samples[key].append((time.perf_counter() - start) * 1000.0)
    finally:
        for runner in runners.values():
            runner.close()
    return samples


def ratios(stats: dict[str, dict[str, Any]], threads: list[int]) -> dict[str, float]:
    """Speed-ups (median ms of the slower form / the faster form) for the pairs the report cares about."""
    pairs = {
        "float32_over_int8": [("facerec128.float32", "facerec128.int8")],
        "sface_float32_over_int8": [("sface.float32", "sface.int8")],
        "sface_int8_over_facerec128_int8": [("sface.int8", "facerec128.int8")],
        "ghostfacenet_float32_over_int8_original": [
            ("ghostfacenet_original.float32", "ghostfacenet_original.int8")
        ],
        "ghostfacenet_float32_over_int8_rewritten": [
            ("ghostfacenet_xnnpack.float32", "ghostfacenet_xnnpack.int8")
        ],
        "ghostfacenet_int8_original_over_rewritten": [
            ("ghostfacenet_original.int8", "ghostfacenet_xnnpack.int8")
        ],
        "ghostfacenet_float32_original_over_int8_rewritten": [
            ("ghostfacenet_original.float32", "ghostfacenet_xnnpack.int8")
        ],
        "ghostfacenet_checkpoint_float32_over_int8": [
            ("ghostfacenet_checkpoint.float32", "ghostfacenet_checkpoint.int8")
        ],
    }
    out: dict[str, float] = {}
    for label, [(slow, fast)] in pairs.items():
        for t in threads:
            for delegate in ("xnnpack", "builtin"):
                a, b = f"{slow}|t{t}|{delegate}", f"{fast}|t{t}|{delegate}"
                if a in stats and b in stats:
                    out[f"{label}|t{t}|{delegate}"] = round(stats[a]["median"] / stats[b]["median"], 3)
    return out


def graph_macs(path: Path) -> int:
    """Multiply-accumulates per face counted from the .tflite graph itself: for every CONV_2D,
    DEPTHWISE_CONV_2D and FULLY_CONNECTED, output elements x weights feeding each output element."""
    sys.path.insert(0, str(ROOT))
    from edgeface.vision.runtime import load_interpreter_class

    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    shapes = {int(t["index"]): [int(d) for d in t["shape"]] for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():  # no public API lists ops with their tensors
        name, ins, outs = op["op_name"], op["inputs"], op["outputs"]
        out_shape, weight = shapes[int(outs[0])], shapes[int(ins[1])] if len(ins) > 1 else []
        out_elements = 1
        for d in out_shape[1:]:  # per face: batch 1
            out_elements *= d
        if name == "CONV_2D":  # weight (O, kh, kw, I)
            total += out_elements * weight[1] * weight[2] * weight[3]
        elif name == "DEPTHWISE_CONV_2D":  # weight (1, kh, kw, C)
            total += out_elements * weight[1] * weight[2]
        elif name == "FULLY_CONNECTED":  # weight (O, I)
            total += out_elements * weight[1]
    return total


def model_facts(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Size, MACs per face and XNNPACK partition count of every model (1 partition = fully delegated)."""
    sys.path.insert(0, str(ROOT))
    from edgeface_tools.export.prelu import delegate_partitions

    return {
        name: {
            "file": str(p.name),
            "size_bytes": p.stat().st_size,
            "macs_millions": round(graph_macs(p) / 1e6, 1),
            "xnnpack_partitions": delegate_partitions(p),
        }
        for name, p in paths.items()
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="few repeats, no original float32 GhostFaceNet (CI smoke, ~1 min)",
    )
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-ghostfacenet", action="store_true", help="only the carded models")
    parser.add_argument(
        "--ghostfacenet-checkpoint",
        type=Path,
        default=SHARED_CHECKPOINT,
        metavar="FILE.h5",
        help="also time float32 and int8 of this trained checkpoint as the export tool converts it "
        "(default: the shared W0.5 S2 file)",
    )
    parser.add_argument(
        "--no-ghostfacenet-checkpoint", action="store_true", help="skip the trained checkpoint"
    )
    parser.add_argument(
        "--xnnpack-only",
        action="store_true",
        help="skip the runs without XNNPACK (the device always uses it)",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    rounds, per_round, n_cal = (3, 5, 4) if args.quick else (20, 10, 64)
    with tempfile.TemporaryDirectory(prefix="edgeface-bench-") as tmp:
        paths = card_models(args.models_dir)
        if not args.no_ghostfacenet:
            paths.update(export_ghostfacenet(Path(tmp), n_cal, args.quick))
        if not args.no_ghostfacenet_checkpoint:
            paths.update(export_checkpoint(Path(tmp), args.ghostfacenet_checkpoint, args.models_dir))
        delegates = (True,) if args.xnnpack_only else (True, False)
        configs = [Config(n, p, t, x) for n, p in paths.items() for t in args.threads for x in delegates]
        samples = time_round_robin(configs, rounds, per_round)
        facts = model_facts(paths)
    stats = {key: {k: round(v, 4) for k, v in percentiles(s).items() if k in ("median", "p95", "n")}
             for key, s in samples.items()}  # fmt: skip
    params = {
        "quick": args.quick,
        "xnnpack_only": args.xnnpack_only,
        "batch": 1,
        "threads": args.threads,
        "rounds": rounds,
        "invocations_per_round": per_round,
        "ghostfacenet": None
        if args.no_ghostfacenet
        else {**GHOSTFACENET, "weights": "random", "n_cal": n_cal},
        "ghostfacenet_checkpoint": None
        if args.no_ghostfacenet_checkpoint
        else {
            "file": args.ghostfacenet_checkpoint.name,
            "calibration": "faces5, even-index photos (as edgeface-export)",
            "graph": "PReLU flip + channel equalisation + depthwise input copies + delegate-friendly (as edgeface-export)",
            "int8": "activation ranges of least expected error + bias correction (as edgeface-export)",
        },
        "runtime": {
            "ai-edge-litert": package_version("ai-edge-litert"),
            "tensorflow": package_version("tensorflow"),
        },
    }
    results = {"models": facts, "ms_per_face": stats, "ratios": ratios(stats, args.threads)}
    emit("embedder", params, results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
