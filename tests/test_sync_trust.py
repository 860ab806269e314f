"""Key rotation end to end on a real mosquitto: an offline root certifies signing keys (`gallery keygen
--root`, `gallery certify`, `gallery revoke`); a door provisioned with the root key accepts a bundle from the
old key, then from a new certified key, and refuses a revoked key (also after a restart) and an expired
certificate, keeping its gallery. Doors with a plain `sync.public_key` work as before (the other sync tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.config import parse_config
from edgeface.errors import ConfigError
from edgeface.server.build import build_bundle
from edgeface.server.publish import publish
from edgeface.sync.mqtt import BrokerOptions
from edgeface.sync.signing import load_public_key
from edgeface.sync.trust import RootTrust, key_id
from tests.factories import FLEET, PREFIX, Keys, make_gallery, make_keys, start_device, wait_for

pytestmark = pytest.mark.broker


def _cli(*args: str) -> None:
    assert main(["gallery", *args]) == 0


def _certify(root: Keys, key: Keys, out: Path, days: float = 365, not_before: str | None = None) -> bytes:
    extra = ["--not-before", not_before] if not_before else []
    _cli("certify", "--root-key", str(root.private_path), "--public", str(key.public_path), "--days", str(days),
         "--out", str(out), *extra)  # fmt: skip
    return out.read_bytes()


def _publish(broker, key: Keys, version: int, cert: bytes | None, revocations: bytes | None = None) -> None:
    bundle = build_bundle(make_gallery(8, start=version * 10), fleet=FLEET, version=version, key=key.private)
    publish(BrokerOptions(broker.host, broker.port), PREFIX, FLEET, bundle, None, wait_s=0.2, cert=cert,
            revocations=revocations)  # fmt: skip


def _reason(device) -> str:
    return device.sync.last_state.reason or ""


def test_rotation_revocation_and_expiry_end_to_end(broker, tmp_path: Path) -> None:
    root_dir = tmp_path / "root"
    root_dir.mkdir()
    _cli("keygen", "--root", "--private", str(root_dir / "root.pem"), "--public", str(root_dir / "root.pub"))
    root = Keys(root_dir / "root.pem", root_dir / "root.pub")
    old, new, late = (make_keys(tmp_path / name, name) for name in ("old", "new", "late"))
    old_cert = _certify(root, old, tmp_path / "old.cert")
    new_cert = _certify(root, new, tmp_path / "new.cert")
    expired = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    late_cert = _certify(root, late, tmp_path / "late.cert", days=1, not_before=expired)
    state = tmp_path / "door1.revocations.json"
    device = start_device(broker, tmp_path, old, trust=RootTrust(root.public, state))
    try:
        _publish(broker, old, 1, old_cert)
        wait_for(lambda: device.sync.running_version == 1, 5, "v1 from the old key")
        _publish(broker, new, 2, None)  # a certified key, but no certificate travels with it
        wait_for(lambda: _reason(device).startswith("cert_invalid"), 5, "no certificate")
        _publish(broker, new, 2, new_cert)  # rotation: the new key, certified by the same root
        wait_for(lambda: device.sync.running_version == 2, 5, "v2 from the new key")
        _cli("revoke", "--root-key", str(root.private_path), "--key-id", key_id(old.public),
             "--out", str(tmp_path / "revoked.json"))  # fmt: skip
        revocations = (tmp_path / "revoked.json").read_bytes()
        _publish(broker, old, 3, old_cert, revocations)
        wait_for(lambda: _reason(device).startswith("key_revoked"), 5, "revoked key refused")
        assert device.sync.running_version == 2
        _publish(broker, late, 3, late_cert)
        wait_for(lambda: _reason(device).startswith("cert_invalid"), 5, "expired certificate refused")
        assert "expired" in _reason(device) and device.sync.running_version == 2
        stranger_root = make_keys(tmp_path / "stranger", "stranger")
        _publish(broker, old, 3, _certify(stranger_root, new, tmp_path / "forged.cert"))
        wait_for(lambda: "not signed by the configured root" in _reason(device), 5, "foreign root refused")
        assert device.store.load().version == 2
    finally:
        device.close()
    restarted = RootTrust(root.public, state)  # the revocation survives a restart
    assert key_id(old.public) in restarted.revoked
    older = tmp_path / "older.json"  # a replayed older list cannot un-revoke
    _cli("revoke", "--root-key", str(root.private_path), "--key-id", key_id(late.public), "--out", str(older))
    restarted.offer_revocations(older.read_bytes())
    assert key_id(old.public) in restarted.revoked


def test_sync_needs_exactly_one_of_public_key_and_root_key(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    assert parse_config({"sync": {"enabled": True, "root_key": str(keys.public_path)}}).sync.root_key
    with pytest.raises(ConfigError, match=r"required when sync\.enabled is true"):
        parse_config({"sync": {"enabled": True}})
    with pytest.raises(ConfigError, match="not both"):
        parse_config({"sync": {"enabled": True, "root_key": "a", "public_key": "b"}})
    assert load_public_key(keys.public_path)
