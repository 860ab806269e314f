"""`edgeface fleet status` (edgeface/server/fleet.py, edgeface/cli/fleet.py) against a real mosquitto holding
several doors' retained status and gallery-state topics: online, offline, rejected, in another fleet, with a
freshness age, and malformed or hostile payloads, which are shown as such and never raise."""

from __future__ import annotations

import json

import pytest

from edgeface.cli import main
from edgeface.mqtt.payloads import GalleryState, StatusInfo, encode, status_payload
from edgeface.mqtt.topics import DeviceTopics
from edgeface.server.fleet import DoorStatus, door_of, fleet_rows, table
from tests.conftest import Broker
from tests.factories import FLEET, MODEL, PREFIX, connect

pytestmark = pytest.mark.broker


def status(state: str, version: int | None, count: int = 10, **extra: object) -> bytes:
    info = StatusInfo("1.2.3", version, count, "ghostfacenet", MODEL, decision={"threshold": 0.6})
    return encode(status_payload(state, info) | extra)


def state(version: int | None, outcome: str, reason: str | None, running: int, fleet: str = FLEET) -> bytes:
    # what GallerySyncClient publishes: the payload plus what it runs and its fleet
    return encode(GalleryState(version, outcome, reason, running, fleet).payload())  # type: ignore[arg-type]


HOSTILE = "d" * 300  # a door name longer than any row shows
RETAINED: dict[str, bytes] = {
    DeviceTopics(PREFIX, "door1").status: status("online", 3),
    DeviceTopics(PREFIX, "door1").gallery_state: state(3, "applied", None, 3),
    DeviceTopics(PREFIX, "door2").status: status("online", 2),
    DeviceTopics(PREFIX, "door2").gallery_state: state(3, "rejected", "bad_signature: not signed by us", 2),
    DeviceTopics(PREFIX, "door3").status: status("offline", 1),
    DeviceTopics(PREFIX, "door3").gallery_state: state(1, "applied", None, 1),
    DeviceTopics(PREFIX, "door4").status: b"{not json",
    DeviceTopics(PREFIX, "door4").gallery_state: b"[1, 2, 3]",
    DeviceTopics(PREFIX, "door5").status: status("online", 3, freshness={"age_s": 42.4}),
    DeviceTopics(PREFIX, "door5").gallery_state: state(
        3, "applied", "expired at 2026-01-01 (policy warn)", 3
    ),
    DeviceTopics(PREFIX, "door6").status: status("online", 7),
    DeviceTopics(PREFIX, "door6").gallery_state: state(7, "applied", None, 7, fleet="warehouse"),
    DeviceTopics(PREFIX, HOSTILE).status: json.dumps({"state": "online", "gallery": "x" * 5000}).encode(),
    DeviceTopics(PREFIX, "door7").status: json.dumps(
        {"state": "online", "gallery": {"version": "3"}}
    ).encode(),
    DeviceTopics(PREFIX, "door7").gallery_state: state(3, "rejected", "\x1b[2Jcleared your screen", 0),
    "other/door9/status": status("online", 9),  # another prefix: not this fleet's door
}


@pytest.fixture
def fleet_broker(broker: Broker) -> Broker:
    client = connect(broker.host, broker.port)
    try:
        for info in [client.publish(t, p, qos=1, retain=True) for t, p in RETAINED.items()]:
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return broker


def rows_by_door(rows: list[DoorStatus]) -> dict[str, DoorStatus]:
    return {row.door: row for row in rows}


