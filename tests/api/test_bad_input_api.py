"""Bad input at the API edge: 422 naming the field (413 for a huge body), nothing stored, no 500."""

import pytest

from gpufleet.executors.base import Ability

BIG = 2**63  # one past the largest signed 64-bit integer


def fields_of(r):
    body = r.json()
    if "field" in body:
        return [body["field"]]
    return [".".join(str(x) for x in d["loc"] if x not in ("body", "path", "query")) for d in body["detail"]]


def all_jobs(api):
    return api.get("/api/v1/jobs?all=true", headers=api.admin).json()


@pytest.mark.parametrize("path,field", [
    (f"/api/v1/jobs/{BIG}", "job_id"),
    (f"/api/v1/jobs/{BIG * 10}", "job_id"),
    (f"/api/v1/jobs/1/logs?offset={BIG}", "offset"),
    (f"/api/v1/jobs/1/logs?rank={BIG}", "rank"),
    ("/api/v1/jobs/1/logs?rank=-1", "rank"),
    ("/api/v1/audit?limit=99999999999999999999", "limit"),
])
def test_huge_integers_in_paths_and_queries_are_422(api, path, field):
    r = api.get(path, headers=api.admin)
    assert r.status_code == 422, r.text
    assert field in fields_of(r)


def test_huge_ids_in_cancel_and_unbook_are_422(api):
    r = api.post(f"/api/v1/jobs/{BIG}/cancel", headers=api.admin)
    assert r.status_code == 422 and "job_id" in fields_of(r)
    r = api.delete(f"/api/v1/bookings/{BIG}", headers=api.admin)
    assert r.status_code == 422 and "booking_id" in fields_of(r)


@pytest.mark.parametrize("spec,field", [
    ({"booking": BIG}, "booking"),
    ({"gpus": BIG}, "gpus"),
    ({"gpus": str(BIG)}, "gpus"),
    ({"cpus": BIG}, "cpus"),
    ({"mem": BIG}, "mem"),
    ({"mem": "9" * 40 + "G"}, "mem"),
    ({"time_limit": BIG}, "time_limit"),
    ({"time_limit": "9" * 400 + "s"}, "time_limit"),
    ({"priority": BIG}, "priority"),
    ({"cpus": 129}, "cpus"),  # the largest node (dgx1) has 128
    ({"mem": "2T"}, "mem"),  # ... and 1T
    ({"nodes": 2, "gpus": 2, "gpu_model": "rtx4090", "cpus": 17}, "cpus"),  # desks have 16
    ({"name": "job\n"}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"tenant": "vision\n"}, "tenant"),
    ({"env": {"A\n": "1"}}, "env"),
    ({"env": {"A\x00": "1"}}, "env"),
    ({"env": {"A": "1\n#SBATCH --qos=high"}}, "env"),
    ({"env": {"A": "x\x00y"}}, "env"),
    ({"env": {f"V{i}": "1" for i in range(4097)}}, "env"),
    ({"command": ["echo", "a\x00b"]}, "command"),
    ({"command": ["echo", "x" * 131073]}, "command"),
    ({"workdir": "/tmp\n#SBATCH --exclusive"}, "workdir"),
    ({"constraint": {"kind": "server\n"}}, "constraint"),
    ({"image": "busybox"}, "image"),  # the fake engine runs no containers
])
def test_bad_job_specs_are_422_and_store_nothing(api, spec, field):
    before = all_jobs(api)
    r = api.submit(**spec)
    assert r.status_code == 422, r.text
    assert field in fields_of(r)
    assert all_jobs(api) == before


def test_huge_booking_gpus_is_422(api):
    r = api.post("/api/v1/bookings", json={"start": "now", "duration": "1h", "gpus": BIG}, headers=api.admin)
    assert r.status_code == 422 and "gpus" in fields_of(r)
    r = api.patch("/api/v1/tenants/vision", json={"quota": {"a100": BIG}}, headers=api.admin)
    assert r.status_code == 422 and "quota" in fields_of(r)


def test_a_body_over_the_limit_is_413_and_stores_nothing(api):
    big = {"command": ["echo", "x" * 100_000], "env": {f"V{i}": "y" * 300 for i in range(4000)}}
    r = api.submit(**big)
    assert r.status_code == 413, r.text
    assert all_jobs(api) == []
    r = api.http.post("/api/v1/jobs", content=b"[" * (2 << 20), headers={**api.admin,
                      "Content-Type": "application/json", "Content-Length": str(2 << 20)})
    assert r.status_code == 413


def test_a_chunked_body_over_the_limit_is_413(api):
    def chunks():
        yield b'{"command": ["echo", "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"]}'
    r = api.http.post("/api/v1/jobs", content=chunks(), headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert all_jobs(api) == []


def test_workdir_is_checked_when_the_engine_runs_on_this_host(api, tmp_path):
    ex = api.server.executor
    ex.abilities = ex.abilities | {Ability.HOST_PATHS}  # as the local engine declares
    r = api.submit(workdir="/nonexistent/dir")
    assert r.status_code == 422 and fields_of(r) == ["workdir"]
    assert "not a directory" in r.json()["message"]
    assert api.submit(workdir="relative/dir").status_code == 422
    assert api.submit(workdir=str(tmp_path)).status_code == 201


def test_image_is_accepted_by_an_engine_that_runs_images(api):
    ex = api.server.executor
    ex.abilities = ex.abilities | {Ability.IMAGES}
    assert api.submit(image="busybox").status_code == 201


def test_cancel_of_a_finished_job_says_so(api):
    job = api.submit(env={"GPUFLEET_FAKE_SECONDS": "1"}).json()["id"]
    api.cycle()
    api.clock.advance(2)
    api.cycle()
    assert api.job(job)["state"] == "SUCCEEDED"
    r = api.post(f"/api/v1/jobs/{job}/cancel", headers=api.admin).json()
    assert r["already_finished"] is True and r["state"] == "SUCCEEDED"
    pending = api.submit(gpus=8, gpu_model="a100").json()["id"]
    r = api.post(f"/api/v1/jobs/{pending}/cancel", headers=api.admin).json()
    assert r["already_finished"] is False and r["state"] == "CANCELLED"
