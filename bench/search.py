"""Gallery search benchmark: recall@1 and per-query latency of the device's own `GalleryIndex` (exact numpy
matmul, or hnswlib proposing candidates that are re-ranked by exact cosine) at 100k identities, on two kinds
of vectors, at 512-d and 128-d (the default embedder's size):

- ``clustered``, shaped like face embeddings: identity means drawn from a Gaussian whose variance falls off
  as 1/i over the dimensions (``--decay``; a few strong directions, a long weak tail, as embedding spectra
  have), each enrolled as the normalised mean of ``--samples`` noisy samples at cosine ``--sample-cos`` to
  its mean; a query is one more, held-out sample of a random identity.
- ``uniform``: identities uniform on the sphere, queries noisy copies at cosine ``--query-cos`` (the worst
  case for a graph: no low-dimensional structure at all).

Recall@1 is against exact float32 search of the same gallery. Queries run one at a time with k=2 on one
thread, as a door unit does; latency is wall clock and the calling thread's CPU time (this host is shared,
so wall-clock tails include other processes' work; CPU time does not). Exact search is also timed over a
range of sizes to find where its p99 leaves the latency budget. The recommendation picks, by the measured
numbers, the hnswlib (M, ef_construction, ef) that reaches ``--min-recall`` on clustered vectors at every
dim within ``--budget-ms`` p99, and the largest size exact search serves within the budget.

    python bench/search.py --quick                              # 20k, one setting (a few minutes)
    python bench/search.py --out bench/results/search.json      # 100k, 512 and 128, both kinds
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import emit, package_version, percentiles, rss_bytes

if TYPE_CHECKING:
    import numpy as np

    from edgeface.identity.gallery import Gallery
    from edgeface.identity.index import GalleryIndex

log = logging.getLogger("bench.search")


def unit_rows(x: np.ndarray) -> np.ndarray:
    import numpy as np

    unit: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return unit


def clustered(
    n: int, dim: int, queries: int, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Enrolled identity vectors (n, dim) and held-out query samples of random identities."""
    import numpy as np

    scale = (np.arange(1, dim + 1, dtype=np.float32) ** (-args.decay / 2)).astype(np.float32)
    sigma = math.sqrt((1.0 / args.sample_cos**2 - 1.0) / dim)  # E[cos(sample, mean)] ~ sample_cos
    gallery = np.empty((n, dim), np.float32)
    means_of_queried = np.empty((queries, dim), np.float32)
    who = rng.choice(n, queries, replace=False)
    for start in range(0, n, 8192):
        means = unit_rows(rng.standard_normal((min(8192, n - start), dim), dtype=np.float32) * scale)
        enrolled = np.zeros_like(means)
        for _ in range(args.samples):
            enrolled += unit_rows(means + sigma * rng.standard_normal(means.shape, dtype=np.float32))
        gallery[start : start + len(means)] = unit_rows(enrolled)
        inside = (who >= start) & (who < start + len(means))
        means_of_queried[inside] = means[who[inside] - start]
    held_out = means_of_queried + sigma * rng.standard_normal(means_of_queried.shape, dtype=np.float32)
    return gallery, unit_rows(held_out)


