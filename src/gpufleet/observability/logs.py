"""structlog set-up: JSON lines when stderr is not a TTY, coloured console otherwise.

Standard-library loggers (uvicorn, alembic, httpx) go through the same processors, so every line
of the server has one format. Control loops log through `loop_logger(name)` and bind the job,
node and tenant they work on with `loop_context(...)`; every loop line carries `job_id`, `node` and
`tenant` keys (null when not bound), so `jq 'select(.node=="dgx1")'` finds them all.

    configure_logging("auto")
    log = loop_logger("health")
    with loop_context(node="dgx1"):
        log.info("check failed", check="xid")
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

import structlog
from structlog.contextvars import bound_contextvars, merge_contextvars

LOOP_KEYS = ("job_id", "node", "tenant")
FORMATS = ("auto", "json", "console")


def wants_json(fmt: str, stream: TextIO) -> bool:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return not (isatty is not None and isatty())
    return fmt == "json"


def ensure_loop_keys(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """On control-loop lines (they carry `loop`), make job_id/node/tenant always present."""
    if "loop" in event:
        for key in LOOP_KEYS:
            event.setdefault(key, None)
    return event


def shared_processors() -> list[Any]:
    return [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        ensure_loop_keys,
        structlog.processors.StackInfoRenderer(),
    ]


def configure_logging(fmt: str = "auto", level: str | int = "INFO", stream: TextIO | None = None) -> bool:
    """Configure structlog and the stdlib root logger. Returns True when lines are JSON."""
    stream = stream or sys.stderr
    json_lines = wants_json(fmt, stream)
    renderer: Any = (structlog.processors.JSONRenderer() if json_lines
                     else structlog.dev.ConsoleRenderer(colors=_colors(stream)))
    structlog.configure(
        processors=[*shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info if json_lines else _identity, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name("gpufleet")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "gpufleet"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for noisy in ("alembic", "httpx", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return json_lines


def _identity(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    return event


def _colors(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def get_logger(name: str = "gpufleet", **bound: Any) -> Any:
    # initial values, not .bind(): binding at import time would freeze the default configuration
    return structlog.get_logger(name, **bound)


def loop_logger(loop: str) -> Any:
    """The logger of one control loop (schedule, launch, reconcile, health, recurring)."""
    return structlog.get_logger(f"gpufleet.control.{loop}", loop=loop)


@contextmanager
def loop_context(job_id: int | None = None, node: str | None = None, tenant: str | None = None,
                 **extra: Any) -> Iterator[None]:
    """Bind the job/node/tenant being worked on for every line logged inside (context vars)."""
    values = {k: v for k, v in {"job_id": job_id, "node": node, "tenant": tenant, **extra}.items() if v is not None}
    with bound_contextvars(**values):
        yield
