"""A gallery enrolled with another embedder never decides silently (issue 18 part 3): the daemon sets it aside,
`doctor` and `identify` say so in one line naming both models (card name and short sha) and the rebuild."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.config import parse_config
from edgeface.daemon.startup import recover_stored_gallery
from edgeface.identity.gallery import GalleryStore
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from tests.factories import make_gallery

OTHER_SHA = "ef" * 32
DEFAULT_NAME = DEFAULT_EMBEDDER_CARD.removesuffix(".int8.json")  # the running embedder's card name


@pytest.fixture
def two_embedders(tmp_path: Path, models_dir: Path) -> Path:
    """The shipped models plus the card of another embedder (the one an old gallery was enrolled with)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for item in models_dir.iterdir():
        (folder / item.name).symlink_to(item)
    card = json.loads((models_dir / DEFAULT_EMBEDDER_CARD).read_text())
    other = card | {"name": "oldnet128", "sha256": OTHER_SHA, "file": "oldnet128.tflite"}
    (folder / "oldnet128.json").write_text(json.dumps(other))
    return folder


def _state_with_old_gallery(tmp_path: Path, versions: tuple[str, ...]) -> Path:
    state = tmp_path / "state"
    store = GalleryStore(state / "gallery")
    for n, model in enumerate(versions, start=1):
        store.save(make_gallery(3, model=model, version=n))
    return state


def _default_sha(models_dir: Path) -> str:
    return json.loads((models_dir / DEFAULT_EMBEDDER_CARD).read_text())["sha256"]


def test_the_daemon_sets_it_aside_naming_both_models(
    tmp_path: Path, two_embedders: Path, models_dir: Path
) -> None:
    state = _state_with_old_gallery(tmp_path, (_default_sha(models_dir), OTHER_SHA))
    config = parse_config(
        {"device": {"state_dir": str(state)}, "embedder": {"models_dir": str(two_embedders)}}
    )
    recovery = recover_stored_gallery(config)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    reason = recovery.set_aside[0].reason
    assert f"enrolled with oldnet128 (sha {OTHER_SHA[:12]})" in reason
    assert f"this embedder is {DEFAULT_NAME} (sha {_default_sha(models_dir)[:12]})" in reason
    assert "`edgeface enroll --gallery NEW_FOLDER --folders PHOTOS`" in reason
    assert (state / "gallery" / "set-aside").is_dir()


def test_doctor_and_identify_say_so_in_one_line(
    tmp_path: Path, two_embedders: Path, faces5: Path, capsys
) -> None:
    state = _state_with_old_gallery(tmp_path, (OTHER_SHA,))
    config = tmp_path / "edgeface.toml"
    config.write_text(f'[device]\nstate_dir = "{state}"\n[embedder]\nmodels_dir = "{two_embedders}"\n')
    assert main(["doctor", "--config", str(config), "--timeout", "1"]) == 1
    gallery_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL gallery")]
    assert len(gallery_lines) == 1 and "oldnet128 (sha efefefefefef)" in gallery_lines[0]
    assert f"{DEFAULT_NAME} (sha" in gallery_lines[0] and "edgeface enroll" in gallery_lines[0]
    photo = next((faces5 / "baejun").iterdir())
    code = main(["identify", "--gallery", str(state / "gallery"), "--models", str(two_embedders), str(photo)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1, err
    assert (
        "oldnet128 (sha efefefefefef)" in err and f"{DEFAULT_NAME} (sha" in err and "edgeface enroll" in err
    )
