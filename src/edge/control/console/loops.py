"""The loops pages: ``/console/loops`` lists the workspace's continuous loops;
``/console/loops/{id}`` shows one: its current round's champion and challenger (the
round's experiment's two arms and what the challenger changes), what the next look would
decide, and its last rounds with their outcomes. Pausing and resuming ask first
(``/console/loops/{id}/pause``, ``.../resume``). All of it through ``/v1/loops``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.control.console.account import paged
from edge.control.console.frame import Console, Session, page, read_form, see_other
from edge.errors import NotFound

__all__ = ["routes"]

# What each toggle does, as its confirmation page says it.
_TOGGLES = {
    "pause": (
        "Pause this loop?",
        "The loop stops taking new rounds and its current round's experiment is paused: "
        "visitors see the champion only until you resume it.",
    ),
    "resume": (
        "Resume this loop?",
        "The loop's current round's experiment runs again and the loop looks at it on its "
        "next tick; its count of inconclusive rounds starts again from zero.",
    ),
}


async def _arms(session: Session, current: dict[str, Any] | None) -> dict[str, Any]:
    """The current round's champion and challenger variants (by name, with their
    changes), from its experiment; empty when there is no round or experiment."""
    if current is None or current.get("experiment_id") is None:
        return {}
    detail = await session.api("GET", f"/v1/experiments/{current['experiment_id']}")
    variants = {v["id"]: v for v in detail["experiment"]["variants"]}
    return {
        "experiment": detail["experiment"],
        "champion": variants.get(current.get("champion_variant_id")),
        "challenger": variants.get(current.get("challenger_variant_id")),
    }


def routes(console: Console) -> list[BaseRoute]:
    """The loops area."""

    async def index(request: Request, session: Session) -> Response:
        loops, pager = await paged(request, session, "/v1/loops")
        return page(request, session, "console/loops.html", loops=loops, pager=pager, narrow={})

    async def detail(request: Request, session: Session) -> Response:
        state = await session.api("GET", f"/v1/loops/{request.path_params['loop_id']}")
        arms = await _arms(session, state["current_round"])
        return page(request, session, "console/loops_detail.html", state=state, arms=arms)

    async def confirm(request: Request, session: Session) -> Response:
        action = request.path_params["action"]
        if action not in _TOGGLES:
            raise NotFound("There is no console page here.")
        state = await session.api("GET", f"/v1/loops/{request.path_params['loop_id']}")
        title, says = _TOGGLES[action]
        return page(
            request, session, "console/loops_confirm.html", loop=state["loop"], action=action,
            title=title, says=says,
        )  # fmt: skip

    async def toggle(request: Request, session: Session) -> Response:
        action = request.path_params["action"]
        if action not in _TOGGLES:
            raise NotFound("There is no console page here.")
        await read_form(request, session)
        loop_id = request.path_params["loop_id"]
        await session.api("POST", f"/v1/loops/{loop_id}/{action}")
        return see_other(request, f"/console/loops/{loop_id}")

    return [
        console.route("/console/loops", index),
        console.route("/console/loops/{loop_id}", detail),
        console.route("/console/loops/{loop_id}/{action}", confirm),
        console.route("/console/loops/{loop_id}/{action}", toggle, ["POST"]),
    ]
