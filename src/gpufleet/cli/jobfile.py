"""Reading a job YAML file (`gpufleet submit job.yaml`) with bounds: size, nesting depth, no
aliases (a "billion laughs" file expands a few aliases into gigabytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpufleet.domain import ValidationError

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and nesting deeper than MAX_DEPTH (checked while composing,
    before any node is constructed or expanded)."""

    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise _Refused("aliases (*name) are not allowed in a job file")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    pass


def is_job_file(args: list[str], dashdash: bool) -> bool:
    """One argument ending in .yaml/.yml names a job file; one that is not a file is an error,
    unless it came after `--` (the command form: `gpufleet submit -- ./make.yml`)."""
    if len(args) != 1 or not args[0].endswith((".yaml", ".yml")):
        return False
    if Path(args[0]).is_file() or not dashdash:
        return True
    return False


def load_job_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValidationError("file", f"{path}: no such file (to run a command: gpufleet submit -- CMD)")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ValidationError("file", f"{path}: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValidationError("file", f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        data = yaml.load(raw, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as e:
        raise ValidationError("file", f"{path}: {e}") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise ValidationError("file", f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ValidationError("file", f"{path} must hold a mapping of job fields")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
