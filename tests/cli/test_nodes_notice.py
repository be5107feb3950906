"""`gpufleet nodes` says when jobs are not isolated (the server not root, or an engine that runs
every job as the server's account): one notice line on stderr, the table unchanged on stdout."""

from __future__ import annotations

import json
from dataclasses import replace


def test_nodes_prints_the_notice_when_jobs_are_not_isolated(gf_server):
    r = gf_server.cli("nodes")
    assert r.returncode == 0, r.stderr
    notice = [line for line in r.stderr.splitlines() if line.startswith("notice: ")]
    assert len(notice) == 1 and "not a security boundary" in notice[0]
    assert r.stdout.startswith("NODE")
    assert json.loads(gf_server.cli("nodes", "--json").stdout)  # --json: the data only


def test_no_notice_when_jobs_run_as_their_owners(gf_server):
    ctx = gf_server.server.ctx
    ctx.accounts = replace(ctx.accounts, run_as_owner=True)
    r = gf_server.cli("nodes")
    assert r.returncode == 0 and "notice" not in r.stderr
