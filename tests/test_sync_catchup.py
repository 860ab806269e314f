"""Catch-up: a door that was offline while versions 2, 3 and 4 were published gets to 4 by the announced
chain of deltas (each step a whole signed gallery), or by the full bundle when the chain does not reach back
to its version; never a mixed gallery. Payloads through a real nginx, announcements through a real mosquitto."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.demo.localweb import LocalWeb
from edgeface.identity.gallery import Gallery
from edgeface.server.build import build_bundle, write_payload_file
from edgeface.server.publish import publish
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.fetch import UrlFetchSettings
from edgeface.sync.manifest import parse_manifest
from edgeface.sync.mqtt import BrokerOptions
from edgeface.sync.plan import Step, catch_up
from tests.factories import (
    FLEET,
    PREFIX,
    Keys,
    make_gallery,
    make_keys,
    read_retained,
    start_device,
    wait_for,
)

pytestmark = pytest.mark.broker

POOL = make_gallery(40)


def gallery_v(version: int) -> Gallery:
    """Version k holds rows k..k+29 of a pool: each version drops one identity and adds one."""
    rows = slice(version, version + 30)
    return Gallery(POOL.ids[rows], POOL.names[rows], POOL.samples[rows], POOL.vectors[rows], POOL.model_sha256,
                   version)  # fmt: skip


def _publish(broker, data: bytes, full: bytes | None = None, keep: int = 8) -> None:
    publish(BrokerOptions(broker.host, broker.port), PREFIX, FLEET, data, full, wait_s=0.2, keep_chain=keep)


def _bundle(keys: Keys, web: LocalWeb, version: int, base: Gallery | None = None) -> bytes:
    data = build_bundle(gallery_v(version), fleet=FLEET, version=version, key=keys.private, base=base,
                        url_base=web.base_url)  # fmt: skip
    write_payload_file(data, web.root)
    return data


def _payload_size(data: bytes) -> int:
    return len(unpack_bundle(data).payload)


@pytest.mark.parametrize("keep", [8, 2], ids=["chain-reaches-back", "chain-too-short"])
def test_a_door_three_versions_behind_catches_up(broker, web: LocalWeb, tmp_path: Path, keep: int) -> None:
    keys = make_keys(tmp_path / "keys")
    fetch = UrlFetchSettings(ca_file=web.ca_file)
    late = start_device(broker, tmp_path, keys, name="late", url=fetch)
    _publish(broker, _bundle(keys, web, 1))
    wait_for(lambda: late.sync.running_version == 1, 10, "v1 on the late door")
    late.close()  # offline for days
    deltas, fulls = {}, {}
    for version in (2, 3, 4):
        deltas[version] = _bundle(keys, web, version, base=gallery_v(version - 1))
        fulls[version] = _bundle(keys, web, version)
        _publish(broker, deltas[version], fulls[version], keep)
    announced = read_retained(broker, f"{PREFIX}/fleet/{FLEET}/gallery")
    assert announced is not None and len(announced["chain"]) == min(keep, 3)
    served_before = web.bytes_served()
    late = start_device(broker, tmp_path, keys, name="late", url=fetch)
    try:
        wait_for(lambda: late.sync.running_version == 4, 15, "v4 on the late door")
        stored = late.store.load()
        assert stored.ids == gallery_v(4).ids
        np.testing.assert_array_equal(stored.vectors, gallery_v(4).vectors)
        served = web.bytes_served() - served_before
        if keep == 8:  # three small deltas, in order, each a whole gallery; the full bundle is never fetched
            assert [g.version for g in late.galleries] == [2, 3, 4]
            assert served == sum(_payload_size(deltas[v]) for v in (2, 3, 4))
        else:  # the chain starts at 3: the door fetches the full bundle of 4 in one step
            assert [g.version for g in late.galleries] == [4]
            assert served == _payload_size(fulls[4])
        for gallery in late.galleries:  # no step ever left a mixed gallery
            assert gallery.ids == gallery_v(gallery.version).ids
        late.client.reconnect()  # the retained full v4 is re-delivered: recognised as what runs
        wait_for(late.client.is_connected, 5, "reconnect")
        wait_for(lambda: late.sync.last_state.status == "applied", 5, "state stays applied")
        assert late.sync.last_state.version == 4
    finally:
        late.close()


def test_the_plan_takes_deltas_only_when_they_reach_the_newest_version(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    url = "https://cdn.invalid/g"

    def step(version: int, base: int | None = None) -> Step:
        data = build_bundle(gallery_v(version), fleet=FLEET, version=version, key=keys.private,
                            base=gallery_v(base) if base else None, url_base=url)  # fmt: skip
        parts = unpack_bundle(data)
        return Step(parse_manifest(parts.manifest), parts.signature)

    full4, d2, d3, d4 = step(4), step(2, 1), step(3, 2), step(4, 3)
    assert catch_up(full4, (d2, d3, d4), 1).steps == (d2, d3, d4)
    assert catch_up(full4, (d2, d3, d4), 2).steps == (d3, d4)
    assert catch_up(full4, (d2, d4), 1).steps == (full4,)  # a gap: full
    assert catch_up(full4, (d2, d3), 1).steps == (full4,)  # does not reach 4: full
    assert catch_up(full4, (d2, d3, d4), 0).steps == (full4,)  # no gallery yet: full
