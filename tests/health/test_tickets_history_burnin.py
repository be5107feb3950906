"""Ticketers through their real client libraries to a real local HTTP receiver; flakiness history;
the scheduler burn-in callable."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gpufleet.domain import JobState, ValidationError
from gpufleet.health.burnin import NODE_CONSTRAINT, BurnInSpec, CommandBurnIn, SchedulerBurnIn, burn_in_job_spec
from gpufleet.health.history import failures_per_week, flakiness, group_by_node, iso_week, sparkline, top_failing_checks
from gpufleet.health.tickets import (
    GitLabTicketer, JiraTicketer, Ticket, WebhookTicketer, build_ticketer,
)
from gpufleet.health.types import CheckRecord, Status
from tests.health.receiver import Receiver

TICKET = Ticket(node="dgx1", title="[gpufleet] node dgx1 unhealthy", body="XID 79 twice",
                reason="health: xid: GPU 3: XID 79", rounds=3, dedupe_key="gpufleet-dgx1-1")


def test_webhook_ticketer_posts_json():
    with Receiver(routes={("POST", "/hook"): lambda r: (200, {"id": 42})}) as rx:
        ref = WebhookTicketer(f"{rx.url}/hook", headers={"Authorization": "Bearer s3cret"}).open(TICKET)
    (req,) = rx.requests
    assert req.headers["authorization"] == "Bearer s3cret"
    assert req.body["node"] == "dgx1" and req.body["labels"] == ["gpufleet", "hardware"]
    assert ref.system == "webhook" and ref.id == "42"


def test_webhook_error_status_raises():
    with Receiver(routes={("POST", "/hook"): lambda r: (503, {"error": "down"})}) as rx:
        with pytest.raises(Exception, match="503"):
            WebhookTicketer(f"{rx.url}/hook").open(TICKET)


def test_jira_ticketer_uses_the_rest_api():
    routes = {("POST", "/rest/api/2/issue"): lambda r: (201, {"id": "10001", "key": "LAB-17",
                                                               "self": "http://x/rest/api/2/issue/10001"})}
    with Receiver(routes=routes) as rx:
        ref = JiraTicketer(server=rx.url, project="LAB", token="tok").open(TICKET)
    posts = [r for r in rx.requests if r.method == "POST"]
    assert len(posts) == 1 and posts[0].path == "/rest/api/2/issue"
    fields = posts[0].body["fields"]
    assert fields["project"] == {"key": "LAB"} and fields["issuetype"] == {"name": "Bug"}
    assert fields["summary"] == TICKET.title and "node-dgx1" in fields["labels"]
    assert posts[0].headers["authorization"] == "Bearer tok"
    assert ref.id == "LAB-17" and ref.url == f"{rx.url}/browse/LAB-17"


def test_gitlab_ticketer_creates_an_issue():
    def created(req):
        return 201, {"id": 900, "iid": 5, "title": req.body["title"], "web_url": "http://gl/lab/hw/-/issues/5"}

    with Receiver(routes={("POST", "/api/v4/projects/lab%2Fhardware/issues"): created}) as rx:
        ref = GitLabTicketer(url=rx.url, project="lab/hardware", token="glpat").open(TICKET)
    (req,) = [r for r in rx.requests if r.method == "POST"]
    assert req.headers["private-token"] == "glpat"
    assert req.body["title"] == TICKET.title and "node::dgx1" in req.body["labels"]
    assert ref.system == "gitlab" and ref.id == "5" and ref.url.endswith("/issues/5")


def test_build_ticketer_by_config():
    assert build_ticketer(None) is None
    assert isinstance(build_ticketer({"kind": "webhook", "url": "http://x"}), WebhookTicketer)
    assert isinstance(build_ticketer({"kind": "jira", "server": "http://j", "project": "L"}), JiraTicketer)
    assert isinstance(build_ticketer({"kind": "gitlab", "url": "http://g", "project": 3}), GitLabTicketer)
    with pytest.raises(ValidationError, match="health.ticket.url"):
        build_ticketer({"kind": "webhook"})
    with pytest.raises(ValidationError, match="health.ticket.kind"):
        build_ticketer({"kind": "pager"})


def ts(y, m, d, h=12):
    return datetime(y, m, d, h, tzinfo=timezone.utc).timestamp()


def rec(node, check, at, status, run_id):
    return CheckRecord(node, check, at, status, "", {}, 0.0, run_id)


def test_failures_per_iso_week():
    now = ts(2026, 1, 14)  # Wednesday of 2026-W03
    records = [
        rec("dgx1", "xid", ts(2026, 1, 12), Status.FAIL, "a"),
        rec("dgx1", "ecc", ts(2026, 1, 12), Status.FAIL, "a"),  # same run: one failure
        rec("dgx1", "xid", ts(2026, 1, 13), Status.FAIL, "b"),
        rec("dgx1", "xid", ts(2026, 1, 5), Status.FAIL, "c"),  # W02
        rec("dgx1", "xid", ts(2026, 1, 6), Status.WARN, "d"),
        rec("dgx1", "xid", ts(2025, 12, 29), Status.OK, "e"),  # W01 of 2026 (ISO)
        rec("desk", "disk", ts(2026, 1, 14), Status.FAIL, "f"),
    ]
    assert iso_week(ts(2025, 12, 29)) == "2026-W01"
    by_node = flakiness(group_by_node(records), now, weeks=4)
    assert by_node["dgx1"] == {"2025-W52": 0, "2026-W01": 0, "2026-W02": 1, "2026-W03": 2}
    assert by_node["desk"]["2026-W03"] == 1
    assert failures_per_week([], now, weeks=2) == {"2026-W02": 0, "2026-W03": 0}
    assert top_failing_checks(records) == [("xid", 3), ("ecc", 1), ("disk", 1)]
    assert sparkline([0, 1, 2, 4]) == "·▂▄█" and sparkline([0, 0]) == "··"


def test_scheduler_burn_in_submits_a_pinned_job_and_waits(lab_nodes):
    states = iter([(JobState.PENDING, "Resources"), (JobState.RUNNING, ""), (JobState.SUCCEEDED, "")])
    submitted = []
    sleeps = []
    burn = SchedulerBurnIn(submit=lambda spec: submitted.append(spec) or 77, state_of=lambda j: next(states),
                           node_of=lab_nodes.__getitem__, spec=BurnInSpec(command=("dcgmi", "diag", "-r", "3")),
                           sleep=sleeps.append, poll_s=5)
    result = burn("dgx1")
    assert result.ok and result.message == "burn-in job 77 SUCCEEDED" and len(sleeps) == 2
    (spec,) = submitted
    assert spec.gpus == 8 and spec.constraints == {NODE_CONSTRAINT: "dgx1"} and spec.tenant == "ops"
    assert spec.command == ("dcgmi", "diag", "-r", "3") and spec.requeue is False


def test_scheduler_burn_in_timeout_cancels(lab_nodes):
    clock = iter(range(0, 100, 10))
    cancelled = []
    burn = SchedulerBurnIn(submit=lambda spec: 5, state_of=lambda j: (JobState.PENDING, "Resources"),
                           node_of=lab_nodes.__getitem__, spec=BurnInSpec(timeout_s=25), cancel=cancelled.append,
                           clock=lambda: next(clock), sleep=lambda s: None)
    result = burn("desk-001")
    assert not result.ok and "still PENDING after 25s" in result.message and cancelled == [5]


def test_burn_in_spec_from_config(lab_nodes):
    spec = BurnInSpec.from_config({"command": ["stress"], "gpus": 1, "time_limit": "30m"})
    assert burn_in_job_spec(lab_nodes["dgx1"], spec).gpus == 1 and spec.time_limit_s == 1800
    with pytest.raises(ValidationError):
        BurnInSpec.from_config({"command": "stress --all"})


HOSTILE_REASON = "xid 79\n/close\n/assign @root\n/confidential\n@all ```` {noformat} {NOFORMAT} [x|http://evil]\r\x00\u2028"
HOSTILE = Ticket(node="dgx1,urgent", title=f"[gpufleet] node dgx1 unhealthy: {HOSTILE_REASON}", body=HOSTILE_REASON,
                 reason=HOSTILE_REASON, rounds=3, dedupe_key="gpufleet-dgx1\n-1")


def test_gitlab_body_is_one_literal_block_so_quick_actions_and_mentions_stay_text():
    def created(req):
        return 201, {"id": 900, "iid": 5, "web_url": "http://gl/lab/hw/-/issues/5"}

    with Receiver(routes={("POST", "/api/v4/projects/lab%2Fhardware/issues"): created}) as rx:
        GitLabTicketer(url=rx.url, project="lab/hardware", token="glpat").open(HOSTILE)
    (req,) = [r for r in rx.requests if r.method == "POST"]
    lines = req.body["description"].split("\n")
    fence = lines[0][:-len("text")]
    assert set(fence) == {"`"} and len(fence) > 4 and lines[-1] == fence
    assert not any(line.startswith(fence) for line in lines[1:-1])  # nothing inside can close it
    assert "/close" in lines[1:-1] and "\x00" not in req.body["description"]
    assert "\n" not in req.body["title"] and "\x00" not in req.body["title"]
    assert req.body["labels"].split(",") == ["gpufleet", "hardware", "node::dgx1_urgent"]


def test_jira_body_is_one_noformat_block_and_title_one_line():
    routes = {("POST", "/rest/api/2/issue"): lambda r: (201, {"id": "1", "key": "LAB-1", "self": "http://x"})}
    with Receiver(routes=routes) as rx:
        JiraTicketer(server=rx.url, project="LAB", token="tok").open(HOSTILE)
    (post,) = [r for r in rx.requests if r.method == "POST"]
    fields = post.body["fields"]
    body = fields["description"]
    assert body.startswith("{noformat}\n") and body.endswith("\n{noformat}")
    assert body.lower().count("{noformat") == 2  # only the block's own
    assert "\n" not in fields["summary"] and len(fields["summary"]) <= 250
    assert "node-dgx1_urgent" in fields["labels"]


def test_webhook_idempotency_header_survives_a_hostile_node_name():
    with Receiver(routes={("POST", "/hook"): lambda r: (200, {"id": 1})}) as rx:
        WebhookTicketer(f"{rx.url}/hook").open(HOSTILE)
    (req,) = rx.requests
    assert req.headers["idempotency-key"] == "gpufleet-dgx1_-1" and req.body["reason"] == HOSTILE_REASON


def test_command_burn_in_refuses_a_node_name_ssh_would_read_as_options_or_shell(tmp_path):
    pwned = tmp_path / "pwned"
    burn = CommandBurnIn(("sh", "-c", 'echo "$@" > "$0"', str(tmp_path / "argv"), "ssh", "{node}", "dcgmi"))
    for node in ("-oProxyCommand=touch " + str(pwned), "n1;touch " + str(pwned), "n1 n2", "a\nb", "$(id)"):
        result = burn(node)
        assert not result.ok and "not a plain host name" in result.message
    assert not (tmp_path / "argv").exists() and not pwned.exists()
    assert burn("dgx-01.lab").ok and (tmp_path / "argv").read_text() == "ssh dgx-01.lab dcgmi\n"
