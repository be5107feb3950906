"""Every built-in NVML check against the fake NVML, healthy and with each injected fault."""

from __future__ import annotations

import pynvml
import pytest

from gpufleet.health.fake_nvml import FakeNvmlFleet
from gpufleet.health.nvml_checks import (
    DriverCheck, EccCheck, GpuInventoryCheck, NvlinkCheck, PersistenceCheck, ThermalCheck, XidCheck,
    nvml_checks,
)
from gpufleet.health.runner import HealthRunner
from gpufleet.health.types import CheckContext, Status


def ctx_for(fleet, node):
    nvml = fleet.for_node(node.name)
    nvml.nvmlInit()
    return CheckContext(node=node, now=0.0, nvml=nvml)


def test_healthy_fleet_passes_every_check(fleet, lab_nodes):
    runner = HealthRunner(nvml_checks(), fleet)
    for node in lab_nodes.values():
        health = runner.run(node)
        assert health.status is Status.OK, health.to_dict()
        assert [r.check for r in health.records] == runner.check_names
    runner.close()


def test_gpu_inventory_missing_gpu(fleet, lab_nodes):
    ctx = ctx_for(fleet, lab_nodes["dgx1"])
    fleet.lose_gpu("dgx1", 5)
    r = GpuInventoryCheck().run(ctx)
    assert r.status is Status.FAIL
    assert r.message == "expected 8 GPUs, found 7; missing 1x a100"
    assert r.facts["found_count"] == 7


def test_gpu_inventory_wrong_model(lab_nodes):
    dgx = lab_nodes["dgx1"]
    fleet = FakeNvmlFleet([lab_nodes["desk-001"]])
    fleet._nodes["dgx1"] = fleet._nodes.pop("desk-001")  # a desktop's GPUs where dgx1 should be
    r = GpuInventoryCheck().run(ctx_for(fleet, dgx))
    assert r.status is Status.FAIL
    assert "missing 8x a100" in r.message and "unexpected 2x rtx4090" in r.message


def test_gpu_inventory_without_nvml_fails_only_when_gpus_expected(lab_nodes):
    check = GpuInventoryCheck()
    broken = CheckContext(lab_nodes["dgx1"], 0.0, None, "NVMLError_DriverNotLoaded: Driver Not Loaded")
    assert check.run(broken).status is Status.FAIL
    assert "Driver Not Loaded" in check.run(broken).message
    unconfigured = CheckContext(lab_nodes["dgx1"], 0.0, None, "")
    assert check.run(unconfigured).status is Status.OK
    assert check.run(unconfigured).facts["skipped"] is True


def test_xid_79_seen_once_after_arming(fleet, lab_nodes):
    check = XidCheck()
    ctx = ctx_for(fleet, lab_nodes["dgx1"])
    first = check.run(ctx)
    assert first.status is Status.OK and "watching 8 GPUs" in first.message
    fleet.raise_xid("dgx1", gpu=3, xid=79)
    r = check.run(ctx)
    assert r.status is Status.FAIL
    assert r.message == "GPU 3: XID 79 (GPU has fallen off the bus)"
    assert r.facts["events"] == [{"gpu": 3, "xid": 79}]
    assert check.run(ctx).status is Status.OK  # since last check: consumed


def test_xid_application_error_only_warns_and_other_nodes_unaffected(fleet, lab_nodes):
    check = XidCheck()
    dgx, desk = ctx_for(fleet, lab_nodes["dgx1"]), ctx_for(fleet, lab_nodes["desk-001"])
    check.run(dgx), check.run(desk)
    fleet.raise_xid("dgx1", gpu=0, xid=13)
    assert check.run(desk).status is Status.OK
    r = check.run(dgx)
    assert r.status is Status.WARN and "XID 13 (graphics engine exception)" in r.message


def test_ecc_uncorrectable(fleet, lab_nodes):
    ctx = ctx_for(fleet, lab_nodes["dgx1"])
    assert EccCheck().run(ctx).status is Status.OK
    fleet.ecc_error("dgx1", gpu=2, count=2)
    r = EccCheck().run(ctx)
    assert r.status is Status.FAIL
    assert r.message.startswith("GPU 2: 2 uncorrectable ECC errors since boot")
    assert "row remap pending" in r.message
    assert r.facts["gpus"]["2"]["remap_pending"] is True


def test_ecc_remap_failure(fleet, lab_nodes):
    ctx = ctx_for(fleet, lab_nodes["desk-001"])
    fleet.ecc_error("desk-001", gpu=1, remap_failure=True)
    r = EccCheck().run(ctx)
    assert r.status is Status.FAIL and "row remapping failed" in r.message


