"""The console's experiments (``/console/experiments``): the list by site and status, the
four ways to create one (from a prompt through the author, from explicit changes, an agent
experiment with its variants' configs, a blank draft), filling in a draft, and an
experiment's page with its variants, changes, preview links and lifecycle buttons, each
behind a page that says what it will do.

Every read and change is the REST API's, called in this process as the session's key
(`edge.control.console.frame.Session.api`); the forms' fields become the API's bodies in
`edge.control.console.experiment_forms`. A refused form is shown again, as typed, with
the API's message beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from edge.control.console.experiment_forms import (
    AGENT_METRIC_CHOICES,
    AGENT_ROWS,
    CHANGE_ACTIONS,
    CHANGE_ROWS,
    GOAL_ROWS,
    GOAL_TYPE_CHOICES,
    LIFECYCLE_WORDS,
    FormError,
    agent_body,
    blank_body,
    changes_body,
    confirmation,
    content_edit,
    draft_values,
    lifecycle_actions,
    prompt_body,
    rows_shown,
)
from edge.control.console.frame import (
    Console,
    PageEndpoint,
    RestFailure,
    Session,
    error_page,
    page,
    read_form,
    see_other,
)
from edge.errors import Conflict

__all__ = ["HOWS", "STATUS_CHOICES", "routes"]

HOWS = {
    "prompt": ("From a prompt", prompt_body),
    "changes": ("From explicit changes", changes_body),
    "agent": ("Agent experiment", agent_body),
    "blank": ("Blank draft", blank_body),
}
"""The ways to create an experiment: the form's title and its body."""

STATUS_CHOICES = (
    ("draft", "Draft"),
    ("running", "Running (active)"),
    ("paused", "Paused"),
    ("completed", "Completed"),
    ("archived", "Archived"),
)
"""The list's status filter: the API's values and their labels."""

_PAGE_SIZE = 50

_FORM_LISTS: dict[str, Any] = {
    "rows": rows_shown,
    "change_rows": CHANGE_ROWS,
    "goal_rows": GOAL_ROWS,
    "agent_rows": AGENT_ROWS,
    "change_actions": CHANGE_ACTIONS,
    "goal_types": GOAL_TYPE_CHOICES,
    "agent_metrics": AGENT_METRIC_CHOICES,
}


def _path(experiment_id: str) -> str:
    return f"/v1/experiments/{experiment_id}"


async def _sites(session: Session) -> list[dict[str, Any]]:
    sites: list[dict[str, Any]] = await session.api("GET", "/v1/sites", query={"limit": 100})
    return sites


async def _detail(session: Session, experiment_id: str) -> dict[str, Any]:
    """``GET /v1/experiments/{id}``'s answer (``experiment``, ``preview_urls``, ...); the
    API's 404 (another workspace's id) is the console's 404 page."""
    detail: dict[str, Any] = await session.api("GET", _path(experiment_id))
    return detail


async def _experiment(session: Session, experiment_id: str) -> dict[str, Any]:
    """The experiment of `_detail`."""
    experiment: dict[str, Any] = (await _detail(session, experiment_id))["experiment"]
    return experiment


