"""`edgeface.util.fields`: declared limits are checked however a settings value is built, with one message form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgeface.errors import ConfigError
from edgeface.util.fields import bounded, check_fields, finite_number, settable


def _even(value: int) -> None:
    if value % 2:
        raise ValueError(f"must be even, got {value}")


@dataclass(frozen=True, slots=True)
class Sample:
    count: int = bounded(2, 1, 10)
    rate: float = bounded(1.0, 0, 5, low_open=True)
    mode: str = bounded("a", choices=("a", "b"))
    pairs: int = bounded(2, check=_even)
    floor: float | None = bounded(None, 0.5)
    derived: str = bounded("x", from_config=False)

    def __post_init__(self) -> None:
        check_fields(self, "sample")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, r"^sample\.count: must be in \[1, 10\], got 0$"),
        ({"count": 11}, r"^sample\.count: must be in \[1, 10\], got 11$"),
        ({"rate": 0.0}, r"^sample\.rate: must be in \(0, 5\], got 0\.0$"),
        ({"rate": float("nan")}, r"^sample\.rate: must be a finite number, got nan$"),
        ({"mode": "c"}, r"^sample\.mode: must be one of \['a', 'b'\], got 'c'$"),
        ({"pairs": 3}, r"^sample\.pairs: must be even, got 3$"),
        ({"floor": 0.1}, r"^sample\.floor: must be in \[0\.5, inf\], got 0\.1$"),
    ],
)
def test_each_limit_names_the_key_and_the_range(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Sample(**kwargs)


def test_edges_are_inclusive_unless_declared_open() -> None:
    assert Sample(count=1).count == 1 and Sample(count=10).count == 10
    assert Sample(rate=5.0, floor=0.5).rate == 5.0
    assert Sample(floor=None).floor is None  # an unset optional field has no limits to meet


def test_fields_bound_elsewhere_are_not_settable_from_a_file() -> None:
    assert set(settable(Sample)) == {"count", "rate", "mode", "pairs", "floor"}


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(ConfigError) as caught:
        Sample(mode="z" * 10_000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("value", [3, 2.5, np.float32(0.25), -0.0])
def test_finite_number_gives_a_float(value: float) -> None:
    number = finite_number("score", value)
    assert type(number) is float and number == float(value)


@pytest.mark.parametrize(
    "value, shown",
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (True, "True"),
        ("1", "'1'"),
        (None, "None"),
        (10**400, "1000"),
    ],
)
def test_finite_number_refuses_what_json_cannot_carry_as_a_number(value: object, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"^score: must be a finite number, got {shown}"):
        finite_number("score", value)  # type: ignore[arg-type]
