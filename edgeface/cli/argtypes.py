"""argparse `type=` functions: every command-line number and address is checked here, once per kind, so a
meaningless value (`nan`, `inf`, a negative count, a share above 1) is an argparse error naming the option,
never a traceback or a `nan%` result later."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def finite_float(text: str) -> float:
    return _number(text)


def fraction(text: str) -> float:
    """A share strictly between 0 and 1 (a false-accept rate, a target FPIR)."""
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 exclusive (e.g. 0.01 for 1%), got {text}")
    return value


def float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] (or (low, high] with `low_open`)."""

    def parse(text: str) -> float:
        value = _number(text)
        if value < low or value > high or (low_open and value == low):
            raise argparse.ArgumentTypeError(
                f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {text}"
            )
        return value

    return parse


def int_in(low: int, high: int) -> Callable[[str], int]:
    """A whole number in [low, high]."""

    def parse(text: str) -> int:
        value = _whole(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number in [{low}, {high}], got {text}")
        return value

    return parse


def broker_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, with an IPv6 host in brackets (`[::1]:1883`)."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            raise argparse.ArgumentTypeError(f"expected [IPv6]:PORT, got {text!r}")
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"an IPv6 host goes in brackets ([::1]:1883), got {text!r}")
    if not colon or not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port in 1..65535, got {text!r}")
    return host, int(port)


seconds = float_in(0.0, 86400.0, low_open=True)  # a wait or a run length: positive, at most a day
megapixels = float_in(0.01, 1000.0)
