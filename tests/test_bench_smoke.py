"""Smoke tests for the search and face_recognition benchmarks: each ``--quick`` run prints docs/design.md §10
JSON."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs a benchmark script in quick mode

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TOP_KEYS = {"bench", "host", "params", "results"}


def run_bench(script: str, *args: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        pytest.fail(f"{script} --quick exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    document = json.loads(proc.stdout)
    assert set(document) == TOP_KEYS
    assert document["host"]["cpu_count"] >= 1
    assert document["params"]["quick"] is True
    return document


def load_common() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "_common.py")
    if spec is None or spec.loader is None:
        pytest.fail(f"cannot load {BENCH / '_common.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_quick_prints_design_json() -> None:
    """bench/search.py drives the device's own GalleryIndex on clustered and uniform vectors at both dims."""
    doc = run_bench("search.py")
    assert doc["bench"] == "search"
    cases = doc["results"]["cases"]
    assert {(c["kind"], c["dim"]) for c in cases} == {
        (kind, dim) for kind in doc["params"]["kinds"] for dim in doc["params"]["dims"]
    }
    for case in cases:
        assert case["n"] == doc["params"]["n"]
        assert case["exact"]["latency_ms"]["n"] == doc["params"]["exact_queries"]
        for graph in case["hnsw"]:
            assert [int(ef) for ef in graph["ef"]] == doc["params"]["ef"]
            reduced = 0 < graph["reduce_to"] < case["dim"]
            assert graph["graph_dim"] == (graph["reduce_to"] if reduced else case["dim"])
            assert graph["graph_bytes_per_identity"] > graph["graph_dim"] * 4  # the vectors plus their links
            for ef, m in graph["ef"].items():
                assert 0 < m["latency_ms"]["median"] <= m["latency_ms"]["p99"], ef
                assert 0.0 <= m["recall_at_1"] <= 1.0, ef
                assert m["misses"] == round((1 - m["recall_at_1"]) * case["queries"]), ef
    assert [s["n"] for s in doc["results"]["exact_by_size"] if s["dim"] == 512] == doc["params"][
        "exact_sizes"
    ]
    rec = doc["results"]["recommendation"]
    assert rec["met"] == (rec["hnsw"]["meets_recall"] and rec["hnsw"]["meets_p99_cpu"])
    assert rec["hnsw"]["ef"] in doc["params"]["ef"]
    settings = doc["params"]["settings_M_ef_construction_reduce_to"]
    assert [rec["hnsw"][key] for key in ("M", "ef_construction", "reduce_to")] in settings


