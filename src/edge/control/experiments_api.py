"""``/v1/experiments``: create, list, get, change the lifecycle of, re-split, promote and
delete the experiments of the API key's workspace.

The reference's routes (abtestbot): ``POST`` and ``GET /v1/experiments``,
``GET``, ``PATCH`` (``{"action": ...}`` or ``{"traffic_split": n}``; and, where the
reference says a blank draft is filled in later, a draft's content fields) and ``DELETE
/v1/experiments/{id}``; crewkit's lifecycle routes ``POST /v1/experiments/{id}/start``,
``/stop``, ``/archive`` and ``/deploy`` (``{"variant": <name or id>}``, also at
``/promote``). The rules live in `edge.control.lifecycle`, the create body's validation
in `edge.control.experiment_input` and the answers' shapes in
`edge.control.experiment_views`: every answer about one experiment (create, ``GET``,
``PATCH`` but an action's) is the reference's create shape ``{experiment, preview_urls,
activation_hint}``, whose hint names the MCP tools when a tool made the request. The
list's ``status`` filter takes the reference's ``active`` and the ``running`` experiments
report alike. Another workspace's experiment is the same 404 as an unknown id; the
``/results`` and ``/metrics`` routes are `edge.control.results_api`'s.

A create with ``prompt`` (the reference's one-shot path) authors its variant first, as
``POST /v1/variants/generate`` does (`edge.control.variants_api.draft_variant`), outside
any transaction, and then creates the experiment and debits create_experiment plus
generate_variant (15 credits) in one transaction: a create that fails after authoring rolls
its debit back and costs nothing. When the author needs clarification, nothing is created,
generate_variant (10) is charged and the answer is 200 ``{needs_clarification: ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from edge.authoring.drafts import NeedsClarification, VariantDraft
from edge.control import audit, credits, lifecycle
from edge.control.api import (
    TOOL_SCOPE_KEY,
    ApiOperation,
    Auth,
    Handler,
    Meta,
    Page,
    Reply,
    api_route,
    authenticate,
    in_transaction,
    ok,
    page_params,
    paid_read,
    query_params,
    read_json,
)
from edge.control.experiment_input import (
    CreateExperiment,
    ExperimentEdit,
    check_prompt_create,
    edited_experiment,
    guardrail_metrics,
    new_experiment,
)
from edge.control.experiment_views import (
    DeletedExperiment,
    ExperimentDetail,
    ExperimentSummary,
    LaunchOutcome,
    StatusOut,
    experiment_detail,
    experiment_summary,
    status_out,
)
from edge.control.flavours import CLAWSPLIT, flavoured
from edge.control.ideas import require_idea
from edge.control.previews import PreviewTokens
from edge.control.records import ExperimentRecord, ExperimentStatus
from edge.control.services import Services
from edge.control.sites_api import require_site
from edge.control.store import Store
from edge.control.variants_api import Clarification, check_prompt, draft_variant
from edge.errors import InvalidRequest

__all__ = [
    "DeployBody",
    "ExperimentFilter",
    "ExperimentsApi",
    "Promotion",
    "StatusFilter",
    "UpdateExperiment",
    "routes",
]


class UpdateExperiment(ExperimentEdit, frozen=True, forbid_unknown_fields=True):
    """``PATCH /v1/experiments/{id}``: a lifecycle ``action`` alone, or the content fields
    to change (`ExperimentEdit`): a new ``traffic_split`` (percent on the variant, 1 to
    99) for any draft, running or paused experiment, the others for a draft only."""

    action: str | None = None


class DeployBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """crewkit's deploy: the variant to promote, by name (``"variant"``) or id."""

    variant: str | None = None
    variant_id: str | None = None


Promotion = Callable[[Store, str, str, str], ExperimentRecord]
"""A way to promote a variant: (store, workspace id, experiment id, variant) to the
experiment after it (`lifecycle.promote`, `lifecycle.deploy`)."""

StatusFilter = Literal["draft", "active", "running", "paused", "completed", "archived"]
"""The ``status`` filter of the experiment list: the keys of ``_STATUS_FILTERS``."""


