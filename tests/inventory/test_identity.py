"""Hardware identity from (fake) NVML, versioned in the store, usable as constraints."""

from __future__ import annotations

import pytest

from gpufleet.domain import Job, JobSpec, ValidationError
from gpufleet.domain.spec import build_spec
from gpufleet.health.fake_nvml import FakeNvmlFleet
from gpufleet.inventory.discovery import fake_node
from gpufleet.inventory.identity import cuda_version, read_identity
from gpufleet.scheduler.filters import ConstraintFilter
from gpufleet.store import Store, make_engine, migrate
from gpufleet.store.hardware import HardwareRepo


@pytest.fixture
def fleet():
    return FakeNvmlFleet([fake_node(2, "a100", "n1")])


def _identity(fleet, node="n1"):
    nvml = fleet.for_node(node)
    nvml.nvmlInit()
    try:
        return read_identity(nvml, kernel="6.8.0-test")
    finally:
        nvml.nvmlShutdown()


def test_identity_has_every_field_from_nvml(fleet):
    ident = _identity(fleet)
    g = ident.gpus[0]
    assert (g.name, g.sku, g.vbios, g.ecc) == ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB", "96.00.89.00.01", "on")
    assert (g.pcie_gen, g.pcie_width, g.power_limit_w) == (4, 16, 400.0)
    assert (g.max_sm_mhz, g.app_sm_mhz, g.max_mem_mhz, g.app_mem_mhz) == (1410, 1095, 1593, 1593)
    assert g.serial and g.board_part and g.uuid == "GPU-fake-0" and g.memory_mb == 16384
    assert (ident.driver, ident.cuda_driver, ident.kernel) == ("560.35", "12.6", "6.8.0-test")
    attrs = ident.attributes()
    assert attrs["sku"] == "A100-SXM4-80GB" and attrs["pcie"] == "gen4x16" and attrs["vbios"] == "96.00.89.00.01"
    assert cuda_version(12040) == "12.4" and cuda_version(None) == ""


def test_mixed_vbios_is_listed_so_an_exact_constraint_does_not_match(fleet):
    fleet.set_vbios("n1", 1, "96.00.74.00.01")
    assert _identity(fleet).attributes()["vbios"] == "96.00.74.00.01|96.00.89.00.01"


@pytest.fixture
def store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'gpufleet.db'}")
    migrate(engine)
    s = Store(engine)
    s.sync_nodes([fake_node(2, "a100", "n1")])
    yield s
    engine.dispose()


def test_identity_is_versioned_and_a_vbios_change_is_an_event(store, fleet):
    repo = HardwareRepo(store)
    assert repo.record_identity("n1", _identity(fleet), now=100.0) == []
    assert repo.record_identity("n1", _identity(fleet), now=150.0) == []  # unchanged: no new rows
    fleet.set_vbios("n1", 0, "96.00.99.00.01")
    fleet.set_driver("n1", "570.10")
    changes = repo.record_identity("n1", _identity(fleet), now=200.0)
    assert sorted(changes) == ["driver 560.35 -> 570.10", "vbios 96.00.89.00.01 -> 96.00.99.00.01 on GPU-fake-0"]
    assert repo.identity("n1", at=120.0).gpus[0].vbios == "96.00.89.00.01"
    assert repo.identity("n1", at=120.0).driver == "560.35"
    now = repo.identity("n1")
    assert now.gpus[0].vbios == "96.00.99.00.01" and now.driver == "570.10" and now.gpus[1].index == 1
    events = store.events("hardware", "n1")
    assert [e.reason for e in events][0] == "identity discovered"
    assert {e.at for e in events[1:]} == {200.0}
    node = store.get_node("n1")
    assert node.labels["driver"] == "570.10" and node.labels["sku"] == "A100-SXM4-80GB"


def _job(**constraints) -> Job:
    return Job(1, JobSpec(("x",), constraints=constraints))


@pytest.mark.parametrize("constraint,ok", [
    ("driver>=550", True), ("driver>=560.36", False), ("driver>=560.35.03", True), ("driver>560", True), ("driver<560.36", True),
    ("driver<=560", False), ("cuda_driver>=12.4", True), ("sku=A100-SXM4-80GB", True),
    ("sku=H100-80GB-HBM3", False), ("vbios=96.00.89.00.01", True), ("vbios!=96.00.89.00.01", False),
    ("rack!=r9", True), ("kernel>=5", False),  # a kernel like 6.8.0-generic is not version-like: no match
])
def test_constraints_compare_versions(constraint, ok):
    node = fake_node(2, "a100", "n1")
    node.labels.update({"driver": "560.35.03", "cuda_driver": "12.6", "sku": "A100-SXM4-80GB",
                        "vbios": "96.00.89.00.01", "kernel": "6.8.0-generic"})
    spec = build_spec({"command": "x", "constraint": constraint})
    job = Job(1, spec)
    assert ConstraintFilter().filter(job, node).ok is ok


def test_comparison_reason_is_written_as_given():
    node = fake_node(2, "a100", "n1")
    node.labels["driver"] = "535.10"
    job = Job(1, build_spec({"command": "x", "constraint": "driver>=550"}))
    assert ConstraintFilter().filter(job, node).reason == "driver>=550"


@pytest.mark.parametrize("bad", ["driver>=abc", "driver>=", "x", "=3"])
def test_bad_constraint_names_the_field(bad):
    with pytest.raises(ValidationError) as e:
        build_spec({"command": "x", "constraint": bad})
    assert e.value.field == "constraint"
