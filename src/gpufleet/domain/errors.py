"""Errors that cross layers. Every rejection names the offending field."""

from __future__ import annotations


class GpufleetError(Exception):
    """Base of all errors gpufleet raises on purpose."""


class ValidationError(GpufleetError):
    """Bad input: names the field and the reason. CLI exit 2, API 422."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(GpufleetError):
    def __init__(self, what: str, key: object):
        super().__init__(f"{what} {key} not found")
        self.what = what
        self.key = key


class Forbidden(GpufleetError):
    pass


class Conflict(GpufleetError):
    pass


class ServerRunning(GpufleetError):
    """Another server owns this data directory or database. CLI: exit 2 with this one line."""


class IllegalTransition(GpufleetError):
    def __init__(self, kind: str, old: str, new: str):
        super().__init__(f"illegal {kind} transition {old} -> {new}")
        self.old = old
        self.new = new
