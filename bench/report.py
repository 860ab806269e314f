"""Render the README's performance section from bench/results/*.json (the committed full runs).

python bench/report.py            # print the markdown
python bench/report.py --write    # replace the block between the perf markers in README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- perf:begin (bench/report.py --write) -->", "<!-- perf:end -->"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text())
    return doc


def ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def peer_table() -> list[str]:
    peer = load("peer_face_recognition")
    speed, proto = peer["results"]["speed"], peer["results"]["protocol_80_20"]
    rows = [
        "**edgeface vs face_recognition 1.3.0** (same 640x480 frames, interleaved in one run; every face embedded "
        "each frame, no tracker shortcut; `python bench/peer_face_recognition.py`)",
        "",
        "| faces in frame | face_recognition ms/frame (p50 / p95) | edgeface ms/frame (p50 / p95) | speed ratio |",
        "| --- | --- | --- | --- |",
    ]
    for key in ("faces_0", "faces_1", "faces_3"):
        p, e = speed[key], speed[key]["edgeface"]
        rows.append(
            f"| {key[-1]} | {ms(p['ms_per_frame']['median'])} / {ms(p['ms_per_frame']['p95'])} | "
            f"{ms(e['ms_per_frame']['median'])} / {ms(e['ms_per_frame']['p95'])} | "
            f"**{p['speed_ratio_edgeface_over_peer']:.1f}x** |"
        )
    rows += [
        "",
        f"Accuracy, same splits (faces5, 80/20, 10 seeds, misses count as errors): face_recognition "
        f"{100 * proto['top1_nn_euclidean']['mean']:.1f}% (NN) / {100 * proto['top1_mean_cosine']['mean']:.1f}% "
        f"(aggregated), detection {100 * proto['probe_detection_rate']['mean']:.1f}%; edgeface 98.3% / 98.7%, "
        "detection 100% (see Accuracy above).",
    ]
    return rows


def embedder_table() -> list[str]:
    emb = load("embedder")
    res = emb["results"]
    rows = [
        "**Embedders, ms/face** (batch 1, ai-edge-litert 2.3; `python bench/embedder.py`; GhostFaceNet W1.3 S2 with "
        "random weights, original graph vs our delegate-friendly rewrite)",
        "",
        "| model | size | XNNPACK partitions | 1 thread XNNPACK | 2 threads XNNPACK | 1 thread, no XNNPACK |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, info in res["models"].items():
        t = res["ms_per_face"]
        rows.append(
            f"| {name} | {info['size_bytes'] / 1e6:.1f} MB | {info['xnnpack_partitions']} | "
            f"{ms(t[f'{name}|t1|xnnpack']['median'])} | {ms(t[f'{name}|t2|xnnpack']['median'])} | "
            f"{ms(t[f'{name}|t1|builtin']['median'])} |"
        )
    return rows


def runtimes_table() -> list[str]:
    doc = load("embedder_tflite_runtime")
    res = doc["results"]
    rows = [
        "**Runtimes side by side**, facerec128 ms/face (`python bench/embedder_runtimes.py --tflite-python "
        "/tmp/tflrt/bin/python`; tflite-runtime 2.14 in its own numpy<2 venv; quieter host than the table above)",
        "",
        "| model / threads / kernels | ai-edge-litert | tflite-runtime | ratio |",
        "| --- | --- | --- | --- |",
    ]
    ours, theirs = res["ms_per_face"]["ai-edge-litert"], res["ms_per_face"]["tflite-runtime"]
    for key in ours:
        rows.append(f"| {key.replace('|', ' / ')} | {ms(ours[key]['median'])} | {ms(theirs[key]['median'])} | "
                    f"{theirs[key]['median'] / ours[key]['median']:.2f}x |")  # fmt: skip
    parts = res["xnnpack_partitions"]["tflite-runtime"]
    rows += [
        "",
        f"tflite-runtime 2.14 delegates none of the int8 model to XNNPACK (partitions: {parts}), so on 32-bit "
        "Pi OS float32 with XNNPACK may beat int8; embeddings agree with ai-edge-litert's "
        f"(check passed: {res['embeddings_match']}).",
    ]
    return rows


def pipeline_table() -> list[str]:
    res = load("pipeline")["results"]
    rows = [
        "**Pipeline at 640x480** (`python bench/pipeline.py`; offline = pre-rendered frames fed as fast as taken; "
        "visitors replaced every 1.8 s so tracks keep needing decisions)",
        "",
        "| faces | frames/s | ms/frame p50 / p95 | deciding frame ms p50 / p95 | detect p50 | embed p50 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in (0, 1, 3):
        r = res[f"offline_{n}_faces"]
        deciding = r["deciding_frame_ms"]
        dec = f"{ms(deciding['median'])} / {ms(deciding['p95'])}" if deciding else "-"
        embed = r["stage_ms"].get("embed", {}).get("p50")
        rows.append(
            f"| {n} | {r['fps']:.0f} | {ms(r['frame_ms']['median'])} / {ms(r['frame_ms']['p95'])} | {dec} | "
            f"{ms(r['stage_ms']['detect']['p50'])} | {ms(embed) if embed else '-'} |"
        )
    live = res["live_daemon"]
    f2e = live["stage_ms"]["frame_to_event"]
    rows += [
        "",
        f"Live daemon (real-time emulated camera at {live['camera_fps']:.0f} fps, real mosquitto, on-disk spool): "
        f"{live['processed_fps']} frames/s processed, {live['dropped_frames']} dropped, {live['events']} events, "
        f"frame-to-event latency p50 {ms(f2e['p50'])} ms / p95 {ms(f2e['p95'])} ms, start to READY "
        f"{live['start_to_ready_s']} s, daemon process RSS {live.get('rss_mb_while_running', '?')} MB (its own interpreter).",
    ]
    return rows


def search_table() -> list[str]:
    search = load("search")
    params, results = search["params"], search["results"]
    rows = [
        f"**Search at {params['n']:,} identities, single query k=2, one thread** (`python bench/search.py`; "
        "the device's `GalleryIndex`; recall@1 vs exact search; p99 wall clock on this shared host, and "
        "p99 thread CPU time; hnsw: the graph over the gallery projected onto `reduce_to` principal axes, "
        f"or over the full vectors when it is 0, and its {params.get('rerank', '?')} candidates re-ranked exactly; "
        "graph B/id: one graph's size as hnswlib saves it, per identity)",
        "",
        "| vectors | dim | index | recall@1 | p50 ms | p99 ms | p99 CPU ms | build s | graph B/id |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in results["cases"]:
        exact = case["exact"]
        rows.append(
            f"| {case['kind']} | {case['dim']} | exact | 1.0 | {ms(exact['latency_ms']['median'])} | "
            f"{ms(exact['latency_ms']['p99'])} | {ms(exact['thread_cpu_ms']['p99'])} | - | - |"
        )
        for h in case["hnsw"]:
            graph = f"hnsw M={h['M']} efC={h['ef_construction']} reduce_to={h.get('reduce_to', 0)}"
            size = h.get("graph_bytes_per_identity")
            for ef, r in h["ef"].items():
                rows.append(
                    f"| {case['kind']} | {case['dim']} | {graph} ef={ef} | "
                    f"{r['recall_at_1']:.4f} | {ms(r['latency_ms']['median'])} | {ms(r['latency_ms']['p99'])} | "
                    f"{ms(r['thread_cpu_ms']['p99'])} | {h['build_s']:.0f} | {'-' if size is None else f'{size:.0f}'} |"
                )
    choice = results["recommendation"]
    hnsw = choice["hnsw"] or {"M": "-", "ef_construction": "-", "ef": "-", "worst_recall_at_1": float("nan"),
                              "worst_thread_cpu_p99_ms": float("nan")}  # fmt: skip
    reduce_to = hnsw.get("reduce_to", 0)
    sizes = ", ".join(
        f"{r['n']:,} x {r['dim']}: {ms(r['thread_cpu_ms']['p99'])}" for r in results["exact_by_size"]
    )
    rows += [
        "",
        f"Exact search p99 CPU ms by size: {sizes}. Rule: {choice['rule']}. "
        f"{'Met' if choice['met'] else 'Not met'} by hnsw M={hnsw['M']} ef_construction={hnsw['ef_construction']} "
        f"reduce_to={reduce_to} ef={hnsw['ef']}: worst recall@1 {hnsw['worst_recall_at_1']:.4f}, worst p99 CPU "
        f"{ms(hnsw['worst_thread_cpu_p99_ms'])} ms. Exact search stays within the budget up to {_exact_within(results)}.",
    ]
    return rows


def _exact_within(results: dict[str, Any]) -> str:
    """The largest measured size exact search serves within the p99 budget, per dim."""
    budget = load("search")["params"]["budget_ms"]
    parts = []
    for dim in sorted({r["dim"] for r in results["exact_by_size"]}, reverse=True):
        within = [
            r["n"]
            for r in results["exact_by_size"]
            if r["dim"] == dim and r["thread_cpu_ms"]["p99"] <= budget
        ]
        parts.append(f"{max(within):,} identities at {dim}-d" if within else f"none measured at {dim}-d")
    return ", ".join(parts)


def sync_table() -> list[str]:
    rows = [
        "**Gallery sync apply** (verify + atomic write + go live while a 15 fps recognition loop decides; a delta "
        "patches the standby HNSW graph no reader uses, and the replaced graph then catches up as the next standby "
        "(after a full apply a second graph is built); the rebuild column builds the same gallery's index from "
        "scratch under the same load; a frame is late when its decision ends more than one frame period after it "
        "was due; `python bench/sync.py`)",
        "",
        "| identities x dim | index (patch threads) | full apply (+ standby) | 1% delta live (index part) | + standby catch-up | "
        "delta CPU s | late frames in delta (longest wait) | full rebuild | late in rebuild | late with no apply | "
        "recall@1 delta / rebuild |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in load("sync")["results"]["cases"]:
        full, delta, rebuild = case["apply_full"], case["apply_delta_1pct"], case["rebuild_after_delta"]
        answers, idle = case["delta_vs_rebuild_answers"][-1], case["baseline_no_apply"]
        cpu_s = delta.get("apply_process_cpu_s", {}).get("median")
        cpu = "-" if cpu_s is None else f"{cpu_s:.2f}"
        rows.append(
            f"| {case['n']:,} x {case['dim']} | {case['index_kind']} ({case.get('patch_threads', 2)}) | "
            f"{full['total_s']['median']:.2f} s "
            f"(+ {_seconds(full, 'standby_s')}) | "
            f"{delta['total_s']['median']:.2f} s ({delta['index_s']['median']:.2f} s) | "
            f"{_seconds(delta, 'standby_s')} | {cpu} | {_late(delta)} ({_wait(delta)}) | "
            f"{rebuild['index_s']['median']:.1f} s | {_late(rebuild)} | {_late(idle)} | "
            f"{answers['recall_at_1_live']:.3f} / {answers['recall_at_1_rebuilt']:.3f} |"
        )
    return rows


def _seconds(run: dict[str, Any], key: str) -> str:
    return f"{run[key]['median']:.2f} s" if key in run else "-"


def _late(run: dict[str, Any]) -> str:
    return f"{run.get('frames_late', run['frames_dropped'])} of {run['frames']}"


def _wait(run: dict[str, Any]) -> str:
    return f"{run['wait_ms_max']:.0f} ms" if "wait_ms_max" in run else f"search {run['search_ms_max']:.0f} ms"


def fleet_table() -> list[str]:
    doc = load("fleet")
    params, results = doc["params"], doc["results"]
    rows = [
        f"**Fleet** ({params['doors']:,} doors in {params.get('processes', 1)} processes on 2 shared cores, one "
        f"mosquitto + one nginx, gallery "
        f"{params['identities']:,} x {params['dim']}, full payload {params['payload_bytes']['full'] / 1e6:.2f} MB, "
        f"1% delta {params['payload_bytes']['delta'] / 1e3:.1f} kB; `python bench/fleet.py`, docs/fleet.md)",
        "",
        "| update | all doors running it | per door p50 / p95 | bytes served (nginx) | broker msgs in / out |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, phase in results["phases"].items():
        done = phase["seconds_all_applied"]
        per = phase["per_door_s"] or {}
        rows.append(
            f"| {name} | {'not all' if done is None else f'{done:.1f} s'} | "
            f"{per.get('median', 0):.1f} / {per.get('p95', 0):.1f} s | {phase['bytes_served'] / 1e6:.1f} MB | "
            f"{phase.get('broker_messages_received', '?'):,} / {phase.get('broker_messages_sent', '?'):,} |"
        )
    rows.append(
        f"\nDoor processes' RSS {results['rss_mib']:.0f} MiB after both updates ({results['rss_per_door_kib']:.0f} "
        f"KiB per door, {results['rss_idle_per_door_kib']:.0f} KiB idle). All doors share two cores and one disk "
        "(each apply fsyncs its gallery), so the times measure this machine; bytes and messages per door transfer."
    )
    return rows


def render() -> str:
    host = load("pipeline")["host"]
    lines = [f"Measured on: {host.get('cpu_model', host.get('cpu', '?'))}, {host.get('cpu_count')} cores; "
             "machines here are shared and noisy, so compare ratios from one run, not absolute numbers.", ""]  # fmt: skip
    tables = (
        peer_table,
        embedder_table,
        runtimes_table,
        pipeline_table,
        search_table,
        sync_table,
        fleet_table,
    )
    for part in tables:
        lines += [*part(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args()
    text = render()
    if not args.write:
        print(text)
        return
    readme = (ROOT / "README.md").read_text()
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    (ROOT / "README.md").write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


if __name__ == "__main__":
    main()
