"""Remediation runbooks: an Ansible playbook run through ansible-runner, limited to the node.

The playbook gets extra vars `gpufleet_node`, `gpufleet_reason`, `gpufleet_round` (and any from
config). Without an inventory file every node is one host `<node>` with `ansible_host: <address>`;
`connection: local` makes every node this host (tests, single-host labs).

The extra vars are a YAML file, `<run dir>/env/extravars` (mode 0600), rewritten for every run and
passed as `-e @file`: never `k=v` text on a command line (visible in `ps`, split on spaces). The
node and the reason are tagged `!unsafe`: a reason is text from a health check (a script's output,
a driver message) and Ansible templates `{{ ... }}` in extra vars, so an unmarked reason
`{{ lookup('pipe', ...) }}` would run a command on the server. Extra vars from the config are the
admin's and stay templatable. The node name also goes to `--limit`, an Ansible host pattern, so a
node whose name is not a plain host name (`,` `:` `!` `&` `*` `~` ...) is refused, not run.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from gpufleet.health.remediation import StepResult

_HOST = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)


def ansible_playbook_binary() -> str | None:
    """`ansible-playbook` on PATH, else next to this Python (a venv whose bin is not on PATH)."""
    found = shutil.which("ansible-playbook")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else None


@dataclass
class AnsibleRunbook:
    playbook: str
    inventory: str | None = None  # an Ansible inventory file; None: built from `address_of`
    address_of: Callable[[str], str] = lambda node: node
    connection_local: bool = False
    timeout_s: float = 1800.0
    extravars: Mapping[str, Any] = field(default_factory=dict)
    artifacts_dir: str | None = None  # where ansible-runner keeps its run folders (default: a temp dir)

    def __call__(self, node: str, reason: str, round_: int) -> StepResult:
        import ansible_runner

        playbook = Path(self.playbook).resolve()
        if not playbook.is_file():
            return StepResult(False, f"playbook not found: {playbook}")
        binary = ansible_playbook_binary()
        if binary is None:
            return StepResult(False, "ansible-playbook not found (install ansible-core)")
        if not _HOST.fullmatch(node):
            return StepResult(False, f"node {node!r} is not a plain host name: not run (--limit reads a pattern)")
        data_dir = Path(self.artifacts_dir or tempfile.mkdtemp(prefix="gpufleet-runbook-")) / node
        data_dir.mkdir(parents=True, exist_ok=True)
        write_extravars(data_dir / "env" / "extravars", self.extravars,
                        {"gpufleet_node": node, "gpufleet_reason": reason}, {"gpufleet_round": int(round_)})
        runner = ansible_runner.run(
            private_data_dir=str(data_dir), playbook=str(playbook), inventory=self._inventory(node),
            limit=node, quiet=True, timeout=int(self.timeout_s), rotate_artifacts=5,
            envvars={"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
                     # ansible-runner starts `ansible-playbook` by name: make sure it is the one we found
                     "PATH": os.pathsep.join([str(Path(binary).parent), os.environ.get("PATH", "")])},
        )
        facts = {"status": runner.status, "rc": runner.rc, "stats": runner.stats or {},
                 "artifacts": str(getattr(runner.config, "artifact_dir", data_dir))}
        if runner.status == "successful" and runner.rc == 0:
            return StepResult(True, f"playbook {playbook.name} ok", facts)
        return StepResult(False, f"playbook {playbook.name} {runner.status} (rc {runner.rc}): "
                                 f"{_first_failure(runner)}", facts)

    def _inventory(self, node: str) -> Any:
        if self.inventory:
            return str(Path(self.inventory).resolve())
        host: dict[str, Any] = {"ansible_host": self.address_of(node)}
        if self.connection_local:
            host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        return {"all": {"hosts": {node: host}}}


class _Unsafe(str):
    """A string Ansible must never template (YAML tag `!unsafe`)."""


class _ExtravarsDumper(yaml.SafeDumper):
    pass


_ExtravarsDumper.add_representer(_Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v), style='"'))


def write_extravars(path: Path, trusted: Mapping[str, Any], untrusted: Mapping[str, str],
                    plain: Mapping[str, int]) -> None:
    """The extra-vars file of one run (replaced atomically, 0600: config extra vars may hold secrets).
    ansible-runner passes an existing `env/extravars` as `-e @file` and never rewrites it itself."""
    data = {**dict(trusted), **{k: _Unsafe(v) for k, v in untrusted.items()}, **dict(plain)}
    text = yaml.dump(data, Dumper=_ExtravarsDumper, allow_unicode=False, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _first_failure(runner: Any) -> str:
    try:
        for ev in runner.events:
            if ev.get("event") in ("runner_on_failed", "runner_on_unreachable"):
                data = ev.get("event_data", {})
                res = data.get("res", {})
                msg = res.get("msg") or res.get("stderr") or ""
                return f"task '{data.get('task', '?')}': {str(msg).strip()[:300]}"
    except Exception:
        pass
    return "see the runner artifacts"
