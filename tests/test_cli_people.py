"""`edgeface gallery list|remove|rename|events` and `enroll --from-event`, end to end.

A gallery is enrolled from real photos with `enroll --folders`; the real daemon (separate process) then runs
the door scene with `[visitors] keep` and snapshots on, keeping the aligned crops of its decisions. Each test
works on its own copy of that state: a visitor the door saw is enrolled from its event, a person is erased
from every stored version, an absent id is refused with nothing changed, and a rename keeps the id.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.cli import main
from edgeface.demo.scenario import Scenario, build_scenario
from edgeface.identity.gallery import GalleryStore, read_gallery_dir
from edgeface.vision.detect import FaceDetector
from tests.conftest import make_broker
from tests.factories import Watcher

CHILD = Path(__file__).with_name("daemon_damage_child.py")
SNAPSHOT_BYTES, SNAPSHOT_PX = 6000, 80


@pytest.fixture(scope="module")
def scenario(faces5: Path, models_dir: Path) -> Scenario:
    return build_scenario(faces5, FaceDetector(models_dir), strangers=1, shown_per_person=1)


def enroll_folders(root: Path, scenario: Scenario, gallery: Path) -> None:
    for identity, photos in scenario.enrolment.items():
        (root / identity).mkdir(parents=True)
        for photo in photos:
            (root / identity / photo.name).symlink_to(photo)
    assert main(["enroll", "--gallery", str(gallery), "--folders", str(root), "--largest-face"]) == 0


@pytest.fixture(scope="module")
def door_state(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory, faces5: Path
) -> tuple[Path, list]:
    """State after the door ran the scene with kept visitors and snapshots; the snapshots it published."""
    tmp = tmp_path_factory.mktemp("door")
    state = tmp / "state"
    enroll_folders(tmp / "people", scenario, state / "gallery")
    broker = make_broker(tmp)
    broker.start()
    config = tmp / "edgeface.toml"
    config.write_text(
        f'[device]\nid = "cli-door"\nstate_dir = "{state}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nha_discovery = true\n'
        f"[homeassistant]\nsnapshot = true\nsnapshot_px = {SNAPSHOT_PX}\nsnapshot_max_bytes = {SNAPSHOT_BYTES}\n"
        "snapshot_interval_s = 0.5\n[visitors]\nkeep = true\nmax_events = 50\ncrops_per_event = 4\n"
    )
    watcher = Watcher(broker, ["edgeface/cli-door/snapshot"])
    try:
        log = tmp / "daemon.log"
        with open(log, "ab") as out:
            code = subprocess.run([sys.executable, str(CHILD), str(config), str(faces5), "10", "once"],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=300).returncode  # fmt: skip
        assert code == 0, log.read_text()[-3000:]
        snapshots = watcher.on("edgeface/cli-door/snapshot")
    finally:
        watcher.close()
        broker.stop()
    return state, snapshots


def copy_state(door_state: tuple[Path, list], tmp_path: Path) -> Path:
    state = tmp_path / "state"
    subprocess.run(["cp", "-a", str(door_state[0]), str(state)], check=True)
    return state


def events(state: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert main(["gallery", "events", "--state-dir", str(state), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def listing(gallery: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["gallery", "list", "--gallery", str(gallery), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
        elif path.is_symlink():
            digest.update(str(path.readlink()).encode())
    return digest.hexdigest()


def test_snapshots_when_enabled_are_small_jpegs_of_the_aligned_face(door_state: tuple[Path, list]) -> None:
    _, snapshots = door_state
    assert snapshots, "snapshots are on: each announced event may carry one"
    for data in snapshots:
        assert len(data) <= SNAPSHOT_BYTES
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) <= SNAPSHOT_PX  # a crop, never the 640x480 frame


def test_a_visitor_the_door_saw_is_enrolled_from_its_event(
    door_state: tuple[Path, list], scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = copy_state(door_state, tmp_path)
    kept = events(state, capsys)
    assert kept and all(1 <= e["crops"] <= 4 for e in kept)
    unknown = [e for e in kept if e["decision"] == "unknown"]
    assert unknown, "the stranger is kept as an unknown visitor"
    before = listing(state / "gallery", capsys)
    assert main(["enroll", "--gallery", str(state / "gallery"), "--from-event", unknown[0]["event_id"],
                 "--id", "visitor-1", "--name", "The courier"]) == 0  # fmt: skip
    after = listing(state / "gallery", capsys)
    assert after["version"] == before["version"] + 1 and after["count"] == before["count"] + 1
    person = next(p for p in after["people"] if p["id"] == "visitor-1")
    assert person == {"id": "visitor-1", "name": "The courier", "samples": unknown[0]["crops"]}
    assert after["threshold_source"] == "gallery"  # re-calibrated, as enrolment does
    assert GalleryStore(state / "gallery").load().calibration.identities == after["count"]  # type: ignore[union-attr]
    missing = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    digest = tree_digest(state / "gallery")
    assert main(["enroll", "--gallery", str(state / "gallery"), "--from-event", missing, "--id", "x"]) == 2
    assert (
        main(["enroll", "--gallery", str(state / "gallery"), "--from-event", "../../etc", "--id", "x"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not kept" in err[0] and "not an event id" in err[1]
    assert tree_digest(state / "gallery") == digest


def test_remove_erases_the_person_from_every_stored_version(
    door_state: tuple[Path, list], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = copy_state(door_state, tmp_path)
    gallery = state / "gallery"
    first = listing(gallery, capsys)["people"][0]["id"]
    assert main(["gallery", "rename", "--gallery", str(gallery), "--id", first, "--name", "Renamed"]) == 0
    store = GalleryStore(gallery)
    versions = sorted((gallery / "versions").iterdir())
    assert len(versions) == 2 and all(first in read_gallery_dir(v).ids for v in versions)
    old = read_gallery_dir(versions[0])
    row = old.ids.index(first)
    theirs = [old.vectors[row], *(old.enrolment[old.enrolment_labels == row])]  # type: ignore[index]
    aside = gallery / "set-aside" / "000000000001-20260101T000000Z"
    aside.parent.mkdir()
    subprocess.run(["cp", "-a", str(versions[0]), str(aside)], check=True)
    assert [e for e in events(state, capsys) if e["identity"] == first], "the door matched and kept them"
    capsys.readouterr()
    assert (
        main(["gallery", "remove", "--gallery", str(gallery), "--id", first, "--state-dir", str(state)]) == 0
    )
    out = capsys.readouterr().out
    assert f"erased {first}" in out and "no stored version holds their vectors now" in out
    current = store.load()
    assert first not in current.ids and current.version == old.version + 2
    assert current.calibration is not None and current.calibration.identities == len(current)
    assert [v.name for v in (gallery / "versions").iterdir()] == [f"{current.version:012d}"]
    assert not (gallery / "set-aside").exists() or not any((gallery / "set-aside").iterdir())
    for path in gallery.rglob("*.npy"):  # not one of their vectors left anywhere under the gallery
        stored = np.load(path)
        if stored.ndim == 2 and stored.shape[1] == len(theirs[0]):
            for vector in theirs:
                assert not (np.abs(stored - vector).max(axis=1) < 1e-6).any(), path
    assert not [e for e in events(state, capsys) if e["identity"] == first]


def test_removing_an_absent_id_is_refused_and_changes_nothing(
    door_state: tuple[Path, list], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = copy_state(door_state, tmp_path)
    gallery = state / "gallery"
    digest = tree_digest(gallery)
    capsys.readouterr()
    assert main(["gallery", "remove", "--gallery", str(gallery), "--id", "nobody-here"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no identity 'nobody-here'" in err[0]
    assert tree_digest(gallery) == digest


def test_list_says_who_is_enrolled_with_the_threshold_and_its_source(
    door_state: tuple[Path, list], scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    gallery = door_state[0] / "gallery"
    info = listing(gallery, capsys)
    assert {p["id"] for p in info["people"]} == set(scenario.enrolment)
    assert all(p["samples"] == len(scenario.enrolment[p["id"]]) for p in info["people"])
    assert info["threshold_source"] == "gallery" and info["version"] == 1 and len(info["model_sha256"]) == 64
    assert info["model"] == "sface"  # the default embedder the door ran
    assert main(["gallery", "list", "--gallery", str(gallery)]) == 0
    text = capsys.readouterr().out
    assert "version 1" in text and "source: gallery" in text
    assert all(identity in text for identity in scenario.enrolment)


def test_rename_keeps_the_id_and_makes_a_new_version(
    door_state: tuple[Path, list], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = copy_state(door_state, tmp_path)
    gallery = state / "gallery"
    before = listing(gallery, capsys)
    first = before["people"][0]["id"]
    assert main(["gallery", "rename", "--gallery", str(gallery), "--id", first, "--name", "Ada L."]) == 0
    after = listing(gallery, capsys)
    assert after["version"] == before["version"] + 1
    assert [p["id"] for p in after["people"]] == [p["id"] for p in before["people"]]
    assert after["people"][0]["name"] == "Ada L." and after["threshold_source"] == "gallery"
    assert main(["gallery", "rename", "--gallery", str(gallery), "--id", "nobody", "--name", "X"]) == 2
