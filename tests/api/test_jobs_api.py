"""The REST API in-process, on the fake executor, with the control loop driven by hand."""

import pytest


def test_submit_runs_and_succeeds(api):
    r = api.submit(command=["python", "-c", "print(1)"], gpus=2, gpu_model="a100", time_limit="1h",
                   env={"GPUFLEET_FAKE_SECONDS": "5", "GPUFLEET_FAKE_EXIT": "0"})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert api.job(job_id)["state"] == "PENDING"
    api.cycle()
    j = api.job(job_id)
    assert j["state"] == "RUNNING"
    assert j["nodes"] == ["dgx1"] and len(j["gpus"]["dgx1"]) == 2
    api.clock.advance(10)
    api.cycle()
    j = api.job(job_id)
    assert j["state"] == "SUCCEEDED" and j["exit_code"] == 0
    assert [e["new"] for e in j["events"]] == ["PENDING", "RUNNING", "SUCCEEDED"]
    for key in ("id", "state", "exit_code", "nodes", "gpus", "reason", "submitted_at", "started_at", "ended_at"):
        assert key in j


def test_failed_exit_code_is_recorded(api):
    job_id = api.submit(env={"GPUFLEET_FAKE_SECONDS": "1", "GPUFLEET_FAKE_EXIT": "3"}).json()["id"]
    api.cycle()
    api.clock.advance(2)
    api.cycle()
    j = api.job(job_id)
    assert (j["state"], j["exit_code"]) == ("FAILED", 3)


@pytest.mark.parametrize("spec,field", [
    ({"gpus": 0}, "gpus"),
    ({"gpus": -1}, "gpus"),
    ({"gpus": 9}, "gpus"),  # the largest node has 8
    ({"gpu_model": "b200"}, "gpu_model"),
    ({"time_limit": "forever"}, "time_limit"),
    ({"command": []}, "command"),
    ({"tenant": "nobody"}, "tenant"),
    ({"nodes": 5, "gpus": 2}, "nodes"),
    ({"nodes": "5:6", "gpus": 2}, "nodes"),  # an elastic gang whose minimum cannot fit either
    ({"constraint": "driver=999"}, "constraint"),
    ({"colour": "red"}, "colour"),
])
def test_bad_input_is_422_naming_the_field_and_stores_nothing(api, spec, field):
    before = api.get("/api/v1/jobs?all=true", headers=api.admin).json()
    r = api.submit(**spec)
    assert r.status_code == 422, r.text
    body = r.json()
    fields = [".".join(str(x) for x in d["loc"] if x != "body") for d in body["detail"]]
    assert field in fields
    assert api.get("/api/v1/jobs?all=true", headers=api.admin).json() == before


def test_an_elastic_gang_larger_than_the_cluster_is_accepted_when_its_minimum_fits(api):
    r = api.submit(nodes="1:5", gpus=2)
    assert r.status_code in (200, 201), r.text
    assert api.job(r.json()["id"])["request"]["nodes_min"] == 1


def test_auth_required_and_tenants_isolated(api):
    assert api.get("/api/v1/jobs").status_code == 401
    assert api.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    alice = api.token("alice", "vision")
    bob = api.token("bob", "speech")
    a_job = api.submit(headers=alice).json()
    assert a_job["tenant"] == "vision"
    assert api.submit(headers=alice, tenant="speech").status_code == 422
    assert [j["id"] for j in api.get("/api/v1/jobs", headers=bob).json()] == []
    assert api.get(f"/api/v1/jobs/{a_job['id']}", headers=bob).status_code == 404
    assert api.post(f"/api/v1/jobs/{a_job['id']}/cancel", headers=bob).status_code == 404
    assert api.post("/api/v1/nodes/dgx1/drain", json={"reason": "x"}, headers=alice).status_code == 403
    assert len(api.get("/api/v1/jobs", headers=api.admin).json()) == 1


