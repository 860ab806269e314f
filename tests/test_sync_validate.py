"""The bounds a device puts on a bundle's fields, shared with `gallery build` (edgeface/sync/validate.py).

Each bound is pinned at its edge: the last value accepted and the first refused, plus the types that are
never accepted (a bool is not an integer here). `test_sync_bounds.py` tests them through signed bundles.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgeface.sync.validate import (
    CHUNK_BYTES_MAX,
    MAX_FLEET_CHARS,
    MAX_LIFETIME_DAYS,
    MAX_VERSION,
    check_lifetime,
    check_version_jump,
    valid_chunk_bytes,
    valid_fleet,
    valid_lifetime_days,
    valid_max_version_jump,
    valid_topic_level,
    valid_version,
)


# --- topic levels (fleet names, device ids) ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["lobby", "a", "x" * MAX_FLEET_CHARS, "étage-2", "door_1.b", "Ünïcode名"])
def test_one_topic_level_is_accepted_as_is(name: str) -> None:
    assert valid_topic_level(name) == name and valid_fleet(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "x" * (MAX_FLEET_CHARS + 1),
        "a/b",
        "a+b",
        "a#",
        "a\0b",
        "a\nb",
        "a\x1b[2J",
        "a\u202eb",
        "a\u2028b",
        "tab\t",
    ],
)
def test_anything_that_is_not_one_plain_level_is_refused(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        valid_topic_level(name, "device id")
    message = str(caught.value)
    assert message.startswith("device id ")
    assert not any(c in message for c in "\0\n\x1b\u202e\u2028\t")  # the message is one safe line


@pytest.mark.parametrize("name", ["", None, 5, b"lobby", ["lobby"]])
def test_a_level_must_be_a_non_empty_string(name: object) -> None:
    with pytest.raises(ValueError, match=r"^fleet must be a non-empty string"):
        valid_fleet(name)


# --- versions --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2, MAX_VERSION])
def test_versions_from_1_to_2_53_minus_1_are_accepted(version: int) -> None:
    assert valid_version(version) == version


@pytest.mark.parametrize("version", [0, -1, MAX_VERSION + 1, 2**70])
def test_versions_outside_the_range_are_refused(version: int) -> None:
    with pytest.raises(ValueError, match=r"^base_version must be in 1\.\.9007199254740991"):
        valid_version(version, "base_version")


@pytest.mark.parametrize("version", [True, 1.0, "1", None])
def test_a_version_must_be_an_integer(version: object) -> None:
    with pytest.raises(ValueError, match=r"^version must be an integer"):
        valid_version(version)


def test_a_version_may_move_forward_by_at_most_the_jump() -> None:
    check_version_jump(110, 10, 100)  # exactly the jump
    check_version_jump(3, 10, 100)  # going back is not this check's business
    with pytest.raises(
        ValueError, match=r"^version 111 is more than 100 above running 10 \(sync\.max_version_jump\)"
    ):
        check_version_jump(111, 10, 100)


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1, True), (MAX_VERSION, True), (0, False), (MAX_VERSION + 1, False), (True, False), (2.0, False)],
)
def test_the_jump_setting_is_an_integer_from_1(value: object, ok: bool) -> None:
    if ok:
        assert valid_max_version_jump(value) == value
    else:
        with pytest.raises(ValueError, match="max_version_jump must be an integer"):
            valid_max_version_jump(value)


# --- lifetimes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("days", [1e-6, 1, 30.5, MAX_LIFETIME_DAYS])
def test_lifetimes_up_to_100_years_are_accepted_as_floats(days: float) -> None:
    result = valid_lifetime_days(days)
    assert result == days and isinstance(result, float)


@pytest.mark.parametrize(
    "days", [0, -1, MAX_LIFETIME_DAYS + 0.001, float("inf"), float("nan"), True, "7", None]
)
def test_other_lifetimes_are_refused(days: object) -> None:
    with pytest.raises(ValueError, match=r"^expires must be"):
        valid_lifetime_days(days)


def test_a_bundle_expires_after_it_is_created_and_within_100_years() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    check_lifetime(created, None)
    check_lifetime(created, created + timedelta(microseconds=1))
    check_lifetime(created, created + timedelta(days=MAX_LIFETIME_DAYS))
    with pytest.raises(ValueError, match="is not after created"):
        check_lifetime(created, created)
    with pytest.raises(ValueError, match="is not after created"):
        check_lifetime(created, created - timedelta(days=1))
    with pytest.raises(ValueError, match=f"more than {MAX_LIFETIME_DAYS} days after created"):
        check_lifetime(created, created + timedelta(days=MAX_LIFETIME_DAYS, seconds=1))


# --- chunk size ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (CHUNK_BYTES_MAX, True),
        (0, False),
        (CHUNK_BYTES_MAX + 1, False),
        (True, False),
        (4096.0, False),
    ],
)
def test_chunks_are_1_byte_to_256_kib(value: object, ok: bool) -> None:
    assert CHUNK_BYTES_MAX == 256 * 1024
    if ok:
        assert valid_chunk_bytes(value) == value
    else:
        with pytest.raises(ValueError, match=r"^chunk_bytes must be an integer in 1\.\.262144"):
            valid_chunk_bytes(value)


def test_gallery_build_refuses_what_the_device_would_refuse() -> None:
    """The server checks its arguments with these same functions before it signs anything."""
    from edgeface.errors import BundleError
    from edgeface.server.build import check_build_arguments

    check_build_arguments("lobby", MAX_VERSION, MAX_LIFETIME_DAYS, CHUNK_BYTES_MAX)
    for args, message in (
        (("a/b", 1), "^fleet 'a/b' must be a single MQTT topic level"),
        (("lobby", MAX_VERSION + 1), "^version must be in"),
        (("lobby", 1, 0.0), "^expires must be > 0"),
        (("lobby", 1, None, CHUNK_BYTES_MAX + 1), "^chunk_bytes must be an integer"),
    ):
        with pytest.raises(BundleError, match=message):
            check_build_arguments(*args)  # type: ignore[arg-type]
