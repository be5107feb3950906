#!/usr/bin/env python3
"""`usage` over N finished attempts (default 1,000,000) in SQLite and PostgreSQL: goal under 2 s.

Loads a year of attempt_usage rows in bulk (sqlite3 executemany / PostgreSQL COPY) into a fresh,
migrated database, with the rollups the live path writes when an attempt closes (computed by the
same function, store.usage.rollup), then times `usage_report` for each grouping over the whole
year, the last 30 days and one tenant's view, beside the report as it was before the rollups
(bench/usage_before.py: one GROUP BY over attempt_usage) on the same data. Prints one JSON object
(wall and CPU seconds per query, rows in the rollups). Not part of the test suite.

Data: 400 users in 20 tenants, each mostly on one GPU model (4 models, 50 nodes each, 2 SKUs per
model) and one purpose label; 70 % of the rows sampled (busy GPU-seconds); 1 % run 1-5 days.

    python bench/usage.py [--attempts 1000000] [--pg URL] [--no-before]   (URL: $GPUFLEET_TEST_PG_URL)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sqlalchemy import create_engine, text  # noqa: E402

import usage_before  # noqa: E402
from gpufleet.accounting import usage_report  # noqa: E402
from gpufleet.accounting.report import describe  # noqa: E402
from gpufleet.store import make_engine, migrate  # noqa: E402
from gpufleet.store.usage import (  # noqa: E402
    DAY_KEY, MEASURES, NODE_BLOCK_KEY, NODE_KEY, ROW_COLUMNS, blocks, labels_text, rollup,
)

DAY = 86400.0
T0 = 1_700_006_400.0  # a UTC midnight
HISTORY_DAYS = 365
MODELS = (("a100", "server", ("A100-SXM4-80GB", "A100-PCIE-40GB")), ("h100", "server", ("H100-SXM5-80GB", "H100-NVL")),
          ("rtx4090", "desktop", ("RTX-4090", "RTX-4090-D")), ("orin", "embedded", ("ORIN-AGX-64GB", "ORIN-NX-16GB")))
PURPOSES = ("dev", "functional", "perf", "training")
COLUMNS = ("id", "n", *[c for c in ROW_COLUMNS if c not in ("job_id",)], "job_id")
QUERIES = [("all", ("tenant",), None), ("all", ("user",), None), ("all", ("tenant", "gpu_model"), None),
           ("all", ("gpu_model", "kind"), None), ("all", ("sku",), None), ("all", ("label:purpose",), None),
           ("all", ("tenant", "label:purpose"), None), ("all", ("node",), None), ("all", ("node", "tenant"), None),
           ("30d", ("tenant", "gpu_model"), None), ("30d", ("user",), "team7"), ("all", ("user",), "team7")]


def rows(n: int, jobs: int):
    """(id, n, part, node, kind, gpu_model, sku, tenant, user, labels, gpus, started_at, ended_at,
    wait_s, busy_gpu_s, job_id) -- one part per attempt."""
    rnd = random.Random(42)
    for i in range(n):
        u = rnd.randrange(400)
        m = u % 4 if rnd.random() < 0.85 else rnd.randrange(4)
        model, kind, skus = MODELS[m]
        node = rnd.randrange(50)
        purpose = PURPOSES[(u // 4) % 4] if rnd.random() < 0.8 else rnd.choice(PURPOSES)
        start = T0 + rnd.random() * HISTORY_DAYS * DAY
        length = rnd.uniform(DAY, 5 * DAY) if rnd.random() < 0.01 else rnd.expovariate(1 / 3600.0)
        gpus = rnd.choice((1, 2, 4, 8))
        busy = gpus * length * rnd.random() if rnd.random() < 0.7 else None
        yield (i + 1, i // jobs + 1, 0, f"{model}-{node:03d}", kind, model, skus[node % 2], f"team{u % 20}",
               f"user{u}", labels_text({"purpose": purpose}), gpus, start, start + length, rnd.random() * 600, busy,
               i % jobs + 1)


def rollups(n: int, jobs: int):
    as_dicts = (dict(zip(COLUMNS, r)) for r in rows(n, jobs))
    daily, nodes, node_blocks, per_job = rollup(as_dicts)
    d = [(*k, *v) for k, v in daily.items()]
    b = [(*k, *v) for k, v in blocks(daily).items()]
    nd = [(*k, *v) for k, v in nodes.items()]
    nb = [(*k, *v) for k, v in node_blocks.items()]
    j = [(job, v[3], v[4], v[0], v[1], v[2]) for job, v in per_job.items()]
    return d, b, nd, nb, j


TABLES = {"usage_daily": ("day", *DAY_KEY, *MEASURES), "usage_blocks": ("block", *DAY_KEY, *MEASURES),
          "usage_daily_node": ("day", *NODE_KEY, *MEASURES), "usage_blocks_node": ("block", *NODE_BLOCK_KEY, *MEASURES),
          "usage_jobs": ("job_id", "tenant", "user", "first_at", "last_at", "idle_gpu_s")}


def load_sqlite(path: Path, n: int, jobs: int) -> float:
    import sqlite3

    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    t = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.executemany('INSERT INTO jobs (id, name, "user", tenant, state, priority, spec, reason, submitted_at,'
                   ' allocation, restarts, attained_gpu_s, action_reason) VALUES (?, "", "u", "t", "SUCCEEDED",'
                   ' 0, "{}", "", 0, "[]", 0, 0, "")', ((j,) for j in range(1, jobs + 1)))
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    db.executemany(f"INSERT INTO attempt_usage ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})", rows(n, jobs))
    for table, values in zip(TABLES, rollups(n, jobs)):
        cols = ", ".join(f'"{c}"' for c in TABLES[table])
        db.executemany(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(TABLES[table]))})", values)
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - t


def load_pg(url: str, n: int, jobs: int) -> tuple[str, float, object]:
    name = f"gpufleet_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = url.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(db_url)
    migrate(engine)
    t = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy('COPY jobs (id, name, "user", tenant, state, priority, spec, reason, submitted_at, '
                      'allocation, restarts, attained_gpu_s, action_reason) FROM STDIN') as cp:
            for j in range(1, jobs + 1):
                cp.write_row((j, "", "u", "t", "SUCCEEDED", 0, "{}", "", 0, "[]", 0, 0, ""))
        cols = ", ".join(f'"{c}"' for c in COLUMNS)
        with cur.copy(f"COPY attempt_usage ({cols}) FROM STDIN") as cp:
            for r in rows(n, jobs):
                cp.write_row(r)
        for table, values in zip(TABLES, rollups(n, jobs)):
            cols = ", ".join(f'"{c}"' for c in TABLES[table])
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                for r in values:
                    cp.write_row(r)
        raw.commit()
        cur.execute("SELECT setval(pg_get_serial_sequence('attempt_usage', 'id'), max(id)) FROM attempt_usage")
        for table in TABLES:
            cur.execute(f"ANALYZE {table}")
        raw.commit()
    finally:
        raw.close()
    return name, time.perf_counter() - t, (engine, admin)


def timed(report, engine, start: float, end: float, by, tenant) -> dict:
    w, c = time.perf_counter(), time.process_time()
    r = report(engine, start, end, end, by, tenant)
    return {"wall_s": round(time.perf_counter() - w, 3), "cpu_s": round(time.process_time() - c, 3),
            "groups": len(r.groups), "gpu_hours": round(r.total.gpu_s / 3600, 1), "idle_holders": len(r.idle)}


def queries(engine, before: bool) -> list[dict]:
    end = T0 + HISTORY_DAYS * DAY + 3 * 3600  # not on a day boundary: partial days are read too
    out = []
    for period, by, tenant in QUERIES:
        start = T0 - 5400.0 if period == "all" else end - 30 * DAY
        q = {"period": period, "by": list(by), "tenant": tenant, **describe(by, tenant)}
        q["now"] = timed(usage_report, engine, start, end, by, tenant)
        if before and all(":" not in k and k != "sku" for k in by):
            q["before"] = timed(usage_before.usage_report, engine, start, end, by, tenant)
            assert abs(q["before"]["gpu_hours"] - q["now"]["gpu_hours"]) <= 0.1 + 1e-6 * q["now"]["gpu_hours"], q
        out.append(q)
    return out


def counts(engine) -> dict:
    with engine.connect() as c:
        return {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in ("attempt_usage", *TABLES)}


def run(result: dict, key: str, engine, load: float, before: bool) -> None:
    result[key] = {"load_s": round(load, 2), "rows": counts(engine), "queries": queries(engine, before)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--pg", default=os.environ.get("GPUFLEET_TEST_PG_URL"))
    ap.add_argument("--no-before", action="store_true", help="skip the pre-rollup report")
    a = ap.parse_args()
    jobs = max(1, a.attempts // 2)  # two attempts per job on average
    result: dict = {"attempts": a.attempts, "goal_s": 2.0}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "usage.db"
        load = load_sqlite(path, a.attempts, jobs)
        engine = make_engine(f"sqlite:///{path}")
        run(result, "sqlite", engine, load, not a.no_before)
        engine.dispose()
    if a.pg:
        name, load, (engine, admin) = load_pg(a.pg, a.attempts, jobs)
        try:
            run(result, "postgresql", engine, load, not a.no_before)
        finally:
            engine.dispose()
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    else:
        result["postgresql"] = "skipped: no --pg URL (GPUFLEET_TEST_PG_URL)"
    for k in ("sqlite", "postgresql"):
        if isinstance(result[k], dict):
            qs = result[k]["queries"]
            result[k]["worst_wall_s"] = max(q["now"]["wall_s"] for q in qs)
            result[k]["worst_before_wall_s"] = max((q["before"]["wall_s"] for q in qs if "before" in q), default=None)
    worst = max(result[k]["worst_wall_s"] for k in ("sqlite", "postgresql") if isinstance(result[k], dict))
    result["worst_wall_s"], result["ok"] = worst, worst < 2.0
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
