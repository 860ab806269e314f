"""`edgeface eval` (edgeface/cli/eval.py) end to end on a small real folder: the report, what it names, and
`--record`. The evaluation arithmetic itself is `test_server_evaluation.py`'s; here the verb around it.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.cli import main
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.modelcard import load_card

PEOPLE = ("baejun", "chipu", "khanh")
CARD = DEFAULT_EMBEDDER_CARD


@pytest.fixture(scope="module")
def folders(faces5: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five photos of three people, plus one unreadable file and one photo without a face."""
    root = tmp_path_factory.mktemp("eval") / "people"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for photo in sorted((faces5 / person).glob("*.jpg"))[:5]:
            shutil.copy(photo, root / person / photo.name)
    (root / "chipu" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert cv2.imwrite(str(root / "khanh" / "wall.png"), np.full((200, 200, 3), 128, np.uint8))
    return root


@pytest.fixture(scope="module")
def report(folders: Path, models_dir: Path) -> dict:
    return run_eval(folders, models_dir, "--json")


def run_eval(folders: Path, models_dir: Path, *extra: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval", "--folders", str(folders), "--models", str(models_dir), "--threads", "1",
                     "--seeds", "2", *extra])  # fmt: skip
    assert code == 0
    text = out.getvalue()
    return json.loads(text) if "--json" in extra else {"text": text}


def test_the_report_counts_every_photo_and_names_the_ones_without_a_face(report: dict, folders: Path) -> None:
    assert report["folders"] == str(folders)
    assert len(report["unreadable"]) == 1 and "broken.jpg: not a decodable image" in report["unreadable"][0]
    assert report["no_face"] == [str(folders / "chipu" / "broken.jpg"), str(folders / "khanh" / "wall.png")]
    full = report["all_photos"]
    assert full["photos"] == 17 and full["faces_found"] == 15
    assert full["detection_rate"] == pytest.approx(15 / 17)
    assert full["identification"]["splits"] == 2 and "2 seeds" in report["protocol"]


def test_the_report_names_the_model_and_gives_rates_in_range(report: dict, models_dir: Path) -> None:
    card = load_card(models_dir / CARD)
    assert report["model"] == {"name": card.name, "sha256": card.sha256} and report["detector"] == "full"
    for key in ("all_photos", "duplicates_removed_set"):
        result = report[key]
        assert 0.0 <= result["identification"]["nearest_neighbour"]["top1_mean"] <= 1.0
        assert 0.5 < result["verification_pairs"]["auc"] <= 1.0  # three distinct people are told apart
        assert -1.0 <= result["threshold"]["value"] <= 1.0 and result["threshold"]["far"] == 0.01


def test_the_text_summary_says_the_same(folders: Path, models_dir: Path, report: dict) -> None:
    text = run_eval(folders, models_dir)["text"]
    lines = text.splitlines()
    assert lines[0].startswith(f"model sface ({report['model']['sha256'][:12]}), detector full")
    assert "all photos: 17 photos, faces found 15 (88.2%)" in text
    assert any(line.startswith("no face found: ") and "wall.png" in line for line in lines)
    assert any(line.startswith("unreadable: ") and "broken.jpg" in line for line in lines)


def test_record_writes_the_deduplicated_accuracy_into_the_card_and_nothing_else(
    folders: Path, models_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_dir, models, ignore=shutil.ignore_patterns("cache", "*.py", "LICENSES"))
    before = json.loads((models / CARD).read_text())
    recorded = run_eval(folders, models, "--json", "--record")
    after = json.loads((models / CARD).read_text())
    result = recorded["duplicates_removed_set"]
    assert after["accuracy"] == {
        "set": "people",
        "duplicates_removed": True,
        "top1_nearest_neighbour": round(result["identification"]["nearest_neighbour"]["top1_mean"], 4),
        "top1_aggregated": round(result["identification"]["aggregated"]["top1_mean"], 4),
        "verification_auc": round(result["verification_pairs"]["auc"], 4),
        "eer": round(result["verification_pairs"]["eer"], 4),
    }
    assert {k: v for k, v in after.items() if k != "accuracy"} == {
        k: v for k, v in before.items() if k != "accuracy"
    }
    assert json.loads((models_dir / CARD).read_text()) == before  # the checkout's card is untouched


def test_one_identity_is_not_enough(tmp_path: Path, folders: Path, models_dir: Path, capsys) -> None:
    shutil.copytree(folders / "baejun", tmp_path / "one" / "baejun")
    code = main(["eval", "--folders", str(tmp_path / "one"), "--models", str(models_dir), "--seeds", "1"])
    assert code == 2 and "need faces of at least two identities to evaluate" in capsys.readouterr().err


def test_a_photo_with_comparable_faces_counts_as_no_face_and_is_named(
    faces5: Path, tmp_path: Path, models_dir: Path
) -> None:
    root = tmp_path / "people"
    for person in ("baejun", "khanh"):
        (root / person).mkdir(parents=True)
        for name in ("002.jpg", "003.jpg"):
            shutil.copy(faces5 / person / name, root / person / name)
    shutil.copy(faces5 / "baejun" / "013.jpg", root / "baejun" / "013.jpg")  # two people of similar size
    shutil.copy(faces5 / "khanh" / "001.jpg", root / "khanh" / "001.jpg")  # khanh and a much smaller face
    report = run_eval(root, models_dir, "--json")
    pair = str(root / "baejun" / "013.jpg")
    assert report["no_face"] == [pair] and report["all_photos"]["faces_found"] == 5
    assert len(report["comparable_faces"]) == 1 and report["comparable_faces"][0].startswith(
        f"{pair}: 2 faces of comparable size"
    )
    assert "comparable faces (counted as no face): " in run_eval(root, models_dir)["text"]
