"""The `edgeface` verbs other tools call, on real photos and the shipped models."""

from __future__ import annotations

import json
import shutil

import pytest

from edgeface.cli import main
from edgeface.identity.gallery import GalleryStore


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, faces5, models_dir):
    gallery = tmp_path_factory.mktemp("gallery")
    photos = [str(faces5 / "baejun" / f"{i:03d}.jpg") for i in range(1, 9)]
    assert main(["enroll", "--gallery", str(gallery), "--id", "baejun", "--name", "Bae Jun", *photos]) == 0
    chipu = [str(faces5 / "chipu" / f"{i:03d}.jpg") for i in range(1, 9)]
    assert main(["enroll", "--gallery", str(gallery), "--id", "chipu", *chipu]) == 0
    return gallery


def test_identify_prints_one_json_line_per_face(enrolled, faces5, capsys) -> None:
    capsys.readouterr()
    probe = faces5 / "baejun" / "020.jpg"
    # An explicit threshold wins over the two-person gallery's own (deliberately cautious) calibration; 0.35 is
    # below it on the default embedder's (SFace) cosine scale.
    recorded = json.loads((enrolled / "current" / "gallery.json").read_text())["decision"]
    assert recorded["threshold"] > 0.35
    assert main(["identify", "--gallery", str(enrolled), "--json", "--threshold", "0.35", str(probe)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {
        "image",
        "bbox",
        "decision",
        "identity",
        "score",
        "margin",
        "threshold",
        "threshold_source",
    }
    assert row["decision"] == "match" and row["identity"] == {"id": "baejun", "name": "Bae Jun"}
    assert row["threshold"] == 0.35 and row["threshold_source"] == "config"


def test_identify_uses_the_gallery_calibration_by_default(enrolled, faces5, capsys) -> None:
    capsys.readouterr()
    main(["identify", "--gallery", str(enrolled), "--json", str(faces5 / "baejun" / "020.jpg")])
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    recorded = json.loads((enrolled / "current" / "gallery.json").read_text())["decision"]
    assert row["threshold_source"] == "gallery" and row["threshold"] == round(recorded["threshold"], 4)
    assert recorded["target_fpir"] == 0.01 and recorded["n_impostor"] == 16 and recorded["n_genuine"] == 16


def test_stranger_is_unknown(enrolled, faces5, capsys) -> None:
    capsys.readouterr()
    assert main(["identify", "--gallery", str(enrolled), "--json", str(faces5 / "khanh" / "003.jpg")]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["decision"] == "unknown" and row["identity"] is None


def test_photos_without_usable_face_are_named(tmp_path, faces5, models_dir, capsys) -> None:
    blank = tmp_path / "wall.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(blank), np.full((300, 300, 3), 200, np.uint8))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = faces5 / "khanh" / "001.jpg"
    code = main(
        ["enroll", "--gallery", str(tmp_path / "g"), "--id", "k", str(good), str(blank), str(corrupt)]
    )
    out, err = capsys.readouterr()
    assert code == 3, "a partly failed enrolment must not look like success"
    assert "enrolled k: 1 of 3 photos" in out and GalleryStore(tmp_path / "g").load().samples == (1,)
    assert "wall.png: no face found" in err
    assert "corrupt.jpg: not a decodable image" in err


def test_identify_unreadable_image_and_empty_gallery(tmp_path, enrolled, capsys) -> None:
    assert main(["identify", "--gallery", str(enrolled), str(tmp_path / "missing.jpg")]) == 1
    assert "missing.jpg: cannot read" in capsys.readouterr().err
    assert main(["identify", "--gallery", str(tmp_path / "none"), str(tmp_path / "x.jpg")]) == 2
    assert "no gallery here" in capsys.readouterr().err


def test_empty_gallery_is_a_clear_error(tmp_path, enrolled, faces5, capsys) -> None:
    store = GalleryStore(enrolled)
    emptied = store.load().remove({"baejun", "chipu"})
    empty_root = tmp_path / "empty"
    GalleryStore(empty_root).save(emptied.with_version(9))
    assert main(["identify", "--gallery", str(empty_root), str(faces5 / "baejun" / "001.jpg")]) == 2
    assert "the gallery is empty" in capsys.readouterr().err


def test_corrupt_embedder_is_refused_with_the_file_named(
    tmp_path, models_dir, enrolled, faces5, capsys
) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_dir, models, ignore=shutil.ignore_patterns("*.float32.*"))
    model = models / "sface.int8.tflite"  # the default embedder's file
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    code = main(
        ["identify", "--models", str(models), "--gallery", str(enrolled), str(faces5 / "baejun" / "1.jpg")]
    )
    assert code == 2
    assert "sface.int8.tflite: sha256" in capsys.readouterr().err


def test_run_with_bad_config_or_missing_model(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[match]\nthreshold = 7\n")
    assert main(["run", "--config", str(bad)]) == 2
    assert "match.threshold: must be in" in capsys.readouterr().err
    missing = tmp_path / "missing.toml"
    missing.write_text(f'[embedder]\nmodels_dir = "{tmp_path}"\n[device]\nstate_dir = "{tmp_path}"\n')
    assert main(["run", "--config", str(missing)]) == 2
    assert "model card not found" in capsys.readouterr().err
