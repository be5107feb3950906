"""Job lists come in keyset pages: newest first, 100 by default, a `Link: rel="next"` on a full page
that keeps the filters; the CLI/SDK follow it up to their --limit."""

import httpx
import pytest


def page(api, **params):
    r = api.get("/api/v1/jobs", params=params, headers=api.admin)
    assert r.status_code == 200, r.text
    nxt = r.links.get("next", {}).get("url")
    return [j["id"] for j in r.json()], (httpx.URL(nxt).params if nxt else None)


def test_pages_follow_the_link_without_gaps_or_repeats(api):
    r = api.post("/api/v1/jobs/batch", json=[{"command": ["true"]}] * 250, headers=api.admin)
    assert r.status_code == 201
    ids, nxt = page(api)
    assert len(ids) == 100 and ids == sorted(ids, reverse=True) and nxt["after"] == str(ids[-1])
    seen = list(ids)
    while nxt:
        ids, nxt = page(api, **dict(nxt.multi_items()))
        seen += ids
    assert seen == sorted({j["id"] for j in r.json()}, reverse=True)


def test_the_link_keeps_the_filters_and_states_merge_in_id_order(api):
    api.post("/api/v1/jobs/batch", json=[{"command": ["true"], "gpus": 1}] * 30, headers=api.admin)
    api.cycle()  # some start, the rest wait: the default list mixes PENDING and RUNNING
    states = {j["id"]: j["state"] for j in api.get("/api/v1/jobs", params={"limit": 1000}, headers=api.admin).json()}
    assert {"PENDING", "RUNNING"} <= set(states.values())
    ids, nxt = page(api, state=["PENDING", "RUNNING"], limit=7)
    assert nxt.get_list("state") == ["PENDING", "RUNNING"] and nxt["limit"] == "7"
    assert ids == sorted(states, reverse=True)[:7]
    cancelled = page(api, state="CANCELLED")[0]
    assert cancelled == []


@pytest.mark.parametrize("params, field", [({"limit": 1001}, "limit"), ({"limit": 0}, "limit"),
                                           ({"after": 2 ** 63}, "after"), ({"after": 0}, "after")])
def test_bad_page_parameters_are_422_naming_them(api, params, field):
    r = api.get("/api/v1/jobs", params=params, headers=api.admin)
    assert r.status_code == 422 and field in r.text


def test_a_tenant_pages_only_through_its_own_jobs(api):
    alice = api.token("alice", "vision")
    api.post("/api/v1/jobs/batch", json=[{"command": ["true"]}] * 5, headers=api.admin)
    mine = [api.submit(headers=alice).json()["id"] for _ in range(3)]
    r = api.get("/api/v1/jobs", params={"limit": 2, "tenant": "default"}, headers=alice)
    assert r.status_code == 200 and r.json() == []
    ids = [j["id"] for j in api.get("/api/v1/jobs", params={"limit": 2}, headers=alice).json()]
    assert ids == mine[::-1][:2]
