"""crewkit's Experiments API at its own paths: ``/{org_id}/experiments`` and below, with
the API key's workspace id as the org id.

The routes are crewkit's documented ones: list, create, show, update (``PATCH
{"traffic_split": n}``), ``start``, ``stop``, ``deploy`` (``{"variant": name}``),
``archive``, ``metrics`` and delete. Their work is that of ``/v1/experiments``
(`edge.control.experiments_api`, `edge.control.results_api`): this module checks the
org id, hands the request on with its `Auth` (``AUTH_SCOPE_KEY``, so the key is checked
and counted once), and answers in crewkit's shapes:

- metrics: crewkit's documented object itself, ``{control, variant, significance}``, no
  envelope (the doc shows none);
- every other route: ``{"data": ..., "meta": ...}``, crewkit's documented response format
  (its API overview), the experiment under ``data`` with crewkit's create fields
  (``resource_id``, ``control_version_hash``, ``variant_version_hash``) beside
  splitedge's; a list pages by crewkit's ``page`` and ``per_page`` and says so in
  ``meta`` (``current_page``, ``total_pages``, ``total_count``).

crewkit's lifecycle differs from ``/v1``'s in one place: its deploy promotes the variant
and archives the experiment (`edge.control.lifecycle.deploy`), and the archived
deployment keeps serving its winner to ``/v1/assign``.

An org id other than the key's workspace's is a 404 whatever it names, so a key never
learns whether another organization, or its experiments, exist.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope

from analytics.result_views import CrewkitMetrics, crewkit_metrics_view
from edge.authoring.drafts import NeedsClarification
from edge.control import lifecycle
from edge.control.api import (
    AUTH_SCOPE_KEY,
    MAX_LIMIT,
    ApiOperation,
    Auth,
    Handler,
    Meta,
    Reply,
    api_route,
    authenticate,
    in_store,
    int_param,
    ok,
    paid_read,
    query_params,
    read_json,
)
from edge.control.experiment_input import CreateExperiment
from edge.control.experiment_views import DeletedExperiment, ExperimentOut, experiment_out
from edge.control.experiments_api import DeployBody, ExperimentsApi, UpdateExperiment
from edge.control.records import ExperimentRecord
from edge.control.results_api import ExperimentMetricsEndpoint, ResultsSource
from edge.control.services import Services
from edge.control.store import Store
from edge.control.variants_api import Clarification
from edge.errors import NotFound

__all__ = ["CrewkitApi", "CrewkitExperiment", "CrewkitPage", "CrewkitPageQuery", "routes"]

# crewkit's default page (its API overview: per_page 25).
_PER_PAGE = 25
# Far more pages than any workspace has; bounds page * per_page for SQLite.
_MAX_PAGE = 1_000_000_000


class CrewkitExperiment(ExperimentOut, frozen=True):
    """An experiment on crewkit's routes: splitedge's experiment in full and, for one
    made from crewkit's body, that body's ``resource_id`` and version hashes (None
    otherwise)."""

    resource_id: str | None
    control_version_hash: str | None
    variant_version_hash: str | None


class CrewkitPageQuery(msgspec.Struct, frozen=True):
    """The query of crewkit's list: its pagination (page number from 1, page size)."""

    page: Annotated[int, msgspec.Meta(ge=1, le=_MAX_PAGE, description="Page number.")] = 1
    per_page: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT, description="Items per page.")] = (
        _PER_PAGE
    )


class CrewkitPage(msgspec.Struct, frozen=True):
    """The ``meta`` of crewkit's list: the page answered, how many pages and items there
    are, the page size, and the key's workspace (the org id)."""

    current_page: int
    total_pages: int
    total_count: int
    per_page: int
    workspace_id: str


def _version_hash(config: Any) -> tuple[str | None, str | None]:
    """A variant config's crewkit resource id and version hash, when it is crewkit's."""
    if isinstance(config, dict):
        resource, version = config.get("resource_id"), config.get("version_hash")
        if isinstance(resource, str) and isinstance(version, str):
            return resource, version
    return None, None


