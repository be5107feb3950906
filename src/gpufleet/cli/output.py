"""Printing: rich tables for people, JSON for programs, one-line errors on stderr."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Iterable, Sequence

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    def plain(x: Any) -> Any:
        if isinstance(x, BaseModel):
            return x.model_dump(mode="json")
        if isinstance(x, (list, tuple)):
            return [plain(i) for i in x]
        return x

    sys.stdout.write(json.dumps(plain(data), indent=2, default=str) + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    t = Table(*columns, title=title, box=None, header_style="bold", pad_edge=False)
    for r in rows:
        t.add_row(*("" if c is None else str(c) for c in r))
    out.print(t)


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    from gpufleet.domain import format_duration

    return format_duration((now or time.time()) - ts)


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
