"""Prometheus series of results: latest value per series, open regressions, bounded cardinality."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gpufleet.observability.results_metrics import ResultsCollector
from gpufleet.results.analysis import regressions
from tests.results.builders import stepped


def scrape(collector: ResultsCollector) -> str:
    reg = CollectorRegistry()
    reg.register(collector)
    return generate_latest(reg).decode()


def test_latest_values_and_open_regressions():
    rs = stepped(200, change_at=150, step=-0.10, cv=0.01, seed=1)
    latest = [(rs[-1].series, "resnet50-train", "images_per_s", "A100-SXM4-80GB", rs[-1].value)]
    text = scrape(ResultsCollector(lambda: latest, lambda: regressions(rs), clock=lambda: 0.0, background=False))
    assert f'gpufleet_result_latest_value{{benchmark="resnet50-train",metric="images_per_s",series="{rs[-1].series}",sku="A100-SXM4-80GB"}} {rs[-1].value!r}' in text
    assert 'gpufleet_result_series 1.0' in text
    assert ('gpufleet_result_open_regressions{benchmark="resnet50-train",cause="software",direction="regression",'
            'sku="A100-SXM4-80GB"} 1.0') in text


def test_series_are_capped_and_the_count_says_so():
    latest = [(f"b{i:04d}/m/-/sku/1", f"b{i:04d}", "m", "sku", float(i)) for i in range(1200)]
    text = scrape(ResultsCollector(lambda: latest, lambda: [], clock=lambda: 0.0, max_series=500, background=False))
    assert text.count("gpufleet_result_latest_value{") == 500
    assert "gpufleet_result_series 1200.0" in text


def test_regressions_are_recomputed_only_after_the_ttl_and_a_failure_keeps_the_last_answer():
    now = [0.0]
    calls = []
    rs = stepped(200, change_at=150, step=-0.10, cv=0.01, seed=1)

    def found():
        calls.append(now[0])
        if len(calls) == 2:
            raise RuntimeError("database gone")
        return regressions(rs)

    c = ResultsCollector(lambda: [], found, clock=lambda: now[0], regressions_ttl_s=600, background=False)
    assert "open_regressions{" in scrape(c)
    now[0] = 100.0
    scrape(c)
    assert calls == [0.0]  # served from the last answer
    now[0] = 700.0
    assert "open_regressions{" in scrape(c)  # failed: the last answer still stands
    assert calls == [0.0, 700.0]


def test_a_closed_change_is_not_open():
    rs = stepped(300, change_at=100, step=-0.10, cv=0.01, seed=2)
    for r in rs[200:]:
        r.value /= 0.9  # back where it was: the first change is no longer open
    found = regressions(rs)
    assert len(found) == 2 and sum(g.open for g in found) == 1
    text = scrape(ResultsCollector(lambda: [], lambda: found, clock=lambda: 0.0, background=False))
    assert 'direction="improvement"' in text and 'direction="regression"' not in text


def test_in_the_background_a_scrape_never_waits_for_detection():
    import threading

    release = threading.Event()
    rs = stepped(200, change_at=150, step=-0.10, cv=0.01, seed=1)

    def slow():
        release.wait(10)
        return regressions(rs)

    c = ResultsCollector(lambda: [], slow, clock=lambda: 0.0)
    assert "open_regressions{" not in scrape(c)  # served at once: nothing known yet
    release.set()
    for _ in range(100):
        if "open_regressions{" in scrape(c):
            break
        threading.Event().wait(0.05)
    assert "open_regressions{" in scrape(c)
