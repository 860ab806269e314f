"""SIGKILL during apply, 50 times: the store always loads a complete old-or-new gallery with a consistent index.

The child process (this file run as a script) prints READY, then applies pre-built signed bundles one
after another through the device path (`apply_payload`: checks, verify, temp dir + fsync + rename + dir fsync,
symlink swap) and builds each index. The test kills it at a random moment and inspects the disk.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeface.identity.gallery import GalleryStore, npy_bytes, sha256_bytes
from edgeface.identity.index import GalleryIndex
from tests.factories import FLEET, MODEL, make_gallery, make_keys

KILLS = 50
ROWS = 2000
PER_CHILD = 5


def expected(version: int):
    return make_gallery(ROWS - version % 7, start=version * 11, version=version)


def child(root: Path, bundles: Path, public_key: Path) -> None:
    from edgeface.sync.apply import DevicePolicy, apply_payload
    from edgeface.sync.bundle import check_signature, read_bundle
    from edgeface.sync.manifest import parse_manifest
    from edgeface.sync.signing import load_public_key

    store = GalleryStore(root)
    running = store.load() if store.exists() else None
    start = running.version + 1 if running else 1
    key = load_public_key(public_key)
    policy = DevicePolicy(FLEET, MODEL)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    for version in range(start, start + PER_CHILD):
        parts = read_bundle(bundles / f"{version}.bundle")
        check_signature(parts.manifest, parts.signature, key)
        manifest = parse_manifest(parts.manifest)
        running, _ = apply_payload(store, policy, manifest, parts.signature, parts.payload, running)
        GalleryIndex(running)
    sys.stdout.write("DONE\n")


def _ensure_bundles(directory: Path, private_key: Path, first: int) -> None:
    from edgeface.server.build import build_bundle
    from edgeface.server.signing import load_private_key

    key = load_private_key(private_key)
    for version in range(first, first + PER_CHILD):
        path = directory / f"{version}.bundle"
        if not path.exists():
            path.write_bytes(build_bundle(expected(version), fleet=FLEET, version=version, key=key))


def _check_store(root: Path, last_version: int) -> int:
    loaded = GalleryStore(root).load()  # checks both sha256s against the stored manifest
    assert loaded.version >= last_version, f"went back from {last_version} to {loaded.version}"
    want = expected(loaded.version)
    assert loaded.ids == want.ids
    np.testing.assert_array_equal(loaded.vectors, want.vectors)
    assert loaded.manifest["identities"] == sha256_bytes(loaded.identities_json())
    assert loaded.manifest["vectors"] == sha256_bytes(npy_bytes(loaded.vectors))
    index = GalleryIndex(loaded)
    assert len(index.gallery) == len(loaded.ids) == loaded.manifest["count"]
    hit = index.search(want.vectors[:1], k=1)[0][0]
    assert hit.index == 0
    return loaded.version


def _run_child(command: list[str], env: dict[str, str], kill_after: float | None) -> tuple[bool, float]:
    """Run one child; SIGKILL it `kill_after` s after READY (None: let it finish). (finished?, seconds)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    assert process.stdout.readline() == b"READY\n"
    started = time.monotonic()
    if kill_after is not None:
        time.sleep(kill_after)
        process.send_signal(signal.SIGKILL)
    out = process.stdout.read()
    process.wait(timeout=30)
    return b"DONE" in out, time.monotonic() - started


@pytest.mark.slow
def test_sigkill_during_apply_always_leaves_a_complete_gallery(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    root = tmp_path / "gallery"
    rng = random.Random(1234)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1])])}
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    command = [sys.executable, __file__, str(root), str(bundles), str(keys.public_path)]
    # Calibrate how long PER_CHILD applies take here; the fastest of three, so a run slowed by other load
    # does not stretch the window past the point where most kills would land after the child is done.
    version, windows = 0, []
    for _ in range(3):
        _ensure_bundles(bundles, keys.private_path, version + 1)
        finished, seconds = _run_child(command, env, None)
        assert finished
        windows.append(seconds)
        version = _check_store(root, version)
    window, killed_mid_apply = min(windows), 0
    calibrated = version
    for _ in range(KILLS):
        _ensure_bundles(bundles, keys.private_path, version + 1)
        finished, seconds = _run_child(command, env, rng.uniform(0.0, window))
        killed_mid_apply += not finished
        if finished:  # it ran faster than the window: aim the next kills earlier (fsync times vary a lot)
            window = min(window, seconds)
        version = _check_store(root, version)
    assert killed_mid_apply >= KILLS // 2, f"only {killed_mid_apply} kills landed during apply"
    assert version > calibrated, "no bundle completed after calibration: nothing was tested"


if __name__ == "__main__":
    child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
