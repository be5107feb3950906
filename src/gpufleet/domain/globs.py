"""Artifact globs: relative to the workdir, `*` and `?` within one path segment, `**` any number
of segments (`logs/**` is everything under logs/, `**/*.json` every JSON file), `[abc]` classes."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Sequence

from gpufleet.domain.errors import ValidationError

MAX_GLOBS = 64


def check_globs(value: Any, field: str = "artifacts") -> tuple[str, ...]:
    """User input -> globs; ValidationError naming `field` for an absolute path, `..`, or junk."""
    if value is None or value == "" or value == []:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValidationError(field, "must be a list of globs such as out/*.json")
    if len(items) > MAX_GLOBS:
        raise ValidationError(field, f"{len(items)} globs, at most {MAX_GLOBS}")
    out = []
    for g in items:
        s = str(g).strip()
        if not s or "\0" in s or "\n" in s or len(s) > 512:
            raise ValidationError(field, f"bad glob {g!r}")
        if s.startswith("/") or ".." in s.split("/"):
            raise ValidationError(field, f"{s}: globs are relative to the workdir (no leading /, no ..)")
        out.append(s)
    return tuple(out)


@lru_cache(maxsize=256)
def _regex(glob: str) -> re.Pattern[str]:
    parts = [p for p in glob.strip("/").split("/") if p not in ("", ".")]
    rx = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            rx += ".*" if last else "(?:[^/]+/)*"
            continue
        rx += _segment(part) + ("" if last else "/")
    return re.compile(rx)


def _segment(part: str) -> str:
    out, i = "", 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[" and (j := part.find("]", i + 2)) > 0:
            body = part[i + 1:j]
            body = body.replace("\\", "\\\\")
            out += "[" + ("^" + body[1:] if body[:1] in "!^" else body) + "]"
            i = j
        else:
            out += re.escape(c)
        i += 1
    return out


def matches(path: str, globs: Sequence[str]) -> bool:
    """Does the relative `path` (with `/`) match one of `globs`?"""
    return any(_regex(g).fullmatch(path) for g in globs)
