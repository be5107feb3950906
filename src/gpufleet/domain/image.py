"""Container fields of a job spec: the image reference, bind mounts, the pull policy.

An image reference follows the grammar of the OCI distribution reference (the one podman, docker,
containerd and Kubernetes accept): `[host[:port]/]path[:tag][@algorithm:hex]`, path components
lowercase `[a-z0-9]+([._-][a-z0-9]+)*` (`__` allowed, as in distribution/reference), a tag of
`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, at most 255 characters for the name; the first component is
a registry host only when it has a `.` or `:` or is `localhost` (as docker and podman read it). Checking it at submit
means a typo exits 2 naming `image` instead of failing on a node.

A mount is `SRC:DST[:ro|rw]`: absolute host path SRC, absolute container path DST, read-write
unless `:ro`. No `..` components (a mount names one place, not a walk).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpufleet.domain.errors import ValidationError

PULL_POLICIES = ("always", "missing", "never")
DEFAULT_PULL = "missing"
MAX_MOUNTS = 64

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
MAX_NAME = 255


def parse_image(value: Any) -> str:
    """A valid image reference, or ValidationError("image")."""
    s = str(value).strip() if value is not None else ""
    if not s:
        raise ValidationError("image", "must not be empty")
    m = _REFERENCE.fullmatch(s)
    if m is None:
        raise ValidationError("image", f"{s!r} is not a valid image reference "
                                       "([registry[:port]/]name[:tag][@sha256:...], name in lowercase)")
    name = m.group("name")
    if len(name) > MAX_NAME:
        raise ValidationError("image", f"the image name is longer than {MAX_NAME} characters")
    first, sep, _ = name.partition("/")
    is_host = bool(sep) and ("." in first or ":" in first or first == "localhost" or first.startswith("["))
    if not is_host and not re.fullmatch(_COMPONENT, first):  # a path component: lowercase only
        raise ValidationError("image", f"{s!r}: repository names are lowercase (a registry host has a '.' or ':')")
    return s


def parse_pull(value: Any) -> str:
    s = str(value).strip().lower() if value is not None else DEFAULT_PULL
    if s not in PULL_POLICIES:
        raise ValidationError("pull", f"must be one of {', '.join(PULL_POLICIES)}, got {value!r}")
    return s


@dataclass(frozen=True, slots=True)
class Mount:
    source: str
    target: str
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


def parse_mount(text: Any) -> Mount:
    """`SRC:DST[:ro|rw]` -> Mount, or ValidationError("mounts")."""
    s = str(text)
    if "\0" in s or "\n" in s or "\r" in s:
        raise ValidationError("mounts", "must not contain NUL bytes or line breaks")
    parts = s.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValidationError("mounts", f"expected SRC:DST[:ro], got {s!r}")
    for p in parts:
        if not p.startswith("/"):
            raise ValidationError("mounts", f"{s!r}: both paths must be absolute")
        if ".." in p.split("/") or "," in p:
            raise ValidationError("mounts", f"{s!r}: no '..' components or commas in paths")
    return Mount(_clean(parts[0]), _clean(parts[1]), mode == "ro")


def _clean(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p and p != ".")


def parse_mounts(value: Any) -> tuple[str, ...]:
    """The spec's `mounts` (a list, or one comma-free string) as canonical `SRC:DST[:ro]` strings."""
    if value is None or value == "" or value == []:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValidationError("mounts", "must be a list of SRC:DST[:ro]")
    if len(items) > MAX_MOUNTS:
        raise ValidationError("mounts", f"{len(items)} mounts, at most {MAX_MOUNTS}")
    mounts = [parse_mount(m) for m in items]
    targets = [m.target for m in mounts]
    dup = next((t for t in targets if targets.count(t) > 1), None)
    if dup:
        raise ValidationError("mounts", f"two mounts onto {dup}")
    return tuple(str(m) for m in mounts)


__all__ = ["DEFAULT_PULL", "Mount", "PULL_POLICIES", "parse_image", "parse_mount", "parse_mounts", "parse_pull"]