def test_thermal_overheat(fleet, lab_nodes):
    ctx = ctx_for(fleet, lab_nodes["orin1"])
    assert ThermalCheck().run(ctx).status is Status.OK
    fleet.overheat("orin1", gpu=0)
    r = ThermalCheck().run(ctx)
    assert r.status is Status.FAIL
    assert r.message.startswith("GPU 0: 90 C at or above slowdown threshold 87 C")
    assert "hw_thermal_slowdown" in r.facts["gpus"]["0"]["throttle"]


def test_thermal_near_limit_warns(fleet, lab_nodes):
    ctx = ctx_for(fleet, lab_nodes["orin1"])
    fleet._nodes["orin1"].gpus[0].temp_c = 84
    assert ThermalCheck().run(ctx).status is Status.WARN
    assert ThermalCheck(max_temp_c=80).run(ctx).status is Status.FAIL


def test_nvlink_down_against_baseline_and_expected(fleet, lab_nodes):
    check = NvlinkCheck()
    ctx = ctx_for(fleet, lab_nodes["dgx1"])
    assert check.run(ctx).status is Status.OK
    fleet.nvlink_down("dgx1", gpu=4, link=2)
    r = check.run(ctx)
    assert r.status is Status.FAIL
    assert r.message == "GPU 4: 11/12 NVLinks active (down: 2)"
    assert NvlinkCheck(expected_links=12).run(ctx).status is Status.FAIL  # no baseline needed


def test_nvlink_absent_on_pcie_cards_is_fine(fleet, lab_nodes):
    r = NvlinkCheck().run(ctx_for(fleet, lab_nodes["orin1"]))
    assert r.status is Status.OK
    assert r.facts["gpus"]["0"]["links"] == 0


def test_persistence_off(fleet, lab_nodes):
    ctx = ctx_for(fleet, lab_nodes["desk-002"])
    fleet.persistence_off("desk-002", gpu=1)
    assert PersistenceCheck().run(ctx).status is Status.WARN
    r = PersistenceCheck(required=True).run(ctx)
    assert r.status is Status.FAIL and r.message == "GPU 1: persistence mode off"


def test_driver_matches_label(fleet, lab_nodes):
    ctx = ctx_for(fleet, lab_nodes["dgx1"])
    fleet.set_driver("dgx1", "560.35.03")
    assert DriverCheck().run(ctx).status is Status.OK
    fleet.set_driver("dgx1", "535.104.05")
    r = DriverCheck().run(ctx)
    assert r.status is Status.FAIL
    assert r.message == "driver 535.104.05, node label expects 560.35"


def test_inject_from_json_and_clear(fleet, lab_nodes):
    runner = HealthRunner(nvml_checks(), fleet)
    dgx = lab_nodes["dgx1"]
    runner.run(dgx)  # arms the XID watcher
    fleet.inject({"node": "dgx1", "fault": "xid", "gpu": 1, "xid": 48})
    fleet.inject({"node": "dgx1", "fault": "missing_gpu", "gpu": 7})
    health = runner.run(dgx)
    assert {r.check for r in health.failures} == {"xid", "gpu_inventory"}
    assert health.requeue is True
    assert health.reason.startswith("gpu_inventory: expected 8 GPUs, found 7")
    fleet.inject({"node": "dgx1", "fault": "clear"})
    assert runner.run(dgx).status is Status.OK
    with pytest.raises(Exception, match="unknown fault"):
        fleet.inject({"node": "dgx1", "fault": "meteor"})


def test_fake_mirrors_pynvml_surface(fleet):
    nvml = fleet.for_node("dgx1")
    assert nvml.NVML_TEMPERATURE_GPU == pynvml.NVML_TEMPERATURE_GPU
    assert nvml.NVMLError is pynvml.NVMLError
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    nvml.nvmlInit()
    with pytest.raises(AttributeError, match="does not implement nvmlDeviceGetFanSpeed"):
        nvml.nvmlDeviceGetFanSpeed(nvml.nvmlDeviceGetHandleByIndex(0))
    fleet.lose_gpu("dgx1", 0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nvml.nvmlDeviceGetName(type(nvml.nvmlDeviceGetHandleByIndex(0))("dgx1", 0))
    for name in ("nvmlDeviceGetRemappedRows", "nvmlEventSetWait_v2", "nvmlDeviceGetNvLinkState"):
        assert callable(getattr(pynvml, name))  # the fake only implements functions that exist


def test_lost_gpu_in_a_check_becomes_a_failure(fleet, lab_nodes):
    runner = HealthRunner([EccCheck()], fleet)

    class Boom:
        name, requeue_on_fail = "boom", False

        def run(self, ctx):
            raise ctx.nvml.NVMLError(ctx.nvml.NVML_ERROR_GPU_IS_LOST)

    runner.checks.append(Boom())
    health = runner.run(lab_nodes["dgx1"])
    boom = [r for r in health.records if r.check == "boom"][0]
    assert boom.status is Status.FAIL and "GPU is lost" in boom.message
