#!/usr/bin/env python3
"""Server time of every dashboard page with 100,000 jobs and 1,000 nodes (goal: under 300 ms).

Builds a server (fake engine, SQLite in a temporary home) on an inventory of N nodes (40 racks,
8 GPUs each), stores J jobs (a tenth still pending, one running job per GPU on a third of the
nodes, the rest finished), signs in through the dashboard and times each page in process
(TestClient: the request's whole server side, no network), as admin and as a tenant's user.
Prints one JSON object: the median and worst of R requests per page, in milliseconds.

Results: 25 series per tenant of 2,000 results each (200,000), so the Performance page lists 100
series (admin) and draws a 2,000-point trend with its change points.

    python bench/web.py [--jobs 100000] [--nodes 1000] [--repeat 5] [--series 25] [--results 2000]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import yaml  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import update  # noqa: E402

from gpufleet.api.app import create_app  # noqa: E402
from gpufleet.domain import Job, JobState  # noqa: E402
from gpufleet.domain.spec import build_spec  # noqa: E402
from gpufleet.main import build  # noqa: E402
from gpufleet.settings import load_settings  # noqa: E402
from gpufleet.store.rows import JobRow  # noqa: E402

TENANTS = ("vision", "speech", "nlp", "robotics")
PAGES = ["/queue", "/queue?state=SUCCEEDED", "/queue?model=a100&user=u7", "/queue?before=50000",
         "/jobs/{job}", "/nodes", "/nodes?page=3", "/bookings", "/usage?from=-30d", "/usage?from=-365d&by=user",
         "/health", "/performance", "/performance?series={series}"]
SERIES_PER_TENANT, RESULTS_PER_SERIES = 25, 2000  # the trend draws the newest 2,000


def inventory(home: Path, nodes: int) -> Path:
    path = home / "inventory.yaml"
    spec = [{"name": f"r{r:02d}n", "count": nodes // 40, "kind": "server", "gpus": 8, "gpu_model": "a100",
             "cpus": 64, "mem": "512G", "labels": {"rack": f"r{r:02d}", "driver": "560.35"}} for r in range(40)]
    tenants = [{"name": t, "quota": {"a100": 800}} for t in TENANTS]
    path.write_text(yaml.safe_dump({"nodes": spec, "tenants": tenants}))
    return path


def load_jobs(server, n: int) -> None:
    store, now = server.ctx.store, server.ctx.clock()
    specs = [build_spec({"command": ["true"], "gpus": 1, "gpu_model": "a100"}, default_tenant=t) for t in TENANTS]
    for start in range(0, n, 5000):  # job id i + 1 is of tenant TENANTS[(i + 1) % 4]
        batch = [Job(id=0, spec=specs[(i + 1) % len(TENANTS)], user=f"u{i % 50}", submitted_at=now - (n - i),
                     reason="Submitted")
                 for i in range(start, min(n, start + 5000))]
        store.add_jobs(batch, now, audit_user="bench")
    nodes = store.nodes()
    running = [(n_.name, g.index) for n_ in nodes[: len(nodes) // 3] for g in n_.gpus]
    with store.tx() as s:
        s.execute(update(JobRow).where(JobRow.id > n // 10).values(state="SUCCEEDED", reason="done", ended_at=now))
        for job_id, (node, gpu) in enumerate(running, start=n // 10 + 1):
            s.execute(update(JobRow).where(JobRow.id == job_id).values(
                state="RUNNING", started_at=now - 60, reason=f"placed on {node}",
                allocation=[{"node": node, "gpus": [gpu]}]))


def load_results(server, series: int, per: int) -> str:
    """`series` benchmark series per tenant of `per` results each (nightly, on 40 nodes, one slow,
    a 6 % drop two thirds in); returns the name of one of speech's series."""
    from gpufleet.services import results

    store, now = server.ctx.store, server.ctx.clock()
    for t in TENANTS:
        user = store.get_user(f"u-{t}")
        for s in range(series):
            lines = []
            for i in range(per):
                node = f"r{i % 40:02d}n-001"
                v = 1000.0 * (0.94 if i > per * 2 // 3 else 1.0) * (0.85 if i % 40 == 7 else 1.0) * (1 + (i * 7919 % 13) / 1000)
                lines.append(json.dumps({"benchmark": f"{t}-bench{s}", "metric": "throughput", "value": v, "unit": "it/s",
                                         "node": node, "sku": "A100-SXM4-80GB", "driver": "560.35",
                                         "timestamp": now - (per - i) * 3600}))
            results.import_lines(server.ctx, user, lines)
    return "speech-bench0/throughput/-/A100-SXM4-80GB/560.35"


def sign_in(app, token: str) -> TestClient:
    c = TestClient(app, follow_redirects=False)
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
    assert c.post("/login", data={"token": token, "csrf": csrf}).status_code == 303
    return c


def timed(client: TestClient, path: str, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "kb": round(len(r.content) / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--series", type=int, default=SERIES_PER_TENANT, help="result series per tenant")
    ap.add_argument("--results", type=int, default=RESULTS_PER_SERIES, help="results per series")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = load_settings(home=home, executor="fake", inventory=str(inventory(home, args.nodes)))
        server = build(settings)
        t = time.perf_counter()
        load_jobs(server, args.jobs)
        load_s = time.perf_counter() - t
        app = create_app(server.ctx, health_service=server.health)
        api = TestClient(app)
        admin_h = {"Authorization": f"Bearer {server.admin_token}"}
        user_token = api.post("/api/v1/tokens", json={"user": "u7", "tenant": "speech"}, headers=admin_h).json()["token"]
        for t in TENANTS:  # the results' owners
            api.post("/api/v1/tokens", json={"user": f"u-{t}", "tenant": t}, headers=admin_h)
        t = time.perf_counter()
        series = load_results(server, args.series, args.results)
        results_s = time.perf_counter() - t
        out = {"jobs": args.jobs, "nodes": len(server.ctx.store.nodes()), "load_s": round(load_s, 1),
               "results": args.series * args.results * len(TENANTS), "results_load_s": round(results_s, 1), "pages": {}}
        for who, token in (("admin", server.admin_token), ("user", user_token)):
            client = sign_in(app, token)
            for path in PAGES:
                p = path.format(job=args.jobs // 20, series=quote(series))
                if who == "user" and p.startswith("/jobs/"):
                    p = f"/jobs/{args.jobs // 20 + 1}"  # id % 4 == 1: speech
                out["pages"][f"{who} {p}"] = timed(client, p, args.repeat)
        out["worst_median_ms"] = max(v["median_ms"] for v in out["pages"].values())
        out["goal_ms"] = 300
        server.executor.close()
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
