"""The README's performance section is generated from the committed benchmark results, never typed in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_performance_block_matches_bench_results() -> None:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    report = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(report)  # type: ignore[union-attr]
    readme = (ROOT / "README.md").read_text()
    block = readme.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert block == "\n" + report.render(), "run `python bench/report.py --write` after a benchmark run"
