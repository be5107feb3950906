from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from gpufleet.api.convert import node_out, nodes_json
from gpufleet.api.deps import current_user, get_ctx
from gpufleet.api.schemas import NodeOut, NodeStateIn
from gpufleet.domain import NodeState, User
from gpufleet.services import Ctx
from gpufleet.services import nodes as svc
from gpufleet.services.dashboard import gpu_owners

router = APIRouter(prefix="/nodes", tags=["nodes"])


def _owners(ctx: Ctx, user: User) -> dict[tuple[str, int], int]:
    """(node, GPU) -> the job holding it; 0 for another tenant's job seen by a non-admin (the GPU
    shows as taken, not by whom), as on the dashboard."""
    return {key: job_id for key, (job_id, _) in gpu_owners(ctx, user).items()}


@router.get("", response_model=list[NodeOut])
def list_nodes(ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return Response(nodes_json(svc.list_nodes(ctx), _owners(ctx, user)), media_type="application/json")


@router.get("/{name}", response_model=NodeOut)
def show(name: str, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return node_out(ctx.store.get_node(name), _owners(ctx, user))


def _set(state: NodeState):
    def handler(name: str, body: NodeStateIn | None = None, ctx: Ctx = Depends(get_ctx),
                user: User = Depends(current_user)):
        node = svc.set_state(ctx, user, name, state, (body.reason if body else ""))
        return node_out(node, _owners(ctx, user))
    return handler


router.add_api_route("/{name}/drain", _set(NodeState.DRAIN), methods=["POST"], response_model=NodeOut)
router.add_api_route("/{name}/down", _set(NodeState.DOWN), methods=["POST"], response_model=NodeOut)
router.add_api_route("/{name}/resume", _set(NodeState.UP), methods=["POST"], response_model=NodeOut)
