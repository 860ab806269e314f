"""Declared limits of settings fields: one set of bounds per field, checked however the value arrives.

A settings dataclass declares each field with `bounded(...)` and calls `check_fields(self, "section")` in
`__post_init__`, so `[camera]` read from TOML and a `CameraSpec` built in code meet the same limits and the
same messages (`camera.fps: must be in (0, 240], got 0`). `from_config=False` marks fields the TOML file
cannot set (they are bound from other sections). Importing this module pulls in nothing heavy.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgeface.errors import ConfigError
from edgeface.util.logsafe import printable

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def bounded(
    default: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    choices: tuple[Any, ...] = (),
    check: Callable[[Any], None] | None = None,
    low_open: bool = False,
    from_config: bool = True,
) -> Any:
    """A field with its limits: `low`/`high` inclusive (`low_open`: strictly above `low`), `choices`,
    or `check(value)` raising ValueError with the problem."""
    metadata = {
        "low": low,
        "high": high,
        "choices": choices,
        "check": check,
        "low_open": low_open,
        "from_config": from_config,
    }
    return dataclasses.field(default=default, metadata=metadata)


def like(cls: type, name: str) -> Any:
    """A field with the default and limits `cls` declares for `name` (a config key bound to a stage's field)."""
    source = next(f for f in dataclasses.fields(cls) if f.name == name)
    return dataclasses.field(default=source.default, metadata=source.metadata)


def settable(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The fields of `cls` a config file may set, by name."""
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("from_config", True)}


def check_fields(settings: DataclassInstance, section: str) -> None:
    """Raise ConfigError naming `section.field` for the first field outside its declared limits."""
    for f in dataclasses.fields(settings):
        check_value(f"{section}.{f.name}", getattr(settings, f.name), f.metadata)


def check_value(key: str, value: Any, meta: Any) -> None:
    if value is None or not meta:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {list(meta['choices'])}, got {shown(value)}")
    if meta.get("check") is not None:
        try:
            meta["check"](value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    low, high, low_open = meta.get("low"), meta.get("high"), meta.get("low_open", False)
    if isinstance(value, float) and not finite(value) and (low is not None or high is not None):
        raise ConfigError(f"{key}: must be a finite number, got {shown(value)}")
    below = low is not None and (value <= low if low_open else value < low)
    if below or (high is not None and value > high):
        lower = f"{'(' if low_open else '['}{'-inf' if low is None else _bound(low)}"
        upper = "inf" if high is None else _bound(high)
        raise ConfigError(f"{key}: must be in {lower}, {upper}], got {shown(value)}")


def shown(value: object) -> str:
    """A value quoted in an error: its repr, printable and cut short (a config may hold megabytes)."""
    try:
        return printable(repr(value), 80)
    except ValueError:  # an integer too long for repr
        return "a huge integer"


def finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _bound(value: float) -> str:
    """A limit as written in the message: whole numbers in full (2**32 - 1, not 4.29497e+09)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def finite_number(name: str, value: float) -> float:
    """`value` as a float for a payload field; ValueError naming `name` unless it is a finite real number
    (a bool is not one: JSON would write it as true/false)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not finite(value):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    return float(value)
