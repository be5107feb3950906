"""`python -m gpufleet.health`: one run on this host (real NVML where present) or on the fake."""

from __future__ import annotations

import json

from gpufleet.health.__main__ import main
from tests.health.conftest import EXAMPLE_INVENTORY


def test_fake_fault_exits_2_with_the_reason(capsys):
    rc = main(["--inventory", str(EXAMPLE_INVENTORY), "--node", "desk-001", "--fake-fault", "overheat"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 2 and out["node"] == "desk-001" and out["reason"].startswith("thermal: GPU 0: 90 C")


def test_this_host_never_crashes(capsys):
    rc = main([])
    out = json.loads(capsys.readouterr().out)
    assert rc in (0, 1, 2) and {r["check"] for r in out["results"]} >= {"gpu_inventory", "xid", "disk", "memory"}
