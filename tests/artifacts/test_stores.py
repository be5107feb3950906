"""The artifact stores: local (data directory) and http (Artifactory deploy API, plain PUT),
the http one against httpx's MockTransport for the Artifactory-only parts."""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest

from gpufleet.artifacts import PutRequest, StoreError, digest_file
from gpufleet.artifacts.config import build_store, limits
from gpufleet.artifacts.http import HttpStore, deploy_url
from gpufleet.artifacts.local import LocalStore
from gpufleet.domain import ValidationError

DATA = b"hello artifacts\n" * 1000


def req(key="vision/7/attempt-1/rank-0/out/r.json", data=DATA, **props):
    return PutRequest(key, digest_file(io.BytesIO(data)), props)


def test_digest_is_sha256_sha1_and_size():
    d = digest_file(io.BytesIO(DATA))
    assert (d.size, d.sha256, d.sha1) == (len(DATA), hashlib.sha256(DATA).hexdigest(), hashlib.sha1(DATA).hexdigest())


def test_local_store_round_trip_and_delete(tmp_path):
    s = LocalStore(tmp_path / "a")
    loc = s.put(req(), io.BytesIO(DATA))
    assert b"".join(s.open(loc)) == DATA
    assert (tmp_path / "a" / "vision/7/attempt-1/rank-0/out/r.json").stat().st_mode & 0o777 == 0o600
    s.delete(loc)
    s.delete(loc)  # gone already: fine
    assert not (tmp_path / "a" / "vision").exists()  # empty folders go too
    with pytest.raises(StoreError):
        s.open(loc)


def test_local_store_refuses_a_file_that_changed_and_bad_keys(tmp_path):
    s = LocalStore(tmp_path)
    with pytest.raises(StoreError, match="changed"):
        s.put(req(), io.BytesIO(DATA + b"x"))
    assert list(tmp_path.rglob("*.json")) == []
    with pytest.raises(StoreError):
        s.put(req(key="a/../../etc/x"), io.BytesIO(DATA))


class Artifactory:
    """What Artifactory's deploy endpoint does that matters here: it records the matrix
    properties and answers with the checksums it computed (or a wrong one, to test the check)."""

    def __init__(self, lie: bool = False, status: int = 201):
        self.requests: list[httpx.Request] = []
        self.files: dict[str, bytes] = {}
        self.lie, self.status = lie, status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode()
        if request.method == "PUT":
            body = request.read()
            self.files[path.split(";")[0]] = body
            sha = "0" * 64 if self.lie else hashlib.sha256(body).hexdigest()
            return httpx.Response(self.status, json={"repo": "ci", "checksums": {
                "sha256": sha, "sha1": hashlib.sha1(body).hexdigest()}})
        if request.method == "GET":
            return httpx.Response(200, content=self.files[path]) if path in self.files else httpx.Response(404)
        if request.method == "DELETE":
            return httpx.Response(204 if self.files.pop(path, None) is not None else 404)
        return httpx.Response(405)


BASE = "https://rt.example.com/artifactory/gpu-ci-local"


def test_artifactory_deploy_sends_checksums_and_matrix_properties():
    rt = Artifactory()
    s = HttpStore(BASE, token="tkn", transport=httpx.MockTransport(rt))
    r = req(job_id="7", tenant="vision", commit="abc123", sku="A100-SXM4-80GB", driver="550.54.15", node="")
    loc = s.put(r, io.BytesIO(DATA))
    put = rt.requests[0]
    assert put.method == "PUT"
    assert put.headers["X-Checksum-Sha256"] == hashlib.sha256(DATA).hexdigest()
    assert put.headers["X-Checksum-Sha1"] == hashlib.sha1(DATA).hexdigest()
    assert put.headers["Authorization"] == "Bearer tkn"
    assert put.url.raw_path.decode() == ("/artifactory/gpu-ci-local/vision/7/attempt-1/rank-0/out/r.json"
                                         ";commit=abc123;driver=550.54.15;job_id=7;sku=A100-SXM4-80GB;tenant=vision")
    assert loc == f"{BASE}/vision/7/attempt-1/rank-0/out/r.json"  # no properties in the address
    assert b"".join(s.open(loc)) == DATA
    s.delete(loc)
    assert rt.requests[-1].method == "DELETE" and not rt.files


def test_matrix_property_values_are_url_encoded():
    assert deploy_url("http://h/r", "a b/c;d", {"commit": "x;y=z", "sku": "A/B"}) == \
        "http://h/r/a%20b/c%3Bd;commit=x%3By%3Dz;sku=A%2FB"


def test_a_repository_that_stored_other_bytes_is_an_error():
    s = HttpStore(BASE, transport=httpx.MockTransport(Artifactory(lie=True)))
    with pytest.raises(StoreError, match="stored sha256 0000"):
        s.put(req(), io.BytesIO(DATA))


def test_refusals_and_foreign_locations():
    s = HttpStore(BASE, transport=httpx.MockTransport(Artifactory(status=403)))
    with pytest.raises(StoreError, match="HTTP 403"):
        s.put(req(), io.BytesIO(DATA))
    with pytest.raises(StoreError, match="not in this repository"):
        s.open("https://elsewhere.example.com/x")  # our token never goes anywhere else


def test_webdav_flavor_sends_a_plain_put():
    rt = Artifactory()
    s = HttpStore(BASE, flavor="webdav", username="u", password="p", transport=httpx.MockTransport(rt))
    s.put(req(job_id="7"), io.BytesIO(DATA))
    assert ";" not in rt.requests[0].url.raw_path.decode()
    assert rt.requests[0].headers["Authorization"].startswith("Basic ")


def test_store_settings(tmp_path):
    assert isinstance(build_store({}, tmp_path), LocalStore)
    assert build_store({}, tmp_path).root == tmp_path / "artifacts"
    assert isinstance(build_store({"store": "http", "url": BASE}, tmp_path), HttpStore)
    for cfg, field in (({"store": "s3"}, "artifacts.store"), ({"store": "http"}, "artifacts.url"),
                       ({"store": "http", "url": BASE, "flavor": "ftp"}, "artifacts.flavor"),
                       ({"bucket": "x"}, "artifacts.bucket")):
        with pytest.raises(ValidationError) as e:
            build_store(cfg, tmp_path)
        assert e.value.field == field
    assert limits({"max_bytes_per_tenant": "1G", "retention": "7d"}) == (1 << 30, 7 * 86400.0)
    assert limits({}) == (None, None)
