"""Node operations: list, drain, resume (admin). Drain reaches the engine too."""

from __future__ import annotations

from gpufleet.domain import Node, NodeState, User, ValidationError, transition
from gpufleet.executors.base import Ability
from gpufleet.services.context import Ctx, require_admin


def list_nodes(ctx: Ctx) -> tuple[Node, ...]:
    """All nodes by name, to read only (the store's cached table)."""
    return ctx.store.nodes_view()


def set_state(ctx: Ctx, user: User, name: str, state: NodeState, reason: str = "") -> Node:
    """drain / resume / down a node: in gpufleet and, where the engine supports it, in the engine."""
    require_admin(user, f"node {state.value}")
    if state is not NodeState.UP and not reason.strip():
        raise ValidationError("reason", "a reason is required to drain a node")
    node = ctx.store.get_node(name)
    change = transition(node, state, reason or f"resumed by {user.name}", ctx.clock())
    if Ability.DRAIN in ctx.executor.abilities:
        if state is NodeState.UP:
            ctx.executor.resume(name)
        else:
            ctx.executor.drain(name, reason)
    ctx.store.save_node(node, change)
    ctx.audit(user, f"node-{state.value}", f"node/{name}", reason=reason)
    ctx.wake()
    return node

