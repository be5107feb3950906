#!/usr/bin/env python3
"""How good and how fast are `results regressions` and `results outliers`? One JSON object.

A labelled synthetic benchmark history: SKUs with 8 nodes each, series (benchmark x params x SKU)
with known step changes of 2-20 % (software changes: every node moves) under 1-5 % CV noise,
a few slow and a few noisy nodes, and a few outlier results (single spikes of +-25-40 %, which
are not changes). Against its labels it reports:

  regressions: precision, recall and F1 per stratum (CV x change size), the goal stratum being
               changes >= 5 % at <= 2 % CV; the cause said (software/node); detection delay in
               results (replaying each labelled change result by result, as a live lab sees it)
  outliers:    precision/recall of slow and noisy nodes, false quarantines (healthy nodes that
               would be drained)
  timing:      `regressions` over 1,000 series x 500 results (analysis alone, and the service's
               path from a migrated SQLite database), the import of 500,000 JSON lines; wall and
               CPU seconds; how many series the cheap pre-test sent to E-Divisive, and whether
               its verdicts equal E-Divisive run on every series

    .venv/bin/python bench/results_quality.py            # everything (about 2 minutes here)
    .venv/bin/python bench/results_quality.py --quick    # small sizes (the test suite runs this)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpufleet.results import analysis  # noqa: E402
from gpufleet.results.analysis import group_series, outliers, quarantine, regressions  # noqa: E402
from gpufleet.results.model import Result, series_key  # noqa: E402

SKUS = ("A100-SXM4-80GB", "H100-SXM5-80GB", "L40S", "RTX-4090")
BENCHMARKS = (("resnet50-train", "images_per_s", True, 2800.0), ("bert-large-train", "seq_per_s", True, 410.0),
              ("gemm-bf16", "tflops", True, 290.0), ("nccl-allreduce", "busbw_gbps", True, 180.0),
              ("llama-infer", "latency_ms", False, 42.0), ("stream-triad", "gb_per_s", True, 1500.0))
PARAMS = ({"batch": 64}, {"batch": 256}, {"precision": "fp16"}, {"precision": "bf16"})
CVS = (0.01, 0.02, 0.03, 0.05)
STEPS = (0.02, 0.03, 0.05, 0.10, 0.20)
NODES_PER_SKU = 8
T0 = 1_780_000_000.0
TOLERANCE = 5  # a detection within 5 results of the labelled change matches it
GOAL = {"f1": 0.9, "false_quarantines": 0, "delay_results": 5}


@dataclass
class Labels:
    changes: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # series -> [(index, step)]
    cv: dict[str, float] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)
    noisy: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)


def fleet(rng: random.Random, slow: int, noisy: int) -> tuple[dict[str, list[str]], dict[str, float], dict[str, float], Labels]:
    """Nodes per SKU; which are slow (x0.85-0.92) and which noisy (3-4x the series' noise)."""
    nodes = {sku: [f"{sku.split('-')[0].lower()}-{i:02d}" for i in range(NODES_PER_SKU)] for sku in SKUS}
    every = [n for ns in nodes.values() for n in ns]
    picked = rng.sample(every, slow + noisy)
    factor = {n: rng.uniform(0.85, 0.92) for n in picked[:slow]}
    extra = {n: rng.uniform(3.0, 4.0) for n in picked[slow:]}
    return nodes, factor, extra, Labels(slow=set(factor), noisy=set(extra), nodes=set(every))


def history(series: int, per_series: int, seed: int = 7, slow: int = 3, noisy: int = 3,
            spike_rate: float = 0.004) -> tuple[list[Result], Labels]:
    """`series` series of `per_series` results each, with their labels."""
    rng = random.Random(seed)
    nodes, factor, extra, labels = fleet(rng, slow, noisy)
    out: list[Result] = []
    combos = [(b, p, s) for b in BENCHMARKS for p in PARAMS for s in SKUS]
    for k in range(series):
        (bench, metric, hib, base), params, sku = combos[k % len(combos)]
        driver = f"55{k // len(combos)}.{k % 7}"  # more series than combos: another driver, another series
        cv = CVS[k % len(CVS)]
        changes = _plan(rng, per_series)
        level = base * rng.uniform(0.9, 1.1)
        key = None
        for i in range(per_series):
            for at, step in changes:
                if i == at:
                    level *= 1 + step
            node = rng.choice(nodes[sku])
            v = rng.gauss(level, level * cv * extra.get(node, 1.0))
            v *= factor.get(node, 1.0) if hib else 1 / factor.get(node, 1.0)
            if rng.random() < spike_rate:
                v *= rng.choice((0.6, 0.7, 1.3, 1.4))
            r = Result(benchmark=bench, metric=metric, value=v, at=T0 + i * 3600 + k, unit="",
                       higher_is_better=hib, params=params, node=node, gpu_model=sku.split("-")[0].lower(),
                       sku=sku, driver=driver, commit=f"c{k}-{i}", job_id=k * per_series + i + 1, id=len(out) + 1)
            r.series = key = key or series_key(r)
            out.append(r)
        labels.changes[key] = [(at, step if hib else -step) for at, step in changes]  # step: + is better
        labels.cv[key] = cv
    return out, labels


def _plan(rng: random.Random, n: int) -> list[tuple[int, float]]:
    """None, one or two software changes, at least 60 results from the start, each other and 30 from the end."""
    roll = rng.random()
    count = 0 if roll < 0.35 else 1 if roll < 0.85 else 2
    out: list[tuple[int, float]] = []
    for _ in range(count):
        for _try in range(20):
            at = rng.randrange(60, n - 30)
            if all(abs(at - a) >= 60 for a, _ in out):
                out.append((at, rng.choice(STEPS) * rng.choice((-1, 1))))
                break
    return sorted(out)


# ---- regressions against the labels -----------------------------------------------------------

def _stratum(cv: float, step: float | None) -> str:
    noise = "cv<=2%" if cv <= 0.02 else "cv>2%"
    if step is None:
        return noise
    size = "step>=5%" if abs(step) >= 0.05 else "step<5%"
    return f"{noise},{size}"


def score_regressions(results: list[Result], labels: Labels) -> dict:
    found = regressions(results)
    index = {key: {r.id: i for i, r in enumerate(rs)} for key, rs in group_series(results).items()}
    by_series: dict[str, list] = defaultdict(list)
    for g in found:
        by_series[g.series].append(g)
    tally: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fn": 0, "fp": 0})
    causes: dict[str, int] = defaultdict(int)
    wrong_direction = 0
    for key, changes in labels.changes.items():
        cv = labels.cv[key]
        dets = sorted(by_series.get(key, []), key=lambda g: index[key][g.first.id])
        used = set()
        for at, step in changes:
            hit = next((j for j, g in enumerate(dets) if j not in used
                        and abs(index[key][g.first.id] - at) <= TOLERANCE), None)
            s = tally[_stratum(cv, step)]
            if hit is None:
                s["fn"] += 1
                continue
            used.add(hit)
            s["tp"] += 1
            causes[dets[hit].cause.cause] += 1
            wrong_direction += (dets[hit].direction == "improvement") != (step > 0)
        # a false detection is charged to the series' stratum (its smallest change, or none)
        smallest = min((s for _, s in changes), key=abs, default=None)
        tally[_stratum(cv, smallest)]["fp"] += len(dets) - len(used)
    strata = {k: _prf(v) for k, v in sorted(tally.items())}
    goal = _prf(_sum(v for k, v in tally.items() if k.startswith("cv<=2%") and not k.endswith("step<5%")))
    return {"detections": len(found), "all": _prf(_sum(tally.values())), "goal_stratum": goal,
            "strata": strata, "cause_of_matched": dict(causes), "wrong_direction": wrong_direction}


def _sum(parts) -> dict[str, int]:
    out = {"tp": 0, "fn": 0, "fp": 0}
    for p in parts:
        for k in out:
            out[k] += p[k]
    return out


def _prf(t: dict[str, int]) -> dict:
    p = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else 1.0
    r = t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else 1.0
    return {**t, "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def detection_delay(results: list[Result], labels: Labels, limit: int, horizon: int = 20) -> dict:
    """Replay: for changes of the goal stratum, the number of results after the change (the
    first changed one counts 1) until `regressions` reports it within TOLERANCE."""
    series = group_series(results)
    delays, missed = [], 0
    cases = [(key, at, i) for key, changes in sorted(labels.changes.items()) if labels.cv[key] <= 0.02
             for i, (at, step) in enumerate(changes) if abs(step) >= 0.05][:limit]
    for key, at, _ in cases:
        rs = series[key]
        pos = {id(r): i for i, r in enumerate(rs)}
        for k in range(1, horizon + 1):
            if any(abs(pos[id(g.first)] - at) <= TOLERANCE for g in regressions(rs[:at + k])):
                delays.append(k)
                break
        else:
            missed += 1
    delays.sort()
    return {"changes": len(cases), "detected_within_horizon": len(delays), "missed": missed,
            "horizon": horizon, "median": statistics.median(delays) if delays else None,
            "p90": delays[int(0.9 * (len(delays) - 1))] if delays else None, "max": max(delays, default=None),
            "within_5": sum(d <= 5 for d in delays)}


# ---- outliers against the labels --------------------------------------------------------------

def score_outliers(results: list[Result], labels: Labels) -> dict:
    found = outliers(results)
    flagged = {(o.stats.node, o.stats.kind) for o in found}
    slow = {n for n, k in flagged if k == "slow"}
    noisy = {n for n, k in flagged if k == "noisy"}
    bad = labels.slow | labels.noisy
    drained = {q.node for q in quarantine(found)}
    tp = len((slow | noisy) & bad)
    fp = len((slow | noisy) - bad)
    out = {"reported": len(found), "nodes_flagged": len(slow | noisy),
           "slow": _prf({"tp": len(slow & labels.slow), "fp": len(slow - labels.slow), "fn": len(labels.slow - slow)}),
           "noisy": _prf({"tp": len(noisy & labels.noisy), "fp": len(noisy - labels.noisy),
                          "fn": len(labels.noisy - noisy)}),
           "any": _prf({"tp": tp, "fp": fp, "fn": len(bad - (slow | noisy))}),
           "quarantined": sorted(drained), "false_quarantines": sorted(drained - bad),
           "missed_bad_nodes": sorted(bad - drained)}
    return out


# ---- timing -----------------------------------------------------------------------------------

def timed(fn, *a, **kw):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*a, **kw)
    return out, round(time.perf_counter() - w, 3), round(time.process_time() - c, 3)


def timing(series: int, per_series: int, import_lines: int) -> dict:
    results, _ = history(series, per_series, seed=11)
    analysis.STATS.clear()
    found, wall, cpu = timed(regressions, results)
    stats = dict(analysis.STATS)
    analysis.PRETEST = False
    try:
        every, wall_all, cpu_all = timed(regressions, results)
    finally:
        analysis.PRETEST = True
    same = _verdicts(found) == _verdicts(every)
    out = {"series": series, "results": len(results), "regressions": len(found),
           "analysis_wall_s": wall, "analysis_cpu_s": cpu, "pretest": stats,
           "without_pretest_wall_s": wall_all, "without_pretest_cpu_s": cpu_all,
           "pretest_changes_nothing": same,
           "verdict_differences": len(_verdicts(found) ^ _verdicts(every))}
    out.update(import_and_query(import_lines, results[:import_lines]))
    return out


def _verdicts(found) -> set:
    return {(g.series, g.first.id, g.method, g.direction) for g in found}


def import_and_query(n: int, results: list[Result]) -> dict:
    """`results import` of n JSON lines (the service: parse, check, one transaction into SQLite),
    then `results regressions` through the service (query + analysis)."""
    from gpufleet.domain import User
    from gpufleet.services.context import Ctx
    from gpufleet.services import results as svc
    from gpufleet.store import Store, make_engine, migrate

    lines = [json.dumps({"benchmark": r.benchmark, "metric": r.metric, "value": r.value,
                         "higher_is_better": r.higher_is_better, "params": r.params, "node": r.node,
                         "gpu_model": r.gpu_model, "sku": r.sku, "driver": r.driver, "commit": r.commit,
                         "timestamp": r.at}) for r in results[:n]]
    with tempfile.TemporaryDirectory() as d:
        engine = make_engine(f"sqlite:///{d}/bench.db")
        migrate(engine)
        ctx = Ctx(store=Store(engine), executor=None, clock=lambda: T0 + 10**7)  # type: ignore[arg-type]
        admin = User("bench", "lab", admin=True)
        imported, wall, cpu = timed(svc.import_lines, ctx, admin, lines)
        found, qwall, qcpu = timed(svc.find_regressions, ctx, admin)
        engine.dispose()
    return {"import_lines": imported, "import_wall_s": wall, "import_cpu_s": cpu,
            "service_regressions": len(found), "service_regressions_wall_s": qwall,
            "service_regressions_cpu_s": qcpu}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    p.add_argument("--series", type=int, default=384, help="labelled series (quality)")
    p.add_argument("--per-series", type=int, default=300)
    p.add_argument("--delay-cases", type=int, default=60)
    p.add_argument("--timing-series", type=int, default=1000)
    p.add_argument("--timing-per-series", type=int, default=500)
    p.add_argument("--import-lines", type=int, default=500_000)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    if a.quick:
        a.series, a.per_series, a.delay_cases = 96, 200, 10
        a.timing_series, a.timing_per_series, a.import_lines = 40, 200, 4000
    results, labels = history(a.series, a.per_series, seed=a.seed)
    reg, rw, rc = timed(score_regressions, results, labels)
    delay, dw, dc = timed(detection_delay, results, labels, a.delay_cases)
    outl, ow, oc = timed(score_outliers, results, labels)
    report = {
        "bench": "results_quality", "seed": a.seed,
        "history": {"series": a.series, "results_per_series": a.per_series, "results": len(results),
                    "labelled_changes": sum(len(c) for c in labels.changes.values()), "nodes": len(labels.nodes),
                    "slow_nodes": sorted(labels.slow), "noisy_nodes": sorted(labels.noisy)},
        "regressions": {**reg, "wall_s": rw, "cpu_s": rc},
        "detection_delay_results": {**delay, "wall_s": dw, "cpu_s": dc},
        "outliers": {**outl, "wall_s": ow, "cpu_s": oc},
        "timing": timing(a.timing_series, a.timing_per_series, a.import_lines),
    }
    t = report["timing"]
    report["goals"] = {
        "f1_goal_stratum": reg["goal_stratum"]["f1"] >= GOAL["f1"],
        "zero_false_quarantines": not outl["false_quarantines"],
        "delay_within_5": delay["missed"] == 0 and (delay["max"] or 0) <= GOAL["delay_results"],
        "regressions_under_10s": t["analysis_wall_s"] < 10 and t["service_regressions_wall_s"] < 10,
        "import_under_30s": t["import_wall_s"] < 30,
    }
    return report


if __name__ == "__main__":
    from gpufleet.observability.logs import configure_logging

    configure_logging("json", "WARNING", sys.stderr)  # the import's audit line: not into the JSON
    print(json.dumps(main(), indent=1))
