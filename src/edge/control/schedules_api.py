"""``/v1/schedules``: list, create, get, change and delete the recurring idea-generation
runs of the API key's workspace (the reference's routes; what a run does and when is
`edge.control.schedules`'). The routes are free; a run pays generate_ideas per page on a
metered plan. Another workspace's schedule is the same 404 as an unknown id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from edge.control.api import (
    ApiOperation,
    Meta,
    Page,
    Reply,
    api_route,
    authenticate,
    in_store,
    in_transaction,
    ok,
    page_params,
    query_params,
    read_json,
)
from edge.control.idea_records import MAX_IDEAS_PER_RUN, OutputType
from edge.control.schedule_records import MAX_TARGET_PAGES, Frequency, Schedule, ScheduleSettings
from edge.control.schedules import create_schedule, delete_schedule, get_schedule, update_schedule
from edge.control.services import Services
from edge.errors import InvalidRequest

__all__ = [
    "CreateSchedule",
    "DeletedSchedule",
    "ScheduleQuery",
    "SchedulesApi",
    "UpdateSchedule",
    "routes",
]


class CreateSchedule(ScheduleSettings, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/schedules``: the site, and what the schedule does (defaults: disabled,
    weekly on Mondays, 2 ideas, html, the site's root)."""

    site_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class UpdateSchedule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PATCH /v1/schedules/{schedule_id}``: any of the create fields; those left out
    keep their value."""

    site_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    enabled: bool | None = None
    frequency: Frequency | None = None
    day_of_week: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None
    ideas_per_run: Annotated[int, msgspec.Meta(ge=1, le=MAX_IDEAS_PER_RUN)] | None = None
    output_type: OutputType | None = None
    target_pages: (
        Annotated[
            tuple[Annotated[str, msgspec.Meta(max_length=2048)], ...],
            msgspec.Meta(max_length=MAX_TARGET_PAGES),
        ]
        | None
    ) = None


class ScheduleQuery(Page, frozen=True):
    """The query of ``GET /v1/schedules``: a page, of one site's schedules."""

    site_id: Annotated[str, msgspec.Meta(description="Only this site's schedules.")] | None = None


class DeletedSchedule(msgspec.Struct, frozen=True):
    """The answer to ``DELETE /v1/schedules/{schedule_id}``."""

    id: str
    deleted: bool


_create_decoder = msgspec.json.Decoder(CreateSchedule)
_update_decoder = msgspec.json.Decoder(UpdateSchedule)


class SchedulesApi:
    """The handlers of ``/v1/schedules``, over the worker's services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def list_schedules(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/schedules``: newest first."""
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        site_id = query_params(scope).get("site_id") or None
        items, total = await in_store(
            self.services,
            lambda store: store.list_schedules(auth.workspace_id, site_id, page.limit, page.offset),
        )
        return ok(items, Meta(auth.workspace_id, page.limit, page.offset, total))

    async def create(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/schedules``: 201 with the schedule and its ``next_run_at``."""
        auth = await authenticate(self.services, scope)
        body = await read_json(scope, receive, _create_decoder, "schedule")
        site_id = body.site_id
        if site_id is None:
            raise InvalidRequest(
                "site_id is required: a schedule generates ideas for one of your sites "
                "(GET /v1/sites lists them)"
            )
        settings = ScheduleSettings(
            **{name: getattr(body, name) for name in ScheduleSettings.__struct_fields__}
        )
        now = datetime.now(UTC)
        schedule = await in_transaction(
            self.services,
            auth,
            lambda store: create_schedule(
                store, auth.workspace_id, auth.key_id, site_id, settings, now
            ),
        )
        return ok(schedule, Meta(auth.workspace_id), status=201)

    async def get(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/schedules/{schedule_id}``."""
        auth = await authenticate(self.services, scope)
        schedule_id = scope["path_params"]["schedule_id"]
        schedule = await in_store(
            self.services, lambda store: get_schedule(store, auth.workspace_id, schedule_id)
        )
        return ok(schedule, Meta(auth.workspace_id))

    async def update(self, scope: Scope, receive: Receive) -> Reply:
        """``PATCH /v1/schedules/{schedule_id}``: the schedule after."""
        auth = await authenticate(self.services, scope)
        schedule_id = scope["path_params"]["schedule_id"]
        body = await read_json(scope, receive, _update_decoder, "schedule update")
        changes = {
            name: value for name, value in msgspec.structs.asdict(body).items() if value is not None
        }
        now = datetime.now(UTC)
        schedule = await in_transaction(
            self.services,
            auth,
            lambda store: update_schedule(
                store, auth.workspace_id, auth.key_id, schedule_id, changes, now
            ),
        )
        return ok(schedule, Meta(auth.workspace_id))

    async def delete(self, scope: Scope, receive: Receive) -> Reply:
        """``DELETE /v1/schedules/{schedule_id}``."""
        auth = await authenticate(self.services, scope)
        schedule_id = scope["path_params"]["schedule_id"]
        await in_transaction(
            self.services,
            auth,
            lambda store: delete_schedule(store, auth.workspace_id, auth.key_id, schedule_id),
        )
        return ok(DeletedSchedule(schedule_id, True), Meta(auth.workspace_id))


def routes(services: Services) -> list[Route]:
    """The routes of ``/v1/schedules``."""
    api = SchedulesApi(services)
    listing = ApiOperation(
        handler=api.list_schedules,
        summary="List the workspace's idea-generation schedules, newest first",
        data=list[Schedule],
        query=ScheduleQuery,
    )
    create = ApiOperation(
        handler=api.create,
        summary="Create an idea-generation schedule",
        description="Runs at 09:00 UTC: daily, weekly on day_of_week (1 = Monday) or monthly "
        "on the first day_of_week of the month; next_run_at is null while it is disabled.",
        body=_create_decoder,
        data=Schedule,
        statuses=(201,),
        errors=(404,),
        example={
            "site_id": "e0e3f741-5a4e-4c2a-9d7a-3b1f0c8e2d10",
            "enabled": True,
            "frequency": "weekly",
            "day_of_week": 1,
            "ideas_per_run": 2,
            "target_pages": ["https://mystore.com/pricing"],
        },
    )
    get = ApiOperation(
        handler=api.get, summary="Get an idea-generation schedule", data=Schedule, errors=(404,)
    )
    update = ApiOperation(
        handler=api.update,
        summary="Change an idea-generation schedule",
        description="Any create field; a change of enabled, frequency or day_of_week sets "
        "next_run_at afresh.",
        body=_update_decoder,
        data=Schedule,
        errors=(404,),
        example={"enabled": True, "frequency": "daily"},
    )
    delete = ApiOperation(
        handler=api.delete,
        summary="Delete an idea-generation schedule",
        data=DeletedSchedule,
        errors=(404,),
    )
    return [
        api_route("/v1/schedules", {"GET": listing, "POST": create}),
        api_route("/v1/schedules/{schedule_id}", {"GET": get, "PATCH": update, "DELETE": delete}),
    ]