def crewkit_experiment(record: ExperimentRecord) -> CrewkitExperiment:
    """The experiment in crewkit's shape. Its crewkit fields are those of its variant
    configs when, as a crewkit create makes them (`edge.control.experiment_input`), they
    are a control and one variant of one resource."""
    hashes = [_version_hash(v.config) for v in record.variants]
    resource = control = variant = None
    if len(hashes) == 2 and hashes[0][0] is not None and hashes[0][0] == hashes[1][0]:
        resource, control, variant = hashes[0][0], hashes[0][1], hashes[1][1]
    return CrewkitExperiment(
        **msgspec.structs.asdict(experiment_out(record)),
        resource_id=resource,
        control_version_hash=control,
        variant_version_hash=variant,
    )


class _Listed(msgspec.Struct):
    data: list[CrewkitExperiment]
    meta: CrewkitPage


_create_decoder = msgspec.json.Decoder(CreateExperiment)
_update_decoder = msgspec.json.Decoder(UpdateExperiment)
_deploy_decoder = msgspec.json.Decoder(DeployBody)


class CrewkitApi:
    """The handlers of ``/{org_id}/experiments``, over ``/v1``'s experiments handlers
    and metrics endpoint."""

    def __init__(self, services: Services, source: ResultsSource) -> None:
        self.services = services
        self.experiments = ExperimentsApi(services)
        self.metrics_endpoint = ExperimentMetricsEndpoint(services, source)

    async def _authorized(self, scope: Scope) -> tuple[Auth, Scope]:
        """The caller, and the request's scope carrying it for the ``/v1`` handlers; 404
        when the org id is not the key's workspace's."""
        auth = await authenticate(self.services, scope)
        org_id = scope["path_params"]["org_id"]
        if org_id != auth.workspace_id:
            raise NotFound(
                f"no organization {org_id[:128]!r} for this API key; the org id is the id "
                "of the key's workspace (meta.workspace_id of any /v1 answer, e.g. GET "
                "/v1/credits)"
            )
        return auth, {**scope, AUTH_SCOPE_KEY: auth}

    async def _experiment(self, auth: Auth, experiment_id: str) -> Reply:
        record = await in_store(
            self.services, lambda store: lifecycle.load(store, auth.workspace_id, experiment_id)
        )
        return ok(crewkit_experiment(record), Meta(auth.workspace_id))

    async def list_experiments(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /{org_id}/experiments``: newest first, a page at a time."""
        auth, _ = await self._authorized(scope)
        params = query_params(scope)
        page = int_param(params, "page", 1, 1, _MAX_PAGE)
        per_page = int_param(params, "per_page", _PER_PAGE, 1, MAX_LIMIT)

        def read(store: Store) -> tuple[list[ExperimentRecord], int]:
            return store.list_experiment_records(
                auth.workspace_id,
                site_id=None,
                status=None,
                limit=per_page,
                offset=(page - 1) * per_page,
            )

        records, total = await paid_read(self.services, auth, "list_experiments", read)
        meta = CrewkitPage(page, math.ceil(total / per_page), total, per_page, auth.workspace_id)
        listed = _Listed([crewkit_experiment(r) for r in records], meta)
        return Reply(200, msgspec.json.encode(listed))

    async def create(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /{org_id}/experiments``: 201 with the draft (crewkit's body, or any body
        ``POST /v1/experiments`` takes)."""
        auth, _ = await self._authorized(scope)
        body = await read_json(scope, receive, _create_decoder, "experiment")
        made = await self.experiments.created(auth, body)
        if isinstance(made, NeedsClarification):
            return ok(Clarification(made), Meta(auth.workspace_id))
        record, _ = made
        return ok(crewkit_experiment(record), Meta(auth.workspace_id), status=201)

    async def show(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /{org_id}/experiments/{id}``."""
        auth, _ = await self._authorized(scope)
        experiment_id = scope["path_params"]["experiment_id"]
        record = await paid_read(
            self.services,
            auth,
            "get_experiment",
            lambda store: lifecycle.load(store, auth.workspace_id, experiment_id),
        )
        return ok(crewkit_experiment(record), Meta(auth.workspace_id))

    def then_show(self, handler: Handler) -> Handler:
        """A ``/v1`` handler that changes an experiment (update, start, stop, archive),
        answering the experiment as it is after the change."""

        async def changed(scope: Scope, receive: Receive) -> Reply:
            auth, known = await self._authorized(scope)
            await handler(known, receive)
            return await self._experiment(auth, scope["path_params"]["experiment_id"])

        return changed

    async def deploy(self, scope: Scope, receive: Receive) -> Reply:
        """``POST /{org_id}/experiments/{id}/deploy``: promote the variant, archive the
        experiment."""
        auth, _ = await self._authorized(scope)
        record = await self.experiments.promoted(scope, receive, auth, lifecycle.deploy)
        return ok(crewkit_experiment(record), Meta(auth.workspace_id))

    async def metrics(self, scope: Scope, receive: Receive) -> Reply:
        """``GET /{org_id}/experiments/{id}/metrics``: crewkit's metrics object itself."""
        _, known = await self._authorized(scope)
        *_, computed = await self.metrics_endpoint.computed(known)
        return Reply(200, msgspec.json.encode(crewkit_metrics_view(computed.results)))

    async def delete(self, scope: Scope, receive: Receive) -> Reply:
        """``DELETE /{org_id}/experiments/{id}``: a draft or archived experiment."""
        _, known = await self._authorized(scope)
        return await self.experiments.delete(known, receive)


def routes(services: Services, source: ResultsSource) -> list[Route]:
    """crewkit's ``/{org_id}/experiments`` routes over the worker's ``services`` and its
    results ``source``. Mount them after ``/v1``'s: ``/v1/experiments`` is a ``/v1``
    route, not the experiments of an org named v1."""
    api = CrewkitApi(services, source)
    many = "/{org_id}/experiments"
    one = many + "/{experiment_id}"
    org = "crewkit's Experiments API (org id: the key's workspace id)"
    listing = ApiOperation(
        handler=api.list_experiments,
        summary=f"{org}: list experiments, newest first",
        data=list[CrewkitExperiment],
        meta=CrewkitPage,
        query=CrewkitPageQuery,
        errors=(402, 404),
    )
    create = ApiOperation(
        handler=api.create,
        summary=f"{org}: create an experiment",
        description="crewkit's body (resource_id, control_version_hash, "
        "variant_version_hash, traffic_split) makes an agent experiment of a control and a "
        "variant named control and variant; any body of POST /v1/experiments is taken too.",
        body=_create_decoder,
        data=CrewkitExperiment | Clarification,
        statuses=(201, 200),
        errors=(402, 404, 422, 502),
        example={
            "name": "Rails expert v2 test",
            "resource_id": "resource_abc123",
            "control_version_hash": "hash_control...",
            "variant_version_hash": "hash_variant...",
            "traffic_split": 50,
        },
    )
    show = ApiOperation(
        handler=api.show,
        summary=f"{org}: show an experiment",
        data=CrewkitExperiment,
        errors=(402, 404),
    )
    update = ApiOperation(
        handler=api.then_show(api.experiments.update),
        summary=f"{org}: update an experiment's traffic split",
        description='{"traffic_split": n}: the percent of traffic on the variant, 1 to 99.',
        body=_update_decoder,
        data=CrewkitExperiment,
        errors=(402, 404, 409),
        example={"traffic_split": 70},
    )
    delete = ApiOperation(
        handler=api.delete,
        summary=f"{org}: delete a draft or archived experiment",
        data=DeletedExperiment,
        errors=(404, 409),
    )
    deploy = ApiOperation(
        handler=api.deploy,
        summary=f"{org}: promote a variant to production; the experiment is archived",
        description="The promoted variant gets all the traffic and /v1/assign keeps serving "
        "it to every unit after the archive.",
        body=_deploy_decoder,
        data=CrewkitExperiment,
        errors=(404, 409),
        example={"variant": "variant"},
    )
    metrics = ApiOperation(
        handler=api.metrics,
        summary=f"{org}: metrics of the control and variant groups, and significance",
        description="crewkit's object itself, without the data envelope.",
        data=CrewkitMetrics,
        envelope=False,
        errors=(400, 404, 503),
    )
    lifecycle_routes = [
        api_route(
            f"{one}/{name}",
            {
                "POST": ApiOperation(
                    handler=api.then_show(api.experiments.crewkit(action)),
                    summary=f"{org}: {name} (the {action} action)",
                    data=CrewkitExperiment,
                    errors=(402, 404, 409) if action == "launch" else (404, 409),
                )
            },
        )
        for name, action in lifecycle.CREWKIT_ACTIONS.items()
    ]
    return [
        api_route(many, {"GET": listing, "POST": create}),
        api_route(one, {"GET": show, "PATCH": update, "DELETE": delete}),
        *lifecycle_routes,
        api_route(f"{one}/deploy", {"POST": deploy}),
        api_route(f"{one}/metrics", {"GET": metrics}),
    ]