class ExperimentFilter(Page, frozen=True):
    """The query of ``GET /v1/experiments``: a page, of one site's experiments, of one
    status."""

    site_id: Annotated[str, msgspec.Meta(description="Only this site's experiments.")] | None = None
    status: (
        Annotated[
            StatusFilter,
            msgspec.Meta(description="Only experiments in this status (active: running)."),
        ]
        | None
    ) = None


_create_decoder = msgspec.json.Decoder(CreateExperiment)
_update_decoder = msgspec.json.Decoder(UpdateExperiment)
_deploy_decoder = msgspec.json.Decoder(DeployBody)

# The reference's filter says "active" for what its PATCH answers call "running".
_STATUS_FILTERS: dict[str, ExperimentStatus] = {
    "draft": "draft",
    "active": "running",
    "running": "running",
    "paused": "paused",
    "completed": "completed",
    "archived": "archived",
}


def _for_tools(scope: Scope) -> bool:
    """Whether the request is an MCP tool's (its texts name tools)."""
    return scope.get(TOOL_SCOPE_KEY) is True


def _action(text: str) -> lifecycle.Action:
    for action in lifecycle.ACTIONS:
        if text == action:
            return action
    raise InvalidRequest(
        f"action {text[:50]!r} is not a lifecycle action; use one of "
        + ", ".join(lifecycle.ACTIONS)
    )


def _audit(
    store: Store,
    auth: Auth,
    action: str,
    record: ExperimentRecord,
    detail: dict[str, Any] | None = None,
) -> None:
    audit.record(
        store, auth.workspace_id, auth.key_id, f"experiment.{action}", "experiment", record.id,
        {"status": record.status, **(detail or {})},
    )  # fmt: skip


