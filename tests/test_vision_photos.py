"""Photos in any still format OpenCV reads enrol and identify; unreadable files are named, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.cli import main
from edgeface.errors import ImageError
from edgeface.vision.photos import IMAGE_SUFFIXES, identity_folders, image_files, read_image

PEOPLE = ("baejun", "chipu", "sontung")


def convert(source: Path, target: Path, grey: bool) -> None:
    image = read_image(source)
    if grey:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    target.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(target.suffix, image)
    assert ok, f"OpenCV cannot write {target.suffix}"
    target.write_bytes(data.tobytes())


@pytest.mark.parametrize(("suffix", "grey"), [(".pgm", True), (".tiff", False), (".tif", True)])
def test_enroll_and_identify_in_other_formats(tmp_path, faces5, capsys, suffix, grey) -> None:
    folders = tmp_path / "people"
    for person in PEOPLE:
        for photo in image_files(faces5 / person)[:6]:
            convert(photo, folders / person / f"{photo.stem}{suffix}", grey)
    probe = tmp_path / f"probe{suffix}"
    convert(faces5 / "chipu" / "020.jpg", probe, grey)

    gallery = tmp_path / "gallery"
    assert main(["enroll", "--gallery", str(gallery), "--folders", str(folders)]) == 0
    identities = json.loads((gallery / "current" / "identities.json").read_text())
    assert sorted(row["id"] for row in identities) == list(PEOPLE)
    assert all(row["samples"] == 6 for row in identities)

    capsys.readouterr()
    # 0.35: a match on the default embedder's (SFace) cosine scale, below a tiny gallery's cautious calibration
    assert main(["identify", "--gallery", str(gallery), "--json", "--threshold", "0.35", str(probe)]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["decision"] == "match" and row["identity"]["id"] == "chipu"


def test_folders_list_every_still_format_and_skip_other_files(tmp_path) -> None:
    person = tmp_path / "root" / "ann"
    person.mkdir(parents=True)
    for suffix in (".pgm", ".PPM", ".tif", ".jp2", ".hdr", ".txt", ".json"):
        (person / f"x{suffix}").write_bytes(b"")
    assert [p.suffix for p in identity_folders(tmp_path / "root")["ann"]] == [".PPM", ".pgm", ".tif"]
    assert {".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".bmp", ".webp", ".sr", ".pfm"} <= IMAGE_SUFFIXES
    # formats whose size is not in a header edgeface reads are not photos here (refused by content too)
    assert not {".jp2", ".hdr", ".pic", ".avif", ".exr"} & IMAGE_SUFFIXES


def test_grey_and_single_channel_images_come_back_as_bgr(tmp_path) -> None:
    grey = np.tile(np.arange(64, dtype=np.uint8), (48, 1))
    for suffix in (".pgm", ".pfm", ".png"):
        path = tmp_path / f"g{suffix}"
        data = grey.astype(np.float32) / 255 if suffix == ".pfm" else grey
        ok, encoded = cv2.imencode(suffix, data)
        assert ok
        path.write_bytes(encoded.tobytes())
        image = read_image(path)
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8, suffix


def test_unreadable_files_are_named(tmp_path) -> None:
    bad = tmp_path / "broken.tiff"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageError, match=r"broken\.tiff: not a decodable image"):
        read_image(bad)
    with pytest.raises(ImageError, match=r"missing\.pgm: cannot read"):
        read_image(tmp_path / "missing.pgm")
