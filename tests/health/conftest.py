"""Builders for health tests: the example inventory and a fake NVML fleet over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.health.fake_nvml import FakeNvmlFleet
from gpufleet.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_INVENTORY = ROOT / "examples" / "lab.yaml"


@pytest.fixture
def lab_nodes():
    return {n.name: n for n in load_inventory(EXAMPLE_INVENTORY).nodes}


@pytest.fixture
def fleet(lab_nodes):
    return FakeNvmlFleet(lab_nodes.values())
