"""Integrity of a stored gallery version (issue 22 items 1-3): checksum, strict JSON, range checks, labels.

The exhaustive single-bit-flip sweep runs here on a small gallery (every bit of gallery.json,
identities.json and SHA256SUMS, and a seeded sample of vectors.npy bits): each flip must be detected
(GalleryError) or leave the loaded gallery exactly as it was; none may change a decision silently or crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import GalleryError
from edgeface.identity.calibration import Calibration
from edgeface.identity.gallery import Gallery, GalleryStore, read_gallery_dir
from edgeface.identity.recovery import recover_gallery
from tests.factories import make_gallery

SUMS_FILE = "SHA256SUMS"
MAX_LABEL_CHARS = 256

CALIBRATION = Calibration(0.970173, 0.0, 0.01, 0.0087, 0.91, 1200, 40, 12, "pairs")


def _calibrated(version: int = 1) -> Gallery:
    gallery = make_gallery(4, version=version)
    from dataclasses import replace

    return replace(gallery, calibration=CALIBRATION)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def parse_gallery_files(files: dict[str, bytes], where: str) -> Gallery:
    from edgeface.identity.gallery import parse_gallery_files as parse  # new in issue 22

    return parse(files, where)


def _resealed(files: dict[str, bytes]) -> dict[str, bytes]:
    """Files edited on purpose, with a matching checksum: the range checks alone must refuse them."""
    from edgeface.identity.integrity import seal

    content = {k: v for k, v in files.items() if k != SUMS_FILE}
    return content | {SUMS_FILE: seal(content)}


def _with_manifest(files: dict[str, bytes], **changes: object) -> dict[str, bytes]:
    manifest = json.loads(files["gallery.json"]) | changes
    return _resealed(files | {"gallery.json": json.dumps(manifest).encode()})


def _same(a: Gallery, b: Gallery) -> bool:
    return (a.ids, a.names, a.samples, a.version, a.model_sha256, a.calibration) == (
        b.ids,
        b.names,
        b.samples,
        b.version,
        b.model_sha256,
        b.calibration,
    ) and np.array_equal(a.vectors, b.vectors)


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Gallery, dict[str, bytes]]:
    directory = GalleryStore(tmp_path).save(_calibrated())
    return read_gallery_dir(directory), _files(directory)


def test_a_flipped_threshold_bit_is_set_aside_and_the_older_version_runs(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path)
    store.save(_calibrated(1))
    current = store.save(_calibrated(2))
    raw = (current / "gallery.json").read_bytes()
    assert b'"threshold": 0.970173' in raw
    (current / "gallery.json").write_bytes(raw.replace(b'"threshold": 0.970173', b'"threshold": 0.170173'))
    recovery = recover_gallery(store, lambda g: g)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    assert recovery.gallery.calibration == CALIBRATION
    assert "gallery.json does not match its sha256" in recovery.set_aside[0].reason
    assert (tmp_path / "set-aside").is_dir()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"decision": CALIBRATION.as_dict() | {"threshold": 8.97}}, "decision.threshold: must be in (0, 1]"),
        ({"decision": CALIBRATION.as_dict() | {"threshold": 0.0}}, "decision.threshold"),
        ({"decision": CALIBRATION.as_dict() | {"threshold": True}}, "decision.threshold must be a number"),
        ({"decision": CALIBRATION.as_dict() | {"margin": 8.0}}, "decision.margin"),
        ({"decision": CALIBRATION.as_dict() | {"margin": -0.1}}, "decision.margin"),
        ({"decision": CALIBRATION.as_dict() | {"target_fpir": 1.0}}, "decision.target_fpir"),
        ({"decision": CALIBRATION.as_dict() | {"n_impostor": -1}}, "decision.n_impostor"),
        ({"decision": CALIBRATION.as_dict() | {"n_genuine": 1.5}}, "decision.n_genuine"),
        ({"decision": "0.97"}, "decision must be an object"),
        ({"version": 0}, "version must be an integer in 1.."),
        ({"version": "3"}, "version must be an integer"),
        ({"version": 2**60}, "version must be an integer"),
        ({"count": 5}, "list of 5 rows"),
        ({"dim": 64}, "vectors.npy is float32 (4, 128)"),
        ({"model_sha256": "abc"}, "model_sha256 must be a sha256"),
        ({"format": "other/1"}, "format"),
    ],
)
def test_out_of_range_values_are_refused_even_with_a_matching_checksum(
    stored: tuple[Gallery, dict[str, bytes]], changes: dict, message: str
) -> None:
    _, files = stored
    with pytest.raises(GalleryError) as caught:
        parse_gallery_files(_with_manifest(files, **changes), "g")
    assert message in str(caught.value)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_or_infinity_in_gallery_json_is_refused_by_the_parser(
    stored: tuple[Gallery, dict[str, bytes]], constant: str
) -> None:
    _, files = stored
    text = files["gallery.json"].decode().replace('"threshold": 0.970173', f'"threshold": {constant}')
    with pytest.raises(GalleryError, match="sha256"):  # as written by a tool that does not reseal
        parse_gallery_files(files | {"gallery.json": text.encode()}, "g")
    with pytest.raises(GalleryError, match="not valid JSON"):  # resealed: the parser refuses it
        parse_gallery_files(_resealed(files | {"gallery.json": text.encode()}), "g")
    legacy = {k: v for k, v in files.items() if k != SUMS_FILE} | {"gallery.json": text.encode()}
    with pytest.raises(GalleryError, match=f"{constant.lstrip('-')} is not a JSON number"):
        parse_gallery_files(legacy, "g")


def test_vectors_must_be_finite_unit_rows(stored: tuple[Gallery, dict[str, bytes]]) -> None:
    gallery, files = stored
    from edgeface.identity.gallery import npy_bytes, sha256_bytes

    for bad, message in ((gallery.vectors * 2, "not unit length"), (gallery.vectors * np.nan, "NaN")):
        data = npy_bytes(bad.astype(np.float32))
        edited = files | {"vectors.npy": data}
        edited = _with_manifest(edited, vectors=sha256_bytes(data))
        with pytest.raises(GalleryError, match=message):
            parse_gallery_files(edited, "g")


@pytest.mark.parametrize(
    "bad", ["\ud800", "a\x00b", "line\nbreak", "\u202eevil", "x" * (MAX_LABEL_CHARS + 1)]
)
def test_stored_ids_and_names_follow_the_label_rule(
    stored: tuple[Gallery, dict[str, bytes]], bad: str
) -> None:
    from edgeface.identity.gallery import sha256_bytes

    _, files = stored
    rows = json.loads(files["identities.json"])
    rows[1]["name"] = bad
    data = json.dumps(rows).encode()  # ASCII escapes: a lone surrogate is valid JSON text
    edited = _with_manifest(files | {"identities.json": data}, identities=sha256_bytes(data))
    with pytest.raises(GalleryError, match="row 1 name"):
        parse_gallery_files(edited, "g")


@pytest.mark.parametrize("bad", ["\ud800", "", "a\x1bb", "\u2028", "x" * (MAX_LABEL_CHARS + 1)])
def test_enrolment_refuses_an_id_that_cannot_be_sent(bad: str) -> None:
    gallery = Gallery.empty(128, "0" * 64)
    with pytest.raises(GalleryError, match="identity id"):
        gallery.enroll(bad, "name", np.ones((1, 128), np.float32))
    from edgeface.util.labels import check_label

    with pytest.raises(ValueError):
        check_label(bad, "id")
    assert check_label("Nguyễn Văn A", "name") == "Nguyễn Văn A"


def test_a_legacy_version_without_checksum_still_loads(stored: tuple[Gallery, dict[str, bytes]]) -> None:
    gallery, files = stored
    legacy = {k: v for k, v in files.items() if k != SUMS_FILE}
    assert _same(parse_gallery_files(legacy, "g"), gallery)


def _flip(data: bytes, bit: int) -> bytes:
    edited = bytearray(data)
    edited[bit // 8] ^= 1 << (bit % 8)
    return bytes(edited)


def test_every_single_bit_flip_is_detected_or_harmless(tmp_path: Path) -> None:
    """Through the files on disk, as the daemon reads them: each flip written, the version loaded, restored."""
    directory = GalleryStore(tmp_path).save(_calibrated())
    gallery, files = read_gallery_dir(directory), _files(directory)
    rng = np.random.default_rng(22)
    targets = {
        name: range(len(files[name]) * 8)
        for name in ("gallery.json", "identities.json", SUMS_FILE)
        if name in files
    }
    targets["vectors.npy"] = rng.choice(len(files["vectors.npy"]) * 8, 2000, replace=False).tolist()
    silent, detected, harmless = [], 0, 0
    for name, bits in targets.items():
        for bit in bits:
            (directory / name).write_bytes(_flip(files[name], bit))
            try:
                loaded = read_gallery_dir(directory)
            except GalleryError:
                detected += 1
                continue
            finally:
                (directory / name).write_bytes(files[name])
            if _same(loaded, gallery):
                harmless += 1
            else:
                silent.append((name, bit))
    assert silent == [], (
        f"{len(silent)} silent changes of {sum(len(b) for b in targets.values())} flips, e.g. {silent[:5]}"
    )
    assert detected > 0 and detected + harmless == sum(len(b) for b in targets.values())
