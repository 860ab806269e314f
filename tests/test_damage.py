"""Issue 13: damaged state, hostile bundles and bad values never stop the door (unit and broker level).

The daemon-level run of the same cases is tests/test_daemon_damage.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.camera.base import CameraError, EndOfStream
from edgeface.camera.replay import ReplaySource
from edgeface.cli import main
from edgeface.config import load_config, parse_config
from edgeface.daemon.parts import check_gallery
from edgeface.errors import ConfigError, GalleryError, ImageError
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.recovery import SET_ASIDE_DIR, recover_gallery
from edgeface.server.build import build_bundle
from edgeface.sync.apply import DevicePolicy, apply_payload
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.chunks import announcement_bytes, split_chunks
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import parse_manifest
from edgeface.util.imagesize import header_size
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.photos import read_image
from tests.factories import (
    FLEET,
    MODEL,
    PREFIX,
    Keys,
    go_live,
    make_gallery,
    make_keys,
    raw_publish,
    read_retained,
    start_device,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


# --- crash loop 3: a flipped bit in the current gallery ------------------------------------------------
def flip_bit(path: Path, at: int = -7) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def two_versions(root: Path) -> GalleryStore:
    store = GalleryStore(root)
    store.save(make_gallery(5, version=1))
    store.save(make_gallery(6, version=2))
    return store


def fits_128(gallery: Gallery) -> Gallery:
    class Model:
        sha256, dim = MODEL, 128

    return check_gallery(gallery, Model(), Path("g"))


def test_flipped_bit_in_current_vectors_falls_back_to_the_previous_version(tmp_path: Path) -> None:
    store = two_versions(tmp_path / "g")
    flip_bit(store.current_link.resolve() / "vectors.npy")
    with pytest.raises(GalleryError, match="sha256"):
        store.load()
    recovery = recover_gallery(store, fits_128)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    assert [s.version for s in recovery.set_aside] == ["000000000002"]
    assert "sha256" in recovery.set_aside[0].reason
    moved = recovery.set_aside[0].moved_to
    assert (
        moved is not None and moved.parent == store.root / SET_ASIDE_DIR and (moved / "vectors.npy").exists()
    )
    assert store.load().version == 1  # `current` re-pointed: the next start needs no recovery
    assert not (store.root / "versions" / "000000000002").exists()
    assert recover_gallery(store, fits_128).set_aside == ()
    store.save(make_gallery(6, version=2))  # a re-sync of version 2 can be stored again
    assert store.load().version == 2


def test_a_version_for_another_embedder_is_passed_over(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "g")
    store.save(make_gallery(5, version=1))
    store.save(make_gallery(5, version=2, dim=512))
    recovery = recover_gallery(store, fits_128)
    assert recovery.gallery is not None and recovery.gallery.version == 1
    assert "512-d" in recovery.set_aside[0].reason


def test_recovery_without_repair_changes_nothing_and_no_usable_version_is_reported(tmp_path: Path) -> None:
    store = two_versions(tmp_path / "g")
    for version in ("000000000001", "000000000002"):
        flip_bit(store.root / "versions" / version / "identities.json", at=3)
    before = sorted(p.name for p in (store.root / "versions").iterdir())
    dry = recover_gallery(store, fits_128, repair=False)
    assert dry.gallery is None and len(dry.set_aside) == 2
    assert sorted(p.name for p in (store.root / "versions").iterdir()) == before
    assert all(s.moved_to is None for s in dry.set_aside)
    repaired = recover_gallery(store, fits_128)
    assert repaired.gallery is None and not store.exists()  # no `current` left: the daemon runs empty
    assert len(list((store.root / SET_ASIDE_DIR).iterdir())) == 2
    assert recover_gallery(GalleryStore(tmp_path / "none"), fits_128).set_aside == ()


def test_doctor_names_the_damaged_version_and_the_fallback_without_touching_it(
    tmp_path: Path, models_dir: Path, capsys
) -> None:
    from edgeface.vision.embed import Embedder

    embedder = Embedder(models_dir / DEFAULT_EMBEDDER_CARD)
    try:
        dim, sha = embedder.dim, embedder.sha256
    finally:
        embedder.close()
    store = GalleryStore(tmp_path / "state" / "gallery")
    for version in (1, 2):
        gallery = Gallery.empty(dim, sha).enroll("ann", "Ann", np.eye(dim, dtype=np.float32)[:2])
        store.save(gallery.with_version(version))
    flip_bit(store.current_link.resolve() / "vectors.npy")
    config = tmp_path / "edgeface.toml"
    config.write_text(f'[device]\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = 1\n'
                      f'[embedder]\nmodels_dir = "{models_dir}"\n[camera]\nkind = "replay"\npath = "{tmp_path}"\n')  # fmt: skip
    assert main(["doctor", "--config", str(config), "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("FAIL gallery:")]
    assert "version 000000000002" in line and "sha256" in line and "running version 1" in line
    assert not (store.root / "set-aside").exists() and store.current_link.resolve().name == "000000000002"


# --- crash loop 1 at apply time: a signed bundle of another dim ------------------------------------------
def test_signed_bundle_of_another_dim_is_refused_before_commit(tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    store = GalleryStore(tmp_path / "device")
    store.save(make_gallery(4, version=1))
    raw = build_bundle(make_gallery(4, version=2, dim=512), fleet=FLEET, version=2, key=keys.private)
    parts = unpack_bundle(raw)
    manifest = parse_manifest(parts.manifest)
    running = store.load()
    policy = DevicePolicy(FLEET, MODEL, dim=128)
    with pytest.raises(Rejected) as caught:
        apply_payload(store, policy, manifest, parts.signature, parts.payload, running)
    assert caught.value.code == "dim_mismatch" and "512-d" in caught.value.reason
    assert store.load().version == 1
    assert sorted(p.name for p in (store.root / "versions").iterdir()) == ["000000000001"]


@pytest.mark.broker
def test_wrong_dim_bundle_over_mqtt_is_rejected_with_the_reason_in_gallery_state(
    broker, tmp_path: Path
) -> None:
    keys: Keys = make_keys(tmp_path)
    root = tmp_path / "devices"
    GalleryStore(root / "door1").save(make_gallery(4, version=1))
    device = start_device(broker, root, keys, dim=128)
    try:
        parts = unpack_bundle(
            build_bundle(
                make_gallery(4, version=2, dim=512),
                fleet=FLEET,
                version=2,
                key=keys.private,
                chunk_bytes=4096,
            )
        )
        chunks = split_chunks(parts.payload, 4096)
        announcement = announcement_bytes(parts.manifest, parts.signature, parts.payload, chunks)
        raw_publish(broker, 2, announcement, dict(enumerate(chunks)))
        wait_for(lambda: device.sync.last_state.status == "rejected", 5, "dim rejection")
        state = read_retained(broker, f"{PREFIX}/door1/gallery/state")
        assert state is not None and state["reason"].startswith("dim_mismatch:"), state
        assert device.sync.running_version == 1 and device.store.load().version == 1
        assert device.index.gallery.dim == 128
    finally:
        device.close()


# --- config: fleet, device id, max_version_jump ---------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"device": {"fleet": "a+b"}}, "device.fleet:"),
        ({"device": {"fleet": "a/b"}}, "device.fleet:"),
        ({"device": {"fleet": "x" * 65}}, "device.fleet:"),
        ({"device": {"id": "a/b"}}, "device.id:"),
        ({"device": {"id": "door\x1b[2J"}}, "device.id:"),
        ({"device": {"id": ""}}, "device.id:"),
        ({"sync": {"max_version_jump": 0}}, "sync.max_version_jump:"),
        ({"sync": {"max_version_jump": 2**60}}, "sync.max_version_jump:"),
        ({"camera": {"max_megapixels": 0}}, "camera.max_megapixels:"),
    ],
)
def test_bad_fleet_device_id_and_bounds_are_one_line_config_errors(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    message = str(caught.value)
    assert message.startswith(key) and "\n" not in message and "\x1b" not in message


def test_max_version_jump_reaches_the_sync_client(tmp_path: Path) -> None:
    from edgeface.daemon.startup import start_sync
    from edgeface.mqtt.client import MqttPublisher
    from edgeface.mqtt.payloads import StatusInfo

    keys = make_keys(tmp_path)
    config = parse_config(
        {
            "device": {"id": "door1", "fleet": FLEET, "state_dir": str(tmp_path / "state")},
            "sync": {"enabled": True, "public_key": str(keys.public_path), "max_version_jump": 7},
            "mqtt": {"port": 1},  # never connected: only the wiring is looked at
        }
    )
    publisher = MqttPublisher(config.mqtt, StatusInfo("0", 0, 0, "m", MODEL))
    live = go_live(Gallery.empty(128, MODEL))
    sync = start_sync(config, publisher, live, MODEL, lambda live: None, dim=128)
    try:
        assert sync is not None
        assert sync.client.policy.max_version_jump == 7 and sync.client.policy.dim == 128
    finally:
        if sync is not None:
            sync.close()
        publisher.close()


def test_doctor_reports_a_bad_fleet_as_a_config_failure(tmp_path: Path, capsys) -> None:
    path = tmp_path / "edgeface.toml"
    path.write_text('[device]\nid = "door1"\nfleet = "a+b"\n')
    assert main(["doctor", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL config:") and "device.fleet" in out and out.count("\n") == 1
    path.write_text('[device]\nid = "a/b"\n')
    with pytest.raises(ConfigError, match=r"device\.id: "):
        load_config(path)


# --- pixel cap --------------------------------------------------------------------------------------
def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims `width` x `height` (what a decoder would allocate for)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_huge_image_is_refused_from_its_header_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_claiming(20000, 20000))
    with pytest.raises(ImageError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "20000x20000" in message and "megapixels" in message
    # The same pixel data under a small header does not decode: the size above came from the header alone.
    small = tmp_path / "small.png"
    small.write_bytes(png_header_claiming(200, 200))
    with pytest.raises(ImageError, match="not a decodable image"):
        read_image(small)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", ".sr"])
def test_pixel_cap_applies_to_every_format_header_or_not(tmp_path: Path, suffix: str) -> None:
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)
    path = tmp_path / f"photo{suffix}"
    assert cv2.imwrite(str(path), image[..., 0] if suffix == ".pgm" else image)
    if suffix != ".sr":  # Sun raster is not parsed: decoded, then refused
        assert header_size(np.fromfile(path, np.uint8)) == (400, 300)
    assert read_image(path, max_pixels=120_000).shape[:2] == (300, 400)
    with pytest.raises(ImageError, match=r"400x300 is 0\.1 megapixels, above the cap of 0\.1199"):
        read_image(path, max_pixels=119_999)


def test_header_sizes_of_the_real_photos_match_their_decoded_size(faces5: Path) -> None:
    photos = sorted(faces5.rglob("*.jpg"))[:40]
    assert photos
    for photo in photos:
        image = cv2.imdecode(np.fromfile(photo, np.uint8), cv2.IMREAD_COLOR)
        assert header_size(np.fromfile(photo, np.uint8)) == (image.shape[1], image.shape[0]), photo


def test_identify_with_a_pixel_cap_names_the_photo(
    faces5: Path, tmp_path: Path, models_dir: Path, capsys
) -> None:
    photo = sorted((faces5 / "chipu").glob("*.jpg"))[0]
    gallery = tmp_path / "g"
    assert main(["enroll", "--gallery", str(gallery), "--id", "chipu", str(photo)]) == 0
    assert main(["identify", "--gallery", str(gallery), "--max-megapixels", "0.01", str(photo)]) == 1
    err = capsys.readouterr().err
    assert f"error: {photo}:" in err and "megapixels, above the cap of 0.01" in err
    code = main(["enroll", "--gallery", str(gallery), "--id", "x", "--max-megapixels", "0.01", str(photo)])
    assert code == 1 and "above the cap" in capsys.readouterr().err
    assert GalleryStore(gallery).load().version == 1


# --- replay: one corrupt image ----------------------------------------------------------------------
def test_replay_skips_a_corrupt_or_oversized_image_and_counts_it(faces5: Path, tmp_path: Path) -> None:
    folder = tmp_path / "replay"
    folder.mkdir()
    photos = sorted((faces5 / "chipu").glob("*.jpg"))[:2]
    shutil.copy(photos[0], folder / "001.jpg")
    (folder / "002.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "003.png").write_bytes(png_header_claiming(20000, 20000))
    shutil.copy(photos[1], folder / "004.jpg")
    with ReplaySource(folder, realtime=False, loop=True) as source:
        frames = [source.read(1.0) for _ in range(4)]
        assert all(f is not None for f in frames)
        status = source.status()
    assert source.skipped == 4 and status.failures == 4 and "003.png" in (status.last_error or "")
    with ReplaySource(folder, realtime=False) as source:
        assert source.read(1.0) is not None and source.read(1.0) is not None
        with pytest.raises(EndOfStream):
            source.read(1.0)
    bad = tmp_path / "all-bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"junk")
    with ReplaySource(bad, realtime=False, loop=True) as source, pytest.raises(CameraError, match=r"a\.jpg"):
        source.read(1.0)


# --- gallery build --folders: the enroll reader and policy ----------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """In a child process: a segfault must show as a return code, not take pytest down."""
    code = "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


@pytest.mark.slow
def test_gallery_build_reads_non_utf8_names_and_follows_the_enroll_policy(
    faces5: Path, tmp_path: Path, models_dir: Path
) -> None:
    keys = make_keys(tmp_path)
    root = tmp_path / "people"
    for person in ("chipu", "baejun"):
        (root / person).mkdir(parents=True)
        for k, photo in enumerate(sorted((faces5 / person).glob("*.jpg"))[:2]):
            shutil.copy(photo, root / person / f"{k}.jpg")
    odd = os.fsencode(root / "chipu") + b"/caf\xe9-\xff.jpg"  # Latin-1 bytes: not UTF-8
    shutil.copy(sorted((faces5 / "chipu").glob("*.jpg"))[2], os.fsdecode(odd))
    out = tmp_path / "v1.bundle"
    base = ["gallery", "build", "--folders", str(root), "--fleet", FLEET, "--version", "1"]
    done = run_cli(*base, "--models", str(models_dir), "--key", str(keys.private_path), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "enrolled chipu: 3 of 3 photos" in done.stdout
    # a faceless photo: exit 1 and nothing written, as `enroll`
    (root / "baejun" / "blank.png").write_bytes(cv2.imencode(".png", np.full((200, 200, 3), 90, np.uint8))[1])
    out2 = tmp_path / "v2.bundle"
    done = run_cli(*base, "--models", str(models_dir), "--key", str(keys.private_path), "--out", str(out2))
    assert done.returncode == 1 and not out2.exists()
    assert "not enrolled: " in done.stderr and "blank.png: no face found" in done.stderr
    gallery = tmp_path / "enrolled"
    done = run_cli("enroll", "--gallery", str(gallery), "--folders", str(root), "--models", str(models_dir))
    # `enroll` writes the usable photos and lists the refused one (exit 3)
    assert done.returncode == 3 and "blank.png: no face found" in done.stderr
    assert GalleryStore(gallery).load().samples == (2, 3)
    (root / "baejun" / "blank.png").unlink()
    # a non-UTF-8 identity folder: one named problem, not a traceback
    os.mkdir(os.fsencode(root) + b"/\xffperson")
    shutil.copy(sorted((faces5 / "baejun").glob("*.jpg"))[0], os.fsencode(root) + b"/\xffperson/0.jpg")
    done = run_cli(*base, "--models", str(models_dir), "--key", str(keys.private_path), "--out", str(out2))
    assert done.returncode == 1 and "not valid UTF-8" in done.stderr and "Traceback" not in done.stderr


def test_gallery_build_takes_a_dominant_face_and_refuses_comparable_ones_as_enroll_does(
    faces5: Path, tmp_path: Path, models_dir: Path, capsys
) -> None:
    keys = make_keys(tmp_path)
    root = tmp_path / "people"
    (root / "khanh").mkdir(parents=True)
    shutil.copy(faces5 / "khanh" / "001.jpg", root / "khanh" / "001.jpg")  # a 74 px face, a 38 px one behind
    out = tmp_path / "v.bundle"
    base = ["gallery", "build", "--folders", str(root), "--fleet", FLEET, "--version", "1", "--key"]
    assert main([*base, str(keys.private_path), "--models", str(models_dir), "--out", str(out)]) == 0
    assert out.exists() and "001.jpg: 2 faces, took the largest" in capsys.readouterr().out
    # baejun/013: two people of similar size; a bundle is built from every photo or not at all
    shutil.copy(faces5 / "baejun" / "013.jpg", root / "khanh" / "013.jpg")
    out2 = tmp_path / "v2.bundle"
    assert main([*base, str(keys.private_path), "--models", str(models_dir), "--out", str(out2)]) == 1
    err = capsys.readouterr().err
    assert not out2.exists() and err.startswith(f"--out {out2}: not written, 1 refused")
    assert "013.jpg: 2 faces of comparable size" in err
    args = [*base, str(keys.private_path), "--models", str(models_dir), "--out", str(out2), "--largest-face"]
    assert main(args) == 0 and out2.exists()
    assert main(["enroll", "--gallery", str(tmp_path / "g"), "--folders", str(root)]) == 3
