"""The http store against a real HTTP server taking PUT: nginx with its WebDAV module, started by
scripts/dev-artifacts.sh (GPUFLEET_TEST_ARTIFACTS_URL; in CI it must be there)."""

from __future__ import annotations

import hashlib
import io
import os
import uuid

import httpx
import pytest

from gpufleet.artifacts import PutRequest, StoreError, digest_file
from gpufleet.artifacts.http import HttpStore
from tests.conftest import require_engine


@pytest.fixture
def nginx_url() -> str:
    require_engine("GPUFLEET_TEST_ARTIFACTS_URL", "the nginx artifact repository")
    return os.environ["GPUFLEET_TEST_ARTIFACTS_URL"]


def test_put_get_delete_on_nginx(nginx_url):
    data = os.urandom(300_000)
    key = f"test/{uuid.uuid4().hex}/attempt-1/rank-0/deep/er/out.bin"
    s = HttpStore(nginx_url, flavor="webdav")
    loc = s.put(PutRequest(key, digest_file(io.BytesIO(data)), {"job_id": "1"}), io.BytesIO(data))
    assert loc == f"{nginx_url}/{key}"
    got = httpx.get(loc).content  # what the server really keeps, read past gpufleet
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert b"".join(s.open(loc)) == data
    s.delete(loc)
    assert httpx.get(loc).status_code == 404
    s.delete(loc)  # already gone: fine
    with pytest.raises(StoreError, match="HTTP 404"):
        s.open(loc)


def test_an_unreachable_repository_is_a_store_error(nginx_url):
    s = HttpStore("http://127.0.0.1:9/artifactory/none", flavor="webdav", timeout_s=2)
    with pytest.raises(StoreError):
        s.put(PutRequest("x", digest_file(io.BytesIO(b"x"))), io.BytesIO(b"x"))
