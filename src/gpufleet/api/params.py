"""Bounded integer parameters: everything we store or compare in SQL fits a signed 64-bit integer,
so larger numbers are a 422 naming the parameter, never an OverflowError (500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request
from pydantic import Field

from gpufleet.domain.units import MAX_INT

Int64 = Annotated[int, Field(ge=-MAX_INT - 1, le=MAX_INT)]  # in request bodies
JobId = Annotated[int, Path(ge=1, le=MAX_INT)]
BookingId = Annotated[int, Path(ge=1, le=MAX_INT)]
TokenId = Annotated[int, Path(ge=1, le=MAX_INT)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]
Rank = Annotated[int, Query(ge=0, le=MAX_INT)]
AttemptNo = Annotated[int | None, Query(ge=1, le=MAX_INT, description="1, 2, ...; default: the latest")]
After = Annotated[int | None, Query(ge=1, le=MAX_INT, description="keyset page: the items after this id")]
PAGE = 100  # the default page of a list; `limit` goes up to MAX_PAGE, a `Link: rel="next"` leads on
MAX_PAGE = 1000


def next_link(request: Request, last_id: int) -> str:
    """The RFC 8288 `Link` header value of the page after `last_id`, with the same filters."""
    return f'<{request.url.include_query_params(after=last_id)}>; rel="next"'
