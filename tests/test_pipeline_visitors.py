"""VisitorStore: kept crops round-trip losslessly, count and age are capped, damage is skipped, erasure works."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import EdgefaceError
from edgeface.pipeline.visitor_settings import VisitorSettings
from edgeface.pipeline.visitors import VisitorStore, check_event_id


def crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(n)]


def keep(store: VisitorStore, identity: str | None = None, n: int = 3, seed: int = 0) -> str:
    event_id = str(uuid.uuid4())
    decision = "match" if identity else "unknown"
    assert store.keep(event_id, "2026-12-02T01:00:00Z", decision, identity, 0.5, crops(n, seed)) is not None
    return event_id


def test_the_newest_crops_of_a_decision_are_kept_losslessly(tmp_path: Path) -> None:
    store = VisitorStore(tmp_path, VisitorSettings(keep=True, crops_per_event=2))
    event_id = keep(store, n=5, seed=3)
    kept = store.crops(event_id)
    assert len(kept) == 2
    for got, wanted in zip(kept, crops(5, 3)[-2:], strict=True):
        assert np.array_equal(got, wanted)
    (visitor,) = store.kept()
    assert (visitor.event_id, visitor.decision, visitor.identity, visitor.crops) == (
        event_id,
        "unknown",
        None,
        2,
    )


def test_count_and_age_are_capped(tmp_path: Path) -> None:
    store = VisitorStore(tmp_path, VisitorSettings(keep=True, max_events=3, max_age_h=1.0))
    ids = [keep(store, seed=i) for i in range(5)]
    assert [v.event_id for v in store.kept()] == ids[:1:-1]  # the newest 3, newest first
    meta = store.root / ids[-1] / "visitor.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps(doc | {"saved": time.time() - 2 * 3600}))
    assert ids[-1] not in {v.event_id for v in store.kept()}
    assert not (store.root / ids[-1]).exists()


def test_a_damaged_entry_is_skipped_then_pruned_and_bad_ids_are_refused(tmp_path: Path) -> None:
    store = VisitorStore(tmp_path, VisitorSettings(keep=True))
    good = keep(store)
    damaged = keep(store)
    (store.root / damaged / "visitor.json").write_text("{not json")
    assert [v.event_id for v in store.kept()] == [good]
    assert not (store.root / damaged).exists()
    with pytest.raises(EdgefaceError, match="not kept"):
        store.crops(damaged)
    for bad in ("../etc", "A" * 36, ""):
        with pytest.raises(EdgefaceError, match="not an event id"):
            check_event_id(bad)


def test_forget_deletes_what_was_kept_of_one_person(tmp_path: Path) -> None:
    store = VisitorStore(tmp_path, VisitorSettings(keep=True))
    keep(store, "ada")
    other = keep(store, "bob")
    keep(store, "ada")
    assert store.forget("ada") == 2
    assert [v.event_id for v in store.kept()] == [other]
