"""`gpufleet jobs --limit N` follows the server's keyset pages (100 a page) up to N jobs."""

import json

import httpx


def test_jobs_limit_follows_the_server_pages(gf_server):
    headers = {"Authorization": f"Bearer {gf_server.server.admin_token}"}
    r = httpx.post(gf_server.url + "/api/v1/jobs/batch", json=[{"command": ["true"]}] * 300, headers=headers)
    assert r.status_code == 201
    out = gf_server.cli("jobs", "--limit", "250", "--json")
    ids = [j["id"] for j in json.loads(out.stdout)]
    assert out.returncode == 0 and len(set(ids)) == 250 and ids == sorted(ids, reverse=True)
    assert ids[0] == max(j["id"] for j in r.json())
