"""Run the built-in checks once on THIS host with real NVML and print JSON (no server needed).

    python -m gpufleet.health                               # node = what NVML finds here
    python -m gpufleet.health --inventory lab.yaml --node dgx1   # compare with an inventory entry
    python -m gpufleet.health --fake-fault xid              # the same checks against the fake NVML

Exit code: 0 ok, 1 warn, 2 fail.
"""

from __future__ import annotations

import argparse
import json
import sys

from gpufleet.health.config import parse_health
from gpufleet.health.fake_nvml import FakeNvmlFleet
from gpufleet.health.runner import HealthRunner, LocalNvml
from gpufleet.health.types import Status
from gpufleet.inventory import load_inventory, nvml_node
from gpufleet.inventory.discovery import local_node_base


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpufleet.health")
    p.add_argument("--inventory")
    p.add_argument("--node")
    p.add_argument("--fake-fault", help="run against the fake NVML with this fault on GPU 0 (demo)")
    args = p.parse_args(argv)
    if args.inventory:
        nodes = {n.name: n for n in load_inventory(args.inventory).nodes}
        node = nodes[args.node] if args.node else next(iter(nodes.values()))
    else:
        node, why = nvml_node()
        if node is None:
            node = local_node_base()
            print(f"note: {why}", file=sys.stderr)
    checks = parse_health({}).checks
    if args.fake_fault:
        fleet = FakeNvmlFleet([node])
        runner = HealthRunner(checks, fleet)
        runner.run(node)  # arm the XID watcher
        fleet.inject({"node": node.name, "fault": args.fake_fault, "gpu": 0})
    else:
        runner = HealthRunner(checks, LocalNvml([node.name]))
    health = runner.run(node)
    runner.close()
    print(json.dumps(health.to_dict(), indent=2, default=str))
    return {Status.OK: 0, Status.WARN: 1, Status.FAIL: 2}[health.status]


if __name__ == "__main__":
    sys.exit(main())
