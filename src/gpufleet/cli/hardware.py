"""show-node (hardware identity and its changes) and `gpufleet perf show|prolog|sample|epilog`."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional

import typer

from gpufleet.cli.output import print_json, table, when
from gpufleet.client import Client
from gpufleet.domain import ValidationError
from gpufleet.domain.perf import parse_perf

perf_app = typer.Typer(help="Clean-room performance runs: a job's verdicts; prolog/epilog inside an allocation.",
                       no_args_is_help=True)


def show_node(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A node's hardware identity (from NVML): per GPU product, UUID, serial, VBIOS, clocks...; changes."""
    with Client.from_env() as c:
        d = c.node_hardware(name)
    if as_json:
        print_json(d)
        return
    ident = d.get("identity") or {}
    print(f"{d['node']}  {d['state']}{'  ' + d['reason'] if d.get('reason') else ''}")
    for k in ("driver", "cuda_driver", "kernel"):
        print(f"  {k}: {ident.get(k) or '-'}")
    if not ident:
        print("  (no identity discovered: NVML does not reach this node)")
    for g in ident.get("gpus") or ():
        print(f"  GPU {g['index']}: {g['name']}  {g['uuid']}")
        print(f"    serial {g['serial'] or '-'}  vbios {g['vbios'] or '-'}  board {g['board_part'] or '-'}  "
              f"mem {g['memory_mb']} MiB  ecc {g['ecc'] or '-'}")
        print(f"    pcie gen{g['pcie_gen']}x{g['pcie_width']}  power limit {g['power_limit_w']} W  "
              f"sm max/app {g['max_sm_mhz']}/{g['app_sm_mhz']} MHz  mem max/app {g['max_mem_mhz']}/{g['app_mem_mhz']} MHz")
    for ch in d.get("changes") or ():
        print(f"  {when(ch['at'])}  {ch['change']}")


