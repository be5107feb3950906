"""Nodes: by rack and kind, each GPU's holder, health state and reason, drain/resume (admins)."""

from __future__ import annotations

from itertools import groupby

from fastapi import APIRouter, Request

from gpufleet.domain import NodeState, ValidationError
from gpufleet.services import dashboard
from gpufleet.services import nodes as svc
from gpufleet.web.auth import check_csrf, signed_in
from gpufleet.web.render import DOMAIN_ERRORS, back, failure, form, page

router = APIRouter()
PAGE = 100
IDENTITY = ("sku", "driver", "vbios", "serial", "board-rev", "cuda")


def _rack(n) -> str:
    return n.labels.get("rack") or "no rack"


def _order(n) -> tuple:
    return ("rack" not in n.labels, _rack(n), n.kind.value, n.name)  # nodes without a rack last


@router.get("/nodes")
def nodes(request: Request):
    user, session = signed_in(request)
    ctx = request.app.state.ctx
    q = request.query_params
    kind, state = q.get("kind", ""), q.get("state", "")
    try:
        page_no = max(1, int(q.get("page") or 1))
    except ValueError:
        return failure(request, user, session, ValidationError("page", "must be a whole number"))
    # ctx.nodes(): the store's cached node table, renewed by every node write
    chosen = [n for n in ctx.nodes() if (not kind or n.kind.value == kind)
              and (not state or n.state.value == state)]
    chosen.sort(key=_order)
    shown = chosen[(page_no - 1) * PAGE: page_no * PAGE]
    owners = dashboard.gpu_owners(ctx, user)
    racks = [(rack, [(k, list(ns)) for k, ns in groupby(group, key=lambda n: n.kind.value)])
             for rack, group in groupby(shown, key=_rack)]
    return page(request, "nodes.html", user, session, active="nodes", racks=racks, owners=owners,
                total=len(chosen), page_no=page_no, pages=max(1, -(-len(chosen) // PAGE)),
                kind=kind, state=state, identity=IDENTITY)


async def _set(request: Request, name: str, state: NodeState):
    user, session = signed_in(request)
    data = await form(request)
    check_csrf(request, session, data.get("csrf"))
    try:
        svc.set_state(request.app.state.ctx, user, name, state, data.get("reason", "").strip())
    except DOMAIN_ERRORS as e:
        return failure(request, user, session, e)
    done = "resumed" if state is NodeState.UP else f"set to {state.value}"
    return back(data.get("back") if str(data.get("back", "")).startswith("/nodes") else "/nodes",
                session, "ok", f"node {name} {done}")


@router.post("/nodes/{name}/drain")
async def drain(request: Request, name: str):
    return await _set(request, name, NodeState.DRAIN)


@router.post("/nodes/{name}/resume")
async def resume(request: Request, name: str):
    return await _set(request, name, NodeState.UP)
