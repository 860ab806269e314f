"""`edgeface doctor`: every check on a healthy unit (real models, a replayed camera, a real broker), and each
failure named on its own line without stopping the other checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgeface.cli import main
from edgeface.demo.localbroker import free_port
from edgeface.errors import EdgefaceError
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.embed import Embedder
from tests.conftest import Broker, PasswordBroker
from tests.factories import make_keys


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
    assert set(lines) == {"config", "models", "gallery", "camera", "credentials", "tls", "sync key", "broker"}
    assert all(line.startswith("ok   ") for line in lines.values()), lines
    assert "sface" in lines["models"] and "detector full" in lines["models"]
    assert "version 1, 1 identities" in lines["gallery"]
    assert lines["camera"].endswith("320x240 frames")
    assert f"{broker.host}:{broker.port} accepts connections (anonymous)" in lines["broker"]


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


# --- what `run` needs besides models and camera (issue 22 item 9) -------------------------------------------
def _config(tmp_path: Path, models_dir: Path, broker: Broker | None = None, extra: str = "") -> Path:
    config = tmp_path / "edgeface.toml"
    host, port = (broker.host, broker.port) if broker else ("127.0.0.1", free_port())
    config.write_text(
        f'[device]\nstate_dir = "{tmp_path / "state"}"\n[embedder]\nmodels_dir = "{models_dir}"\n'
        f'[mqtt]\nhost = "{host}"\nport = {port}\n{extra}'
    )
    return config


def _doctor(config: Path, capsys) -> tuple[int, dict[str, str]]:
    code = main(["doctor", "--config", str(config), "--timeout", "3"])
    return code, _lines(capsys.readouterr().out)


def test_a_broker_that_refuses_our_credentials_is_refused_authentication_not_accepting(
    tmp_path: Path, models_dir: Path, password_broker: PasswordBroker, capsys
) -> None:
    wrong = tmp_path / "wrong.cred"
    wrong.write_text(f"{password_broker.username}:not-the-password\n")
    config = _config(tmp_path, models_dir, password_broker.broker, f'credentials_file = "{wrong}"\n')
    code, lines = _doctor(config, capsys)
    assert code == 1
    assert lines["credentials"].startswith("ok   ")  # a well-formed file: the broker is what refuses it
    line = lines["broker"]
    assert line.startswith("FAIL broker:") and "refused authentication (Not authorized)" in line, line
    assert "accepts" not in line and "no MQTT answer" not in line and "not-the-password" not in line


def test_an_anonymous_door_at_a_broker_that_wants_a_password_is_refused_authentication(
    tmp_path: Path, models_dir: Path, password_broker: PasswordBroker, capsys
) -> None:
    code, lines = _doctor(_config(tmp_path, models_dir, password_broker.broker), capsys)
    assert code == 1 and "refused authentication" in lines["broker"], lines["broker"]


def test_the_right_credentials_are_accepted(
    tmp_path: Path, models_dir: Path, password_broker: PasswordBroker, capsys
) -> None:
    right = tmp_path / "door.cred"
    right.write_text(f"{password_broker.username}\n{password_broker.password}\n")
    code, lines = _doctor(
        _config(tmp_path, models_dir, password_broker.broker, f'credentials_file = "{right}"\n'), capsys
    )
    assert code == 1  # only the gallery (none enrolled) and the camera (none configured) fail
    assert lines["credentials"] == f"ok   credentials: {right}: user {password_broker.username}"
    assert lines["broker"].startswith("ok   broker:") and "(with our credentials)" in lines["broker"]


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"bad-{kind}"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: reading it the usual way would hang doctor
    elif kind == "dev-zero":
        return Path("/dev/zero")
    elif kind == "private-key":
        return make_keys(tmp_path / "keys").private_path
    elif kind == "huge":
        with open(path, "wb") as handle:
            handle.truncate(1 << 40)  # sparse
    return path


KINDS = ["missing", "empty", "directory", "fifo", "dev-zero", "private-key", "huge"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_file_run_needs_is_checked(tmp_path: Path, models_dir: Path, kind: str) -> None:
    """The credentials file, the TLS CA file and sync.public_key: each bad one is a one-line FAIL naming
    it, where the old doctor said nothing about them and `run` then failed."""
    from edgeface.cli.doctor import check_credentials, check_sync_key, check_tls
    from edgeface.config import load_config

    bad = _bad_file(tmp_path, kind)
    extra = f'credentials_file = "{bad}"\n[mqtt.tls]\nca_file = "{bad}"\n[sync]\nenabled = true\npublic_key = "{bad}"\n'
    config = load_config(_config(tmp_path, models_dir, extra=extra))
    for check in (check_credentials, check_tls, check_sync_key):
        with pytest.raises(EdgefaceError) as exc:
            check(config, 1.0)
        message = str(exc.value)
        assert "\n" not in message and str(bad) in message, (check.__name__, message)


def test_doctor_fails_on_a_private_key_given_as_the_public_one_and_runs_every_other_check(
    tmp_path: Path, models_dir: Path, capsys
) -> None:
    keys = make_keys(tmp_path / "keys")
    extra = f'[sync]\nenabled = true\npublic_key = "{keys.private_path}"\n'
    code, lines = _doctor(_config(tmp_path, models_dir, extra=extra), capsys)
    assert code == 1
    assert lines["sync key"].startswith("FAIL sync key:") and "holds a private key" in lines["sync key"]
    assert lines["models"].startswith("ok   ") and lines["credentials"].startswith("ok   ")
    assert set(lines) >= {"gallery", "camera", "tls", "broker"}
    extra = f'[sync]\nenabled = true\npublic_key = "{keys.public_path}"\n'
    _, lines = _doctor(_config(tmp_path, models_dir, extra=extra), capsys)
    assert lines["sync key"] == f"ok   sync key: {keys.public_path}: Ed25519 public key"


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_sync_root_key_is_one_failing_line(tmp_path: Path, models_dir: Path, kind: str) -> None:
    """A door provisioned with the fleet's root key (sync.root_key) has it checked as a public key is."""
    from edgeface.cli.doctor import check_sync_key
    from edgeface.config import load_config

    bad = _bad_file(tmp_path, kind)
    config = load_config(_config(tmp_path, models_dir, extra=f'[sync]\nenabled = true\nroot_key = "{bad}"\n'))
    with pytest.raises(EdgefaceError) as exc:
        check_sync_key(config, 1.0)
    assert "\n" not in str(exc.value) and str(bad) in str(exc.value)


def test_a_good_sync_root_key_is_named(tmp_path: Path, models_dir: Path) -> None:
    from edgeface.cli.doctor import check_sync_key
    from edgeface.config import load_config

    keys = make_keys(tmp_path / "keys")
    config = load_config(
        _config(tmp_path, models_dir, extra=f'[sync]\nenabled = true\nroot_key = "{keys.public_path}"\n')
    )
    assert check_sync_key(config, 1.0).startswith(f"{keys.public_path}: Ed25519 root public key")
