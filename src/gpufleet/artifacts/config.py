"""The artifact store a server uses, from its settings (`artifacts:` in server.yaml):

    artifacts:
      store: local              # local (default: <home>/artifacts) | http
      path: /srv/gpufleet/artifacts           # local: where (default <home>/artifacts)
      url: https://artifactory.example.com/artifactory/gpu-ci-local   # http: the repository
      flavor: artifactory       # artifactory (matrix properties, checksum check) | webdav (plain PUT)
      token: ...                # http: a bearer token (or username/password)
      max_bytes_per_tenant: 50G # default quota of stored bytes (a tenant's policy overrides it)
      retention: 30d            # default expiry
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from gpufleet.artifacts.base import ArtifactStore
from gpufleet.domain import ValidationError, parse_duration
from gpufleet.domain.artifact import parse_bytes

KEYS = ("store", "path", "url", "flavor", "token", "username", "password", "timeout_s", "verify",
        "max_bytes_per_tenant", "retention")


def build_store(cfg: Mapping[str, Any], home: Path) -> ArtifactStore:
    unknown = sorted(set(cfg) - set(KEYS))
    if unknown:
        raise ValidationError(f"artifacts.{unknown[0]}", f"unknown key (known: {', '.join(KEYS)})")
    kind = cfg.get("store", "local")
    if kind == "local":
        from gpufleet.artifacts.local import LocalStore

        return LocalStore(Path(cfg.get("path") or home / "artifacts"))
    if kind == "http":
        from gpufleet.artifacts.http import HttpStore

        if not cfg.get("url"):
            raise ValidationError("artifacts.url", "the http store needs the repository URL")
        try:
            return HttpStore(str(cfg["url"]), flavor=str(cfg.get("flavor", "artifactory")),
                             token=cfg.get("token"), username=cfg.get("username"),
                             password=cfg.get("password"), timeout_s=float(cfg.get("timeout_s", 60)),
                             verify=cfg.get("verify", True))
        except ValueError as e:
            raise ValidationError("artifacts.flavor", str(e)) from None
    raise ValidationError("artifacts.store", f"local or http, got {kind!r}")


def limits(cfg: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """(default bytes per tenant, default retention seconds); None: no limit."""
    max_bytes = parse_bytes(cfg.get("max_bytes_per_tenant"), "artifacts.max_bytes_per_tenant")
    retention = parse_duration(cfg.get("retention"), "artifacts.retention")
    return max_bytes, float(retention) if retention else None