# Tenant isolation, one row per endpoint: bob (tenant speech, not admin) acting on what belongs to
# alice (tenant vision) or to the admin. `{token}` is alice's token id, `{booking}` her booking.
ISOLATION = [
    ("GET", "/api/v1/tokens", None, 200, lambda body, ids: [t["user"] for t in body] == ["bob"]),
    ("POST", "/api/v1/tokens/{token}/revoke", None, 404, None),
    ("POST", "/api/v1/tokens", {"user": "mallory", "tenant": "vision"}, 403, None),
    ("GET", "/api/v1/users", None, 200, lambda body, ids: [u["name"] for u in body] == ["bob"]),
    ("PATCH", "/api/v1/users/bob", {"admin": True}, 403, None),
    ("PATCH", "/api/v1/users/alice", {"tenant": "speech"}, 403, None),
    ("GET", "/api/v1/bookings#{booking}", None, 200, lambda body, ids: body == []),
    ("POST", "/api/v1/bookings/{booking}/approve", None, 403, None),
    ("POST", "/api/v1/bookings/{booking}/reject", None, 403, None),
    ("DELETE", "/api/v1/bookings/{booking}", None, 404, None),
    ("POST", "/api/v1/jobs#key", {"command": ["true"]}, 201,
     lambda body, ids: body["user"] == "bob" and body["id"] != ids["job"]),  # alice's key: bob's own job
    ("GET", "/api/v1/usage?tenant=vision", None, 403, None),
    ("GET", "/api/v1/usage/export?tenant=vision", None, 403, None),
    ("GET", "/api/v1/usage?by=tenant&from=0", None, 200,
     lambda body, ids: all(g["key"]["tenant"] == "speech" for g in body["groups"])),
    ("GET", "/api/v1/results?tenant=vision", None, 403, None),
    ("GET", "/api/v1/results/regressions?tenant=vision", None, 403, None),
    ("GET", "/api/v1/results/outliers?tenant=vision", None, 403, None),
    ("GET", "/api/v1/results/show?job={job}", None, 200,
     lambda body, ids: body == {"results": [], "test_cases": []}),
    ("GET", "/api/v1/jobs/{job}/artifacts", None, 404, None),
    ("GET", "/api/v1/jobs/{job}/artifacts/file?path=out.txt", None, 404, None),
    ("POST", "/api/v1/artifacts/gc", None, 403, None),
    ("PUT", "/api/v1/artifacts/policies/vision", {"max_bytes": 0}, 403, None),
    ("GET", "/api/v1/artifacts/policies", None, 200,
     lambda body, ids: [p["tenant"] for p in body["policies"]] == ["speech"]),
    ("GET", "/api/v1/groups/{group}", None, 404, None),
    ("POST", "/api/v1/groups/{group}/cancel", None, 404, None),
    ("GET", "/api/v1/groups", None, 200, lambda body, ids: body["groups"] == []),
    ("POST", "/api/v1/jobs", {"command": ["true"], "dependency": "afterok:{job}"}, 422,
     lambda body, ids: (body["field"], body["message"]) == ("dependency", f"no job {ids['job']}")),  # as for none
]


@pytest.mark.parametrize("method,path,body,status,check", ISOLATION, ids=[f"{m} {p}" for m, p, *_ in ISOLATION])
def test_tenant_isolation_per_endpoint(api, method, path, body, status, check):
    alice = api.token("alice", "vision")
    bob = api.token("bob", "speech")
    ids = {"token": max(t["id"] for t in api.get("/api/v1/tokens", headers=alice).json())}
    r = api.post("/api/v1/bookings", json={"start": "+1h", "duration": "20h", "nodes": ["desk-001"]},
                 headers=alice)  # 20 node-hours: within the default limits
    ids["booking"] = r.json()["id"]
    ids["job"] = api.http.post("/api/v1/jobs", json={"command": ["true"], "artifacts": ["out.txt"],
                                                          "env": {"GPUFLEET_FAKE_SECONDS": "1"}},
                               headers={**alice, "Idempotency-Key": "k1"}).json()["id"]
    api.server.executor.world.files[(ids["job"], 1)] = {0: {"out.txt": b"alice's"}}
    ids["group"] = api.post("/api/v1/groups", json={"command": ["true"], "array": "0-1"}, headers=alice).json()["id"]
    api.cycle()
    api.clock.advance(2)
    api.cycle()  # alice's job has run: its artifact is stored
    api.server.ctx.artifacts.flush()
    assert api.get(f"/api/v1/jobs/{ids['job']}/artifacts", headers=alice).json()["artifacts"]
    url, _, tag = path.format(**ids).partition("#")
    if isinstance(body, dict):
        body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}
    r = api.request(method, url, json=body, headers={**bob, **({"Idempotency-Key": "k1"} if tag == "key" else {})})
    assert r.status_code == status, r.text
    if check is not None:
        assert check(r.json(), ids)
    assert api.get("/api/v1/whoami", headers=alice).json()["tenant"] == "vision"  # alice unharmed
    assert api.get("/api/v1/jobs", headers=alice).status_code == 200


def test_cancel_pending_and_running(api):
    pending = api.submit(gpus=8, gpu_model="a100").json()["id"]
    api.cycle()  # takes dgx1 entirely
    blocked = api.submit(gpus=8, gpu_model="a100").json()["id"]
    api.cycle()
    assert api.job(blocked)["state"] == "PENDING"
    assert api.job(blocked)["reason"]
    assert api.post(f"/api/v1/jobs/{blocked}/cancel", headers=api.admin).json()["state"] == "CANCELLED"
    r = api.post(f"/api/v1/jobs/{pending}/cancel", headers=api.admin).json()
    assert r["pending_action"] == "cancel"
    api.cycle()  # signals the engine
    api.cycle()  # observes the end
    assert api.job(pending)["state"] == "CANCELLED"
    assert api.server.executor.launches.count(pending) == 1


