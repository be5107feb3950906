#!/usr/bin/env python3
"""`usage` over N finished attempts (default 1,000,000) in SQLite and PostgreSQL: goal under 2 s.

Loads the attempt_usage rows in bulk (sqlite3 executemany / PostgreSQL COPY) into a fresh, migrated
database, then times `usage_report` for a few groupings over the whole history and over the last
30 days. Prints one JSON object (wall and CPU seconds per query). Not part of the test suite.

    python bench/usage.py [--attempts 1000000] [--pg URL]   (URL default: $GPUFLEET_TEST_PG_URL)
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
from sqlalchemy import create_engine, text  # noqa: E402

from gpufleet.accounting import usage_report  # noqa: E402
from gpufleet.store import make_engine, migrate  # noqa: E402

DAY = 86400.0
T0 = 1_700_000_000.0
HISTORY_DAYS = 365
MODELS = (("a100", "server"), ("h100", "server"), ("rtx4090", "desktop"), ("orin", "embedded"))
COLUMNS = ("job_id", "n", "part", "node", "kind", "gpu_model", "gpus", "tenant", "user",
           "started_at", "ended_at", "wait_s")


def rows(n: int, jobs: int):
    rnd = random.Random(42)
    for i in range(n):
        model, kind = MODELS[i % len(MODELS)]
        start = T0 + rnd.random() * HISTORY_DAYS * DAY
        yield (i % jobs + 1, i // jobs + 1, 0, f"{model}-{i % 50:03d}", kind, model, rnd.choice((1, 2, 4, 8)),
               f"team{i % 20}", f"user{i % 400}", start, start + rnd.expovariate(1 / 3600.0), rnd.random() * 600)


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
        raw.commit()
        cur.execute("ANALYZE attempt_usage")
        raw.commit()
    finally:
        raw.close()
    return name, time.perf_counter() - t, (engine, admin)


def timed(engine, start: float, end: float, by) -> dict:
    w, c = time.perf_counter(), time.process_time()
    r = usage_report(engine, start, end, end, by)
    return {"by": list(by), "wall_s": round(time.perf_counter() - w, 3),
            "cpu_s": round(time.process_time() - c, 3), "groups": len(r.groups),
            "gpu_hours": round(r.total.gpu_s / 3600, 1)}


def queries(engine) -> list[dict]:
    end = T0 + HISTORY_DAYS * DAY
    out = []
    for by in (("tenant",), ("user",), ("tenant", "gpu_model"), ("gpu_model", "kind")):
        out.append({"period": "all", **timed(engine, T0, end + DAY, by)})
    out.append({"period": "last 30 days", **timed(engine, end - 30 * DAY, end, ("tenant", "gpu_model"))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--pg", default=os.environ.get("GPUFLEET_TEST_PG_URL"))
    a = ap.parse_args()
    jobs = max(1, a.attempts // 2)  # two attempts per job on average
    result: dict = {"attempts": a.attempts, "goal_s": 2.0}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "usage.db"
        load = load_sqlite(path, a.attempts, jobs)
        engine = make_engine(f"sqlite:///{path}")
        result["sqlite"] = {"load_s": round(load, 2), "queries": queries(engine)}
        engine.dispose()
    if a.pg:
        name, load, (engine, admin) = load_pg(a.pg, a.attempts, jobs)
        try:
            result["postgresql"] = {"load_s": round(load, 2), "queries": queries(engine)}
        finally:
            engine.dispose()
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    else:
        result["postgresql"] = "skipped: no --pg URL (GPUFLEET_TEST_PG_URL)"
    worst = max(q["wall_s"] for k in ("sqlite", "postgresql") if isinstance(result[k], dict)
                for q in result[k]["queries"])
    result["worst_wall_s"], result["ok"] = worst, worst < 2.0
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
