"""`edgeface gallery build|publish|verify` refuse bad input with one line naming it (exit 2), never a traceback,
and `gallery build` refuses every argument a device would reject (the same validation functions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.identity.gallery import GalleryStore, sha256_bytes
from edgeface.server.build import build_bundle
from edgeface.server.signing import load_private_key, sign
from edgeface.sync import valid_fleet
from edgeface.sync.bundle import Bundle, bind_payload, pack_bundle, pack_payload, split_payload, unpack_bundle
from edgeface.sync.manifest import manifest_bytes
from tests.conftest import free_port
from tests.factories import FLEET, make_gallery, make_keys


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    keys = make_keys(tmp_path)
    store = GalleryStore(tmp_path / "gallery")
    store.save(make_gallery(5))
    return store.root, keys.private_path, keys.public_path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def _build(store: Path, private: Path, out: Path, *options: str) -> int:
    base = ["gallery", "build", "--gallery", str(store), "--key", str(private), "--out", str(out)]
    return main([*base, *options])


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--fleet", FLEET, "--version", "0"], "version"),
        (["--fleet", FLEET, "--version", "-3"], "-3"),
        (["--fleet", FLEET, "--version", str(2**70)], str(2**70)),
        (["--fleet", "a/b", "--version", "1"], "a/b"),
        (["--fleet", "a+b", "--version", "1"], "a+b"),
        (["--fleet", "a#", "--version", "1"], "a#"),
        (["--fleet", "", "--version", "1"], "fleet"),
        (["--fleet", "x" * 65, "--version", "1"], "fleet"),
        (["--fleet", "lob\nby", "--version", "1"], "lob\\nby"),
        (["--fleet", FLEET, "--version", "1", "--expires", "-1"], "-1"),
        (["--fleet", FLEET, "--version", "1", "--expires", "0"], "expires"),
        (["--fleet", FLEET, "--version", "1", "--expires", "nan"], "nan"),
        (["--fleet", FLEET, "--version", "1", "--expires", "1e300"], "expires"),
        (["--fleet", FLEET, "--version", "1", "--chunk-bytes", "0"], "chunk_bytes"),
    ],
)
def test_build_refuses_what_every_device_would_reject(
    setup, tmp_path: Path, capsys, options: list[str], named: str
) -> None:
    store, private, _ = setup
    out = tmp_path / "out.bundle"
    assert _build(store, private, out, *options) == 2
    assert named in _error_line(capsys)
    assert not out.exists()


def test_build_into_a_missing_directory(setup, tmp_path: Path, capsys) -> None:
    store, private, _ = setup
    out = tmp_path / "no" / "such" / "dir" / "v1.bundle"
    assert _build(store, private, out, "--fleet", FLEET, "--version", "1") == 2
    assert str(out.parent) in _error_line(capsys)
    assert not (tmp_path / "no").exists()


def test_publish_to_a_refused_port(setup, tmp_path: Path, capsys) -> None:
    store, private, _ = setup
    bundle = tmp_path / "v1.bundle"
    assert _build(store, private, bundle, "--fleet", FLEET, "--version", "1") == 0
    port = free_port()  # nothing listens there
    broker = f"127.0.0.1:{port}"
    assert main(["gallery", "publish", "--broker", broker, "--fleet", FLEET, str(bundle)]) == 2
    assert broker in _error_line(capsys)


def test_publish_refuses_a_bad_fleet_and_a_missing_file(setup, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.bundle"
    port = free_port()
    assert main(["gallery", "publish", "--broker", f"127.0.0.1:{port}", "--fleet", "a+b", str(missing)]) == 2
    assert "a+b" in _error_line(capsys)
    assert main(["gallery", "publish", "--broker", f"127.0.0.1:{port}", "--fleet", FLEET, str(missing)]) == 2
    assert str(missing) in _error_line(capsys)


def _resigned_with_identities(private: Path, identities: bytes) -> bytes:
    key = load_private_key(private)
    parts = unpack_bundle(build_bundle(make_gallery(1), fleet=FLEET, version=1, key=key))
    _, vectors = split_payload(parts.payload)
    payload = pack_payload(identities, vectors)
    fields = json.loads(parts.manifest) | {"identities": sha256_bytes(identities)}
    if "payload" in fields:  # the signed chunk table follows the new payload
        fields["payload"] = bind_payload(payload, fields["payload"]["chunk_bytes"]).as_dict()
    raw = manifest_bytes(fields)
    return pack_bundle(Bundle(raw, sign(key, raw), payload))


def test_verify_deeply_nested_identities_is_a_one_line_rejection(setup, tmp_path: Path, capsys) -> None:
    _, private, public = setup
    bundle = tmp_path / "nested.bundle"
    bundle.write_bytes(_resigned_with_identities(private, b"[" * 200_000 + b"]" * 200_000))
    assert main(["gallery", "verify", "--public", str(public), str(bundle)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert err.startswith(f"REJECTED {bundle}: payload_invalid") and "nested too deeply" in err


def test_verify_prints_no_raw_escapes_from_a_signed_manifest(setup, tmp_path: Path, capsys) -> None:
    """A server key signed a fleet name with a newline and terminal escapes: verify must not echo them raw."""
    _, private, public = setup
    key = load_private_key(private)
    parts = unpack_bundle(build_bundle(make_gallery(2), fleet=FLEET, version=1, key=key))
    raw = manifest_bytes(json.loads(parts.manifest) | {"fleet": "lobby\nOK forged.bundle\x1b[2J"})
    bundle = tmp_path / "forged.bundle"
    bundle.write_bytes(pack_bundle(Bundle(raw, sign(key, raw), parts.payload)))
    main(["gallery", "verify", "--public", str(public), str(bundle)])
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err
    assert "\nOK forged" not in captured.out + captured.err


@pytest.mark.parametrize("name", ["a+b", "a/b", "#", "", "x" * 65, "a\x00b", "a\u202eb", "a\nb"])
def test_valid_fleet_refuses_what_is_not_one_topic_level(name: str) -> None:
    with pytest.raises(ValueError, match="fleet"):
        valid_fleet(name)


@pytest.mark.parametrize("name", ["lobby", "site-3_door", "Hà Nội", "x" * 64])
def test_valid_fleet_accepts_topic_levels(name: str) -> None:
    assert valid_fleet(name) == name
