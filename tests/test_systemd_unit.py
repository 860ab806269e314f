"""systemd/: the unit's contract (docs/design.md §8), `systemd-analyze verify` and `security`,
sysusers/tmpfiles, the example config, and that MemoryDenyWriteExecute=yes is safe for the TFLite runtime."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "edgeface.service"
MAX_EXPOSURE = 2.5
CAMERA_DEVICES = {"char-video4linux rw", "char-media rw", "char-dma_heap rw"}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (keys may repeat, as in systemd)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/bin:/usr/bin:/lib/systemd")
    if path is None:
        pytest.fail(f"{name} not found: apt-get install -y systemd")
    return path


def unit_with_existing_binary(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointing at a binary that exists here (verify checks it)."""
    text = UNIT.read_text().replace("/opt/edgeface/venv/bin/edgeface", sys.executable)
    copy = tmp_path / "edgeface.service"
    copy.write_text(text + extra)
    return copy


def test_unit_follows_the_design_contract() -> None:
    service = parse_unit(UNIT.read_text())["Service"]

    def one(key: str) -> str:
        (value,) = service[key]
        return value

    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert one("ExecStart").endswith(" run --config /etc/edgeface/edgeface.toml")
    assert re.fullmatch(r"\S*kill -HUP \$MAINPID", one("ExecReload"))
    assert 10 <= int(one("WatchdogSec")) <= 120
    assert one("Restart") == "on-failure"
    assert int(one("TimeoutStopSec")) <= 30
    assert one("User") == "edgeface" and one("SupplementaryGroups") == "video"
    assert one("StateDirectory") == "edgeface"
    for key, value in {
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "DevicePolicy": "closed",
        "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert one(key) == value, key
    assert set(service["DeviceAllow"]) == CAMERA_DEVICES  # cameras only
    assert "@system-service" in service["SystemCallFilter"]


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "verify", str(unit_with_existing_binary(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # control: the check does see a bad directive
    broken = tmp_path / "broken"
    broken.mkdir()
    bad = unit_with_existing_binary(broken, "ProtectSystem=sideways\n")
    result = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True)
    assert "ProtectSystem" in result.stderr


def exposure(path: Path) -> float:
    result = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=true", str(path)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    return float(match.group(1))


def test_security_exposure_is_at_most_2_5(tmp_path: Path) -> None:
    score = exposure(unit_with_existing_binary(tmp_path))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}"
    plain = tmp_path / "plain" / "plain.service"
    plain.parent.mkdir()
    plain.write_text(f"[Service]\nType=notify\nExecStart={sys.executable}\n")
    assert exposure(plain) > 8.0  # control: the scorer does penalise an unhardened unit


def test_sysusers_and_tmpfiles_create_user_and_directories(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nvideo:x:44:\n")
    for kind in ("sysusers", "tmpfiles"):
        target = tmp_path / f"usr/lib/{kind}.d/edgeface.conf"
        target.parent.mkdir(parents=True)
        shutil.copy(SYSTEMD / f"edgeface.{kind}.conf", target)
    subprocess.run(
        [tool("systemd-sysusers"), f"--root={tmp_path}", "edgeface.conf"], check=True, capture_output=True
    )
    users = {
        line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    groups = {
        line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/group").read_text().splitlines()
    }
    assert users["edgeface"][6] == "/usr/sbin/nologin"
    assert "edgeface" in groups["video"][3].split(",")
    subprocess.run(
        [tool("systemd-tmpfiles"), f"--root={tmp_path}", "--create", "edgeface.conf"],
        check=True,
        capture_output=True,
    )
    uid, gid = int(users["edgeface"][2]), int(groups["edgeface"][2])
    etc, state = os.stat(tmp_path / "etc/edgeface"), os.stat(tmp_path / "var/lib/edgeface")
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o777) == (0, gid, 0o750)
    assert (state.st_uid, state.st_gid, state.st_mode & 0o777) == (uid, gid, 0o750)


def test_example_config_is_valid() -> None:
    from edgeface.config import load_config

    config = load_config(SYSTEMD / "edgeface.toml.example")
    settings = config.mqtt
    assert settings.tls is not None and settings.credentials_file is not None
    assert str(settings.spool_path).startswith("/var/lib/edgeface/")  # inside StateDirectory


_UNDER_MDWE = """
import ctypes, mmap, sys
import numpy as np
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("NO_MDWE", ctypes.get_errno()); sys.exit(3)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("W+X mapping was allowed"); sys.exit(4)
except PermissionError:
    pass
import cv2, hnswlib, paho.mqtt.client, sqlite3
from edgeface.vision.runtime import TFLiteModel
for path in sys.argv[1:]:
    with TFLiteModel(path, num_threads=2, use_xnnpack=True) as model:
        outputs = model.run(np.random.default_rng(0).random(model.input_shape, dtype=np.float32))
        assert all(np.isfinite(o).all() for o in outputs), path
        print("ok", path, model.runtime_name)
"""


def test_memory_deny_write_execute_is_safe_for_the_runtime(models_dir: Path) -> None:
    """MemoryDenyWriteExecute=yes forbids W+X memory: the TFLite runtime (XNNPACK) must not need a JIT.

    The kernel's PR_SET_MDWE (Linux >= 6.3) enforces the same rule as systemd's seccomp filter.
    """
    models = sorted(str(p) for p in models_dir.glob("*.tflite"))
    assert any("int8" in m for m in models), "the int8 embedder is part of the check"
    result = subprocess.run(
        [sys.executable, "-c", _UNDER_MDWE, *models],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )
    if result.returncode == 3:
        pytest.skip(f"kernel {os.uname().release} has no PR_SET_MDWE (needs >= 6.3): {result.stdout}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == len(models)
