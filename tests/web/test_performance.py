"""Performance page: series from the results service, a trend with its change point, outliers; tenant-scoped."""

from __future__ import annotations

from urllib.parse import quote

from gpufleet.services import results
from tests.api.test_results_api import SERIES, lines


def _import(lab, token_user):
    user = lab.ctx.store.get_user(token_user)
    return results.import_lines(lab.ctx, user, lines(slow="dgx2").decode().splitlines())


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
