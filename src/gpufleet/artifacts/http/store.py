"""A repository manager over HTTP, with plain httpx.

`flavor: artifactory` speaks Artifactory's deploy API: `PUT <repo url>/<path>;k=v;k=v` (matrix
parameters become the artifact's properties: job id, tenant, commit, SKU, driver) with
`X-Checksum-Sha256` / `X-Checksum-Sha1` headers, and checks the checksums Artifactory answers
with. `flavor: webdav` (Nexus raw repositories, nginx's dav module, any server taking a plain PUT)
sends the same PUT without matrix parameters (they would become part of the file name there).
Reading is a GET of the same URL, gc a DELETE.
"""

from __future__ import annotations

from typing import BinaryIO, ClassVar, Iterator, Mapping
from urllib.parse import quote

import httpx

from gpufleet.artifacts.base import CHUNK, PutRequest, StoreError

FLAVORS = ("artifactory", "webdav")


def deploy_url(base: str, key: str, properties: Mapping[str, str] | None = None) -> str:
    """<base>/<quoted key>[;k=v...]; Artifactory wants matrix parameter values URL-encoded."""
    url = base.rstrip("/") + "/" + "/".join(quote(p, safe="") for p in key.split("/") if p)
    for k, v in sorted((properties or {}).items()):
        if v != "":
            url += f";{quote(k, safe='')}={quote(str(v), safe='')}"
    return url


class HttpStore:
    name: ClassVar[str] = "http"

    def __init__(self, url: str, flavor: str = "artifactory", token: str | None = None,
                 username: str | None = None, password: str | None = None, timeout_s: float = 60.0,
                 verify: bool | str = True, transport: httpx.BaseTransport | None = None):
        if flavor not in FLAVORS:
            raise ValueError(f"artifacts.flavor: one of {', '.join(FLAVORS)}, got {flavor!r}")
        self.base, self.flavor = url.rstrip("/"), flavor
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        auth = (username, password or "") if username else None
        self.http = httpx.Client(headers=headers, auth=auth, timeout=timeout_s, verify=verify,
                                 transport=transport, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def put(self, req: PutRequest, data: BinaryIO) -> str:
        props = req.properties if self.flavor == "artifactory" else None
        url = deploy_url(self.base, req.key, props)
        headers = {"X-Checksum-Sha256": req.digest.sha256, "X-Checksum-Sha1": req.digest.sha1,
                   "Content-Length": str(req.digest.size), "Content-Type": "application/octet-stream"}
        try:
            r = self.http.put(url, content=_chunks(data), headers=headers)
        except httpx.HTTPError as e:
            raise StoreError(f"{self.base}: {type(e).__name__}: {e}") from None
        if r.status_code not in (200, 201, 204):
            raise StoreError(f"PUT {req.key}: HTTP {r.status_code} {r.text[:200].strip()}")
        self._check_answer(r, req)
        return deploy_url(self.base, req.key)  # properties are not part of the file's address

    def _check_answer(self, r: httpx.Response, req: PutRequest) -> None:
        """Artifactory answers a deploy with the checksums it computed: they must be ours."""
        if self.flavor != "artifactory" or "json" not in r.headers.get("content-type", ""):
            return
        try:
            sums = (r.json() or {}).get("checksums") or {}
        except ValueError:
            return
        for algo, want in (("sha256", req.digest.sha256), ("sha1", req.digest.sha1)):
            got = sums.get(algo)
            if got and got.lower() != want:
                raise StoreError(f"PUT {req.key}: the repository stored {algo} {got}, we sent {want}")

    def open(self, location: str) -> Iterator[bytes]:
        self._own(location)
        try:
            resp = self.http.send(self.http.build_request("GET", location), stream=True)
        except httpx.HTTPError as e:
            raise StoreError(f"{self.base}: {type(e).__name__}: {e}") from None
        if resp.status_code != 200:
            resp.close()
            raise StoreError(f"GET {location}: HTTP {resp.status_code}")
        return _stream(resp)

    def delete(self, location: str) -> None:
        self._own(location)
        try:
            r = self.http.delete(location)
        except httpx.HTTPError as e:
            raise StoreError(f"{self.base}: {type(e).__name__}: {e}") from None
        if r.status_code not in (200, 202, 204, 404):
            raise StoreError(f"DELETE {location}: HTTP {r.status_code}")

    def _own(self, location: str) -> None:
        if not location.startswith(self.base + "/"):  # never send our credentials elsewhere
            raise StoreError(f"{location} is not in this repository ({self.base})")


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def _stream(resp: httpx.Response) -> Iterator[bytes]:
    try:
        yield from resp.iter_bytes(CHUNK)
    finally:
        resp.close()
