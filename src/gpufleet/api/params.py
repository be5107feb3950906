"""Bounded integer parameters: everything we store or compare in SQL fits a signed 64-bit integer,
so larger numbers are a 422 naming the parameter, never an OverflowError (500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

from gpufleet.domain.units import MAX_INT

Int64 = Annotated[int, Field(ge=-MAX_INT - 1, le=MAX_INT)]  # in request bodies
JobId = Annotated[int, Path(ge=1, le=MAX_INT)]
BookingId = Annotated[int, Path(ge=1, le=MAX_INT)]
TokenId = Annotated[int, Path(ge=1, le=MAX_INT)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]
Rank = Annotated[int, Query(ge=0, le=MAX_INT)]
AttemptNo = Annotated[int | None, Query(ge=1, le=MAX_INT, description="1, 2, ...; default: the latest")]
