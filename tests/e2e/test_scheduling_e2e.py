"""The scheduler through the real server and CLI: quota reclaim by preemption, gang, booking."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import EXAMPLE_LAB
from tests.e2e.conftest import ServerProc, stop_all_jobs

pytestmark = pytest.mark.e2e


@pytest.fixture
def lab(tmp_path):
    s = ServerProc(tmp_path, None, ["--inventory", str(EXAMPLE_LAB)]).start()
    yield s
    s.stop()
    stop_all_jobs(tmp_path)


def as_user(lab: ServerProc, user: str, tenant: str) -> dict:
    return {"GPUFLEET_TOKEN": lab.cli("token", "create", "--user", user, "--tenant", tenant).stdout.strip()}


def submit(lab, env, *args) -> int:
    return int(lab.cli("submit", *args, env=env).stdout)


def test_borrowed_gpus_are_reclaimed_by_preemption(lab):
    vision, speech = as_user(lab, "vic", "vision"), as_user(lab, "sam", "speech")
    # vision's quota is a100=4: the second job borrows speech's idle share
    own = submit(lab, vision, "--gpus", "4", "--gpu-model", "a100", "--", "sleep", "60")
    borrowed = submit(lab, vision, "--gpus", "4", "--gpu-model", "a100", "--", "sleep", "60")
    lab.wait_state(own, {"RUNNING"})
    lab.wait_state(borrowed, {"RUNNING"})
    # speech reclaims its quota: one vision job (the borrowed one) must make room
    reclaim = submit(lab, speech, "--gpus", "4", "--gpu-model", "a100", "--", "sleep", "60")
    lab.wait_state(reclaim, {"RUNNING"}, timeout=30)
    states = {j: lab.cli_json("show", str(j)) for j in (own, borrowed)}
    requeued = [j for j, s in states.items() if s["state"] == "PENDING"]
    assert len(requeued) == 1, states
    victim = states[requeued[0]]
    assert victim["restarts"] == 1
    assert any(e["old"] == "RUNNING" and e["new"] == "PENDING" for e in victim["events"])
    assert "reempt" in " ".join(e["reason"] for e in victim["events"])
    # while vision is at its quota and the rest is speech's, the requeued job says why it waits
    jobs = json.loads(lab.cli("jobs", "--json", env=vision).stdout)
    reason = next(j["reason"] for j in jobs if j["id"] == requeued[0])
    assert reason and reason != "Submitted"
    lab.cli("cancel", str(own), str(borrowed), str(reclaim))


def test_hard_limit_blocks_borrowing_with_a_reason(lab):
    lab.cli("tenant", "create", "robotics", "--quota", "a100=2", "--max", "a100=2")
    robo = as_user(lab, "rob", "robotics")
    first = submit(lab, robo, "--gpus", "2", "--gpu-model", "a100", "--", "sleep", "60")
    lab.wait_state(first, {"RUNNING"})
    second = submit(lab, robo, "--gpus", "2", "--gpu-model", "a100", "--", "sleep", "60")
    time.sleep(1.5)
    j = lab.cli_json("show", str(second))
    assert j["state"] == "PENDING" and "a100" in j["reason"] and "Quota" in j["reason"], j["reason"]
    table = lab.cli("jobs", env=robo).stdout
    assert "Quota" in table  # the REASON column shows it
    lab.cli("cancel", str(first), str(second))


def test_two_node_gang_starts_together(lab):
    env = as_user(lab, "vic", "vision")
    blocker = submit(lab, env, "--gpus", "2", "--gpu-model", "rtx4090", "--", "sleep", "60")
    lab.wait_state(blocker, {"RUNNING"})
    gang = submit(lab, env, "-N", "2", "--gpus", "2", "--gpu-model", "rtx4090", "--", "sh", "-c",
                  "echo $NODE_RANK $WORLD_SIZE")
    time.sleep(1.0)
    waiting = lab.cli_json("show", str(gang))
    assert waiting["state"] == "PENDING" and waiting["nodes"] == []  # no partial hold
    assert "Resources" in waiting["reason"], waiting["reason"]
    lab.cli("cancel", str(blocker))
    done = lab.wait_state(gang, {"SUCCEEDED", "FAILED"}, timeout=30)
    assert done["state"] == "SUCCEEDED" and sorted(done["nodes"]) == ["desk-001", "desk-002"]
    assert done["started_at"] >= lab.cli_json("show", str(blocker))["ended_at"]


def test_booking_reserves_a_node_for_its_tenant(lab):
    vision, speech = as_user(lab, "vic", "vision"), as_user(lab, "sam", "speech")
    booking = json.loads(lab.cli("book", "--nodes", "desk-001", "--start", "now", "--duration", "1h",
                                 "--json", env=vision).stdout)
    assert booking["nodes"] == ["desk-001"]
    # others land elsewhere, or wait: never on the booked node
    others = [submit(lab, speech, "--gpus", "2", "--gpu-model", "rtx4090", "--", "sleep", "30") for _ in range(2)]
    lab.wait_state(others[0], {"RUNNING"})
    time.sleep(1.0)
    second = lab.cli_json("show", str(others[1]))
    assert lab.cli_json("show", str(others[0]))["nodes"] == ["desk-002"]
    assert second["state"] == "PENDING" and second["reason"]
    inside = submit(lab, vision, "--booking", str(booking["id"]), "--gpus", "2", "--gpu-model", "rtx4090",
                    "--", "true")
    done = lab.wait_state(inside, {"SUCCEEDED", "FAILED"})
    assert done["state"] == "SUCCEEDED" and done["nodes"] == ["desk-001"]
    r = lab.cli("submit", "--booking", str(booking["id"]), "--", "true", env=speech, check=False)
    assert r.returncode == 2 and "booking" in r.stderr
    assert [b["id"] for b in json.loads(lab.cli("bookings", "--json", env=vision).stdout)] == [booking["id"]]
    lab.cli("cancel", *map(str, others))
