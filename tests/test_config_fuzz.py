"""Fuzz of the config loader (issue 13): thousands of generated configs, zero uncaught exceptions.

Every outcome is a `Config` or a one-line `ConfigError` that starts with the key path it is about (or the
file, for `load_config`). Seeded and without an example database, so CI runs the same cases every time.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeface.config import Config, load_config, parse_config
from edgeface.errors import ConfigError

pytestmark = pytest.mark.slow  # hypothesis runs hundreds of generated files

FUZZ = settings(
    max_examples=2000,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _section_class(annotation: typing.Any) -> typing.Any:
    """The section's dataclass (`[camera]` is optional: `CameraSpec | None`)."""
    return next(a for a in (*typing.get_args(annotation), annotation) if dataclasses.is_dataclass(a))


SECTIONS = {
    name: [f.name for f in dataclasses.fields(_section_class(annotation))]
    for name, annotation in typing.get_type_hints(Config).items()
}

scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**2000), max_value=2**2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(["", "a+b", "a/b", "#", "door\n1", "\x1b[31m", "\ud800", "/tmp", "0", "opencv", "warn"]),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.sampled_from([2**63 - 1, -(2**63), 2**2000, -(10**400), 0, -1, 1e308, -0.0, "a\x00b"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def raw_configs(draw: st.DrawFn) -> dict[str, typing.Any]:
    raw: dict[str, typing.Any] = {}
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from([*SECTIONS, "bogus"]))
        if draw(st.integers(0, 9)) == 0:
            raw[section] = draw(values)  # not a table at all
            continue
        table = raw.setdefault(section, {}) if isinstance(raw.get(section, {}), dict) else {}
        for _ in range(draw(st.integers(0, 4))):
            key = draw(st.sampled_from([*SECTIONS.get(section, []), "unknown_key"]))
            table[key] = draw(values)
        raw[section] = table
    return raw


def _one_line(exc: ConfigError) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


@FUZZ
@given(raw_configs())
def test_parse_config_gives_a_config_or_a_named_one_line_error(raw: dict[str, typing.Any]) -> None:
    try:
        config = parse_config(raw)
    except ConfigError as exc:
        message = _one_line(exc)
        head = message.split(":", 1)[0]
        assert head.split(".", 1)[0] in {*SECTIONS, "bogus"} or head in raw, message
        return
    assert isinstance(config, Config)
    for section in dataclasses.astuple(config):
        for value in section if isinstance(section, tuple) else ():
            assert not (isinstance(value, Path) and "\0" in str(value)), value  # would crash at first use


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_load_config_on_arbitrary_bytes(tmp_path_factory, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "edgeface.toml"
    path.write_bytes(data)
    try:
        assert isinstance(load_config(path), Config)
    except ConfigError as exc:
        assert _one_line(exc).startswith(str(path)), str(exc)


def test_values_found_by_the_fuzz_are_one_line_errors() -> None:
    for raw, key in (
        ({"device": {"\n": False}}, "device.\\n:"),
        ({"match": {"threshold": 2**2000}}, "match.threshold:"),
        ({"mqtt": {"port": 10**5000}}, "mqtt.port:"),  # too long even for repr()
        ({"device": {"state_dir": "a\x00b"}}, "device.state_dir:"),
        ({"camera": {"name": "x" * 1_000_000, "width": "y" * 1_000_000}}, "camera.width:"),
    ):
        try:
            parse_config(raw)
        except ConfigError as exc:
            assert _one_line(exc).startswith(key) and len(str(exc)) < 300, str(exc)[:300]
        else:
            raise AssertionError(f"accepted {str(raw)[:80]}")
