"""Fixtures shared across the suite: an in-process server on the fake executor, a fake clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpufleet.executors.fake import FakeClock

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_LAB = ROOT / "examples" / "lab.yaml"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def require_engine(env_var: str, what: str) -> None:
    """Skip loudly when an engine is absent, but fail in CI where it must be there."""
    if os.environ.get(env_var):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI but {env_var} is not set (did .ci/run start it?)")
    pytest.skip(f"{what} not available ({env_var} unset): start it with the scripts/dev-*.sh script")