class ExperimentsApi:
    """The handlers of ``/v1/experiments``, over the worker's services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.tokens = PreviewTokens(services.store_path)

    async def _authored(
        self, auth: Auth, body: CreateExperiment
    ) -> VariantDraft | NeedsClarification:
        """The variant of a ``prompt`` create, authored before the create's transaction
        (the author fetches a page), or the author's questions: those are paid for here,
        as generate_variant, and nothing is created."""
        check_prompt_create(body)
        prompt = check_prompt(body.prompt)
        if body.site_id is None:
            raise InvalidRequest(
                "site_id is required: the variant is authored for one of your sites (GET "
                "/v1/sites lists them)"
            )
        _, answer = await draft_variant(
            self.services, auth, self.services.author, body.site_id, prompt, body.target_url,
            "create_experiment", credits.TOOL_COSTS["generate_variant"],
        )  # fmt: skip
        if isinstance(answer, NeedsClarification) and auth.metered:
            await in_transaction(self.services, auth, lambda store: None, "generate_variant")
        return answer

    async def create(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/experiments``: 201 with the draft (or, with ``auto_launch`` and its
        preconditions met, the running experiment), its preview URLs and next step; with
        ``prompt``, the variant is authored first, and when the author needs to know more,
        200 with ``needs_clarification`` and nothing created."""
        auth = await authenticate(self.services, scope)
        body = await read_json(scope, receive, _create_decoder, "experiment")
        if auth.flavour == "clawsplit":
            # A ClawSplit experiment runs from its creation (its quickstart: create, let
            # it run, fetch results).
            body = msgspec.structs.replace(body, auto_launch=True)
        made = await self.created(auth, body)
        if isinstance(made, NeedsClarification):
            return ok(Clarification(made), Meta(auth.workspace_id))
        record, launch = made
        created = experiment_detail(record, self.tokens, _for_tools(scope), launch)
        return flavoured(
            auth.flavour, CLAWSPLIT, created, Meta(auth.workspace_id), 201, created.experiment
        )

    async def created(
        self, auth: Auth, body: CreateExperiment
    ) -> tuple[ExperimentRecord, LaunchOutcome | None] | NeedsClarification:
        """Create the experiment ``body`` describes (`create`'s work, crewkit's create's
        too): the experiment and what ``auto_launch`` did, or the author's questions."""
        site_id = body.site_id
        if site_id is None and body.idea_id is not None:
            raise InvalidRequest("site_id is required: an idea is for one of your sites")
        draft: VariantDraft | None = None
        if body.prompt is not None:
            authored = await self._authored(auth, body)
            if isinstance(authored, NeedsClarification):
                return authored
            draft = authored

        def work(store: Store) -> tuple[ExperimentRecord, LaunchOutcome | None]:
            with store.transaction():
                if draft is not None and auth.metered:
                    # One debit for the create and its inline generate (15 credits): if
                    # the create fails, it rolls back with it and nothing is charged.
                    credits.debit(
                        store, auth.workspace_id, auth.key_id, "create_experiment",
                        credits.TOOL_COSTS["generate_variant"],
                    )  # fmt: skip
                site = None if site_id is None else require_site(store, auth.workspace_id, site_id)
                idea = None
                if site is not None and body.idea_id is not None:
                    idea = require_idea(store, auth.workspace_id, body.idea_id)
                    if idea.site_id != site.id:
                        raise InvalidRequest(
                            f"idea {idea.id} is for site {idea.site_id}, not {site.id}; "
                            "create the experiment on the idea's site"
                        )
                new = new_experiment(
                    body,
                    auth.workspace_id,
                    None if site is None else site.id,
                    None if site is None else site.url,
                    idea,
                    draft,
                )
                experiment_id = store.create_experiment(new)
                targets = (body.sample_size, body.primary_metric, body.confidence)
                guarded = guardrail_metrics(body)
                if any(targets) or body.max_cost_increase or guarded:
                    store.set_experiment_targets(
                        experiment_id, *targets, max_cost_increase=body.max_cost_increase,
                        guardrail_metrics=guarded,
                    )  # fmt: skip
                record = lifecycle.load(store, auth.workspace_id, experiment_id)
                _audit(store, auth, "create", record)
                if not body.auto_launch:
                    return record, None
                blocker = lifecycle.launch_blocker(record)
                if blocker is not None:
                    return record, LaunchOutcome("draft", f"auto_launch skipped: {blocker}")
                # Launching is free on this path (the reference): create pays for both.
                record = lifecycle.transition(store, auth.workspace_id, experiment_id, "launch")
                _audit(store, auth, "launch", record)
                return record, LaunchOutcome("running")

        # The prompt path debits in `work`, create and generate together.
        tool = "create_experiment" if draft is None else None
        return await in_transaction(self.services, auth, work, tool)

    async def list_experiments(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/experiments``: newest first, filtered by ``site_id`` and ``status``."""
        auth = await authenticate(self.services, scope)
        page = page_params(scope)
        params = query_params(scope)
        status = None
        if "status" in params:
            status = _STATUS_FILTERS.get(params["status"])
            if status is None:
                raise InvalidRequest(
                    f"status {params['status'][:50]!r} is not an experiment status; use one "
                    "of draft, active (or running), paused, completed, archived"
                )
        site_id = params.get("site_id") or None
        records, total = await paid_read(
            self.services,
            auth,
            "list_experiments",
            lambda store: store.list_experiment_records(
                auth.workspace_id,
                site_id=site_id,
                status=status,
                limit=page.limit,
                offset=page.offset,
            ),
        )
        meta = Meta(auth.workspace_id, limit=page.limit, offset=page.offset, total=total)
        return ok([experiment_summary(r) for r in records], meta)

    async def get(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /v1/experiments/{id}``: the experiment, its preview URLs and next step."""
        auth = await authenticate(self.services, scope)
        experiment_id = scope["path_params"]["experiment_id"]
        record = await paid_read(
            self.services,
            auth,
            "get_experiment",
            lambda store: lifecycle.load(store, auth.workspace_id, experiment_id),
        )
        return ok(
            experiment_detail(record, self.tokens, _for_tools(scope)), Meta(auth.workspace_id)
        )

    async def update(self, scope: Scope, receive: Receive) -> Reply:
        """``PATCH /v1/experiments/{id}``: ``{"action": ...}`` answers ``{id, status}``;
        ``{"traffic_split": n}`` and a draft's content fields answer the experiment in
        full."""
        auth = await authenticate(self.services, scope)
        experiment_id = scope["path_params"]["experiment_id"]
        body = await read_json(scope, receive, _update_decoder, "experiment update")
        fields = body.draft_fields()
        if (body.action is None) == (body.traffic_split is None and not fields):
            raise InvalidRequest(
                'send one change at a time: {"action": "launch"} (or pause, resume, '
                'complete, archive) alone, or the fields to change: {"traffic_split": 30}, '
                "or a draft's name, hypothesis, target_url, url_pattern, variants and goals"
            )
        if body.action is not None:
            record = await self._transition(auth, experiment_id, _action(body.action))
            return ok(status_out(record), Meta(auth.workspace_id))
        record = await in_transaction(
            self.services, auth, lambda store: self._edit(store, auth, experiment_id, body)
        )
        return ok(
            experiment_detail(record, self.tokens, _for_tools(scope)), Meta(auth.workspace_id)
        )

    def _edit(
        self, store: Store, auth: Auth, experiment_id: str, body: UpdateExperiment
    ) -> ExperimentRecord:
        """Apply ``body``'s content fields (a re-split alone: `lifecycle.resplit`)."""
        fields = body.draft_fields()
        percent = body.traffic_split
        if not fields:
            assert percent is not None  # `update` sends an edit with a field
            record = lifecycle.resplit(store, auth.workspace_id, experiment_id, percent)
            _audit(store, auth, "traffic_split", record, {"traffic_split": percent})
            return record
        with store.transaction():
            record = lifecycle.load(store, auth.workspace_id, experiment_id)
            lifecycle.check_editable(record, fields)
            edit = edited_experiment(record, body)
            store.edit_draft(record.id, edit.experiment, edit.variants, edit.goals)
            if percent is not None and not edit.variants:
                store.set_variant_weights(record.id, [v.weight for v in edit.experiment.variants])
            edited = lifecycle.load(store, auth.workspace_id, experiment_id)
            changed = fields if percent is None else (*fields, "traffic_split")
            _audit(store, auth, "update", edited, {"fields": list(changed)})
            return edited

    async def _transition(
        self, auth: Auth, experiment_id: str, action: lifecycle.Action
    ) -> ExperimentRecord:
        def move(store: Store) -> ExperimentRecord:
            record = lifecycle.transition(store, auth.workspace_id, experiment_id, action)
            _audit(store, auth, action, record)
            return record

        tool = "launch_experiment" if action == "launch" else None
        return await in_transaction(self.services, auth, move, tool)

    async def delete(self, scope: Scope, receive: Receive) -> Reply:
        """``DELETE /v1/experiments/{id}``: drafts and archived experiments only."""
        auth = await authenticate(self.services, scope)
        experiment_id = scope["path_params"]["experiment_id"]

        def delete(store: Store) -> None:
            lifecycle.delete(store, auth.workspace_id, experiment_id)
            audit.record(
                store, auth.workspace_id, auth.key_id, "experiment.delete", "experiment",
                experiment_id,
            )  # fmt: skip

        await in_transaction(self.services, auth, delete)
        return ok(DeletedExperiment(experiment_id, True), Meta(auth.workspace_id))

    def crewkit(self, action: lifecycle.Action) -> Handler:
        """The handler of crewkit's ``POST /v1/experiments/{id}/<start|stop|archive>``."""

        async def handler(scope: Scope, receive: Receive) -> Reply:
            auth = await authenticate(self.services, scope)
            experiment_id = scope["path_params"]["experiment_id"]
            record = await self._transition(auth, experiment_id, action)
            return ok(status_out(record), Meta(auth.workspace_id))

        return handler

    async def deploy(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /v1/experiments/{id}/deploy`` (and ``/promote``): the variant gets all
        the traffic and the experiment completes with it as the winner."""
        auth = await authenticate(self.services, scope)
        record = await self.promoted(scope, receive, auth, lifecycle.promote)
        return ok(status_out(record), Meta(auth.workspace_id))

    async def promoted(
        self, scope: Scope, receive: Receive, auth: Auth, deploy: Promotion
    ) -> ExperimentRecord:
        """Promote the variant the request's body names by ``deploy`` (`lifecycle.promote`,
        or crewkit's `lifecycle.deploy`, which archives too); the experiment after it."""
        experiment_id = scope["path_params"]["experiment_id"]
        body = await read_json(scope, receive, _deploy_decoder, "deploy request")
        variant = body.variant_id or body.variant
        if not variant or (body.variant_id and body.variant):
            raise InvalidRequest(
                'name the variant to promote: {"variant": "<its name>"} or '
                '{"variant_id": "<its id>"}'
            )

        def promote(store: Store) -> ExperimentRecord:
            record = deploy(store, auth.workspace_id, experiment_id, variant)
            _audit(store, auth, "promote", record, {"variant_id": record.winner_variant_id})
            return record

        return await in_transaction(self.services, auth, promote)


def routes(services: Services) -> list[Route]:
    """The routes of ``/v1/experiments`` (not ``/results`` and ``/metrics``); the
    services' author authors the variant of a ``prompt`` create."""
    api = ExperimentsApi(services)
    one = "/v1/experiments/{experiment_id}"
    listing = ApiOperation(
        handler=api.list_experiments,
        summary="List the workspace's experiments, newest first",
        data=list[ExperimentSummary],
        query=ExperimentFilter,
        errors=(402,),
    )
    create = ApiOperation(
        handler=api.create,
        summary="Create an experiment",
        description="A draft from variants[].changes, a redirect_url, an idea_id, agent "
        "configs, none of them (a blank draft: its control alone, which cannot launch) "
        "or a prompt (the variant is authored from it: create_experiment plus "
        "generate_variant); with auto_launch and its preconditions met, a running "
        "experiment. A prompt whose page cannot be resolved answers 200 with "
        "needs_clarification and creates nothing (generate_variant is charged); 422 (free) "
        "when its page cannot be fetched.",
        body=_create_decoder,
        data=ExperimentDetail | Clarification,
        statuses=(201, 200),
        errors=(402, 404, 422, 502),
        example={
            "site_id": "e0e3f741-5a4e-4c2a-9d7a-3b1f0c8e2d10",
            "name": "Pricing headline",
            "hypothesis": "A bolder headline sells more Pro plans",
            "target_url": "https://mystore.com/pricing",
            "url_pattern": "/pricing",
            "variants": [
                {
                    "name": "Bold",
                    "changes": [
                        {"selector": "h1", "action": "set_content", "payload": "Go Pro today"}
                    ],
                }
            ],
            "goals": [{"name": "Buy", "type": "click", "selector": ".buy"}],
            "auto_launch": True,
        },
    )
    get = ApiOperation(
        handler=api.get,
        summary="Get an experiment, its preview URLs and next step (create's shape)",
        data=ExperimentDetail,
        errors=(402, 404),
    )
    update = ApiOperation(
        handler=api.update,
        summary="Change an experiment's lifecycle, traffic split, or a draft's content",
        description='{"action": "launch|pause|resume|complete|archive"} alone answers {id, '
        "status}. Otherwise the fields to change, each replacing the experiment's: "
        '{"traffic_split": n} (1 to 99) for a draft, running or paused experiment; name, '
        "hypothesis, target_url, url_pattern, variants and goals (create's fields, checked "
        "as create checks them) for a draft only, a 409 once launched. A blank draft is "
        "filled in so. Answers the experiment in full, in create's shape.",
        body=_update_decoder,
        data=StatusOut | ExperimentDetail,
        errors=(402, 404, 409),
        example={
            "variants": [
                {
                    "name": "Bold",
                    "changes": [
                        {"selector": "h1", "action": "set_content", "payload": "Go Pro today"}
                    ],
                }
            ],
            "goals": [{"name": "Buy", "type": "click", "selector": ".buy"}],
        },
    )
    delete = ApiOperation(
        handler=api.delete,
        summary="Delete a draft or archived experiment",
        data=DeletedExperiment,
        errors=(404, 409),
    )
    deploy = ApiOperation(
        handler=api.deploy,
        summary="Promote a variant: it gets all the traffic, the experiment completes",
        body=_deploy_decoder,
        data=StatusOut,
        errors=(404, 409),
        example={"variant": "Bold"},
    )
    return [
        api_route("/v1/experiments", {"GET": listing, "POST": create}),
        api_route(one, {"GET": get, "PATCH": update, "DELETE": delete}),
        *(
            api_route(
                f"{one}/{name}",
                {
                    "POST": ApiOperation(
                        handler=api.crewkit(action),
                        summary=f"crewkit's {name}: the {action} action",
                        data=StatusOut,
                        errors=(402, 404, 409) if action == "launch" else (404, 409),
                    )
                },
            )
            for name, action in lifecycle.CREWKIT_ACTIONS.items()
        ),
        api_route(f"{one}/deploy", {"POST": deploy}),
        api_route(f"{one}/promote", {"POST": deploy}),
    ]
