"""End to end on a real `gpufleet serve` (local engine, the example lab), driven by the CLI:
a job's artifacts land in a real HTTP repository (nginx WebDAV from scripts/dev-artifacts.sh)
with a correct sha256 and come back through gpufleet; a 2 x 2 matrix runs its two possible
cells and reports the impossible ones at submit; an array sets GPUFLEET_ARRAY_INDEX; a
dependency waits, then runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import EXAMPLE_LAB, require_engine

JOB = ("mkdir -p out logs/x && echo '{\"v\": 1}' > out/r.json && head -c 300000 /dev/urandom > out/big.bin"
       " && echo hello > logs/x/y.log && echo skip > notes.txt && echo done")


@pytest.fixture
def db_url():
    return None  # SQLite: the stores' SQL runs on PostgreSQL in tests/store


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="gpufleet-e2e-art-", dir="/tmp")
    os.chmod(d, 0o777)  # a root server runs the job as `nobody`
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_artifacts_land_in_nginx_with_their_sha256_and_come_back(server_factory, tmp_path, workdir):
    require_engine("GPUFLEET_TEST_ARTIFACTS_URL", "the nginx artifact repository")
    repo = os.environ["GPUFLEET_TEST_ARTIFACTS_URL"]
    cfg = tmp_path / "artifacts.yaml"
    cfg.write_text(yaml.safe_dump({"artifacts": {"store": "http", "url": repo, "flavor": "webdav"}}))
    server = server_factory(["--inventory", str(EXAMPLE_LAB), "--config", str(cfg)]).start()
    job = server.submit("-C", str(workdir), "--artifact", "out/*", "--artifact", "logs/**", "--",
                        "sh", "-c", JOB)
    assert server.wait_state(job, {"SUCCEEDED", "FAILED"}, timeout=30)["state"] == "SUCCEEDED"
    deadline = time.monotonic() + 20
    while len(rows := server.cli_json("artifacts", str(job))) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)  # collected by the server's worker once the attempt's end is recorded
    assert sorted(a["path"] for a in rows) == ["logs/x/y.log", "out/big.bin", "out/r.json"]
    for a in rows:
        local = (workdir / a["path"]).read_bytes()
        assert a["sha256"] == hashlib.sha256(local).hexdigest() and a["size"] == len(local)
        assert a["store"] == "http" and a["location"].startswith(repo + "/default/")
        kept = httpx.get(a["location"]).content  # what nginx really holds
        assert hashlib.sha256(kept).hexdigest() == a["sha256"]
    dest = tmp_path / "big.bin"
    r = server.cli("artifacts", "get", str(job), "out/big.bin", "-o", str(dest))
    assert dest.read_bytes() == (workdir / "out/big.bin").read_bytes() and "sha256" in r.stdout
    folder = tmp_path / "all"
    server.cli("artifacts", "get", str(job), "-o", str(folder))
    assert (folder / "logs/x/y.log").read_text() == "hello\n"
    missing = server.cli("artifacts", "get", str(job), "notes.txt", "-o", str(tmp_path / "n"), check=False)
    assert missing.returncode != 0 and not (tmp_path / "n").exists()


def test_matrix_array_and_dependency_from_the_cli(server, workdir):
    r = server.cli("submit", "-C", str(workdir), "--matrix", "gpu_model=a100,rtx4090",
                   "--matrix", "driver=560.35,550.54", "--", "sh", "-c", "echo cell $CUDA_VISIBLE_DEVICES")
    head = r.stdout.split()
    group_id, jobs = int(head[1].rstrip(":")), [int(x) for x in head[4:]]
    assert r.stdout.startswith(f"group {group_id}: 2 job(s)") and len(jobs) == 2
    impossible = [line for line in r.stderr.splitlines() if "cannot run here" in line]
    assert len(impossible) == 2 and all("driver=550.54" in line for line in impossible)
    for j in jobs:
        assert server.wait_state(j, {"SUCCEEDED", "FAILED"}, timeout=30)["state"] == "SUCCEEDED"
    g = server.cli_json("group", "show", str(group_id))
    assert g["summary"] == {"pass": 2, "impossible": 2}
    nodes = {c["cell"]["gpu_model"]: server.cli_json("show", str(c["job_id"]))["nodes"]
             for c in g["cells"] if c["job_id"]}
    assert nodes["a100"] == ["dgx1"] and nodes["rtx4090"][0].startswith("desk-")
    table = server.cli("group", "show", str(group_id)).stdout
    assert "IMPOSSIBLE" in table and "pass" in table

    arr = json.loads(server.cli("submit", "--json", "-C", str(workdir), "--array", "0-3%2", "--gpu-model",
                                "rtx4090", "--", "sh", "-c",
                                "echo index=$GPUFLEET_ARRAY_INDEX group=$GPUFLEET_GROUP_ID").stdout)
    tasks = [c["job_id"] for c in arr["cells"]]
    after = server.submit("-C", str(workdir), "--dependency", f"afterok:{tasks[-1]}", "--", "echo", "after")
    for i, t in enumerate(tasks):
        server.wait_log(t, f"index={i} group={arr['id']}")
    assert server.wait_state(after, {"SUCCEEDED"}, timeout=30)["state"] == "SUCCEEDED"
    bad = server.cli("submit", "--dependency", "afterok:99999", "--", "true", check=False)
    assert bad.returncode == 2 and "dependency: no job 99999" in bad.stderr
