"""The test image of the container cases: localhost/gpufleet-test:latest, built by
scripts/dev-images.sh up (busybox-static and /gpufleet-image-marker; no registry is reachable).

Absent podman or the image: a loud skip on a workstation, a failure in CI (env CI set)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

TEST_IMAGE = "localhost/gpufleet-test:latest"
MARKER = "gpufleet-test-image"


def require_test_image() -> str:
    why = None
    if shutil.which("podman") is None:
        why = "podman is not installed"
    elif subprocess.run(["podman", "image", "exists", TEST_IMAGE], capture_output=True, timeout=60).returncode:
        why = f"the image {TEST_IMAGE} is not built"
    if why is None:
        return TEST_IMAGE
    msg = f"{why}; build it with `scripts/dev-images.sh up`"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip("SKIPPED LOUDLY: " + msg)


def containers_named(prefix: str) -> list[str]:
    """Names of podman containers (running or not) starting with `prefix`."""
    out = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [n for n in out.split() if n.startswith(prefix)]
