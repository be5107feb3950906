"""gpufleet results import|list|show|trend|compare|regressions|outliers against a real server:
tables and --json, bad input exits 2 naming the field, invalid runs stay out of detection, and the
Prometheus series of results."""

from __future__ import annotations

import json
import random
import time

import pytest

SERIES = "resnet50-train/images_per_s/batch=256/A100-SXM4-80GB/550.54"
T0 = 1_790_000_000


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # rich tables: series keys in full


def lines(n=120, change_at=80, step=-0.08, nodes=8, seed=0, slow=None, benchmark="resnet50-train",
          perf_valid=True, **extra) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        node = f"dgx{i % nodes}"
        v = 2800.0 * (1 + (step if change_at is not None and i >= change_at else 0)) * (0.85 if node == slow else 1)
        out.append(json.dumps({"benchmark": benchmark, "metric": "images_per_s", "value": rng.gauss(v, v * 0.01),
                               "unit": "img/s", "params": {"batch": 256}, "node": node, "sku": "A100-SXM4-80GB",
                               "driver": "550.54", "vbios": "92.00", "commit": f"c{i}", "job": None,
                               "timestamp": T0 + i * 3600, "perf_valid": perf_valid, **extra}))
    return "\n".join(out) + "\n"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_import_list_show_trend_compare_regressions_outliers(gf_server, tmp_path):
    cli = gf_server.cli
    r = cli("results", "import", write(tmp_path, "a.jsonl", lines()))
    assert r.returncode == 0, r.stderr
    assert "imported 120 results" in r.stdout
    # a second benchmark on the same nodes, one of them slow: an outlier, not a regression
    assert cli("results", "import", write(tmp_path, "b.jsonl", lines(change_at=None, slow="dgx3",
                                                                    benchmark="bert-large"))).returncode == 0
    listed = json.loads(cli("results", "list", "--json").stdout)
    assert {s["series"]: s["results"] for s in listed}[SERIES] == 120
    assert SERIES in cli("results", "list").stdout

    shown = json.loads(cli("results", "show", SERIES, "--json").stdout)["results"]
    assert len(shown) == 120 and (shown[0]["sku"], shown[0]["driver"], shown[0]["vbios"]) == ("A100-SXM4-80GB", "550.54", "92.00")
    table = cli("results", "show", SERIES, "--limit", "3").stdout
    assert "VBIOS" in table and "92.00" in table and "c119" in table and "c116" not in table

    trend = json.loads(cli("results", "trend", SERIES, "--json").stdout)
    [change] = trend["changes"]
    assert change["direction"] == "regression" and abs(int(change["first"]["commit"][1:]) - 80) <= 2
    plot = tmp_path / "trend.png"
    r = cli("results", "trend", SERIES, "--plot", str(plot))
    assert r.returncode == 0 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "regression -" in r.stdout

    [g] = json.loads(cli("results", "regressions", "--json").stdout)
    assert (g["series"], g["direction"], g["cause"], g["method"], g["open"]) == (SERIES, "regression", "software",
                                                                                 "e-divisive", True)
    assert 6 < g["magnitude_pct"] < 10 and len(g["nodes_moved"]) >= 6 and g["nodes_steady"] == []
    table = cli("results", "regressions").stdout
    assert "software change: every node of A100-SXM4-80GB moved" in table
    assert json.loads(cli("results", "regressions", "--since", str(T0 + 100 * 3600), "--json").stdout) == []
    assert len(json.loads(cli("results", "regressions", "--open", "--json").stdout)) == 1

    [o] = json.loads(cli("results", "outliers", "--json").stdout)
    assert (o["node"], o["kind"], o["benchmark"]) == ("dgx3", "slow", "bert-large") and -17 < o["deviation_pct"] < -13
    assert "dgx3" in cli("results", "outliers").stdout

    rows = json.loads(cli("results", "compare", SERIES, SERIES.replace("resnet50-train", "bert-large"), "--json").stdout)
    assert rows["rows"] == []  # different benchmarks: nothing in common to compare
    # Prometheus: the latest value of each series and the open regression
    text = gf_server.server.metrics.render()[0].decode()  # starts the regressions in the background
    for _ in range(100):
        if "gpufleet_result_open_regressions{" in text:
            break
        time.sleep(0.1)
        text = gf_server.server.metrics.render()[0].decode()
    assert f'gpufleet_result_latest_value{{benchmark="resnet50-train",metric="images_per_s",series="{SERIES}"' in text
    assert 'gpufleet_result_open_regressions{benchmark="resnet50-train",cause="software",direction="regression"' in text


def test_a_regression_on_some_nodes_only_is_a_node_fault(gf_server, tmp_path):
    text = lines(n=200, change_at=None, nodes=2).splitlines()
    for i in range(120, 200):
        row = json.loads(text[i])
        if row["node"] == "dgx1":
            row["value"] *= 0.7
        text[i] = json.dumps(row)
    assert gf_server.cli("results", "import", write(tmp_path, "n.jsonl", "\n".join(text))).returncode == 0
    [g] = json.loads(gf_server.cli("results", "regressions", "--json").stdout)
    assert (g["cause"], g["nodes_moved"], g["nodes_steady"]) == ("node", ["dgx1"], ["dgx0"])
    assert "node fault: dgx1" in gf_server.cli("results", "regressions").stdout


def test_invalid_runs_never_enter_change_point_detection(gf_server, tmp_path):
    good = lines(n=120, change_at=None).splitlines()
    bad = lines(n=40, change_at=0, step=-0.20, perf_valid=False, seed=1).splitlines()
    for i, line in enumerate(bad):  # throttled runs after the clean ones: slow, but invalid
        row = json.loads(line)
        row["timestamp"] = T0 + (120 + i) * 3600
        bad[i] = json.dumps(row)
    assert gf_server.cli("results", "import", write(tmp_path, "v.jsonl", "\n".join(good + bad))).returncode == 0
    assert json.loads(gf_server.cli("results", "regressions", "--json").stdout) == []
    assert json.loads(gf_server.cli("results", "outliers", "--json").stdout) == []
    shown = json.loads(gf_server.cli("results", "show", SERIES, "--json").stdout)["results"]
    assert len(shown) == 160 and sum(not r["perf_valid"] for r in shown) == 40
    trend = json.loads(gf_server.cli("results", "trend", SERIES, "--json").stdout)
    assert trend["changes"] == []


def test_bad_input_exits_2_naming_the_field(gf_server, tmp_path):
    cli = gf_server.cli
    assert cli("results", "import", write(tmp_path, "ok.jsonl", lines(n=10))).returncode == 0
    bad = lines(n=10).splitlines()
    bad[6] = json.dumps({"benchmark": "b", "metric": "m", "value": 1, "timestamp": "last tuesday"})
    cases = [
        (("results", "import", write(tmp_path, "bad.jsonl", "\n".join(bad))), "line 7: timestamp"),
        (("results", "import", write(tmp_path, "nan.jsonl", '{"benchmark": "b", "metric": "m", "value": "fast"}')),
         "line 1: value"),
        (("results", "import", str(tmp_path / "missing.jsonl")), "file"),
        (("results", "show"), "series"),
        (("results", "compare", "job:x", SERIES), "a"),
        (("results", "compare", SERIES, "nothing/here"), "b"),
        (("results", "regressions", "--key", "benchmark,colour"), "key"),
        (("results", "regressions", "--since", "around lunch"), "since"),
    ]
    for args, field in cases:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith(f"error: {field}:"), (args, r.stderr)
    [s] = json.loads(cli("results", "list", "--json").stdout)
    assert s["results"] == 10  # the bad imports stored nothing
