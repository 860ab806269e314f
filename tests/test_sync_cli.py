"""`edgeface gallery keygen|build|verify|inspect` round trip, in-process through the real argument parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.cli import build_parser, main
from edgeface.cli.common import load_encoder
from edgeface.identity.gallery import GalleryStore
from edgeface.server.build import build_bundle
from edgeface.server.signing import load_private_key
from edgeface.sync.bundle import read_bundle, verify_bundle
from edgeface.sync.signing import load_public_key
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from tests.factories import FLEET, make_gallery


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    assert main(["gallery", "keygen", "--private", str(private), "--public", str(public)]) == 0
    assert private.stat().st_mode & 0o077 == 0
    return private, public


def _build(store: Path, private: Path, out: Path, version: int, *extra: str) -> int:
    args = ["gallery", "build", "--gallery", str(store), "--fleet", FLEET, "--version", str(version)]
    return main([*args, "--key", str(private), "--out", str(out), *extra])


def test_keygen_build_verify_inspect_round_trip(tmp_path: Path, keypair, capsys) -> None:
    private, public = keypair
    store = GalleryStore(tmp_path / "gallery")
    store.save(make_gallery(25))
    out = tmp_path / "v1.bundle"
    assert _build(store.root, private, out, 1, "--expires", "30") == 0
    assert main(["gallery", "verify", "--public", str(public), str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    verified = verify_bundle(read_bundle(out), load_public_key(public))
    assert verified.manifest.version == 1 and verified.manifest.count == 25 and verified.manifest.expires
    assert main(["gallery", "inspect", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["manifest"]["fleet"] == FLEET and info["manifest"]["count"] == 25
    assert info["manifest_problem"] is None


def test_keygen_refuses_to_overwrite_a_key(keypair) -> None:
    private, public = keypair
    assert main(["gallery", "keygen", "--private", str(private), "--public", str(public)]) == 2


def test_verify_fails_with_a_reason(tmp_path: Path, keypair, capsys) -> None:
    private, public = keypair
    store = GalleryStore(tmp_path / "gallery")
    store.save(make_gallery(10))
    out = tmp_path / "v1.bundle"
    assert _build(store.root, private, out, 1) == 0
    data = bytearray(out.read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "bad.bundle").write_bytes(bytes(data))
    assert main(["gallery", "verify", "--public", str(public), str(tmp_path / "bad.bundle")]) == 1
    assert "vectors_sha256" in capsys.readouterr().err
    other = tmp_path / "other.pub"
    main(["gallery", "keygen", "--private", str(tmp_path / "o.pem"), "--public", str(other)])
    assert main(["gallery", "verify", "--public", str(other), str(out)]) == 1
    assert "bad_signature" in capsys.readouterr().err
    (tmp_path / "junk.bundle").write_bytes(b"PK\x03\x04 not a bundle")
    assert main(["gallery", "verify", "--public", str(public), str(tmp_path / "junk.bundle")]) == 1


def test_expired_bundle_fails_verify(tmp_path: Path, keypair, capsys) -> None:
    private, public = keypair
    store = GalleryStore(tmp_path / "gallery")
    store.save(make_gallery(5))
    out = tmp_path / "old.bundle"
    # `gallery build --expires -1` is refused now (test_sync_cli_args); a bundle that expired since it was
    # built is made the way a server would have made it two days ago
    then = datetime.now(UTC) - timedelta(days=2)
    key = load_private_key(private)
    out.write_bytes(build_bundle(store.load(), fleet=FLEET, version=1, key=key, expires_days=1, now=then))
    assert main(["gallery", "verify", "--public", str(public), str(out)]) == 1
    assert "expired" in capsys.readouterr().err


def test_build_delta_against_a_full_bundle(tmp_path: Path, keypair) -> None:
    private, public = keypair
    v1 = make_gallery(100)
    store = GalleryStore(tmp_path / "gallery")
    store.save(v1)
    full = tmp_path / "v1.bundle"
    assert _build(store.root, private, full, 1) == 0
    store.save(v1.remove({v1.ids[0]}).with_version(2))
    delta = tmp_path / "v2.delta"
    assert _build(store.root, private, delta, 2, "--base", str(full)) == 0
    verified = verify_bundle(read_bundle(delta), load_public_key(public))
    assert verified.manifest.base_version == 1 and verified.manifest.remove == (v1.ids[0],)
    assert verified.manifest.count == 0 and verified.manifest.result.count == 99
    assert delta.stat().st_size < full.stat().st_size / 20
    by_version = tmp_path / "v2-by-version.delta"
    assert _build(store.root, private, by_version, 2, "--base", "1") == 0
    again = verify_bundle(read_bundle(by_version), load_public_key(public)).manifest
    assert again.base_version == 1 and again.result == verified.manifest.result


@pytest.mark.slow
def test_build_from_photo_folders_with_the_device_encoder(
    tmp_path: Path, keypair, faces5: Path, models_dir: Path
) -> None:
    private, public = keypair
    root = tmp_path / "people"
    people = sorted(p.name for p in faces5.iterdir() if p.is_dir())
    for person in people:
        (root / person).mkdir(parents=True)
        for photo in sorted((faces5 / person).glob("*.jpg"))[:3]:
            (root / person / photo.name).symlink_to(photo)
    out = tmp_path / "photos.bundle"
    # --largest-face, as with `enroll`: the largest face even where another is of comparable size
    args = ["gallery", "build", "--folders", str(root), "--fleet", FLEET, "--version", "1", "--largest-face"]
    assert main([*args, "--models", str(models_dir), "--key", str(private), "--out", str(out)]) == 0
    verified = verify_bundle(read_bundle(out), load_public_key(public))
    card = json.loads((models_dir / DEFAULT_EMBEDDER_CARD).read_text())
    assert verified.manifest.model_sha256 == card["sha256"]
    assert verified.rows.ids == tuple(people) and verified.manifest.dim == card["output"]["dim"]
    assert all(s == 3 for s in verified.rows.samples)
    decision = verified.manifest.decision  # chosen on these enrolment photos, signed with the rows
    assert decision is not None and decision.target_fpir == 0.01
    assert decision.n_impostor == sum(verified.rows.samples) * (len(people) - 1)
    assert decision.n_genuine == sum(verified.rows.samples) and 0.0 < decision.est_fpir <= 0.02
    encoder = load_encoder(
        build_parser().parse_args([*args, "--models", str(models_dir), "--key", "k", "--out", "o"])
    )
    try:  # a photo not used for enrolment is nearest to its own person's bundled vector
        for k, person in enumerate(people):
            held_out = sorted((faces5 / person).glob("*.jpg"))[10]
            face = encoder.encode_largest(cv2.imread(str(held_out)), str(held_out))
            assert int(np.argmax(verified.rows.vectors @ face.embedding)) == k, held_out
    finally:
        encoder.close()
