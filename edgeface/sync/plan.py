"""Catch-up: how a door gets from the version it runs to the announced newest one.

A URL announcement names the newest full bundle and may carry the chain of recent deltas that lead to it.
A door whose running version is the base of one of those deltas fetches the deltas from there on, in
order; any other door (too far behind, no gallery, a broken chain) fetches the full bundle. Each step is a
whole signed gallery (a delta proves its result hashes), so a door is never left with a mixed gallery, and a
failed step falls back to the full bundle.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from edgeface.sync.manifest import Manifest


@dataclass(frozen=True, slots=True)
class Step:
    """One bundle to fetch by URL and apply (its signature already checked)."""

    manifest: Manifest
    signature: bytes


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]
    fallback: Step | None  # the full bundle, when `steps` are deltas


def catch_up(newest: Step, chain: tuple[Step, ...], running: int) -> Plan:
    """Deltas from `running` to `newest` when the chain holds them unbroken, else the full `newest`."""
    full = Plan((newest,), None)
    if newest.manifest.is_delta or running <= 0:
        return full
    start = next((k for k, link in enumerate(chain) if link.manifest.base_version == running), None)
    if start is None:
        return full
    steps = chain[start:]
    version = running
    for step in steps:
        m = step.manifest
        if m.base_version != version or m.url is None or m.fleet != newest.manifest.fleet:
            return full
        version = m.version
    if version != newest.manifest.version:
        return full
    return Plan(steps, newest)


@dataclass(frozen=True, slots=True)
class UrlJob:
    """Fetch and apply `steps` in order (a catch-up chain, or one bundle); on a failed step, `fallback`."""

    steps: tuple[Step, ...]
    fallback: Step | None
    cancel: threading.Event
