"""/api/v1/results: import (all or nothing), list, show, trend, compare, regressions, outliers;
tenant isolation."""

from __future__ import annotations

import json
import random

IMPORT = "/api/v1/results/import"


def lines(n: int = 120, change_at: int | None = 80, step: float = -0.08, nodes: int = 4, seed: int = 0,
          sku: str = "A100-SXM4-80GB", slow: str | None = None, **extra) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        node = f"dgx{i % nodes}"
        v = 2800.0 * (1 + (step if change_at is not None and i >= change_at else 0)) * (0.85 if node == slow else 1)
        out.append(json.dumps({"benchmark": "resnet50-train", "metric": "images_per_s", "value": rng.gauss(v, v * 0.01),
                               "unit": "img/s", "higher_is_better": True, "params": {"batch": 256},
                               "node": node, "sku": sku, "driver": "550.54", "vbios": "92.00", "gpu_uuid": f"GPU-{node}",
                               "commit": f"c{i}", "timestamp": 1_790_000_000 + i * 3600, **extra}))
    return ("\n".join(out) + "\n").encode()


def post(api, data: bytes, headers=None):
    return api.http.post(IMPORT, content=data, headers=headers or api.admin)


SERIES = "resnet50-train/images_per_s/batch=256/A100-SXM4-80GB/550.54"


def test_import_then_list_show_trend_regressions(api):
    r = post(api, lines())
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 120}
    [s] = api.get("/api/v1/results", headers=api.admin).json()["series"]
    assert (s["series"], s["results"]) == (SERIES, 120)
    shown = api.get("/api/v1/results/show", params={"series": SERIES}, headers=api.admin).json()["results"]
    assert len(shown) == 120
    assert {k: shown[0][k] for k in ("node", "sku", "driver", "vbios", "gpu_uuids", "commit", "perf_valid")} == {
        "node": "dgx0", "sku": "A100-SXM4-80GB", "driver": "550.54", "vbios": "92.00", "gpu_uuids": "GPU-dgx0",
        "commit": "c0", "perf_valid": True}
    assert shown[0]["labels"] is None and "not available" in shown[0]["labels_note"]
    trend = api.get("/api/v1/results/trend", params={"series": SERIES}, headers=api.admin).json()
    assert len(trend["results"]) == 120 and len(trend["changes"]) == 1
    [g] = api.get("/api/v1/results/regressions", headers=api.admin).json()["regressions"]
    assert (g["series"], g["direction"], g["cause"], g["method"]) == (SERIES, "regression", "software", "e-divisive")
    assert abs(int(g["first"]["commit"][1:]) - 80) <= 2 and 6 < g["magnitude_pct"] < 10 and g["confidence"] > 0.99
    assert g["first"]["at"] >= 1_790_000_000 + 78 * 3600
    since = api.get("/api/v1/results/regressions", params={"since": str(1_790_000_000 + 100 * 3600)},
                    headers=api.admin).json()
    assert since["regressions"] == []


def test_a_bad_line_stores_nothing_and_names_line_and_field(api):
    bad = lines(10).decode().splitlines()
    bad[6] = json.dumps({"benchmark": "b", "metric": "m", "value": 1, "timestamp": "last tuesday"})
    r = post(api, "\n".join(bad).encode())
    assert r.status_code == 422
    assert "line 7: timestamp" in r.text
    assert api.get("/api/v1/results", headers=api.admin).json()["series"] == []
    assert post(api, b"\xff\xfe").status_code == 422


def test_outliers_and_key(api):
    post(api, lines(n=160, change_at=None, nodes=8, slow="dgx5"))
    [o] = api.get("/api/v1/results/outliers", headers=api.admin).json()["outliers"]
    assert (o["node"], o["kind"], o["sku"], o["benchmark"]) == ("dgx5", "slow", "A100-SXM4-80GB", "resnet50-train")
    assert -17 < o["deviation_pct"] < -13
    r = api.get("/api/v1/results/regressions", params={"key": "benchmark,colour"}, headers=api.admin)
    assert r.status_code == 422 and "key" in r.text
    # only the results since a time count: after the last one there is no evidence left
    after = api.get("/api/v1/results/outliers", params={"since": str(1_790_000_000 + 200 * 3600)}, headers=api.admin)
    assert after.status_code == 200 and after.json()["outliers"] == []
    assert len(api.get("/api/v1/results/outliers", params={"since": "1790000000"}, headers=api.admin).json()["outliers"]) == 1
    r = api.get("/api/v1/results/outliers", params={"since": "last tuesday"}, headers=api.admin)
    assert r.status_code == 422 and "since" in r.text


def test_compare_two_series(api):
    post(api, lines(n=40, change_at=None))
    post(api, lines(n=40, change_at=None, sku="H100-SXM5-80GB"))
    h100 = SERIES.replace("A100-SXM4-80GB", "H100-SXM5-80GB")
    body = api.get("/api/v1/results/compare", params={"a": SERIES, "b": h100}, headers=api.admin).json()
    [row] = body["rows"]
    assert row["key"] == "resnet50-train/images_per_s/batch=256" and abs(row["change_pct"]) < 2
    r = api.get("/api/v1/results/compare", params={"a": SERIES, "b": "nope"}, headers=api.admin)
    assert r.status_code == 422 and "no results" in r.text


def test_tenants_see_their_own_results_only(api):
    alice, bob = api.token("alice", "vision"), api.token("bob", "speech")
    assert post(api, lines(), alice).status_code == 200
    assert api.get("/api/v1/results", headers=bob).json()["series"] == []
    assert api.get("/api/v1/results/show", params={"series": SERIES}, headers=bob).json()["results"] == []
    assert api.get("/api/v1/results/regressions", headers=bob).json()["regressions"] == []
    assert api.get("/api/v1/results/outliers", headers=bob).json()["outliers"] == []
    assert api.get("/api/v1/results", params={"tenant": "vision"}, headers=bob).status_code == 403
    assert len(api.get("/api/v1/results/show", params={"series": SERIES}, headers=alice).json()["results"]) == 120
    # a line may not name another tenant's job
    job = api.http.post("/api/v1/jobs", json={"command": ["true"]}, headers=alice).json()["id"]
    r = post(api, lines(3, job=job), bob)
    assert r.status_code == 422 and "line 1: job" in r.text
    assert post(api, lines(3, job=job), alice).status_code == 200
