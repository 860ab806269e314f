"""The SQLite spool: order, ack, oldest-first bound with a persistent counter, durability under SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgeface.mqtt.spool import Spool, SpoolError

ROOT = Path(__file__).resolve().parents[1]


def test_fifo_order_and_ack(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_events=100) as spool:
        ids = [spool.put("t/events", f"m{i}".encode(), 1) for i in range(5)]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert len(spool) == 5
        got = spool.pending(3)
        assert [m.payload for m in got] == [b"m0", b"m1", b"m2"]
        assert [m.topic for m in got] == ["t/events"] * 3 and all(m.qos == 1 for m in got)
        assert [m.payload for m in spool.pending(10, after_id=ids[2])] == [b"m3", b"m4"]
        assert spool.ack(ids[0]) is True
        assert spool.ack(ids[0]) is False
        assert [m.id for m in spool.pending(10)] == ids[1:]
        assert len(spool) == 4


def test_ids_are_never_reused_after_delete(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path, 10) as spool:
        last = spool.put("t", b"a", 1)
        spool.ack(last)
    with Spool(path, 10) as spool:
        assert spool.put("t", b"b", 1) > last


def test_bound_drops_oldest_and_counts_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path, max_events=3) as spool:
        for i in range(5):
            spool.put("t", bytes([i]), 1)
        assert len(spool) == 3
        assert spool.dropped == 2
        assert [m.payload for m in spool.pending(10)] == [b"\x02", b"\x03", b"\x04"]
    with Spool(path, max_events=3) as spool:
        assert spool.dropped == 2
        spool.put("t", b"\x05", 1)
        assert spool.dropped == 3
        assert [m.payload for m in spool.pending(10)] == [b"\x03", b"\x04", b"\x05"]
    with Spool(path, max_events=1) as spool:  # a smaller bound applies at open
        assert len(spool) == 1 and spool.dropped == 5
        assert spool.pending(10)[0].payload == b"\x05"


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_events"):
        Spool(tmp_path / "s.db", 0)
    with Spool(tmp_path / "s.db", 5) as spool, pytest.raises(ValueError, match="qos"):
        spool.put("t", b"x", 3)


def test_unwritable_location_is_a_named_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match="cannot open the MQTT spool"):
        Spool(blocker / "spool.db", 5)


def test_concurrent_writers_and_ackers(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", 10_000) as spool:

        def writer(k: int) -> None:
            for i in range(50):
                spool.put("t", f"{k}-{i}".encode(), 1)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(spool) == 200
        for message in spool.pending(1000):
            assert spool.ack(message.id)
        assert len(spool) == 0


_WRITER = """
import sys
from edgeface.mqtt.spool import Spool
spool = Spool(sys.argv[1], 1000)
for i in range(10_000):
    spool.put("t", str(i).encode(), 1)
    print(i, flush=True)
"""


def test_every_returned_put_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    confirmed = [int(proc.stdout.readline()) for _ in range(40)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    with Spool(path, 1000) as spool:
        stored = {int(m.payload) for m in spool.pending(1000)}
    assert set(confirmed) <= stored
    assert stored == set(range(len(stored)))  # no gaps, no torn writes


def test_a_corrupt_spool_is_kept_aside_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not an SQLite database, it is SD card damage" * 100)
    with Spool(path, 10) as spool:
        assert len(spool) == 0
        spool.put("t", b"after", 1)
        assert [m.payload for m in spool.pending(5)] == [b"after"]
    (aside,) = tmp_path.glob("spool.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not an SQLite database")
    assert "corrupt" in caplog.text


def test_a_state_directory_deleted_while_running_loses_no_spooled_event(tmp_path: Path, caplog) -> None:
    import shutil

    state = tmp_path / "state"
    with Spool(state / "spool.sqlite3", max_events=100) as spool:
        ids = [spool.put("t", f"event {n}".encode(), 1) for n in range(3)]
        shutil.rmtree(state)
        spool.maintain()  # the publisher's sender thread calls this about once a second
        assert (state / "spool.sqlite3").is_file()
        assert [m.id for m in spool.pending(10)] == ids
        spool.put("t", b"event 3", 1)
    assert "was deleted or replaced while running" in caplog.text
    with Spool(state / "spool.sqlite3", max_events=100) as reopened:
        assert [m.payload for m in reopened.pending(10)] == [f"event {n}".encode() for n in range(4)]
