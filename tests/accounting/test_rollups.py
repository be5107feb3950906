"""The report over the rollups equals a brute-force computation from the attempts themselves:
random histories over 40 days (requeued attempts, gangs over two models, multi-day runs, runs
still going at `now`), periods cut anywhere (mid-day, on day boundaries, inside one day, after
now), every grouping, and a tenant's own view; on SQLite and PostgreSQL."""

from __future__ import annotations

import random

import pytest

from gpufleet.accounting import usage_report
from gpufleet.domain import Gpu, Job, JobSpec, JobState, Node, NodeKind, Tenant
from tests.accounting.conftest import end, requeue, run

DAY = 86400.0
T0 = 25 * DAY + 5 * 3600.0  # not on a day boundary; the history covers the 32-day block of days 32-63
SPAN_DAYS = 45
NODES = {  # name -> (kind, model, sku, gpus)
    "dgx1": ("server", "a100", "A100-SXM4-80GB", 8), "hgx1": ("server", "h100", "H100-SXM5-80GB", 8),
    "desk1": ("desktop", "rtx4090", "RTX-4090", 2),
}
TENANTS = ("vision", "speech", "nlp")
USERS = {"ann": "vision", "bea": "vision", "cem": "speech", "dan": "nlp"}
BYS = [("tenant",), ("user", "gpu_model"), ("sku",), ("kind",), ("node",), ("node", "tenant"),
       ("label:purpose",), ("tenant", "label:purpose"), ("gpu_model", "sku", "kind")]


def history(store, seed: int) -> tuple[list[dict], float]:
    store.sync_nodes([Node(n, NodeKind(k), gpus=tuple(Gpu(i, m) for i in range(g)), labels={"sku": s})
                      for n, (k, m, s, g) in NODES.items()])
    for t in TENANTS:
        store.put_tenant(Tenant(t))
    rnd = random.Random(seed)
    attempts: list[dict] = []
    last = T0
    for _ in range(60):
        user = rnd.choice(sorted(USERS))
        labels = rnd.choice(({"purpose": "dev"}, {"purpose": "training"}, {}))
        at = T0 + rnd.random() * SPAN_DAYS * DAY
        gang = rnd.random() < 0.25
        spec = JobSpec(command=("true",), gpus=1, nodes=2 if gang else 1, tenant=USERS[user], labels=labels)
        job = Job(0, spec, user=user, submitted_at=at)
        store.add_jobs([job], at, user)
        t, prev = at, at
        for n in range(rnd.choice((1, 1, 2, 3))):
            t += rnd.random() * 3 * 3600
            nodes = ["dgx1", "hgx1"] if gang else [rnd.choice(sorted(NODES))]
            alloc = [(name, tuple(range(rnd.randint(1, 2)))) for name in nodes]
            run(store, job, t, *alloc)
            length = rnd.choice((rnd.random() * 7200, rnd.random() * 2.5 * DAY))
            a = {"tenant": USERS[user], "user": user, "labels": labels, "start": t, "end": None,
                 "wait": t - prev, "parts": [(name, gpus) for name, gpus in alloc]}
            attempts.append(a)
            if rnd.random() < 0.15:  # still running
                break
            t += length
            a["end"] = t
            if n < 2 and rnd.random() < 0.5:
                requeue(store, job, t)
                prev = t
            else:
                end(store, job, t, rnd.choice((JobState.SUCCEEDED, JobState.FAILED)))
                break
            last = max(last, t)
        last = max(last, t)
    return attempts, last + 3600.0


def expected(attempts, start: float, stop: float, now: float, by, tenant=None) -> dict:
    stop = min(stop, now)
    out: dict[tuple, list[float]] = {}
    for a in attempts:
        if tenant is not None and a["tenant"] != tenant:
            continue
        ends = now if a["end"] is None else a["end"]
        for i, (node, gpus) in enumerate(a["parts"]):
            kind, model, sku, _ = NODES[node]
            facts = {"tenant": a["tenant"], "user": a["user"], "gpu_model": model, "sku": sku, "kind": kind,
                     "node": node, "label:purpose": a["labels"].get("purpose", "-")}
            acc = out.setdefault(tuple(facts[k] for k in by), [0.0, 0, 0, 0.0])
            acc[0] += len(gpus) * max(0.0, min(ends, stop) - max(a["start"], start))
            if i == 0 and a["start"] < stop and ends > start:  # held GPUs in [start, min(stop, now))
                acc[1] += 1
                if a["start"] >= start:
                    acc[2] += 1
                    acc[3] += a["wait"]
    return {k: v for k, v in out.items() if v[0] > 0 or v[1]}


def periods(now: float) -> list[tuple[float, float]]:
    d = int(T0 // DAY)
    return [(T0 - DAY, now + DAY),  # everything
            ((d + 1) * DAY, (d + 4) * DAY),  # whole days only
            (T0 + 2 * DAY, T0 + 41 * DAY),  # a whole 32-day block, days around it, partial days
            (32 * DAY, 64 * DAY),  # exactly the block
            (T0 + 7000.0, T0 + 3 * DAY + 555.0),  # partial days at both ends
            ((d + 2) * DAY + 100.0, (d + 2) * DAY + 9000.0),  # inside one day
            ((d + 3) * DAY, (d + 3) * DAY + 1.0),  # one second on a boundary
            (now - 5000.0, now + 5 * DAY),  # to after now: only what runs
            (now + DAY, now + 2 * DAY)]  # all after now


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollup_report_equals_brute_force(store, seed):
    attempts, now = history(store, seed)
    assert any(a["end"] is None for a in attempts) or seed != 1  # seed 1 leaves runs going
    assert any(a["end"] is not None and a["end"] - a["start"] > DAY for a in attempts)  # multi-day runs
    for start, stop in periods(now):
        for by in BYS:
            for tenant in (None, "vision"):
                want = expected(attempts, start, stop, now, by, tenant)
                r = usage_report(store.engine, start, stop, now, by, tenant)
                got = {tuple(g.key[k] for k in by): [g.gpu_s, g.attempts, g.started, g.wait_s] for g in r.groups}
                where = f"period {start}-{stop} by {by} tenant {tenant}"
                assert set(got) == set(want), where
                for k, v in want.items():
                    assert got[k][0] == pytest.approx(v[0], rel=1e-9, abs=1e-6), (where, k)
                    assert got[k][1:3] == v[1:3], (where, k)
                    assert got[k][3] == pytest.approx(v[3], rel=1e-9, abs=1e-6), (where, k)
                assert r.total.gpu_s == pytest.approx(sum(v[0] for v in want.values()), rel=1e-9, abs=1e-6)
