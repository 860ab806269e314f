"""Incidents for status and metrics: the latest few, a repeat not listed twice, every kind counted."""

from __future__ import annotations

import re
import threading

from edgeface.daemon.incidents import MAX_DETAIL, Incidents


def test_latest_are_kept_newest_last_and_all_are_counted() -> None:
    incidents = Incidents(keep=2)
    assert incidents.add("gallery_set_aside", "v3: sha256 mismatch")
    assert incidents.add("reload_refused", "bad toml")
    assert incidents.add("bundle_rejected", "signature")
    assert [i.kind for i in incidents.latest()] == ["reload_refused", "bundle_rejected"]
    assert incidents.counts() == {"gallery_set_aside": 1, "reload_refused": 1, "bundle_rejected": 1}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", incidents.latest()[-1].ts)


def test_a_repeat_of_the_newest_is_counted_not_listed() -> None:
    incidents = Incidents()
    assert incidents.add("bundle_rejected", "signature")
    assert not incidents.add("bundle_rejected", "signature")
    assert incidents.add("bundle_rejected", "expired")
    assert [i.detail for i in incidents.latest()] == ["signature", "expired"]
    assert incidents.counts() == {"bundle_rejected": 3}


def test_details_are_printable_and_bounded() -> None:
    incidents = Incidents()
    incidents.add("reload_refused", "line\nbreak\x1b[31m" + "x" * 5000)
    detail = incidents.latest()[0].detail
    assert "\n" not in detail and "\x1b" not in detail
    assert detail.endswith(" chars]") and len(detail) <= MAX_DETAIL + len("...[+99999 chars]")


def test_concurrent_adds_are_all_counted() -> None:
    incidents = Incidents()

    def add(n: int) -> None:
        for i in range(500):
            incidents.add("bundle_rejected", f"{n}-{i}")

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert incidents.counts() == {"bundle_rejected": 2000} and len(incidents.latest()) == 6
