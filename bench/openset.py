"""Open-set benchmark (docs/design.md §10): DIR and FPIR of edgeface's decision rule beside the peer
face_recognition at its default tolerance, on the same photos and the same splits.

Protocol (as `edgeface eval --open-set`): half the identities enrolled with k photos each (k = 1 and 5), the
other half strangers, 10 splits over identities. Only photos in which both systems found a face are used, so
both see exactly the same enrolment photos, probes and strangers; each system's detection rate is reported.
edgeface: the photo face path, each split's gallery calibrated on its own enrolment photos for FPIR 1%
(fixed thresholds beside it). Peer: 128-d dlib encodings, a probe takes its nearest enrolled photo's identity
when the distance is within 0.6 (`compare_faces`' default), as the library's examples do.

    python bench/openset.py [--folders ../shared/data/faces5] [--out bench/results/openset_faces5.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from _common import emit, package_version
from peer_face_recognition import encode_photo, import_peer

from edgeface.config import parse_config
from edgeface.daemon.parts import build_encoder
from edgeface.identity.rule import CardFallback
from edgeface.server.openset import nearest_photo_open_set, open_set
from edgeface.vision.photos import identity_folders, read_image

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces5"
PEER_TOLERANCE = 0.6
FIXED = (0.93, 0.95, 0.967)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=Path, default=FACES)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    fr, peer_info = import_peer()
    encoder = build_encoder(parse_config({}), photos=True)
    folders = identity_folders(args.folders)
    paths: list[Path] = []
    labels: list[int] = []
    ours: list[np.ndarray | None] = []
    theirs: list[np.ndarray | None] = []
    for label, (name, files) in enumerate(folders.items()):
        for path in files:
            faces = encoder.encode(read_image(path))
            paths.append(path)
            labels.append(label)
            ours.append(faces[0].embedding if faces else None)
            theirs.append(encode_photo(fr, path, name, 1).encoding)
    both = [
        (label, a, b)
        for label, a, b in zip(labels, ours, theirs, strict=True)
        if a is not None and b is not None
    ]
    label_array = np.asarray([label for label, _, _ in both])
    edgeface = np.stack([a for _, a, _ in both])
    peer = np.stack([b for _, _, b in both]).astype(np.float64)
    seeds = range(args.seeds)
    card = CardFallback.of_card(encoder.embedder.card)
    results = {
        "photos": len(paths),
        "used": len(both),
        "detected": {
            "edgeface": sum(a is not None for a in ours) / len(paths),
            "face_recognition": sum(b is not None for b in theirs) / len(paths),
        },
        "edgeface": [open_set(edgeface, label_array, card, k, seeds, FIXED) for k in (1, 5)],
        "face_recognition": [
            nearest_photo_open_set(peer, label_array, k, seeds, PEER_TOLERANCE) for k in (1, 5)
        ],
    }
    params = {
        "folders": str(args.folders),
        "identities": len(folders),
        "seeds": args.seeds,
        "embedder": encoder.embedder.card.name,
        "peer": peer_info | {"detector": "hog, upsample 1", "tolerance": PEER_TOLERANCE},
        "edgeface_version": package_version("edgeface"),
    }
    emit("openset", params, results, args.out)
    encoder.close()


if __name__ == "__main__":
    main()
