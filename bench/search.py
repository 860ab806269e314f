"""Gallery search benchmark: hnswlib vs exact numpy (float32, float16) vs FAISS IndexFlatIP, on 512-d
L2-normalised random gallery vectors; queries are noisy copies of gallery vectors (so recall@1 is meaningful)
plus a few pure-random ones, run one at a time with k=2 on one thread (what a door unit does); builds use
``--build-threads``. Recall@1 is measured against exact float32 search.

    python bench/search.py --quick                                    # 1k, 10k (CI smoke, < 1 min)
    python bench/search.py --out bench/results/search.json            # 1k .. 1M
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import emit, package_version, percentiles, rss_bytes

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("bench.search")

Search = Callable[["np.ndarray"], "np.ndarray"]
MIN_BUILD_EXPONENT = 1.5  # hnswlib builds on random 512-d data grew as n^1.5..n^1.8 here (run of 2026-11-23)
EXACT_METHODS = ("numpy_f32", "numpy_f16", "numpy_f16_chunked", "faiss_flat_ip")


@dataclass(frozen=True, slots=True)
class Built:
    """One built index: how to query it and what building it cost."""

    search: Search
    build_s: float
    index_bytes: int
    memory_method: str
    rss_delta_bytes: int
    extra: dict[str, Any]


def pin_threads() -> None:
    """One BLAS/OpenMP thread for numpy and faiss queries; must run before numpy is imported."""
    if "numpy" in sys.modules:
        log.warning("numpy already imported: OPENBLAS_NUM_THREADS=1 may not take effect")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def make_data(n: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gallery (n, dim), shuffled queries (noisy copies + random), and the source row of each (-1 = random)."""
    import numpy as np

    rng = np.random.default_rng(args.seed + n)
    gallery = np.empty((n, args.dim), dtype=np.float32)
    for start in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - start), args.dim), dtype=np.float32)
        gallery[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    n_noisy = min(args.queries, n)
    sources = rng.choice(n, n_noisy, replace=False)
    sigma = math.sqrt((1.0 / args.query_cos**2 - 1.0) / args.dim)  # E[cos(query, source)] ~ query_cos
    noisy = gallery[sources] + sigma * rng.standard_normal((n_noisy, args.dim), dtype=np.float32)
    rand = rng.standard_normal((args.random_queries, args.dim), dtype=np.float32)
    queries = np.concatenate([noisy, rand]).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    origin = np.concatenate([sources, np.full(args.random_queries, -1)])
    order = rng.permutation(len(queries))
    return gallery, np.ascontiguousarray(queries[order]), origin[order]


def exact_top1(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Ground truth: exact float32 inner-product top-1 (batched)."""
    import numpy as np

    return np.concatenate([np.argmax(gallery @ chunk.T, axis=0) for chunk in np.array_split(queries, 16)])


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    import numpy as np

    part = np.argpartition(scores, -k)[-k:]
    return part[np.argsort(-scores[part])]


def _measured_build(make: Callable[[], tuple[Search, int, str, dict[str, Any]]]) -> Built:
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    search, nbytes, method, extra = make()
    build_s = time.perf_counter() - t0
    return Built(search, build_s, nbytes, method, rss_bytes() - rss0, extra)


def build_numpy(gallery: np.ndarray, dtype: str, chunked: bool = False) -> Built:
    import numpy as np

    def make() -> tuple[Search, int, str, dict[str, Any]]:
        store = np.array(gallery, dtype=dtype, copy=True)
        starts = range(0, len(store), 65536)
        if not chunked:
            return (lambda q: topk(store @ q.astype(dtype), 2)), store.nbytes, "ndarray.nbytes", {}

        def search(q: np.ndarray, rows: int = starts.step) -> np.ndarray:
            return topk(np.concatenate([store[i : i + rows].astype(np.float32) @ q for i in starts]), 2)

        return search, store.nbytes, "ndarray.nbytes (float16 storage, float32 gemv per 65536-row chunk)", {}

    return _measured_build(make)


def build_faiss(gallery: np.ndarray) -> Built:
    import faiss

    def make() -> tuple[Search, int, str, dict[str, Any]]:
        faiss.omp_set_num_threads(1)
        index = faiss.IndexFlatIP(gallery.shape[1])
        index.add(gallery)
        nbytes = int(index.ntotal) * int(index.code_size)

        return (lambda q: index.search(q[None, :], 2)[1][0]), nbytes, "ntotal * code_size (flat codes)", {}

    return _measured_build(make)


def build_hnsw(gallery: np.ndarray, ef_construction: int, args: argparse.Namespace) -> tuple[Built, Any]:
    import hnswlib
    import numpy as np

    holder: dict[str, Any] = {}

    def make() -> tuple[Search, int, str, dict[str, Any]]:
        index = hnswlib.Index(space="ip", dim=gallery.shape[1])
        index.init_index(max_elements=len(gallery), ef_construction=ef_construction, M=args.M, random_seed=1)
        index.set_num_threads(args.build_threads)
        index.add_items(gallery, np.arange(len(gallery)))
        index.set_num_threads(1)
        holder["index"] = index
        return (lambda q: index.knn_query(q[None, :], k=2)[0][0]), 0, "", {}

    built = _measured_build(make)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.bin"
        holder["index"].save_index(str(path))
        nbytes = path.stat().st_size
    extra = {"ef_construction": ef_construction, "M": args.M, "build_threads": args.build_threads}
    sized = Built(built.search, built.build_s, nbytes, "save_index() file size", built.rss_delta_bytes, extra)
    return sized, holder["index"]


def time_queries(search: Search, queries: np.ndarray, budget_s: float, min_queries: int) -> tuple[list, ...]:
    """Wall and thread-CPU ms and top-1 label per query, one at a time, until the time budget is spent."""
    for q in queries[:3]:
        search(q)  # warm-up
    latencies: list[float] = []
    cpu: list[float] = []
    labels: list[int] = []
    spent_start = time.perf_counter()
    for q in queries:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        result = search(q)
        latencies.append((time.perf_counter_ns() - t0) / 1e6)
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        labels.append(int(result[0]))
        if len(latencies) >= min_queries and time.perf_counter() - spent_start > budget_s:
            break
    return latencies, cpu, labels


def summarise(built: Built, timings: tuple[list, ...], truth: np.ndarray, origin: np.ndarray) -> dict:
    import numpy as np

    latencies, cpu, labels = timings
    n = len(labels)
    got = np.asarray(labels)
    noisy = origin[:n] >= 0
    return {
        "build_s": round(built.build_s, 4),
        "index_bytes": built.index_bytes,
        "memory_method": built.memory_method,
        "rss_delta_bytes": built.rss_delta_bytes,
        "latency_ms": percentiles(latencies),
        "thread_cpu_ms": percentiles(cpu),
        "queries_timed": n,
        "recall_at_1": float(np.mean(got == truth[:n])),
        "recall_at_1_noisy": float(np.mean(got[noisy] == truth[:n][noisy])) if noisy.any() else None,
        "recall_at_1_random": float(np.mean(got[~noisy] == truth[:n][~noisy])) if (~noisy).any() else None,
        **built.extra,
    }


def hnsw_ef_construction(n: int, history: list[dict], args: argparse.Namespace) -> tuple[int, dict]:
    """ef_construction for n, lowered (and labelled) when the build extrapolated from the last sizes > budget."""
    if not history:
        return args.ef_construction, {}
    last = history[-1]
    if len(history) >= 2:
        prev = history[-2]
        exponent = math.log(last["build_s"] / prev["build_s"]) / math.log(last["n"] / prev["n"])
        scale = (n / last["n"]) ** max(exponent, MIN_BUILD_EXPONENT)
    else:
        scale = (n / last["n"]) * math.log(n) / math.log(last["n"])
    estimate = last["build_s"] * scale * args.ef_construction / last["ef_construction"]
    note: dict[str, Any] = {"estimated_build_s_at_requested_ef_construction": round(estimate, 1)}
    if estimate <= args.hnsw_build_budget_s:
        return args.ef_construction, note
    lowered = max(args.M, int(args.ef_construction * args.hnsw_build_budget_s / estimate))
    note["ef_construction_lowered_from"] = args.ef_construction
    note["reason"] = f"estimated build {estimate:.0f} s > budget {args.hnsw_build_budget_s:.0f} s"
    log.warning(
        "n=%d: lowering ef_construction %d -> %d (%s)", n, args.ef_construction, lowered, note["reason"]
    )
    return lowered, note


def bench_size(n: int, args: argparse.Namespace, history: list[dict]) -> dict:
    gallery, queries, origin = make_data(n, args)
    truth = exact_top1(gallery, queries)
    out: dict[str, Any] = {"n": n, "queries": len(queries), "noisy_queries": int((origin >= 0).sum())}
    builders: dict[str, Callable[[], Built]] = {
        "numpy_f32": lambda: build_numpy(gallery, "float32"),
        "numpy_f16": lambda: build_numpy(gallery, "float16"),
        "numpy_f16_chunked": lambda: build_numpy(gallery, "float16", chunked=True),
        "faiss_flat_ip": lambda: build_faiss(gallery),
    }
    for name, build in builders.items():
        log.info("n=%d %s", n, name)
        built = build()
        out[name] = summarise(built, time_queries(built.search, queries, args.budget_s, 10), truth, origin)
        del built
        gc.collect()
    ef_c, note = hnsw_ef_construction(n, history, args)
    log.info("n=%d hnswlib build (M=%d, ef_construction=%d)", n, args.M, ef_c)
    built, index = build_hnsw(gallery, ef_c, args)
    for ef in args.ef:
        index.set_ef(ef)
        timings = time_queries(built.search, queries, args.budget_s, 10)
        out[f"hnswlib_ef{ef}"] = {**summarise(built, timings, truth, origin), "ef": ef, **note}
    return out


def pick_default_ef(sizes: list[dict], efs: list[int], min_recall: float) -> int:
    """Smallest ef reaching ``min_recall`` on noisy queries at every size built with the requested ef_c."""
    full = [s for s in sizes if "ef_construction_lowered_from" not in s[f"hnswlib_ef{efs[0]}"]] or sizes
    for ef in sorted(efs):
        if all(s[f"hnswlib_ef{ef}"]["recall_at_1_noisy"] >= min_recall for s in full):
            return ef
    return max(efs)


def size_row(s: dict, ef: int, args: argparse.Namespace) -> dict:
    """Fastest exact method vs hnswlib at the default ef and at the smallest ef meeting the recall target."""
    best = min(EXACT_METHODS, key=lambda m: s[m]["latency_ms"]["median"])
    exact_p50 = s[best]["latency_ms"]["median"]
    hnsw = s[f"hnswlib_ef{ef}"]
    meeting = [e for e in sorted(args.ef) if s[f"hnswlib_ef{e}"]["recall_at_1_noisy"] >= args.min_recall]
    at_target = s[f"hnswlib_ef{meeting[0]}"]["latency_ms"]["median"] if meeting else None
    return {
        "n": s["n"],
        "exact_best": best,
        "exact_p50_ms": exact_p50,
        "exact_p99_ms": s[best]["latency_ms"]["p99"],
        "hnsw_p50_ms": hnsw["latency_ms"]["median"],
        "hnsw_p99_ms": hnsw["latency_ms"]["p99"],
        "exact_thread_cpu_p50_ms": s[best]["thread_cpu_ms"]["median"],
        "hnsw_thread_cpu_p50_ms": hnsw["thread_cpu_ms"]["median"],
        "hnsw_recall_at_1_noisy": hnsw["recall_at_1_noisy"],
        "hnsw_ef_construction": hnsw["ef_construction"],
        "exact_not_slower": exact_p50 <= hnsw["latency_ms"]["median"],
        "hnsw_smallest_ef_meeting_recall": meeting[0] if meeting else None,
        "hnsw_p50_ms_at_that_ef": at_target,
        "hnsw_faster_at_target_recall": at_target is not None and at_target < exact_p50,
    }


def recommend(sizes: list[dict], args: argparse.Namespace) -> dict:
    """Crossover size below which exact search is as fast as HNSW, computed from the measured p50 latencies."""
    ef = pick_default_ef(sizes, args.ef, args.min_recall)
    rows = [size_row(s, ef, args) for s in sizes]
    crossover = None
    for row in rows:
        if not row["exact_not_slower"]:
            break
        crossover = row["n"]
    first_slower = next((r for r in rows if not r["exact_not_slower"]), None)
    at_recall = next((r["n"] for r in rows if r["hnsw_faster_at_target_recall"]), None)
    if crossover is None:
        choice = f"hnsw always (ef={ef}): HNSW was faster at every measured size from {rows[0]['n']}"
    elif first_slower is None:
        choice = f"exact ({rows[-1]['exact_best']}) at every measured size up to {crossover}"
    else:
        choice = (
            f"exact search up to {crossover} identities, hnswlib (M={args.M}, ef={ef}) from {first_slower['n']}: "
            f"at {first_slower['n']} exact {first_slower['exact_best']} p50 {first_slower['exact_p50_ms']:.3f} ms "
            f"vs hnsw {first_slower['hnsw_p50_ms']:.3f} ms, hnsw recall@1 (noisy) "
            f"{first_slower['hnsw_recall_at_1_noisy']:.3f}"
        )
    within = [r["n"] for r in rows if r["exact_p99_ms"] <= args.latency_budget_ms]
    return {
        "default_ef": ef,
        "default_ef_rule": f"smallest ef with recall@1 (noisy queries) >= {args.min_recall} at every size "
        "built with the requested ef_construction (largest ef when none does)",
        "exact_as_fast_or_faster_up_to": crossover,
        "hnsw_faster_from": first_slower["n"] if first_slower else None,
        "hnsw_faster_at_target_recall_from": at_recall,
        "choice": choice,
        "exact_p99_within_latency_budget_up_to": max(within) if within else None,
        "latency_budget_ms": args.latency_budget_ms,
        "caveats": [
            "measured on the host below, not on a Pi/Jetson; the crossover lies between measured sizes",
            "uniform random 512-d vectors have no low-dimensional structure, a worst case for graph search; "
            "HNSW recall on real, identity-clustered face embeddings is likely higher (not measured here)",
        ],
        "per_size": rows,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1k and 10k only, fewer queries (< 1 min)")
    p.add_argument(
        "--sizes", type=int, nargs="+", help="gallery sizes (default 1k 3k 10k 100k 1M; quick 1k 10k)"
    )
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, help="noisy-copy queries (default 500; quick 100)")
    p.add_argument("--random-queries", type=int, help="pure-random queries (default 50; quick 10)")
    p.add_argument(
        "--query-cos", type=float, default=0.7, help="expected cosine of a noisy query to its source"
    )
    p.add_argument("--M", type=int, default=16, help="hnswlib M")
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument(
        "--ef", type=int, nargs="+", help="hnswlib query ef values (default 16 64 256; quick 16 64)"
    )
    p.add_argument("--latency-budget-ms", type=float, default=5.0, help="per-query budget reported for exact")
    p.add_argument("--min-recall", type=float, default=0.99, help="recall@1 a default ef must reach")
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--hnsw-build-budget-s", type=float, default=900.0, help="lower ef_construction above this"
    )
    p.add_argument(
        "--budget-s", type=float, help="query-timing budget per method and size (default 20; quick 1)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    args.sizes = args.sizes or ([1000, 10000] if args.quick else [1000, 3000, 10000, 100000, 1000000])
    args.queries = args.queries or (100 if args.quick else 500)
    args.random_queries = (
        args.random_queries if args.random_queries is not None else (10 if args.quick else 50)
    )
    args.ef = args.ef or ([16, 64] if args.quick else [16, 64, 256])
    args.budget_s = args.budget_s or (1.0 if args.quick else 20.0)
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    pin_threads()
    sizes: list[dict] = []
    history: list[dict] = []
    for n in sorted(args.sizes):
        sizes.append(bench_size(n, args, history))
        built = sizes[-1][f"hnswlib_ef{args.ef[0]}"]
        history.append({"n": n, "build_s": built["build_s"], "ef_construction": built["ef_construction"]})
    params = {
        "sizes": args.sizes,
        "dim": args.dim,
        "query": "k=2, batch 1, 1 thread; latency_ms = wall clock, thread_cpu_ms = CPU time of the calling thread",
        "loadavg_at_start": list(os.getloadavg()),
        "query_threads_method": "*_NUM_THREADS=1 before numpy import; faiss/hnswlib set_num_threads(1)",
        "build_threads_hnswlib": args.build_threads,
        "noisy_queries": args.queries,
        "random_queries": args.random_queries,
        "query_cos": args.query_cos,
        "hnswlib": {"space": "ip", "M": args.M, "ef_construction": args.ef_construction, "ef": args.ef},
        "query_budget_s": args.budget_s,
        "min_queries": 10,
        "recall_reference": "exact float32 inner product top-1 (batched matmul)",
        "seed": args.seed,
        "quick": args.quick,
        "versions": {k: package_version(k) for k in ("numpy", "hnswlib", "faiss-cpu")},
    }
    results = {"sizes": sizes, "recommendation": recommend(sizes, args)}
    emit("search", params, results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
