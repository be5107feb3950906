"""`gpufleet perf prolog|sample|epilog` pieces (health/perf_local.py) on the fake NVML, and the
CLI's bad perf input (exit 2, one line naming the field)."""

from __future__ import annotations

import pytest

from gpufleet.domain.perf import PerfPolicy
from gpufleet.health.fake_nvml import FakeNvmlFleet
from gpufleet.health.perf_local import load_state, run_epilog, run_prolog, save_state, take_sample
from gpufleet.inventory.discovery import fake_node
from tests.cli.test_cli_bad_input import one_error_line
from tests.cli.test_cli_errors import run


@pytest.fixture
def nvml():
    fleet = FakeNvmlFleet([fake_node(2, "a100", "n1")])
    m = fleet.for_node("n1")
    m.nvmlInit()
    m.fleet = fleet
    return m


def test_prolog_sample_epilog_through_a_state_file(nvml, tmp_path):
    st = run_prolog(nvml, PerfPolicy(clocks="1200"), 10.0)
    assert st["ok"] and st["expected_sm"] == {"0": 1200, "1": 1200}
    path = tmp_path / "perf.json"
    save_state(path, st)
    st = load_state(path)
    take_sample(nvml, st, 11.0)
    nvml.fleet.clock_drop("n1", 1, 800)
    verdict = run_epilog(nvml, st, 12.0)
    assert verdict["perf_valid"] is False and "clock_drop: GPU 1: SM clock fell to 800 MHz" in verdict["reason"]
    assert verdict["conditions"]["samples"] == 4
    assert nvml.fleet._state("n1").gpus[0].locked_sm_mhz is None  # restored


def test_prolog_refuses_a_stray_process_and_restores_clocks(nvml):
    nvml.fleet.stray_process("n1", 0, pid=99)
    st = run_prolog(nvml, PerfPolicy(clocks="max"), 1.0)
    assert not st["ok"]
    bad = [c for c in st["prolog"] if not c["ok"]]
    assert bad[0]["name"] == "stray_processes" and "pid 99" in bad[0]["reason"]
    assert nvml.fleet._state("n1").gpus[0].locked_sm_mhz is None


@pytest.mark.parametrize("args,field", [
    (("--perf-clocks", "turbo"), "perf.clocks"),
    (("--perf-max-temp", "5"), "perf.max_temp_c"),
    (("--perf-sample", "0"), "perf.sample_s"),
    (("--constraint", "driver>=abc"), "constraint"),
])
def test_bad_perf_input_exits_2_naming_the_field(args, field):
    one_error_line(run("submit", *args, "--", "true"), field)


def test_epilog_without_a_prolog_names_the_state_file(tmp_path):
    one_error_line(run("perf", "epilog", "--state", str(tmp_path / "none.json")), "state")
