"""Job groups over the API on the example lab (fake engine, fake clock): matrices (one job per
cell the inventory can satisfy, impossible cells reported at submit), arrays (%N), dependencies."""

from __future__ import annotations

from gpufleet.store.results import add_results
from gpufleet.results.model import Result, TestCase

SECONDS = "GPUFLEET_FAKE_SECONDS"
EXIT = "GPUFLEET_FAKE_EXIT"


def group(api, headers=None, **body):
    body.setdefault("command", ["true"])
    return api.post("/api/v1/groups", json=body, headers=headers or api.admin)


def finish(api, seconds=1.0, cycles=2):
    for _ in range(cycles):
        api.clock.advance(seconds)
        api.cycle()


def test_matrix_two_by_two_runs_the_possible_cells_and_reports_the_others(api):
    r = group(api, matrix={"gpu_model": ["a100", "rtx4090"], "driver": ["560.35", "550.54"]},
              env={SECONDS: "1"})
    assert r.status_code == 201, r.text
    g = r.json()
    cells = {(c["cell"]["gpu_model"], c["cell"]["driver"]): c for c in g["cells"]}
    assert [c["state"] for c in g["cells"]].count("IMPOSSIBLE") == 2
    for model in ("a100", "rtx4090"):
        assert cells[(model, "550.54")]["job_id"] is None
        assert "driver=550.54 matches no node" in cells[(model, "550.54")]["reason"]
        assert cells[(model, "560.35")]["state"] == "PENDING"
    api.cycle()
    a100 = api.job(cells[("a100", "560.35")]["job_id"])
    desk = api.job(cells[("rtx4090", "560.35")]["job_id"])
    assert a100["state"] == desk["state"] == "RUNNING"
    assert a100["nodes"] == ["dgx1"] and desk["nodes"][0].startswith("desk-")
    assert a100["request"]["constraint"] == {"driver": "560.35"} and a100["request"]["gpu_model"] == "a100"
    finish(api)
    shown = api.get(f"/api/v1/groups/{g['id']}", headers=api.admin).json()
    assert shown["summary"] == {"pass": 2, "impossible": 2}


def test_matrix_with_no_possible_cell_is_refused_naming_the_field_and_stores_nothing(api):
    r = group(api, matrix=["driver=1.0,2.0"])
    assert r.status_code == 422
    assert r.json()["field"] == "matrix" and "driver=1.0" in r.json()["message"]
    assert api.get("/api/v1/jobs?all=true", headers=api.admin).json() == []
    assert api.get("/api/v1/groups", headers=api.admin).json()["groups"] == []


def test_bad_matrix_and_array_input_name_the_field(api):
    for body, field in (({"matrix": ["sku"]}, "matrix"), ({"array": "5-1"}, "array"),
                        ({"array": "0-3%0"}, "array"), ({"matrix": ["a=1"], "array": "0-1"}, "array"),
                        ({}, "matrix"), ({"array": "0-1", "gpus": "x"}, "gpus")):
        r = group(api, **body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)


def test_matrix_result_from_junit_and_exit_code_with_headline_metric(api):
    g = group(api, matrix=["gpu_model=rtx4090,a100"], env={SECONDS: "1"}).json()
    ids = {c["cell"]["gpu_model"]: c["job_id"] for c in g["cells"]}
    api.cycle()
    finish(api)
    now = api.clock()
    add_results(api.server.store.engine,
                [Result(series="s", benchmark="matmul", metric="tflops", value=123.5, unit="TFLOP/s",
                        at=now, tenant="default", user="admin", job_id=ids["a100"], attempt=1)],
                [TestCase(suite="s", name="t1", outcome="passed", job_id=ids["a100"], attempt=1, at=now),
                 TestCase(suite="s", name="t2", outcome="failed", job_id=ids["rtx4090"], attempt=1, at=now)])
    cells = {c["cell"]["gpu_model"]: c for c in api.get(f"/api/v1/groups/{g['id']}", headers=api.admin).json()["cells"]}
    assert cells["a100"]["result"] == "pass" and cells["a100"]["tests"] == {"passed": 1}
    assert cells["a100"]["metric"] == {"benchmark": "matmul", "metric": "tflops", "value": 123.5, "unit": "TFLOP/s"}
    assert cells["rtx4090"]["state"] == "SUCCEEDED" and cells["rtx4090"]["result"] == "fail"  # JUnit wins


