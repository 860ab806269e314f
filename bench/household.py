"""Households: does a door recognise its own people, and keep everyone else out?

Households of 2, 4 and 6 people are drawn (seeded) from a photo set, each person enrolled from 1 and from 3
photos, 20 households per cell. The members' other photos measure DIR (identified as themselves); the photos of
strangers drawn from the people not in the household measure FPIR (matched to anyone). Median and spread over
households, and the pooled rate over all of a cell's probes.

edgeface runs the CLI's own code in-process, with the defaults of `edgeface enroll` / `edgeface identify`:
the encoder `cli.common.load_encoder` builds for `enroll`; enrolment by `cli.enroll.enroll_people` (the
dominant-face rule, refusals) and `cli.enroll.gallery_to_write` (the gallery's own calibration, as
`enroll` writes it); identification by `cli.identify.identify_all` on `daemon.parts.Parts` swapped to each
household's gallery with `Parts.use_gallery` (the decision rule `build_parts` makes). The one shortcut: each
photo is encoded once and the encoder returns that result when it is given the same pixels again
(`CachedEncoder`; encoding is deterministic, so this changes no decision). A member's probe photo counts as
identified when its largest face is named as them (as `bench/enroll_identify.py`); a stranger's photo
counts as a false match when any face in it is matched to anyone.

Peer (`--peer`): face_recognition 1.3.0 as its examples use it: HOG detection (upsample 1), each enrolment
photo's largest face encoded, a probe face takes the identity of its nearest enrolled photo when
`face_distance` is at most 0.6 (`compare_faces`' default tolerance).

    python bench/household.py --set ../shared/data/lfw200 [--embedder CARD | --peer] [--out PATH]

Writes bench/results/household_<set>_<embedder>.json unless --out is given.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from _common import RESULTS_DIR, emit, package_version, percentiles

from edgeface.cli import build_parser
from edgeface.cli.common import load_encoder, photo_config
from edgeface.cli.enroll import enroll_people, gallery_to_write
from edgeface.cli.identify import identify_all
from edgeface.daemon.parts import Parts, index_settings, rule_for
from edgeface.identity.calibration import DEFAULT_TARGET_FPIR
from edgeface.identity.gallery import Gallery
from edgeface.identity.live import GoLive
from edgeface.vision.encoder import EncodedFace, FaceEncoder
from edgeface.vision.photos import identity_folders, read_image

log = logging.getLogger("household")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PEER_TOLERANCE = 0.6
PEER = "face_recognition"


@dataclass(frozen=True, slots=True)
class Household:
    members: tuple[str, ...]
    enrolment: dict[str, list[Path]]  # member -> the k photos enrolled
    probes: dict[Path, str]  # member probe photo -> who it shows
    strangers: tuple[Path, ...]  # photos of people not in the household


def draw_household(
    folders: dict[str, list[Path]], size: int, k: int, strangers: int, seed: list[int]
) -> Household:
    """Members, their k enrolment photos and their other photos, and the stranger photos; the same seed
    draws the same household whichever system is measured."""
    rng = np.random.default_rng(seed)
    people = sorted(folders)
    order = [people[i] for i in rng.permutation(len(people))]
    members, others = order[:size], order[size:]
    if strangers:
        others = others[:strangers]
    enrolment: dict[str, list[Path]] = {}
    probes: dict[Path, str] = {}
    for member in members:
        photos = [folders[member][i] for i in rng.permutation(len(folders[member]))]
        enrolment[member] = photos[:k]
        probes |= {photo: member for photo in photos[k:]}
    stranger_photos = tuple(photo for person in others for photo in folders[person])
    return Household(tuple(members), enrolment, probes, stranger_photos)


class CachedEncoder(FaceEncoder):
    """The photo encoder `enroll` builds, answering a photo it has already encoded from memory."""

    def __init__(self, encoder: FaceEncoder) -> None:
        super().__init__(encoder.detector, encoder.embedder, encoder.refiner, flip=encoder.flip)
        self._faces: dict[bytes, list[EncodedFace]] = {}

    def encode(self, image: np.ndarray) -> list[EncodedFace]:
        key = hashlib.blake2b(image.tobytes(), digest_size=16).digest() + str(image.shape).encode()
        if key not in self._faces:
            self._faces[key] = super().encode(image)
        return self._faces[key]


class EdgefaceDoor:
    """`edgeface enroll` then `edgeface identify` for one household, in-process."""

    def __init__(self, embedder: Path | None) -> None:
        extra = ["--embedder", str(embedder)] if embedder else []
        parser = build_parser()
        self.enroll_args = parser.parse_args(["enroll", "--gallery", "unused", "--id", "x", "x.jpg", *extra])
        identify_args = parser.parse_args(["identify", "--gallery", "unused", "x.jpg", *extra])
        self.encoder = CachedEncoder(load_encoder(self.enroll_args))
        self.name = self.encoder.embedder.card.name
        self.sha256 = self.encoder.embedder.sha256
        config = photo_config(identify_args)
        empty = Gallery.empty(self.encoder.embedder.dim, self.encoder.embedder.sha256)
        live = GoLive(empty, rule_for(config, self.encoder.embedder), index_settings(config))
        self.parts = Parts(config, self.encoder, live)

    def prepare(self, photos: list[Path]) -> dict[str, Any]:
        found = sum(bool(self.encoder.encode(read_image(p))) for p in photos)
        return {"detected": found / len(photos)}

    def run(self, household: Household) -> dict[str, Any]:
        people = {m: (m, photos) for m, photos in household.enrolment.items()}
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            empty = Gallery.empty(self.encoder.embedder.dim, self.encoder.embedder.sha256)
            enrolment = enroll_people(self.encoder, empty, people, self.enroll_args.largest_face)
        outcome: dict[str, Any] = {"enrolled": len(enrolment.enrolled), "refused": len(enrolment.refused)}
        if not enrolment.enrolled:  # `enroll` writes nothing: every probe is unknown
            return outcome | {"named": {}, "matched": set()}
        self.parts.use_gallery(gallery_to_write(enrolment, DEFAULT_TARGET_FPIR, self.encoder.embedder.card))
        rows = io.StringIO()
        images = [*household.probes, *household.strangers]
        with contextlib.redirect_stdout(rows), contextlib.redirect_stderr(quiet):
            identify_all(self.parts, images, as_json=True)
        named: dict[str, str] = {}  # photo -> who its largest face (the first row) was named as
        matched: set[str] = set()  # photos with any face matched to anyone
        for line in rows.getvalue().splitlines():
            row = json.loads(line)
            who = row["identity"]["id"] if row["decision"] == "match" else "unknown"
            named.setdefault(row["image"], who)
            if row["decision"] == "match":
                matched.add(row["image"])
        rule = self.parts.rule
        return outcome | {"named": named, "matched": matched, "threshold": round(rule.threshold, 4),
                          "threshold_source": rule.source}  # fmt: skip

    def close(self) -> None:
        self.encoder.close()


class PeerDoor:
    """face_recognition as its examples use it, on the same households."""

    def __init__(self) -> None:
        from peer_face_recognition import import_peer

        self.fr, self.info = import_peer()
        self.name = PEER
        self.faces: dict[
            Path, list[tuple[float, np.ndarray]]
        ] = {}  # photo -> (area, encoding), largest first

    def prepare(self, photos: list[Path]) -> dict[str, Any]:
        for path in photos:
            image = self.fr.load_image_file(str(path))
            boxes = self.fr.face_locations(image, number_of_times_to_upsample=1, model="hog")
            encodings = self.fr.face_encodings(image, known_face_locations=boxes) if boxes else []
            areas = [(b[2] - b[0]) * (b[1] - b[3]) for b in boxes]  # (top, right, bottom, left)
            self.faces[path] = sorted(zip(areas, encodings, strict=True), key=lambda f: -f[0])
        return {"detected": sum(bool(f) for f in self.faces.values()) / len(photos)}

    def run(self, household: Household) -> dict[str, Any]:
        known, owners = [], []
        for member, photos in household.enrolment.items():
            for photo in photos:
                if self.faces[photo]:
                    known.append(self.faces[photo][0][1])
                    owners.append(member)
        named: dict[str, str] = {}
        matched: set[str] = set()
        for photo in [*household.probes, *household.strangers]:
            for rank, (_, encoding) in enumerate(self.faces[photo]):
                who = self._nearest(known, owners, encoding)
                if rank == 0:
                    named[str(photo)] = who
                if who != "unknown":
                    matched.add(str(photo))
        return {"enrolled": len(set(owners)), "refused": 0, "named": named, "matched": matched}

    def _nearest(self, known: list[np.ndarray], owners: list[str], encoding: np.ndarray) -> str:
        if not known:
            return "unknown"
        distances = self.fr.face_distance(known, encoding)
        best = int(np.argmin(distances))
        return owners[best] if distances[best] <= PEER_TOLERANCE else "unknown"

    def close(self) -> None:
        pass


def measure(door: Any, household: Household) -> dict[str, Any]:
    outcome = door.run(household)
    named, matched = outcome.pop("named"), outcome.pop("matched")
    genuine = [named.get(str(photo), "unknown") == who for photo, who in household.probes.items()]
    false = [str(photo) in matched for photo in household.strangers]
    return {"members": list(household.members), **outcome, "dir": round(float(np.mean(genuine)), 4),
            "fpir": round(float(np.mean(false)), 4), "genuine_probes": len(genuine), "stranger_probes": len(false),
            "identified": int(sum(genuine)), "false_matches": int(sum(false))}  # fmt: skip


def summarise(households: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(key: str) -> dict[str, float | int]:
        return {k: round(v, 4) for k, v in percentiles([h[key] for h in households]).items()} | {
            "p25": round(float(np.percentile([h[key] for h in households], 25)), 4),
            "p75": round(float(np.percentile([h[key] for h in households], 75)), 4),
        }

    pooled_dir = sum(h["identified"] for h in households) / max(
        sum(h["genuine_probes"] for h in households), 1
    )
    pooled_fpir = sum(h["false_matches"] for h in households) / max(
        sum(h["stranger_probes"] for h in households), 1
    )
    return {
        "dir": spread("dir") | {"pooled": round(pooled_dir, 4)},
        "fpir": spread("fpir") | {"pooled": round(pooled_fpir, 4)},
        "households_with_a_refusal": sum(h["refused"] > 0 for h in households),
        "households": households,
    }


def run_cells(door: Any, folders: dict[str, list[Path]], args: argparse.Namespace) -> list[dict[str, Any]]:
    cells = []
    for size in args.sizes:
        for k in args.photos:
            cell: dict[str, Any] = {"household": size, "photos_per_person": k}
            if size >= len(folders):
                cells.append(cell | {"skipped": f"the set has {len(folders)} people: no stranger for {size}"})
                continue
            usable = {p: files for p, files in folders.items() if len(files) > k}  # someone left to probe
            draws = [draw_household(usable, size, k, args.strangers, [args.seed, size, k, h])
                     for h in range(args.households)]  # fmt: skip
            cells.append(cell | summarise([measure(door, household) for household in draws]))
            log.info("household %d, %d photos: DIR %s, FPIR %s", size, k, cells[-1]["dir"]["median"],
                     cells[-1]["fpir"]["median"])  # fmt: skip
    return cells


def markdown_table(set_name: str) -> str:
    """The README table for one set from bench/results/household_<set>_*.json: per cell and system, DIR
    median (p25-p75 over households) / FPIR median (pooled over all the cell's stranger photos, max over
    households)."""
    docs = [json.loads(f.read_text()) for f in sorted(RESULTS_DIR.glob(f"household_{set_name}_*.json"))]
    docs.sort(key=lambda d: (d["params"]["system"] == PEER, d["params"]["system"]))
    header = " | ".join(f"{d['params']['system']} DIR / FPIR" for d in docs)
    lines = [f"| household | photos each | {header} |", "| --- | --- |" + " --- |" * len(docs)]
    for row, cell in enumerate(docs[0]["results"]["cells"]):
        texts = []
        for doc in docs:
            c = doc["results"]["cells"][row]
            if "skipped" in c:
                texts.append("n/a")
                continue
            d, f = c["dir"], c["fpir"]
            texts.append(
                f"{d['median']:.2f} ({d['p25']:.2f}-{d['p75']:.2f}) / {100 * f['median']:.1f}% "
                f"(pooled {100 * f['pooled']:.2f}%, max {100 * f['max']:.1f}%)"
            )
        lines.append(f"| {cell['household']} | {cell['photos_per_person']} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", type=Path, default=SHARED / "faces5", help="photo set: <identity>/<photo>")
    system = p.add_mutually_exclusive_group()
    system.add_argument("--embedder", type=Path, help="embedder card (default: the package default)")
    system.add_argument("--peer", action="store_true", help="measure face_recognition instead")
    p.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 6], help="household sizes")
    p.add_argument("--photos", type=int, nargs="+", default=[1, 3], help="enrolment photos per person")
    p.add_argument("--households", type=int, default=20, help="households per cell")
    p.add_argument("--strangers", type=int, default=0, help="stranger people per household (0: all others)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photos-per-identity", type=int, help="use only each person's first N photos")
    p.add_argument("--quick", action="store_true", help="one small cell, for the smoke test")
    p.add_argument(
        "--table", action="store_true", help="print the README table of the saved results for --set"
    )
    p.add_argument(
        "--out", type=Path, help="JSON file (default bench/results/household_<set>_<embedder>.json)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.photos, args.households = [2], [1], 2
        args.strangers, args.photos_per_identity = 2, args.photos_per_identity or 4
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("edgeface").setLevel(logging.ERROR)  # each household's threshold is in the JSON
    args = parse_args(argv)
    if args.table:
        print(markdown_table(args.set.name))
        return 0
    folders = identity_folders(args.set)
    if args.photos_per_identity:
        folders = {name: files[: args.photos_per_identity] for name, files in folders.items()}
    started = time.perf_counter()
    door: Any = PeerDoor() if args.peer else EdgefaceDoor(args.embedder)
    try:
        photos = [p for files in folders.values() for p in files]
        prepared = door.prepare(photos)
        encode_s = time.perf_counter() - started
        cells = run_cells(door, folders, args)
    finally:
        door.close()
    params = {
        "set": str(args.set), "identities": len(folders), "photos": len(photos), "system": door.name,
        "sizes": args.sizes, "photos_per_person": args.photos, "households": args.households,
        "strangers": args.strangers or "all people not in the household", "seed": args.seed,
        "photos_per_identity": args.photos_per_identity, "quick": args.quick,
        "edgeface_version": package_version("edgeface"),
        "path": PEER if args.peer else "in-process: cli.enroll.enroll_people + gallery_to_write, "
        "cli.identify.identify_all on daemon.parts.Parts.use_gallery; defaults of enroll/identify",
        "dir": "member's other photos whose largest face is named as them",
        "fpir": "stranger photos with any face matched to anyone",
    }  # fmt: skip
    if not args.peer:
        params["embedder"] = {"card": str(args.embedder or "package default"), "sha256": door.sha256}
    if args.peer:
        params["peer"] = door.info | {"detector": "hog, upsample 1", "tolerance": PEER_TOLERANCE}
    results = {"detected": round(prepared["detected"], 4), "encode_s": round(encode_s, 1),
               "total_s": round(time.perf_counter() - started, 1), "cells": cells}  # fmt: skip
    out = args.out or (None if args.quick else RESULTS_DIR / f"household_{args.set.name}_{door.name}.json")
    emit("household", params, results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
