"""`edgeface eval`: identification and verification accuracy on a folder of identity sub-folders."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeface.cli.argtypes import fraction, int_in
from edgeface.cli.common import add_model_options, load_encoder
from edgeface.errors import ComparableFacesError, EdgefaceError, ImageError, NoFaceError
from edgeface.identity.rule import CardFallback
from edgeface.vision.modelcard import write_card
from edgeface.vision.photos import identity_folders, read_image

if TYPE_CHECKING:
    from edgeface.server.evaluation import EncodedSet
    from edgeface.vision.encoder import FaceEncoder


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("eval", help="measure accuracy and choose the decision threshold")
    parser.add_argument("--folders", type=Path, required=True, help="one sub-folder of photos per identity")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, help="write a ROC plot (PNG) here")
    parser.add_argument(
        "--seeds", type=int_in(1, 1000), default=10, help="number of 80/20 splits (default: 10)"
    )
    parser.add_argument(
        "--far", type=fraction, default=1e-2, help="false-accept rate for the threshold (default 0.01)"
    )
    parser.add_argument("--record", action="store_true", help="write the accuracy into the embedder's card")
    parser.add_argument(
        "--open-set",
        action="store_true",
        help="DIR/FPIR: half the identities enrolled with k=1 and k=5 photos, the rest strangers",
    )
    add_model_options(parser)
    parser.set_defaults(func=run)


def encode_folders(encoder: FaceEncoder, root: Path) -> tuple[EncodedSet, list[int], list[str], list[str]]:
    from tqdm import tqdm

    from edgeface.server.evaluation import EncodedSet, difference_hash

    folders = identity_folders(root)
    names = tuple(folders)
    items = [(label, path) for label, name in enumerate(names) for path in folders[name]]
    embeddings = np.full((len(items), encoder.embedder.dim), np.nan, np.float32)
    found = np.zeros(len(items), bool)
    hashes, unreadable, comparable = [], [], []
    for row, (_, path) in enumerate(
        tqdm(items, desc="encoding", unit="photo", file=sys.stderr, disable=None)
    ):
        try:
            image = read_image(path)
        except ImageError as exc:
            unreadable.append(str(exc))
            hashes.append(-1)
            continue
        hashes.append(difference_hash(image))
        try:  # the face `enroll` would take: a photo with comparable faces counts as one without a face
            embeddings[row] = encoder.encode_photo(image, str(path)).face.embedding
            found[row] = True
        except ComparableFacesError as exc:
            comparable.append(str(exc))
        except NoFaceError:
            pass
    labels = np.asarray([label for label, _ in items])
    data = EncodedSet(tuple(p for _, p in items), labels, names, embeddings, found)
    return data, hashes, unreadable, comparable


def run(args: argparse.Namespace) -> int:
    from edgeface.server.evaluation import evaluate, near_duplicates, plot_roc
    from edgeface.util.files import check_output_path

    if args.plot:
        check_output_path(args.plot, "--plot")  # before minutes of encoding, not after
    encoder = load_encoder(args)
    data, hashes, unreadable, comparable = encode_folders(encoder, args.folders)
    if data.found.sum() < 2 or len(data.names) < 2:
        raise EdgefaceError(f"{args.folders}: need faces of at least two identities to evaluate")
    seeds = range(args.seeds)
    duplicate = near_duplicates(hashes, data.labels) & np.asarray([h >= 0 for h in hashes])
    full = evaluate(data, seeds, args.far)
    deduped = evaluate(data.subset(~duplicate), seeds, args.far)
    curves = full.pop("_curves")
    deduped.pop("_curves")
    report = {
        "folders": str(args.folders),
        "model": {"name": encoder.embedder.card.name, "sha256": encoder.embedder.sha256},
        "detector": args.detector,
        "protocol": f"stratified 80/20 split per identity, {args.seeds} seeds, top-1; "
        "probes without a detected face count as errors; a photo with several faces counts by its dominant "
        "one (the `enroll` rule), and one with comparable faces as a photo without a face",
        "unreadable": unreadable,
        "comparable_faces": comparable,
        "no_face": [str(p) for p, f in zip(data.paths, data.found, strict=True) if not f],
        "duplicates_removed": [str(p) for p, d in zip(data.paths, duplicate, strict=True) if d],
        "all_photos": full,
        "duplicates_removed_set": deduped,
    }
    if args.plot:
        plot_roc(curves, args.plot, f"{encoder.embedder.card.name} on {args.folders.name}")
    if args.open_set:
        report["open_set"] = open_set_report(data, CardFallback.of_card(encoder.embedder.card), seeds)
    if args.record:
        record_in_card(encoder.embedder.card.path, encoder.embedder.card.raw, report)
    print(json.dumps(report, indent=2) if args.json else summary(report))
    encoder.close()
    return 0


def open_set_report(data: EncodedSet, card: CardFallback | None, seeds: Iterable[int]) -> dict[str, Any]:
    from edgeface.server.openset import open_set

    found = data.found
    embeddings, labels = data.embeddings[found], data.labels[found]
    fixed = (0.93, 0.95, 0.967)
    return {
        "protocol": "half the identities enrolled (k photos each, the rest of their photos are genuine probes), "
        "the other half strangers (every photo a probe); default rule = the gallery's own calibration for "
        "FPIR 0.01, else the card's fallback",
        "results": [open_set(embeddings, labels, card, k, seeds, fixed) for k in (1, 5)],
    }


def record_in_card(card_path: Path, raw: dict[str, Any], report: dict[str, Any]) -> None:
    result = report["duplicates_removed_set"]
    raw = dict(raw)
    raw["accuracy"] = {
        "set": Path(report["folders"]).name,
        "duplicates_removed": True,
        "top1_nearest_neighbour": round(result["identification"]["nearest_neighbour"]["top1_mean"], 4),
        "top1_aggregated": round(result["identification"]["aggregated"]["top1_mean"], 4),
        "verification_auc": round(result["verification_pairs"]["auc"], 4),
        "eer": round(result["verification_pairs"]["eer"], 4),
    }
    write_card(card_path, raw)


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model']['name']} ({report['model']['sha256'][:12]}), detector {report['detector']}"
    ]
    for key, title in (("all_photos", "all photos"), ("duplicates_removed_set", "duplicates removed")):
        r = report[key]
        ident, pairs, thr = r["identification"], r["verification_pairs"], r["threshold"]
        lines += [
            f"{title}: {r['photos']} photos, faces found {r['faces_found']} ({100 * r['detection_rate']:.1f}%)",
            f"  top-1 nearest neighbour {100 * ident['nearest_neighbour']['top1_mean']:.1f}% "
            f"(sd {100 * ident['nearest_neighbour']['top1_std']:.1f}), aggregated "
            f"{100 * ident['aggregated']['top1_mean']:.1f}% (sd {100 * ident['aggregated']['top1_std']:.1f}) "
            f"over {ident['splits']} splits",
            f"  pairs: AUC {pairs['auc']:.4f}, EER {100 * pairs['eer']:.2f}%, TAR@FAR1e-2 "
            f"{100 * pairs['tar_at_far_0.01']:.1f}%, TAR@FAR1e-3 {100 * pairs['tar_at_far_0.001']:.1f}%",
            f"  threshold at FAR {thr['far']:g}: {thr['value']:.4f} (TAR {100 * thr['tar']:.1f}%)",
        ]
    if report["no_face"]:
        lines.append("no face found: " + ", ".join(report["no_face"]))
    if report["unreadable"]:
        lines.append("unreadable: " + "; ".join(report["unreadable"]))
    if report["comparable_faces"]:
        lines.append("comparable faces (counted as no face): " + "; ".join(report["comparable_faces"]))
    lines.append(f"duplicates removed: {len(report['duplicates_removed'])}")
    for result in report.get("open_set", {}).get("results", []):
        for name, r in result["rules"].items():
            lines.append(
                f"open set k={result['k']}: {name}: DIR {100 * r['dir']:.1f}%, FPIR {100 * r['fpir']:.2f}% "
                f"(max {100 * r['fpir_max']:.2f}%)"
            )
    return "\n".join(lines)
