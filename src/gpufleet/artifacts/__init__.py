"""Artifacts: files a job's attempt leaves behind (spec field `artifacts`, globs relative to the
workdir), kept in an artifact store with their sha256 and size.

One store interface (`ArtifactStore`), a folder per backend like the executors:
  local/  the server's data directory (the embedded default)
  http/   a repository manager over HTTP: Artifactory's deploy API, or any server that takes a
          plain PUT (Nexus raw repositories, WebDAV such as nginx's dav module)
"""

from gpufleet.artifacts.base import (
    ArtifactStore, Digest, PutRequest, StoreError, artifact_key, digest_file,
)
from gpufleet.domain.globs import check_globs, matches

__all__ = ["ArtifactStore", "Digest", "PutRequest", "StoreError", "artifact_key", "check_globs",
           "digest_file", "matches"]
