"""Reads and writes of benchmark results (tables results and test_cases): SQLAlchemy Core, bulk
inserts in one transaction (an import is all or nothing)."""

from __future__ import annotations

import json
from dataclasses import asdict
from operator import attrgetter
from typing import Iterable, Sequence

from sqlalchemy import JSON, Connection, Engine, Table, func, insert, select

from gpufleet.results.model import Result, TestCase
from gpufleet.store.rows import ResultRow, TestCaseRow

_R: Table = ResultRow.__table__  # type: ignore[assignment]
_T: Table = TestCaseRow.__table__  # type: ignore[assignment]
_COLS = [c.name for c in _R.columns if c.name != "id"]
_JSON = [i for i, c in enumerate(_COLS) if isinstance(_R.c[c].type, JSON)]
_VALUES = attrgetter(*_COLS)
_BATCH = 5000


def _insert_sql(conn: Connection) -> str:
    """INSERT INTO results (...) VALUES (?, ...) in the driver's own parameter style."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    quote = conn.dialect.identifier_preparer.quote  # "user" is reserved on PostgreSQL
    return (f"INSERT INTO {_R.name} ({', '.join(quote(c) for c in _COLS)}) "
            f"VALUES ({', '.join([mark] * len(_COLS))})")


def _row(r: Result) -> tuple:
    row = list(_VALUES(r))  # not dataclasses.asdict: its deep copies cost 60 % of an import
    for i in _JSON:
        if row[i] is not None:
            row[i] = json.dumps(row[i])
    return tuple(row)


def add_results(engine: Engine, results: Sequence[Result], cases: Sequence[TestCase] = ()) -> int:
    """Insert all of them in ONE transaction (nothing stored when any fails). Results go to the
    driver's executemany as tuples: SQLAlchemy's per-row parameter processing (construct_params,
    JSON bind processors) was 60 % of an import; JSON is dumped here, once per value."""
    with engine.begin() as conn:
        sql = _insert_sql(conn)
        for i in range(0, len(results), _BATCH):
            conn.exec_driver_sql(sql, [_row(r) for r in results[i:i + _BATCH]])
        if cases:
            conn.execute(insert(_T), [{k: v for k, v in asdict(c).items()} for c in cases])
    return len(results)


def _result(m) -> Result:
    return Result(**{k: m[k] for k in m.keys()})


def query_results(engine: Engine, tenant: str | None = None, series: str | Sequence[str] | None = None,
                  job_id: int | None = None, since: float | None = None,
                  benchmark: str | None = None, sku: str | None = None, limit: int | None = None) -> list[Result]:
    """Results, oldest first (tenant None: every tenant's)."""
    q = select(_R)
    if tenant is not None:
        q = q.where(_R.c.tenant == tenant)
    if isinstance(series, str):
        q = q.where(_R.c.series == series)
    elif series is not None:
        q = q.where(_R.c.series.in_(list(series)))
    if job_id is not None:
        q = q.where(_R.c.job_id == job_id)
    if since is not None:
        q = q.where(_R.c.at >= since)
    if benchmark:
        q = q.where(_R.c.benchmark == benchmark)
    if sku:
        q = q.where(_R.c.sku == sku)
    q = q.order_by(_R.c.at, _R.c.id)
    if limit:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [_result(m) for m in conn.execute(q).mappings()]


_DETECT = ("id", "series", "benchmark", "metric", "value", "at", "higher_is_better", "node", "gpu_model", "sku",
           "commit", "job_id")


def query_for_detection(engine: Engine, tenant: str | None = None) -> list[Result]:
    """The valid results only, with the columns change-point detection and its report need (no
    JSON columns: params, labels and conditions stay empty; no driver, attempt, user; tenant is
    the one asked for), oldest first. 3-4x faster than query_results over a big history."""
    cols = [_R.c[c] for c in _DETECT]
    q = select(*cols).where(_R.c.valid.is_(True))
    if tenant is not None:
        q = q.where(_R.c.tenant == tenant)
    q = q.order_by(_R.c.at, _R.c.id)
    with engine.connect() as conn:
        result = conn.execute(q)
        rows = result.cursor.fetchall()  # the driver's plain tuples: no Row objects for 500,000 rows
        result.close()
    return [Result(benchmark=b, metric=m, value=v, at=a, higher_is_better=bool(h), node=n or "", gpu_model=g or "",
                   sku=k or "", commit=c or "", job_id=j, series=s, id=i, tenant=tenant or "")
            for i, s, b, m, v, a, h, n, g, k, c, j in rows]


def series_summary(engine: Engine, tenant: str | None = None, benchmark: str | None = None) -> list[dict]:
    """One row per series: count, valid count, first and last time."""
    q = (select(_R.c.series, _R.c.benchmark, _R.c.metric, func.count().label("results"),
                func.min(_R.c.at).label("first_at"), func.max(_R.c.at).label("last_at"))
         .group_by(_R.c.series, _R.c.benchmark, _R.c.metric).order_by(_R.c.series))
    if tenant is not None:
        q = q.where(_R.c.tenant == tenant)
    if benchmark:
        q = q.where(_R.c.benchmark == benchmark)
    with engine.connect() as conn:
        return [dict(m) for m in conn.execute(q).mappings()]


def latest_values(engine: Engine) -> list[tuple[str, str, str, str, float]]:
    """(series, benchmark, metric, sku, value) of the newest valid result of every series."""
    newest = (select(_R.c.series, func.max(_R.c.at).label("at")).where(_R.c.valid.is_(True))
              .group_by(_R.c.series).subquery())
    q = (select(_R.c.series, _R.c.benchmark, _R.c.metric, _R.c.sku, _R.c.value)
         .join(newest, (newest.c.series == _R.c.series) & (newest.c.at == _R.c.at)))
    with engine.connect() as conn:
        seen: dict[str, tuple] = {}
        for row in conn.execute(q):
            seen[row[0]] = tuple(row)
        return list(seen.values())  # type: ignore[arg-type]


def query_cases(engine: Engine, tenant: str | None = None, job_id: int | None = None) -> list[TestCase]:
    q = select(_T).order_by(_T.c.id)
    if tenant is not None:
        q = q.where(_T.c.tenant == tenant)
    if job_id is not None:
        q = q.where(_T.c.job_id == job_id)
    with engine.connect() as conn:
        return [TestCase(**{k: m[k] for k in m.keys() if k != "id"}) for m in conn.execute(q).mappings()]


def tenants_of_jobs(engine: Engine, job_ids: Iterable[int]) -> dict[int, str]:
    from gpufleet.store.rows import JobRow

    ids = sorted(set(job_ids))
    if not ids:
        return {}
    t: Table = JobRow.__table__  # type: ignore[assignment]
    with engine.connect() as conn:
        return dict(conn.execute(select(t.c.id, t.c.tenant).where(t.c.id.in_(ids))).all())
