from pathlib import Path

import pytest

from gpufleet.domain import NodeKind, ValidationError
from gpufleet.inventory import discover, load_inventory, parse_inventory

EXAMPLE = Path(__file__).parents[2] / "examples" / "lab.yaml"


def test_example_lab():
    inv = load_inventory(EXAMPLE)
    by = {n.name: n for n in inv.nodes}
    assert set(by) == {"dgx1", "desk-001", "desk-002", "orin1"}
    assert [g.group for g in by["dgx1"].gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert by["orin1"].kind is NodeKind.EMBEDDED and by["orin1"].arch == "aarch64"
    assert by["desk-002"].gpu_model == "rtx4090" and by["desk-002"].mem_mb == 65536
    assert {t.name for t in inv.tenants} == {"vision", "speech"}


def test_node_groups_expand_with_racks():
    inv = parse_inventory({"nodes": [{"name": "dgx", "count": 250, "gpus": 8, "gpu_model": "a100",
                                      "kind": "server", "nvlink_groups": 2, "nodes_per_rack": 32}]})
    assert len(inv.nodes) == 250
    assert inv.nodes[0].name == "dgx-001" and inv.nodes[-1].name == "dgx-250"
    assert inv.nodes[0].labels["rack"] == "r01" and inv.nodes[32].labels["rack"] == "r02"
    assert sum(len(n.gpus) for n in inv.nodes) == 2000
    assert [g.group for g in inv.nodes[5].gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("data,field", [
    ({"nodes": [{"gpus": 2}]}, "nodes[0].name"),
    ({"nodes": [{"name": "a", "kind": "laptop"}]}, "nodes[0].kind"),
    ({"nodes": [{"name": "a", "count": 0}]}, "nodes[0].count"),
    ({"nodes": [{"name": "a", "gpus": 6, "nvlink_groups": 4}]}, "nodes[0].nvlink_groups"),
    ({"nodes": [{"name": "a", "gpus": -1}]}, "nodes[0].gpus"),
    ({"nodes": [{"name": "a", "colour": "red"}]}, "nodes[0]"),
    ({"nodes": [{"name": "a"}, {"name": "a"}]}, "nodes"),
    ({"racks": []}, "inventory"),
])
def test_bad_inventory_names_the_field(data, field):
    with pytest.raises(ValidationError) as e:
        parse_inventory(data)
    assert e.value.field == field


def test_no_gpu_no_flags_starts_with_zero_gpus_and_a_notice():
    d = discover()
    assert d.source in ("none", "nvml")
    if d.source == "none":
        assert sum(len(n.gpus) for n in d.inventory.nodes) == 0
        assert "0 GPUs" in d.notice


def test_fake_gpus():
    d = discover(fake_gpus=4)
    (node,) = d.inventory.nodes
    assert len(node.gpus) == 4 and [g.group for g in node.gpus] == [0, 0, 1, 1]


class FakeNvml:
    """Just the pynvml functions discovery calls."""

    class _Mem:
        total = 80 * 1024**3

    def nvmlInit(self): pass
    def nvmlShutdown(self): pass
    def nvmlDeviceGetCount(self): return 2
    def nvmlDeviceGetHandleByIndex(self, i): return i
    def nvmlDeviceGetName(self, h): return b"NVIDIA H100 80GB HBM3"
    def nvmlDeviceGetUUID(self, h): return f"GPU-{h}"
    def nvmlDeviceGetMemoryInfo(self, h): return self._Mem()
    def nvmlDeviceGetNumaNodeId(self, h): return h
    def nvmlSystemGetDriverVersion(self): return "560.35.03"


def test_nvml_discovery_reads_models_and_driver():
    d = discover(nvml=FakeNvml())
    (node,) = d.inventory.nodes
    assert d.source == "nvml"
    assert [g.model for g in node.gpus] == ["h100", "h100"]
    assert node.gpus[0].memory_mb == 81920 and node.labels["driver"] == "560.35.03"