def test_drain_keeps_new_jobs_off_and_resume(api):
    r = api.post("/api/v1/nodes/dgx1/drain", json={"reason": "bad fan"}, headers=api.admin)
    assert r.status_code == 200 and r.json()["state"] == "drain"
    assert api.post("/api/v1/nodes/dgx1/drain", json={"reason": ""}, headers=api.admin).status_code == 422
    job_id = api.submit(gpus=4, gpu_model="a100").json()["id"]
    api.cycle()
    assert api.job(job_id)["state"] == "PENDING"
    api.post("/api/v1/nodes/dgx1/resume", headers=api.admin)
    api.cycle()
    assert api.job(job_id)["state"] == "RUNNING"
    nodes = {n["name"]: n for n in api.get("/api/v1/nodes", headers=api.admin).json()}
    assert nodes["dgx1"]["gpus_allocated"] == 4 and nodes["dgx1"]["gpus_total"] == 8


def test_two_node_job_gets_two_allocations(api):
    job_id = api.submit(gpus=2, nodes=2, gpu_model="rtx4090").json()["id"]
    api.cycle()
    j = api.job(job_id)
    assert j["state"] == "RUNNING" and sorted(j["nodes"]) == ["desk-001", "desk-002"]


def test_tenant_admin_and_tokens(api):
    r = api.post("/api/v1/tenants/robotics", json={"quota": "a100=2", "weight": 2}, headers=api.admin)
    assert r.status_code == 201 and r.json()["quota"] == {"a100": 2}
    r = api.patch("/api/v1/tenants/robotics", json={"quota": {"a100": "x"}}, headers=api.admin)
    assert r.status_code == 422
    assert api.post("/api/v1/tenants/robotics", json={}, headers=api.admin).status_code == 422
    names = [t["name"] for t in api.get("/api/v1/tenants", headers=api.admin).json()]
    assert {"default", "vision", "speech", "robotics"} <= set(names)
    assert api.post("/api/v1/tokens", json={"user": "x", "tenant": "ghost"}, headers=api.admin).status_code == 422


def test_openapi_is_served(api):
    spec = api.get("/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"]


def test_audit_log_records_who_did_what(api):
    alice = api.token("alice", "vision")
    job = api.submit(headers=alice).json()["id"]
    api.post(f"/api/v1/jobs/{job}/cancel", headers=alice)
    api.post("/api/v1/nodes/dgx1/drain", json={"reason": "fan"}, headers=api.admin)
    assert api.get("/api/v1/audit", headers=alice).status_code == 403
    rows = api.get("/api/v1/audit", headers=api.admin).json()
    seen = [(r["user"], r["action"], r["target"]) for r in rows]
    assert ("alice", "submit", f"job/{job}") in seen and ("alice", "cancel", f"job/{job}") in seen
    assert ("admin", "node-drain", "node/dgx1") in seen
    only = api.get("/api/v1/audit?action=cancel", headers=api.admin).json()
    assert [r["action"] for r in only] == ["cancel"]


def test_nodes_json_is_what_the_response_models_give():
    """GET /nodes is built from plain dicts (api/convert.nodes_json): the same bytes as NodeOut."""
    from gpufleet.api.convert import json_list, node_out, nodes_json
    from gpufleet.api.schemas import NodeOut
    from gpufleet.domain import NodeState
    from tests.scheduler.builders import make_node
    nodes = [make_node("n1", 4, labels={"rack": "r1", "note": "größe \"x\""}),
             make_node("n2", 0, state=NodeState.DRAIN, cpus=8, mem_mb=1024), make_node("n3", 2, "h100")]
    nodes[1].reason = "fan ✗"
    owners = {("n1", 0): 7, ("n1", 3): 9, ("n3", 1): 2}
    assert nodes_json(nodes, owners) == json_list(NodeOut, [node_out(n, owners) for n in nodes]).body


def test_nodes_show_other_tenants_gpus_as_taken_not_by_whom(api):
    alice = api.token("alice", "vision")
    bob = api.token("bob", "speech")
    job = api.submit(headers=alice, gpus=2, gpu_model="a100", env={"GPUFLEET_FAKE_SECONDS": "600"}).json()["id"]
    api.cycle()
    assert api.job(job)["state"] == "RUNNING"

    def holders(headers, path="/api/v1/nodes"):
        body = api.get(path, headers=headers).json()
        nodes = body if isinstance(body, list) else [body]
        return sorted(g["job"] for n in nodes for g in n["gpus"] if g["job"] is not None)

    (node,) = api.job(job)["nodes"]
    assert holders(alice) == [job, job] and holders(api.admin) == [job, job]
    assert holders(bob) == [0, 0]  # taken, but not whose
    assert sum(n["gpus_allocated"] for n in api.get("/api/v1/nodes", headers=bob).json()) == 2
    assert holders(bob, f"/api/v1/nodes/{node}") == [0, 0] and holders(alice, f"/api/v1/nodes/{node}") == [job, job]
