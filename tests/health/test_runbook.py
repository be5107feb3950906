"""The Ansible runbook with hostile text: a REAL ansible-playbook run (connection: local)."""

from __future__ import annotations

import json
import stat

import pytest

from gpufleet.health.runbook import AnsibleRunbook

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ out }}/{{ gpufleet_node }}.round{{ gpufleet_round }}.json"
        content: "{{ {'node': gpufleet_node, 'reason': gpufleet_reason, 'round': gpufleet_round} | to_json }}"
      delegate_to: localhost
      connection: local
"""


@pytest.fixture
def runbook(tmp_path):
    (tmp_path / "pb.yml").write_text(PLAYBOOK)
    (tmp_path / "out").mkdir()
    return AnsibleRunbook(str(tmp_path / "pb.yml"), connection_local=True, timeout_s=120,
                          extravars={"out": str(tmp_path / "out")}, artifacts_dir=str(tmp_path / "runs"))


def test_a_hostile_reason_reaches_the_playbook_verbatim_and_is_never_templated(runbook, tmp_path):
    pwned = tmp_path / "pwned"
    reason = ("xid 79 {{ lookup('pipe', 'touch %s') }} {%% if true %%}yes{%% endif %%} {{ 6*7 }}\n"
              "--extra-vars gpufleet_round=9 \"quote' $(id) `id` \u2028 k=v" % pwned)
    result = runbook("node-1", reason, 1)
    assert result.ok, result.message
    got = json.loads((tmp_path / "out" / "node-1.round1.json").read_text())
    assert got == {"node": "node-1", "reason": reason, "round": 1}
    assert not pwned.exists()
    extravars = tmp_path / "runs" / "node-1" / "env" / "extravars"
    assert stat.S_IMODE(extravars.stat().st_mode) == 0o600


def test_each_run_gets_its_own_extravars_not_the_first_runs(runbook, tmp_path):
    """ansible-runner never rewrites an existing env/extravars: gpufleet must, every run."""
    assert runbook("node-1", "first", 1).ok
    assert runbook("node-1", "second", 2).ok
    got = json.loads((tmp_path / "out" / "node-1.round2.json").read_text())
    assert got == {"node": "node-1", "reason": "second", "round": 2}


@pytest.mark.parametrize("node", ["a,b", "n1:n2", "!n1", "n*", "~.*", "n\n1", "n&m"])
def test_a_node_name_that_is_an_ansible_pattern_is_refused(runbook, node, tmp_path):
    result = runbook(node, "r", 1)
    assert not result.ok and "not a plain host name" in result.message
    assert not list((tmp_path / "out").iterdir())
