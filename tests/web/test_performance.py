"""Performance page: series from the results service, a trend with its change point, outliers; tenant-scoped."""

from __future__ import annotations

import json
import random
import time
from urllib.parse import quote

from gpufleet.services import results

SERIES = "resnet50-train/images_per_s/batch=256/A100-SXM4-80GB/550.54"


def lines(n: int = 120, change_at: int = 80, slow: str = "dgx2") -> list[str]:
    """A benchmark series that drops 8% at result `change_at`, one node 15% slow."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        node = f"dgx{i % 4}"
        v = 2800.0 * (0.92 if i >= change_at else 1.0) * (0.85 if node == slow else 1.0)
        out.append(json.dumps({"benchmark": "resnet50-train", "metric": "images_per_s", "value": rng.gauss(v, v * 0.01),
                               "unit": "img/s", "params": {"batch": 256}, "node": node, "sku": "A100-SXM4-80GB",
                               "driver": "550.54", "commit": f"c{i}", "timestamp": 1_790_000_000 + i * 3600}))
    return out


def _import(lab, token_user):
    user = lab.ctx.store.get_user(token_user)
    return results.import_lines(lab.ctx, user, lines())


def test_series_trend_with_change_point_and_outliers(lab):
    lab.token("alice", "vision")
    assert _import(lab, "alice") == 120
    alice = lab.browser(lab.token("alice", "vision"))
    page = alice.get("/performance").text
    assert SERIES in page and 'id="outliers"' in page and "dgx2" in page  # the slow node
    trend = alice.get(f"/performance?series={quote(SERIES)}")
    assert trend.status_code == 200
    assert '<svg viewBox' in trend.text and "<polyline" in trend.text
    assert 'class="mark bad"' in trend.text and "regression" in trend.text  # the -8% step is marked


def test_foreign_tenant_sees_no_series(lab):
    lab.token("alice", "vision")
    _import(lab, "alice")
    bob = lab.browser(lab.token("bob", "speech"))
    page = bob.get("/performance").text
    assert SERIES not in page and "dgx2" not in page and 'id="perf-note"' in page
    assert "<polyline" not in bob.get(f"/performance?series={quote(SERIES)}").text


def test_outliers_are_recomputed_when_results_arrive(lab):
    lab.token("alice", "vision")
    _import(lab, "alice")
    alice = lab.browser(lab.token("alice", "vision"))
    first = alice.get("/performance").text
    assert "dgx2" in first and "dgx3" not in first.split('id="outliers"')[1]
    user = lab.ctx.store.get_user("alice")
    more = [line.replace("resnet50-train", "bert-train") for line in lines(slow="dgx3")]
    assert results.import_lines(lab.ctx, user, more) == 120
    # the next view still shows the old outliers (never waits), the new ones follow from the background
    for _ in range(100):
        again = alice.get("/performance").text.split('id="outliers"')[1]
        if "dgx3" in again:
            break
        time.sleep(0.05)
    assert "dgx3" in again and "bert-train" in again