def uniform(
    n: int, dim: int, queries: int, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    import numpy as np

    gallery = unit_rows(rng.standard_normal((n, dim), dtype=np.float32))
    sigma = math.sqrt((1.0 / args.query_cos**2 - 1.0) / dim)
    sources = gallery[rng.choice(n, queries, replace=False)]
    return gallery, unit_rows(sources + sigma * rng.standard_normal(sources.shape, dtype=np.float32))


def as_gallery(vectors: np.ndarray) -> Gallery:
    from edgeface.identity.gallery import Gallery

    ids = tuple(f"p{i}" for i in range(len(vectors)))
    return Gallery(ids, ids, (1,) * len(ids), vectors, "ab" * 32, 1)


def exact_top1(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.concatenate([np.argmax(chunk @ gallery.T, axis=1) for chunk in np.array_split(queries, 32)])


def timed(index: GalleryIndex, queries: np.ndarray, truth: np.ndarray | None) -> dict[str, Any]:
    """Each query alone (k=2, as `identity.match.decide` asks): wall and thread-CPU ms, and recall@1."""
    import numpy as np

    for q in queries[:5]:
        index.search(q[None], k=2)
    wall, cpu, top = [], [], []
    for q in queries:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        hits = index.search(q[None], k=2)[0]
        wall.append((time.perf_counter_ns() - t0) / 1e6)
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        top.append(hits[0].index)
    out: dict[str, Any] = {"latency_ms": percentiles(wall), "thread_cpu_ms": percentiles(cpu)}
    if truth is not None:
        out["recall_at_1"] = float(np.mean(np.asarray(top) == truth[: len(top)]))
        out["misses"] = int(np.sum(np.asarray(top) != truth[: len(top)]))
    return out


def hnsw_case(
    gallery: Gallery,
    queries: np.ndarray,
    truth: np.ndarray,
    setting: tuple[int, int, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    from edgeface.identity.index import GalleryIndex, IndexSettings

    m, ef_c, reduce_to = setting
    settings = IndexSettings(
        kind="hnsw", m=m, ef_construction=ef_c, reduce_to=reduce_to, rerank=args.rerank, num_threads=2
    )
    rss0, t0, c0 = rss_bytes(), time.perf_counter(), time.process_time()
    index = GalleryIndex(gallery, settings)
    build: dict[str, Any] = {
        "build_s": round(time.perf_counter() - t0, 2),
        "build_cpu_s": round(time.process_time() - c0, 2),
    }
    # per identity: the graph as hnswlib saves it, and the process's growth (adds its label map and locks);
    # a live HNSW index holds two graphs (the standby), both beside the gallery's own vectors
    build["graph_bytes_per_identity"] = round(index.graph_bytes / len(gallery), 1)
    build["rss_growth_bytes_per_identity"] = round((rss_bytes() - rss0) / len(gallery), 1)
    build["graph_dim"] = index.graph_dim
    log.info("  hnsw M=%d ef_construction=%d reduce_to=%d built in %.1f s, %s", m, ef_c, reduce_to,
             build["build_s"], build)  # fmt: skip
    per_ef = {}
    for ef in args.ef:
        index.set_ef(max(ef, args.rerank))  # the bench varies ef on one graph; the device sets it once
        per_ef[str(ef)] = timed(index, queries, truth)
        log.info("    ef=%d recall %.4f p99 %.3f ms", ef, per_ef[str(ef)]["recall_at_1"],
                 per_ef[str(ef)]["latency_ms"]["p99"])  # fmt: skip
    return {"M": m, "ef_construction": ef_c, "reduce_to": reduce_to, "rerank": args.rerank, **build,
            "ef": per_ef}  # fmt: skip


def bench_vectors(kind: str, dim: int, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from edgeface.identity.index import GalleryIndex, IndexSettings

    rng = np.random.default_rng(args.seed + dim)
    make = clustered if kind == "clustered" else uniform
    vectors, queries = make(args.n, dim, args.queries, args, rng)
    truth = exact_top1(vectors, queries)
    gallery = as_gallery(vectors)
    log.info("%s %d-d, %d identities", kind, dim, args.n)
    exact = timed(GalleryIndex(gallery, IndexSettings(kind="exact")), queries[: args.exact_queries], None)
    settings = [hnsw_case(gallery, queries, truth, setting, args) for setting in args.settings]
    return {"kind": kind, "dim": dim, "n": args.n, "queries": len(queries), "exact": exact, "hnsw": settings}


def exact_sizes(dim: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Exact search latency over gallery sizes: where its p99 leaves the budget."""
    import numpy as np

    from edgeface.identity.index import GalleryIndex, IndexSettings

    rng = np.random.default_rng(args.seed)
    rows = []
    for n in args.exact_sizes:
        vectors, queries = uniform(n, dim, min(args.exact_queries, n), args, rng)
        index = GalleryIndex(as_gallery(vectors), IndexSettings(kind="exact"))
        rows.append({"n": n, "dim": dim, **timed(index, queries, None)})
    return rows


def recommend(
    cases: list[dict[str, Any]], sizes: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """The cheapest (M, ef_construction, reduce_to, ef) meeting recall and p99 on every vector kind and dim."""
    budget, target = args.budget_ms, args.min_recall
    candidates = []
    for m, ef_c, reduce_to in args.settings:
        for ef in args.ef:
            rows = [
                next(
                    h
                    for h in c["hnsw"]
                    if (h["M"], h["ef_construction"], h.get("reduce_to", 0)) == (m, ef_c, reduce_to)
                )["ef"][str(ef)]
                for c in cases
            ]
            if not rows:
                continue
            worst_recall = min(r["recall_at_1"] for r in rows)
            worst_p99 = max(r["latency_ms"]["p99"] for r in rows)
            worst_cpu_p99 = max(r["thread_cpu_ms"]["p99"] for r in rows)
            candidates.append({"M": m, "ef_construction": ef_c, "reduce_to": reduce_to, "ef": ef,
                               "worst_recall_at_1": worst_recall, "worst_p99_ms": worst_p99,
                               "worst_thread_cpu_p99_ms": worst_cpu_p99, "meets_recall": worst_recall >= target,
                               "meets_p99_wall": worst_p99 <= budget,
                               "meets_p99_cpu": worst_cpu_p99 <= budget})  # fmt: skip
    meeting = [c for c in candidates if c["meets_recall"] and c["meets_p99_cpu"]]
    chosen = min(meeting, key=lambda c: c["worst_thread_cpu_p99_ms"]) if meeting else None
    fallback = [c for c in candidates if c["worst_thread_cpu_p99_ms"] <= args.fallback_budget_ms]
    if chosen is None and fallback:  # recall first: a door searches once per track decision, not per frame
        chosen = max(fallback, key=lambda c: (c["worst_recall_at_1"], -c["worst_thread_cpu_p99_ms"]))
    if chosen is None and candidates:
        chosen = min(candidates, key=lambda c: c["worst_thread_cpu_p99_ms"])
    within = [r["n"] for r in sizes if r["thread_cpu_ms"]["p99"] <= budget]
    kinds = " and ".join(sorted({c["kind"] for c in cases})) or "no"
    return {
        "rule": f"recall@1 >= {target} on {kinds} vectors at every dim with p99 <= {budget} ms "
        "(thread CPU time: the host is shared, see latency_ms for wall clock; hnswlib over the gallery "
        "projected onto reduce_to principal axes, 0: full vectors, its rerank candidates re-ranked exactly); "
        "among those the lowest p99; "
        f"if none meets, the highest recall with p99 <= {args.fallback_budget_ms} ms, else the fastest",
        "hnsw": chosen,
        "met": bool(meeting),
        "exact_p99_within_budget_up_to": max(within) if within else None,
        "candidates": candidates,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20k identities, one setting, fewer queries")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, nargs="+", default=[512, 128])
    p.add_argument("--kinds", nargs="+", default=["clustered", "uniform"], choices=["clustered", "uniform"])
    p.add_argument(
        "--settings",
        nargs="+",
        default=["16:100:0", "32:200:0", "32:200:64"],
        help="hnswlib M:ef_construction[:reduce_to] (reduce_to: graph dims, 0 = full vectors)",
    )
    p.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--rerank", type=int, default=32, help="hnswlib candidates re-ranked by exact cosine")
    p.add_argument("--queries", type=int, default=1000, help="per vector kind (recall resolution 1/queries)")
    p.add_argument("--exact-queries", type=int, default=200)
    p.add_argument("--exact-sizes", type=int, nargs="+", default=[1000, 3000, 10_000, 30_000, 100_000])
    p.add_argument("--decay", type=float, default=1.0, help="clustered: variance of dimension i ~ i^-decay")
    p.add_argument("--samples", type=int, default=5, help="clustered: enrolment samples per identity")
    p.add_argument("--sample-cos", type=float, default=0.75, help="clustered: cosine of a sample to its mean")
    p.add_argument("--query-cos", type=float, default=0.7, help="uniform: cosine of a query to its source")
    p.add_argument("--min-recall", type=float, default=0.999)
    p.add_argument("--budget-ms", type=float, default=1.0, help="p99 per-query latency budget")
    p.add_argument(
        "--fallback-budget-ms", type=float, default=5.0, help="p99 allowed when nothing meets both targets"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--finish-from",
        type=Path,
        help="a run cut short: its .partial.json cases, recommended from as they are",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.settings, args.ef, args.queries = 20_000, ["16:100:0", "32:200:64"], [64, 128], 500
        args.exact_sizes = [1000, 10_000]
    args.settings = [tuple(int(v) for v in [*s.split(":"), "0"][:3]) for s in args.settings]
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy is imported
        os.environ[var] = "1"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    load_start = list(os.getloadavg())
    cases = json.loads(args.finish_from.read_text()) if args.finish_from else []
    for dim in [] if args.finish_from else args.dims:
        for kind in args.kinds:
            cases.append(bench_vectors(kind, dim, args))
            if args.out:  # what is measured so far survives a run cut short
                args.out.with_suffix(".partial.json").write_text(json.dumps(cases, indent=1))
    sizes = [row for dim in args.dims for row in exact_sizes(dim, args)]
    params = {
        "n": args.n,
        "dims": args.dims,
        "kinds": args.kinds,
        "measured": [f"{case['kind']} {case['dim']}-d" for case in cases],
        "settings_M_ef_construction_reduce_to": args.settings,
        "ef": args.ef,
        "rerank": args.rerank,
        "queries": args.queries,
        "exact_queries": args.exact_queries,
        "exact_sizes": args.exact_sizes,
        "clustered": {"decay": args.decay, "samples": args.samples, "sample_cos": args.sample_cos},
        "uniform_query_cos": args.query_cos,
        "query": "k=2, batch 1, 1 thread, edgeface.identity.index.GalleryIndex.search",
        "build_threads": 2,
        "min_recall": args.min_recall,
        "budget_ms": args.budget_ms,
        "loadavg_at_start": load_start,
        "loadavg_at_end": list(os.getloadavg()),
        "seed": args.seed,
        "quick": args.quick,
        "finished_from_partial": str(args.finish_from) if args.finish_from else None,
        "versions": {k: package_version(k) for k in ("numpy", "hnswlib")},
    }
    results = {"cases": cases, "exact_by_size": sizes, "recommendation": recommend(cases, sizes, args)}
    emit("search", params, results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