def test_peer_face_recognition_quick_prints_design_json(faces5: Path) -> None:
    if importlib.util.find_spec("face_recognition") is None:
        message = (
            "face_recognition is not installed: pip install dlib-bin face-recognition-models "
            "&& pip install --no-deps face_recognition==1.3.0"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    doc = run_bench("peer_face_recognition.py", env={"EDGEFACE_FACES": str(faces5)})
    assert doc["bench"] == "peer_face_recognition"
    results = doc["results"]
    assert "error" not in results, results.get("error")
    all_photos = results["all_photos"]
    assert all_photos["photos"] == doc["params"]["photos"] > 0
    assert 0.5 <= all_photos["detection_rate"] <= 1.0
    protocol = results["protocol_80_20"]
    assert protocol["seeds"] == [0, 1]
    for key in ("top1_nn_euclidean", "top1_mean_cosine"):
        # five identities: chance is 0.2; dlib's encoder is far above it on real photos
        assert 0.4 <= protocol[key]["mean"] <= 1.0, key
    for n_faces in (0, 1, 3):
        speed = results["speed"][f"faces_{n_faces}"]
        assert speed["ms_per_frame"]["median"] > 0
        assert speed["faces_pasted_per_frame"] == n_faces
    assert results["speed"]["faces_0"]["faces_found_mean"] == 0


def test_split_80_20_is_deterministic_stratified_and_disjoint(faces5: Path) -> None:
    common = load_common()
    files = common.list_identities(faces5)
    gallery, probes = common.split_80_20(files, seed=3)
    again, _ = common.split_80_20(files, seed=3)
    other, _ = common.split_80_20(files, seed=4)
    assert gallery == again
    assert gallery != other
    for identity, paths in files.items():
        assert len(gallery[identity]) == round(0.8 * len(paths))
        assert set(gallery[identity]).isdisjoint(probes[identity])
        assert sorted(gallery[identity] + probes[identity]) == paths


@pytest.mark.parametrize(("n", "expected"), [(2, 1), (3, 2), (5, 4), (10, 8), (30, 24), (31, 25)])
def test_gallery_count_rounds_half_up_and_keeps_a_probe(n: int, expected: int) -> None:
    assert load_common().gallery_count(n) == expected


def test_percentiles_match_linear_interpolation() -> None:
    stats = load_common().percentiles([float(v) for v in range(1, 101)])
    assert stats["median"] == pytest.approx(50.5)
    assert stats["p95"] == pytest.approx(95.05)
    assert stats["p99"] == pytest.approx(99.01)
    assert stats["n"] == 100


def test_pipeline_quick_prints_design_json(faces5: Path) -> None:
    results = run_bench("pipeline.py", "--faces", str(faces5))["results"]
    for faces in (0, 1, 3):
        assert results[f"offline_{faces}_faces"]["fps"] > 0
    assert results["offline_3_faces"]["decisions"] > 0, "visitors in the busy scene must get decided"
    assert results["live_daemon"]["events"] > 0


def test_sync_quick_prints_design_json() -> None:
    assert run_bench("sync.py")["results"]


def test_hostile_photos_prints_design_json_and_every_photo_is_refused() -> None:
    results = run_bench("hostile_photos.py")["results"]
    assert all(
        results[case]["outcome"].startswith("refused")
        for case in results
        if case.startswith(("hdr", "jpeg", "png"))
    )
    assert results["cascade_36mp_faceless"]["outcome"] == "0 faces"


def test_edgeface_eval_uses_the_same_split_as_the_peers(faces5: Path) -> None:
    import numpy as np

    from edgeface.server.evaluation import split_80_20 as edgeface_split
    from edgeface.vision.photos import identity_folders

    folders = identity_folders(faces5)
    paths = [p for name in sorted(folders) for p in folders[name]]
    labels = np.asarray([i for i, name in enumerate(sorted(folders)) for _ in folders[name]])
    common = load_common()
    for seed in range(10):
        gallery, _ = common.split_80_20(folders, seed)
        mask, _ = edgeface_split(labels, seed)
        assert {p for p, m in zip(paths, mask, strict=True) if m} == {p for v in gallery.values() for p in v}


def test_homeassistant_quick_prints_design_json(faces5) -> None:
    doc = run_bench("homeassistant.py", env={"EDGEFACE_FACES": str(faces5)})
    assert doc["bench"] == "homeassistant"
    discovery = doc["results"]["discovery"]
    assert [d["messages"] - d["identities"] for d in discovery] == [12, 12]  # the door's own entities
    snapshot = doc["results"]["snapshot"]
    assert snapshot["jpeg_bytes"]["n"] + snapshot["over_cap"] > 0
    assert snapshot["jpeg_bytes"]["max"] <= doc["params"]["snapshot_max_bytes"]


def test_fleet_quick_brings_every_door_to_each_version_and_a_delta_serves_less() -> None:
    doc = run_bench("fleet.py")  # 50 doors on a real mosquitto and nginx
    assert doc["bench"] == "fleet"
    full, delta = doc["results"]["phases"]["full"], doc["results"]["phases"]["delta"]
    assert full["doors_applied"] == delta["doors_applied"] == 50
    payload = doc["params"]["payload_bytes"]
    assert full["bytes_served"] == 50 * payload["full"]  # each door fetched the full payload once
    assert delta["bytes_served"] == 50 * payload["delta"]  # and then only the delta, by the catch-up chain


def check_household_doc(doc: dict, faces5: Path) -> dict:
    assert doc["bench"] == "household" and doc["params"]["set"] == str(faces5)
    (cell,) = doc["results"]["cells"]
    assert (cell["household"], cell["photos_per_person"]) == (2, 1)
    for key in ("dir", "fpir"):
        spread = cell[key]
        assert 0.0 <= spread["min"] <= spread["median"] <= spread["max"] <= 1.0, key
        assert 0.0 <= spread["pooled"] <= 1.0 and spread["n"] == 2, key
    assert 0.5 <= doc["results"]["detected"] <= 1.0
    for household in cell["households"]:
        # quick: each person's first 4 photos, one enrolled, three probes; two strangers of four photos each
        assert len(household["members"]) == 2 and household["genuine_probes"] == 6
        assert household["stranger_probes"] == 8
        assert household["identified"] == round(household["dir"] * 6)
    return cell


def test_household_quick_prints_design_json_for_edgeface_and_the_peer(faces5: Path) -> None:
    cell = check_household_doc(run_bench("household.py", "--set", str(faces5)), faces5)
    for household in cell["households"]:
        assert household["threshold_source"] in {"gallery", "card"} and 0 < household["threshold"] <= 1
        assert household["enrolled"] + household["refused"] >= 2
    if importlib.util.find_spec("face_recognition") is None:
        message = "face_recognition is not installed (the bench extra)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    peer = check_household_doc(run_bench("household.py", "--set", str(faces5), "--peer"), faces5)
    # the same seeded households for both systems
    assert [h["members"] for h in peer["households"]] == [h["members"] for h in cell["households"]]