def test_array_sets_the_index_and_runs_at_most_n_at_once(api):
    g = group(api, array="0-4%2", gpus=1, gpu_model="rtx4090", env={SECONDS: "10"}).json()
    assert g["kind"] == "array" and g["max_running"] == 2 and len(g["cells"]) == 5
    ids = [c["job_id"] for c in g["cells"]]
    assert [api.job(i)["request"]["env"]["GPUFLEET_ARRAY_INDEX"] for i in ids] == ["0", "1", "2", "3", "4"]
    api.cycle()  # 4 rtx4090 GPUs free, but %2
    states = [api.job(i)["state"] for i in ids]
    assert states == ["RUNNING", "RUNNING", "PENDING", "PENDING", "PENDING"]
    assert api.job(ids[2])["reason"] == f"JobArrayTaskLimit: 2 of group {g['id']} running (%2)"
    finish(api, seconds=11, cycles=1)  # the first two end ...
    api.cycle()  # ... and the next two start
    assert [api.job(i)["state"] for i in ids] == ["SUCCEEDED", "SUCCEEDED", "RUNNING", "RUNNING", "PENDING"]


def test_dependency_waits_says_which_and_starts_after(api):
    first = api.submit(env={SECONDS: "5"}).json()["id"]
    then = api.submit(dependency=f"afterok:{first}").json()["id"]
    api.cycle()
    assert api.job(then)["reason"] == f"Dependency: waiting for job {first} (afterok:{first}, PENDING)"
    api.cycle()
    assert api.job(first)["state"] == "RUNNING"
    j = api.job(then)
    assert j["state"] == "PENDING" and j["reason"] == f"Dependency: waiting for job {first} (afterok:{first}, RUNNING)"
    finish(api, seconds=6, cycles=1)
    api.cycle()
    assert api.job(then)["state"] == "RUNNING"


def test_dependency_that_can_never_be_met_ends_the_job_with_why(api):
    bad = api.submit(env={SECONDS: "1", EXIT: "3"}).json()["id"]
    ok_after = api.submit(dependency=f"afterok:{bad}").json()["id"]
    not_ok_after = api.submit(dependency=f"afternotok:{bad}").json()["id"]
    any_after = api.submit(dependency=f"afterany:{bad}").json()["id"]
    api.cycle()
    finish(api, seconds=2, cycles=2)
    j = api.job(ok_after)
    assert j["state"] == "FAILED"
    assert j["reason"] == f"DependencyNeverSatisfied: job {bad} ended FAILED (afterok:{bad})"
    assert api.job(not_ok_after)["state"] in ("RUNNING", "SUCCEEDED")
    assert api.job(any_after)["state"] in ("RUNNING", "SUCCEEDED")
    r = api.submit(dependency="afterany:99999")
    assert r.status_code == 422 and (r.json()["field"], r.json()["message"]) == ("dependency", "no job 99999")


def test_group_with_a_dependency_holds_every_cell(api):
    first = api.submit(env={SECONDS: "5"}).json()["id"]
    g = group(api, matrix=["gpu_model=a100,rtx4090"], dependency=f"afterok:{first}").json()
    assert g["dependency"] == [["afterok", first]]
    api.cycle()
    assert all(api.job(c["job_id"])["reason"].startswith("Dependency: waiting for job") for c in g["cells"])


def test_bad_dependency_names_the_field(api):
    for dep in ("before:1", "afterok:x", "afterok"):
        r = api.submit(dependency=dep)
        assert r.status_code == 422 and r.json()["field"] == "dependency", dep


def test_group_idempotency_and_cancel(api):
    h = {**api.admin, "Idempotency-Key": "grp-1"}
    first = api.post("/api/v1/groups", json={"command": ["true"], "array": "0-2"}, headers=h)
    again = api.post("/api/v1/groups", json={"command": ["true"], "array": "0-2"}, headers=h)
    assert first.status_code == 201 and again.status_code == 200 and first.json()["id"] == again.json()["id"]
    assert len(api.get("/api/v1/jobs", headers=api.admin).json()) == 3
    r = api.post(f"/api/v1/groups/{first.json()['id']}/cancel", headers=api.admin).json()
    assert len(r["cancelled"]) == 3
    assert {c["state"] for c in api.get(f"/api/v1/groups/{r['id']}", headers=api.admin).json()["cells"]} == {"CANCELLED"}
