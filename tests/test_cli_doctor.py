"""`edgeface doctor`: every check on a healthy unit (real models, a replayed camera, a real broker), and each
failure named on its own line without stopping the other checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeface.cli import main
from edgeface.demo.localbroker import free_port
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.embed import Embedder
from tests.conftest import Broker


def _enrolled_state(tmp_path: Path, models_dir: Path) -> Path:
    embedder = Embedder(models_dir / DEFAULT_EMBEDDER_CARD)
    try:
        dim, sha = embedder.dim, embedder.sha256
    finally:
        embedder.close()
    state = tmp_path / "state"
    gallery = Gallery.empty(dim, sha).enroll("ann", "Ann", np.eye(dim, dtype=np.float32)[:2])
    GalleryStore(state / "gallery").save(gallery.with_version(1))
    return state


def _lines(out: str) -> dict[str, str]:
    return {line[5:].split(":", 1)[0]: line for line in out.splitlines() if line[:5] in ("ok   ", "FAIL ")}


def test_a_healthy_unit_passes_every_check(
    tmp_path: Path, models_dir: Path, faces5: Path, broker: Broker, capsys
) -> None:
    state = _enrolled_state(tmp_path, models_dir)
    config = tmp_path / "edgeface.toml"
    config.write_text(
        f'[device]\nstate_dir = "{state}"\n[embedder]\nmodels_dir = "{models_dir}"\n'
        f'[camera]\nkind = "replay"\npath = "{faces5 / "baejun"}"\nwidth = 320\nheight = 240\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
    )
    assert main(["doctor", "--config", str(config), "--timeout", "5"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert set(lines) == {"config", "models", "gallery", "camera", "broker"}
    assert all(line.startswith("ok   ") for line in lines.values()), lines
    assert "sface" in lines["models"] and "detector full" in lines["models"]
    assert "version 1, 1 identities" in lines["gallery"]
    assert lines["camera"].endswith("320x240 frames")
    assert f"{broker.host}:{broker.port} accepts connections" in lines["broker"]


def test_each_failure_is_named_and_the_other_checks_still_run(
    tmp_path: Path, models_dir: Path, capsys
) -> None:
    config = tmp_path / "edgeface.toml"
    closed_port = free_port()
    config.write_text(
        f'[device]\nstate_dir = "{tmp_path / "state"}"\n[embedder]\nmodels_dir = "{models_dir}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {closed_port}\n'
    )
    assert main(["doctor", "--config", str(config), "--timeout", "0.5"]) == 1
    lines = _lines(capsys.readouterr().out)
    assert lines["models"].startswith("ok   ")
    assert lines["gallery"].startswith("FAIL ") and "empty or missing" in lines["gallery"]
    assert lines["camera"].startswith("FAIL ") and "no [camera] section" in lines["camera"]
    assert lines["broker"].startswith("FAIL ") and "unreachable" in lines["broker"]
    assert "events will queue on disk" in lines["broker"]


def test_a_camera_that_gives_no_frame_is_a_failure(tmp_path: Path, models_dir: Path, capsys) -> None:
    empty = tmp_path / "no-photos"
    empty.mkdir()
    config = tmp_path / "edgeface.toml"
    config.write_text(
        f'[embedder]\nmodels_dir = "{models_dir}"\n[camera]\nkind = "replay"\npath = "{empty}"\n'
        f'[device]\nstate_dir = "{tmp_path / "state"}"\n'
    )
    assert main(["doctor", "--config", str(config), "--timeout", "0.5"]) == 1
    line = _lines(capsys.readouterr().out)["camera"]
    assert line.startswith("FAIL camera:"), line