@perf_app.command("show")
def perf_show(job_id: int, samples: bool = typer.Option(False, "--samples", help="with every sample"),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """A perf job's runs: per attempt and node, perf_valid and why, the sampled conditions."""
    with Client.from_env() as c:
        runs = c.job_perf(job_id, samples)
    if as_json:
        print_json(runs)
        return
    def rng(cond: dict, key: str) -> str:
        m = cond.get(key)
        return f"{m['min']}-{m['max']}" if m else "-"
    table(("ATTEMPT", "NODE", "VALID", "SAMPLES", "SM MHZ", "TEMP C", "REASON"), [
        (r["attempt"], r["node"], {True: "yes", False: "no", None: "-"}[r["perf_valid"]],
         (r["conditions"] or {}).get("samples", 0), rng(r["conditions"] or {}, "sm_mhz"),
         rng(r["conditions"] or {}, "temp_c"), r["reason"])
        for r in runs
    ])


def _nvml(fake: Optional[str] = None, during_run: bool = False):
    """Real NVML, or with `--fake-nvml FILE` the fake NVML of one virtual node (GPU-less test and
    demo nodes): FILE is JSON {"gpus": 2, "model": "a100", "faults": [{"fault": "stray_process",
    "gpu": 0}, ...], "run_faults": [...]} (faults as FakeNvmlFleet.inject takes them, on every node
    or on the one their "node" names; run_faults only from the sample and epilog steps: a fault that
    starts during the run). The node is $SLURMD_NODENAME, $GPUFLEET_NODE (a pod) or the host name. Each step builds it afresh."""
    if fake:
        return _fake_nvml(fake, during_run)
    import pynvml  # nvidia-ml-py

    pynvml.nvmlInit()
    return pynvml


def _fake_nvml(path: str, during_run: bool):
    import json
    import socket

    from gpufleet.domain import Gpu, Node
    from gpufleet.health.fake_nvml import FakeNvmlFleet

    try:
        spec = json.loads(open(path).read())
        name = os.environ.get("SLURMD_NODENAME") or os.environ.get("GPUFLEET_NODE") or socket.gethostname()
        node = Node(name, gpus=tuple(Gpu(i, str(spec.get("model") or "a100")) for i in range(int(spec.get("gpus", 1)))))
        fleet = FakeNvmlFleet([node])
        for fault in [*(spec.get("faults") or ()), *((spec.get("run_faults") or ()) if during_run else ())]:
            if fault.get("node") in (None, name):  # a fault naming another node is not this one's
                fleet.inject({**fault, "node": name})
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ValidationError("fake_nvml", f"{path}: {e}") from None
    nvml = fleet.for_node(name)
    nvml.nvmlInit()
    return nvml


def _policy(clocks: Optional[str], max_temp: Optional[int], sample_s: Optional[float]):
    given = {k: v for k, v in (("clocks", clocks), ("max_temp_c", max_temp), ("sample_s", sample_s)) if v is not None}
    return parse_perf(given or True)


_STATE = typer.Option(None, "--state", help="state file between the steps (env GPUFLEET_PERF_STATE)")
_FAKE = typer.Option(None, "--fake-nvml", help="a fake NVML node described by this JSON file (GPU-less test nodes)")


@perf_app.command("prolog")
def perf_prolog(clocks: Optional[str] = typer.Option(None, "--clocks", help="as_is, base, max or MHz"),
                max_temp: Optional[int] = typer.Option(None, "--max-temp", help="start below this C"),
                state: Optional[str] = _STATE, fake_nvml: Optional[str] = _FAKE) -> None:
    """Inside an allocation (Slurm prolog, pod init): the clean-room checks on this node's GPUs.
    Exit 0: clean (clocks locked as asked); 1: refused, the reason on stdout as JSON."""
    from gpufleet.health.perf_local import run_prolog, save_state, state_path

    policy = _policy(clocks, max_temp, None)
    try:
        nvml = _nvml(fake_nvml)
    except ValidationError:
        raise
    except Exception as e:
        raise ValidationError("nvml", f"NVML unavailable on this node: {e}") from None
    result = run_prolog(nvml, policy, time.time())
    save_state(state_path(state), result)
    print_json({"ok": result["ok"], "prolog": result["prolog"]})
    sys.exit(0 if result["ok"] else 1)


@perf_app.command("sample")
def perf_sample(every: float = typer.Option(5.0, "--every", help="seconds between samples"),
                count: int = typer.Option(0, "--count", help="stop after N samples (0: until killed)"),
                state: Optional[str] = _STATE, fake_nvml: Optional[str] = _FAKE) -> None:
    """Sample clocks, temperature, power, utilisation, throttling into the state file (run it in
    the background next to the benchmark)."""
    from gpufleet.health.perf_local import load_state, save_state, state_path, take_sample

    path = state_path(state)
    nvml = _nvml(fake_nvml, during_run=True)
    n = 0
    while count == 0 or n < count:
        st = load_state(path)
        take_sample(nvml, st, time.time())
        save_state(path, st)
        n += 1
        if count == 0 or n < count:
            time.sleep(every)


@perf_app.command("epilog")
def perf_epilog(state: Optional[str] = _STATE, fake_nvml: Optional[str] = _FAKE) -> None:
    """After the command: last sample, verdicts (throttling, clock drop), clocks restored. Prints
    {perf_valid, reason, conditions, ...} as JSON; exit 0 when valid, 1 when not."""
    from gpufleet.health.perf_local import load_state, run_epilog, save_state, state_path

    path = state_path(state)
    if not path.exists():
        raise ValidationError("state", f"{path} not found: run `gpufleet perf prolog` first")
    st = load_state(path)
    verdict = run_epilog(_nvml(fake_nvml, during_run=True), st, time.time())
    save_state(path, st)  # with the last sample: every sample stays readable beside the verdict
    print_json(verdict)
    sys.exit(0 if verdict["perf_valid"] else 1)


def _wide_rows(rows: list[Any]) -> list[tuple]:
    return [(n.name, n.state, n.gpus_total, n.gpus_allocated, n.labels.get("sku") or ",".join(n.gpu_models) or "-",
             n.labels.get("driver", "-"), n.labels.get("cuda_driver", "-"), n.labels.get("vbios", "-"),
             n.labels.get("kernel", "-"), n.reason) for n in rows]


WIDE_HEADERS = ("NODE", "STATE", "GPUS", "ALLOC", "SKU", "DRIVER", "CUDA", "VBIOS", "KERNEL", "REASON")
