"""bench/results_quality.py in its quick mode: the labelled history still meets the quality bars
(F1 of the goal stratum, no false quarantine, every bad node found, the pre-test's verdicts)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "results_quality.py"


def test_quick_quality_bench_meets_the_bars():
    spec = importlib.util.spec_from_file_location("results_quality", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["results_quality"] = bench  # its dataclasses look themselves up there
    spec.loader.exec_module(bench)
    report = bench.main(["--quick"])
    goal = report["regressions"]["goal_stratum"]
    assert goal["f1"] >= 0.9, goal
    assert report["regressions"]["wrong_direction"] == 0
    assert report["outliers"]["false_quarantines"] == [] and report["outliers"]["missed_bad_nodes"] == []
    delay = report["detection_delay_results"]
    assert delay["missed"] == 0 and delay["median"] <= 5
    assert report["timing"]["import_lines"] == 4000 and report["timing"]["service_regressions"] > 0
