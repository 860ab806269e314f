"""Bounded versions (item 9), a signed chunk table and no allocation before it is trusted (item 10), and the
signed `decision` evidence: unit checks plus the device over a real mosquitto."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from edgeface.server.build import build_bundle
from edgeface.server.signing import sign
from edgeface.sync.apply import DevicePolicy, check_device
from edgeface.sync.bundle import Bundle, bind_payload, unpack_bundle, verify_bundle
from edgeface.sync.chunks import (
    CHUNK_BYTES,
    MAX_MQTT_CHUNKS,
    Announcement,
    ChunkAssembler,
    ChunkSpec,
    announcement_bytes,
    split_chunks,
)
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import manifest_bytes, parse_manifest
from edgeface.sync.signed_calibration import SignedCalibration
from edgeface.sync.validate import MAX_VERSION
from tests.factories import (
    FLEET,
    MODEL,
    PREFIX,
    Keys,
    make_gallery,
    make_keys,
    raw_publish,
    read_retained,
    resigned,
    start_device,
    wait_for,
)

GALLERY_TOPIC = f"{PREFIX}/fleet/{FLEET}/gallery"
DECISION = SignedCalibration(0.42, 0.05, 0.01, 0.0093, 0.97, 4950, 100)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


def _announce(parts: Bundle, chunk_bytes: int = CHUNK_BYTES) -> tuple[bytes, dict[int, bytes]]:
    chunks = split_chunks(parts.payload, chunk_bytes)
    return announcement_bytes(parts.manifest, parts.signature, parts.payload, chunks), dict(enumerate(chunks))


def _code(call) -> str:
    with pytest.raises(Rejected) as info:
        call()
    return info.value.code


# --- item 9: versions are bounded ------------------------------------------------------------------------
@pytest.mark.parametrize("version", [2**53, 2**70])
def test_a_version_beyond_2_53_is_refused_by_the_parser(keys: Keys, version: int) -> None:
    parts = resigned(keys, unpack_bundle(build_bundle(make_gallery(3), fleet=FLEET, version=1, key=keys.private)),
                     {"version": version})  # fmt: skip
    assert _code(lambda: parse_manifest(parts.manifest)) == "manifest_invalid"


def test_a_version_jump_beyond_the_policy_is_refused(keys: Keys) -> None:
    running = make_gallery(3, version=5)
    manifest = parse_manifest(
        resigned(
            keys,
            unpack_bundle(build_bundle(running, fleet=FLEET, version=5, key=keys.private)),
            {"version": MAX_VERSION},
        ).manifest
    )
    assert _code(lambda: check_device(manifest, DevicePolicy(FLEET, MODEL), running)) == "version_jump"
    ok = unpack_bundle(build_bundle(running, fleet=FLEET, version=1_000_005, key=keys.private))
    assert check_device(parse_manifest(ok.manifest), DevicePolicy(FLEET, MODEL), running) is None
    too_far = unpack_bundle(build_bundle(running, fleet=FLEET, version=1_000_006, key=keys.private))
    too_far_manifest = parse_manifest(too_far.manifest)
    policy = DevicePolicy(FLEET, MODEL)
    assert _code(lambda: check_device(too_far_manifest, policy, running)) == "version_jump"
    small = DevicePolicy(FLEET, MODEL, max_version_jump=10)
    assert _code(lambda: check_device(parse_manifest(ok.manifest), small, running)) == "version_jump"
    with pytest.raises(ValueError, match="max_version_jump"):
        DevicePolicy(FLEET, MODEL, max_version_jump=0)


@pytest.mark.broker
def test_a_signed_huge_version_does_not_end_updates(broker, tmp_path: Path, keys: Keys) -> None:
    """The issue's case: a signed version 2**70 was applied, and nothing newer could ever be."""
    device = start_device(broker, tmp_path, keys)
    try:
        v1 = unpack_bundle(build_bundle(make_gallery(4), fleet=FLEET, version=1, key=keys.private))
        raw_publish(broker, 1, *_announce(v1))
        wait_for(lambda: device.sync.running_version == 1, 5, "v1")
        huge = resigned(keys, unpack_bundle(build_bundle(make_gallery(4, 9), fleet=FLEET, version=2,
                                                         key=keys.private)), {"version": 2**70})  # fmt: skip
        raw_publish(broker, 2**70, *_announce(huge))
        wait_for(lambda: device.sync.last_state.status == "rejected", 5, "huge version rejected")
        assert device.sync.running_version == 1
        v2 = unpack_bundle(build_bundle(make_gallery(4, 20), fleet=FLEET, version=2, key=keys.private))
        raw_publish(broker, 2, *_announce(v2))
        wait_for(lambda: device.sync.running_version == 2, 5, "v2 still applies")
    finally:
        device.close()


# --- item 10: the chunk table is signed and nothing is allocated before it is trusted -------------------
def test_the_manifest_signs_the_payload_and_its_chunk_table(keys: Keys) -> None:
    data = build_bundle(make_gallery(40), fleet=FLEET, version=1, key=keys.private, chunk_bytes=4096)
    parts = unpack_bundle(data)
    binding = parse_manifest(parts.manifest).payload
    assert binding is not None and binding == bind_payload(parts.payload, 4096)
    assert binding.size == len(parts.payload) and binding.chunk_sizes()[0] == 4096
    for field, value in (("chunks_sha256", "0" * 64), ("sha256", "0" * 64), ("size", binding.size + 1)):
        forged = resigned(keys, parts, {"payload": binding.as_dict() | {field: value}})
        assert _code(lambda f=forged: verify_bundle(f, keys.public)) == "payload_sha256", field


