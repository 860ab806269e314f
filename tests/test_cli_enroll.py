"""`edgeface enroll` (edgeface/cli/enroll.py) on real photos: the dominant-face rule, photos refused by name,
and the exit statuses: 0 all enrolled, 3 the usable photos written and the refused listed, 1 nothing written
(said first)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.cli import main
from edgeface.cli.enroll import EXIT_ALL, EXIT_NOTHING, EXIT_PARTIAL
from edgeface.config import parse_config
from edgeface.daemon.parts import build_encoder
from edgeface.identity.gallery import GalleryStore
from tests.factories import face_tile, side_by_side

PEOPLE = ("baejun", "chipu", "khanh", "sontung", "thaotam")


@pytest.fixture(scope="module")
def pair_photo(faces5: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real faces5 faces side by side at similar size (khanh and chipu)."""
    encoder = build_encoder(parse_config({"embedder": {"models_dir": str(models_dir)}}), photos=True)
    try:
        tiles = (
            face_tile(encoder, faces5 / "khanh" / "003.jpg", 220),
            face_tile(encoder, faces5 / "chipu" / "004.jpg", 210),
        )
        image = side_by_side(*tiles)
    finally:
        encoder.close()
    path = tmp_path_factory.mktemp("pair") / "pair.jpg"
    assert cv2.imwrite(str(path), image)
    return path


def test_exit_statuses_are_distinct_and_documented(capsys) -> None:
    assert len({EXIT_ALL, EXIT_NOTHING, EXIT_PARTIAL, 2}) == 4
    with pytest.raises(SystemExit):
        main(["enroll", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 every photo enrolled; 3 the usable photos enrolled and written" in text
    assert "1 nothing enrolled, nothing written" in text


def test_faces5_enrols_all_five_people_with_default_options(faces5: Path, tmp_path: Path, capsys) -> None:
    gallery = tmp_path / "g"
    code = main(["enroll", "--gallery", str(gallery), "--folders", str(faces5)])
    out, err = capsys.readouterr()
    stored = GalleryStore(gallery).load()
    assert stored.ids == PEOPLE
    # khanh/001 (a 74 px face and a 38 px one) by its dominant face, said in one line naming it
    assert "enrolled khanh: 30 of 30 photos" in out
    assert f"note: {faces5 / 'khanh' / '001.jpg'}: 2 faces, took the largest (74 px wide" in out
    # baejun/013 shows baejun beside a woman of similar size: refused by name, the rest written, exit 3
    assert "enrolled baejun: 29 of 30 photos" in out
    assert f"not enrolled: {faces5 / 'baejun' / '013.jpg'}: 2 faces of comparable size" in err
    assert code == EXIT_PARTIAL and stored.samples == (29, 30, 30, 30, 30)


def test_a_folder_with_one_refused_photo_writes_the_good_ones_and_lists_it(
    faces5: Path, pair_photo: Path, tmp_path: Path, capsys
) -> None:
    root = tmp_path / "people"
    (root / "khanh").mkdir(parents=True)
    for name in ("002.jpg", "004.jpg"):
        shutil.copy(faces5 / "khanh" / name, root / "khanh" / name)
    shutil.copy(pair_photo, root / "khanh" / "pair.jpg")
    gallery = tmp_path / "g"
    code = main(["enroll", "--gallery", str(gallery), "--folders", str(root)])
    out, err = capsys.readouterr()
    assert code == EXIT_PARTIAL
    assert GalleryStore(gallery).load().samples == (2,)
    assert "enrolled khanh: 2 of 3 photos" in out
    assert f"not enrolled: {root / 'khanh' / 'pair.jpg'}: 2 faces of comparable size" in err
    assert "written without the 1 refused above (exit 3" in err
    # --largest-face takes the larger of two comparable faces: everything enrolled, exit 0
    code = main(["enroll", "--gallery", str(gallery), "--folders", str(root), "--largest-face"])
    assert code == EXIT_ALL and GalleryStore(gallery).load().samples == (5,)


def test_nothing_enrollable_writes_nothing_and_says_so_first(
    faces5: Path, pair_photo: Path, tmp_path: Path, capsys
) -> None:
    wall = tmp_path / "wall.png"
    assert cv2.imwrite(str(wall), np.full((300, 300, 3), 200, np.uint8))
    gallery = tmp_path / "g"
    code = main(["enroll", "--gallery", str(gallery), "--id", "k", str(pair_photo), str(wall)])
    out, err = capsys.readouterr()
    assert code == EXIT_NOTHING and not GalleryStore(gallery).exists()
    assert "enrolled" not in out
    lines = err.splitlines()
    assert lines[0] == f"gallery {gallery}: unchanged, nothing enrolled (3 refused):", lines
    assert f"not enrolled: {pair_photo}: 2 faces of comparable size" in err
    assert f"not enrolled: {wall}: no face found" in err
    assert "not enrolled: k: none of 2 photos had a usable face" in err
    # into an existing gallery: its current version stays as it was
    assert main(["enroll", "--gallery", str(gallery), "--id", "k", str(faces5 / "khanh" / "002.jpg")]) == 0
    capsys.readouterr()
    assert main(["enroll", "--gallery", str(gallery), "--id", "j", str(pair_photo)]) == EXIT_NOTHING
    assert capsys.readouterr().err.startswith(f"gallery {gallery}: unchanged, nothing enrolled")
    stored = GalleryStore(gallery).load()
    assert stored.version == 1 and stored.ids == ("k",)