def test_fleet_status_reads_every_doors_retained_topics(fleet_broker: Broker, capsys) -> None:
    argv = ["fleet", "status", "--broker", f"{fleet_broker.host}:{fleet_broker.port}", "--wait", "1"]
    assert main([*argv, "--json"]) == 0
    doors = {row["door"]: row for row in json.loads(capsys.readouterr().out)}
    shown = "d" * 120 + "...[+180 chars]"
    assert sorted(doors) == sorted(["door1", "door2", "door3", "door4", "door5", "door6", "door7", shown])
    one, two, three = doors["door1"], doors["door2"], doors["door3"]
    assert (one["online"], one["gallery_version"], one["applied"], one["problems"]) == (
        True,
        3,
        "applied",
        [],
    )
    assert (two["gallery_version"], two["last_bundle"], two["applied"]) == (2, 3, "rejected")
    assert two["reason"] == "bad_signature: not signed by us"
    assert (three["online"], three["gallery_version"]) == (False, 1)
    assert doors["door5"]["freshness_age_s"] == 42.4 and one["freshness_age_s"] is None
    assert one["last_seen"] is not None and one["gallery_count"] == 10

    assert main(argv) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert text.splitlines()[0].split()[:3] == ["door", "online", "gallery"]
    assert "rejected" in lines["door2"] and "bad_signature" in lines["door2"]
    assert lines["door3"].split()[1] == "no" and "42 s" in lines["door5"]
    assert "malformed status: not JSON" in lines["door4"] and "\x1b" not in text


def test_malformed_and_hostile_payloads_become_rows_that_say_so(fleet_broker: Broker, capsys) -> None:
    argv = ["fleet", "status", "--broker", f"{fleet_broker.host}:{fleet_broker.port}", "--json"]
    assert main(argv) == 0
    doors = {row["door"]: row for row in json.loads(capsys.readouterr().out)}
    four = doors["door4"]
    assert four["online"] is None and four["gallery_version"] is None
    assert four["problems"] == [
        "malformed status: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1))",
        "malformed gallery state: not a JSON object",
    ]
    hostile = doors["d" * 120 + "...[+180 chars]"]
    assert hostile["online"] is True and hostile["problems"] == ["malformed status: gallery is not an object"]
    seven = doors["door7"]
    assert seven["gallery_version"] == 0  # "3" in the status is not a version number; the state's is used
    assert seven["reason"] == "\\x1b[2Jcleared your screen"  # escapes shown, never sent to the terminal


def test_fleet_keeps_only_the_doors_whose_state_names_it(fleet_broker: Broker, capsys) -> None:
    argv = ["fleet", "status", "--broker", f"{fleet_broker.host}:{fleet_broker.port}", "--json"]
    assert main([*argv, "--fleet", "warehouse"]) == 0
    assert [row["door"] for row in json.loads(capsys.readouterr().out)] == ["door6"]
    assert main([*argv, "--fleet", FLEET]) == 0
    doors = [row["door"] for row in json.loads(capsys.readouterr().out)]
    assert doors == ["door1", "door2", "door3", "door5", "door7"]


def test_a_prefix_with_no_doors_and_bad_arguments(fleet_broker: Broker, capsys) -> None:
    broker = f"{fleet_broker.host}:{fleet_broker.port}"
    assert main(["fleet", "status", "--broker", broker, "--prefix", "nobody", "--wait", "0.3"]) == 0
    assert capsys.readouterr().out.strip() == "no door has reported under this prefix"
    assert main(["fleet", "status", "--broker", broker, "--prefix", "a/+"]) == 2
    assert "--prefix" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # HOST:PORT is checked by the argument parser (cli/argtypes)
        main(["fleet", "status", "--broker", "nohostport"])
    assert refused.value.code == 2 and "--broker" in capsys.readouterr().err
    assert main(["fleet", "status", "--broker", broker, "--fleet", "a/b"]) == 2


def test_rows_from_messages_without_a_broker() -> None:
    assert door_of("site/edgeface", "site/edgeface/d1/gallery/state") == ("d1", "gallery/state")
    assert door_of("site/edgeface", "site/edgeface/a/b/status") is None  # a door is one level
    rows = rows_by_door(fleet_rows({"edgeface/d1/status": b"", "edgeface/d2/status": b"\xff\xfe"}, PREFIX))
    assert list(rows) == ["d2"]  # an empty retained message is a cleared topic, not a door
    assert rows["d2"].problems[0].startswith("malformed status: not JSON")
    assert table(list(rows.values())).splitlines()[1].split()[:2] == ["d2", "-"]