def _offset(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


async def _list(request: Request, session: Session) -> Response:
    site_id = request.query_params.get("site_id") or ""
    status = request.query_params.get("status") or ""
    offset = _offset(request.query_params.get("offset"))
    query: dict[str, Any] = {"limit": _PAGE_SIZE, "offset": offset}
    if site_id:
        query["site_id"] = site_id
    if status:
        query["status"] = status
    answer = await session.api.answer("GET", "/v1/experiments", query=query)
    total = answer.meta.get("total", 0) if isinstance(answer.meta, dict) else 0
    following = {**query, "offset": offset + _PAGE_SIZE} if offset + _PAGE_SIZE < total else None
    return page(
        request, session, "console/experiments.html",
        experiments=answer.data, total=total, sites=await _sites(session),
        site_id=site_id, status_filter=status, statuses=STATUS_CHOICES, offset=offset,
        following=following, previous=offset > 0,
        previous_query={**query, "offset": max(0, offset - _PAGE_SIZE)},
    )  # fmt: skip


async def _new_form(
    request: Request,
    session: Session,
    how: str,
    values: Mapping[str, Any],
    *,
    status: int = 200,
    error: str | None = None,
    clarification: Mapping[str, Any] | None = None,
) -> Response:
    questions = [] if clarification is None else clarification["questions"]
    suggestions = [s for q in questions if q["field"] == "target_url" for s in q["suggestions"]]
    return page(
        request, session, "console/experiment_new.html", status=status,
        how=how, hows={k: title for k, (title, _) in HOWS.items()}, values=values,
        sites=await _sites(session), error=error, clarification=clarification,
        suggestions=suggestions,
        **_FORM_LISTS,
    )  # fmt: skip


async def _new(request: Request, session: Session) -> Response:
    how = request.query_params.get("how", "prompt")
    if how not in HOWS:
        how = "prompt"
    values = {"site_id": request.query_params.get("site_id", "")}
    return await _new_form(request, session, how, values)


async def _create(request: Request, session: Session) -> Response:
    how = request.path_params["how"]
    if how not in HOWS:
        return error_page(request, session, 404, "There is no such way to create one.")
    form = await read_form(request, session)
    try:
        body = HOWS[how][1](form)
        answer = await session.api.answer("POST", "/v1/experiments", body=body)
    except (RestFailure, FormError) as exc:
        return await _new_form(request, session, how, form, status=exc.status, error=exc.message)
    clarification = answer.data.get("needs_clarification")
    if clarification is not None:
        # The author asks before it writes anything: the prompt form again, with its
        # questions (nothing was created).
        return await _new_form(request, session, how, form, clarification=clarification)
    return see_other(request, f"/console/experiments/{answer.data['experiment']['id']}")


def _config_text(config: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(config), indent=2).decode()


async def _show(request: Request, session: Session) -> Response:
    detail = await _detail(session, request.path_params["experiment_id"])
    experiment = detail["experiment"]
    configs = {v["id"]: _config_text(v["config"]) for v in experiment["variants"]}
    return page(
        request, session, "console/experiment.html",
        experiment=experiment, preview_urls=detail["preview_urls"], configs=configs,
        actions=lifecycle_actions(experiment), words=LIFECYCLE_WORDS,
    )  # fmt: skip


async def _edit_form(
    request: Request,
    session: Session,
    experiment: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    return page(
        request, session, "console/experiment_edit.html", status=status,
        experiment=experiment, values=values, error=error, **_FORM_LISTS,
    )  # fmt: skip


def _draft(experiment: Mapping[str, Any]) -> None:
    if experiment["status"] != "draft":
        raise Conflict(
            f"experiment {experiment['id']} is {experiment['status']}; only a draft's "
            "variants and goals can be filled in"
        )


async def _edit(request: Request, session: Session) -> Response:
    experiment = await _experiment(session, request.path_params["experiment_id"])
    _draft(experiment)
    return await _edit_form(request, session, experiment, draft_values(experiment))


async def _save(request: Request, session: Session) -> Response:
    experiment_id = request.path_params["experiment_id"]
    form = await read_form(request, session)
    experiment = await _experiment(session, experiment_id)
    try:
        body = content_edit(form, experiment["kind"])
        await session.api("PATCH", _path(experiment_id), body=body)
    except (RestFailure, FormError) as exc:
        if isinstance(exc, RestFailure) and exc.status == 404:
            raise
        return await _edit_form(
            request, session, experiment, form, status=exc.status, error=exc.message
        )
    return see_other(request, f"/console/experiments/{experiment_id}")


async def _confirm_page(
    request: Request,
    session: Session,
    action: str,
    experiment: Mapping[str, Any],
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    return page(
        request, session, "console/experiment_confirm.html", status=status,
        experiment=experiment, action=action, word=LIFECYCLE_WORDS[action],
        explanation=confirmation(experiment, action), error=error,
    )  # fmt: skip


def _applies(experiment: Mapping[str, Any], action: str) -> None:
    if action not in lifecycle_actions(experiment):
        raise Conflict(
            f"{LIFECYCLE_WORDS[action].lower()} does not apply to experiment "
            f"{experiment['id']}: it is {experiment['status']}"
        )


def _lifecycle(action: str) -> tuple[PageEndpoint, PageEndpoint]:
    """The confirmation page of ``action`` and the handler of its form."""

    async def confirm(request: Request, session: Session) -> Response:
        experiment = await _experiment(session, request.path_params["experiment_id"])
        _applies(experiment, action)
        return await _confirm_page(request, session, action, experiment)

    async def act(request: Request, session: Session) -> Response:
        experiment_id = request.path_params["experiment_id"]
        form = await read_form(request, session)
        try:
            if action == "deploy":
                variant = {"variant_id": form.get("variant_id") or None}
                await session.api("POST", f"{_path(experiment_id)}/deploy", body=variant)
            else:
                await session.api("PATCH", _path(experiment_id), body={"action": action})
        except RestFailure as exc:
            if exc.status == 404:
                raise
            experiment = await _experiment(session, experiment_id)
            return await _confirm_page(
                request, session, action, experiment, status=exc.status, error=exc.message
            )
        return see_other(request, f"/console/experiments/{experiment_id}")

    return confirm, act


def routes(console: Console) -> list[BaseRoute]:
    """The experiments' pages and forms under ``/console/experiments`` (the results page,
    ``/{id}/results``, is `edge.control.console.results`')."""
    one = "/console/experiments/{experiment_id}"
    found: list[BaseRoute] = [
        console.route("/console/experiments", _list),
        console.route("/console/experiments/new", _new),
        console.route("/console/experiments/new/{how}", _create, ["POST"]),
        console.route(one, _show),
        console.route(f"{one}/edit", _edit),
        console.route(f"{one}/edit", _save, ["POST"]),
    ]
    for action in LIFECYCLE_WORDS:
        confirm, act = _lifecycle(action)
        found += [
            console.route(f"{one}/{action}", confirm),
            console.route(f"{one}/{action}", act, ["POST"]),
        ]
    return found