def test_the_assembler_allocates_nothing_up_front() -> None:
    big = Announcement(b"", b"", 1024 * CHUNK_BYTES, "0" * 64, tuple(ChunkSpec(CHUNK_BYTES, "0" * 64)
                                                                     for _ in range(1024)))  # fmt: skip
    tracemalloc.start()
    try:
        assembler = ChunkAssembler(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated for an announcement"
    assert len(assembler.missing) == 1024 and not assembler.complete


def _forged_table(parts: Bundle, n: int, size: int) -> bytes:
    """The pending signed manifest replayed with a fake chunk table (the issue's replay)."""
    doc = json.loads(_announce(parts)[0])
    doc["payload"] = {
        "size": n * size,
        "sha256": "0" * 64,
        "chunks": [{"size": size, "sha256": "1" * 64}] * n,
    }
    return json.dumps(doc).encode()


@pytest.mark.broker
def test_a_replayed_manifest_with_a_fake_chunk_table_is_refused_before_any_allocation(
    broker, tmp_path: Path, keys: Keys
) -> None:
    device = start_device(broker, tmp_path, keys, fetch_timeout_s=30.0)
    try:
        parts = unpack_bundle(build_bundle(make_gallery(4), fleet=FLEET, version=1, key=keys.private))
        tracemalloc.start()
        try:
            device.sync.on_message(GALLERY_TOPIC, _forged_table(parts, MAX_MQTT_CHUNKS, CHUNK_BYTES))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"{peak >> 20} MiB allocated for a forged announcement"
        state = device.sync.last_state
        assert state.status == "rejected" and (state.reason or "").startswith("announcement_invalid"), state
        # same sizes as signed but forged chunk hashes and forged chunks: fetched within the signed size, refused
        announcement, chunks = _announce(parts)
        doc = json.loads(announcement)
        doc["payload"]["chunks"][0]["sha256"] = "2" * 64
        raw_publish(broker, 1, json.dumps(doc).encode(), {0: b"\0" * len(chunks[0])})
        wait_for(lambda: device.sync.last_state.reason != state.reason, 5, "second rejection")
        assert device.sync.last_state.status == "rejected" and device.sync.running_version == 0
    finally:
        device.close()


@pytest.mark.broker
def test_a_manifest_without_a_signed_chunk_table_is_refused(broker, tmp_path: Path, keys: Keys) -> None:
    device = start_device(broker, tmp_path, keys)
    try:
        parts = unpack_bundle(build_bundle(make_gallery(4), fleet=FLEET, version=1, key=keys.private))
        fields = json.loads(parts.manifest)
        del fields["payload"]  # what an older `gallery build` signed
        raw = manifest_bytes(fields)
        raw_publish(broker, 1, *_announce(Bundle(raw, sign(keys.private, raw), parts.payload)))
        wait_for(lambda: device.sync.last_state.status == "rejected", 5, "rejection")
        state = read_retained(broker, device.sync.config.state_topic)
        assert state["reason"].startswith("announcement_invalid") and "payload" in state["reason"]
    finally:
        device.close()


# --- the signed decision evidence ---------------------------------------------------------------------------
def test_decision_round_trips_through_the_signed_manifest(keys: Keys) -> None:
    data = build_bundle(make_gallery(3), fleet=FLEET, version=1, key=keys.private, decision=DECISION)
    assert verify_bundle(unpack_bundle(data), keys.public).manifest.decision == DECISION
    plain = build_bundle(make_gallery(3), fleet=FLEET, version=1, key=keys.private)
    assert parse_manifest(unpack_bundle(plain).manifest).decision is None


@pytest.mark.parametrize(
    "change",
    [
        {"threshold": 1.5},
        {"threshold": float("nan")},
        {"margin": -0.1},
        {"margin": 2.5},
        {"target_fpir": 1.01},
        {"est_fpir": -1e-9},
        {"est_dir": "high"},
        {"n_impostor": -1},
        {"n_genuine": 1.5},
        {"n_genuine": True},
        {"unexpected": 1},
    ],
)
def test_bad_decision_evidence_is_refused(keys: Keys, change: dict) -> None:
    parts = unpack_bundle(build_bundle(make_gallery(3), fleet=FLEET, version=1, key=keys.private))
    decision = DECISION.as_dict() | change
    raw = manifest_bytes(json.loads(parts.manifest) | {"decision": decision})
    with pytest.raises(Rejected) as info:
        parse_manifest(raw)
    assert info.value.code == "manifest_invalid" and "decision" in info.value.detail
    with pytest.raises(Rejected, match="decision must be an object"):
        parse_manifest(manifest_bytes(json.loads(parts.manifest) | {"decision": [1]}))
    if "unexpected" not in change:
        with pytest.raises((ValueError, TypeError)):
            SignedCalibration(**decision)
