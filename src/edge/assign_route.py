"""``POST /v1/assign``: which variant of an experiment, or of each running experiment of a
site, a unit gets.

An agent names its experiment by ``experiment_id`` with an API key of the experiment's
workspace, and gets that experiment's variant and payload (its prompt or config) in one
call, on a site or on none. A running experiment counts the unit (``in_experiment``);
one launched once and no longer running answers every unit with the same variant, not
counted (``in_experiment`` false, and a ``reason``): its deployed winner until the
experiment is deleted (archiving keeps it served), else its control. A draft, deleted or
unknown id is a 404. A site is named by its public key (public, like the snippet that carries
the same config: its web experiments only, never an agent experiment's prompts or
configs) or by its id with an API key of the site's workspace (all of its experiments).
Another workspace's experiment or site is answered 404, the same as one that does not
exist.
"""

from __future__ import annotations

import msgspec
from starlette.types import Receive, Scope, Send

from edge.bearer import KeyLedger, require_workspace
from edge.errors import InvalidRequest, NotFound
from edge.http import JSON_HEADERS, decode_body, read_body, send_response
from edge.kv import CatchUp, CompiledExperiment, ConfigKV, KVHolder
from edge.operation import Operation
from edge.urlglob import pathname_of
from edge.wire import AssignBatch, AssignMeta, AssignRequest, AssignUnit, UnitAssignments

__all__ = ["ASSIGN_OPERATION", "MAX_ASSIGN_BODY", "AssignEndpoint"]

MAX_ASSIGN_BODY = 1 << 20

_decoder = msgspec.json.Decoder(AssignRequest)
_encode = msgspec.json.encode

ASSIGN_OPERATION = Operation(
    summary="Assign units to the variants of an experiment, or of a site's experiments",
    description="Name one experiment by experiment_id (an agent's: its variant and payload; "
    "once it no longer runs, every unit gets the deployed winner, else the control, with "
    "in_experiment false and a reason) with an API key of its workspace, or a site by "
    "public_key, or by site_id with an API key of its workspace; send one unit (unit_id, "
    "url, attributes) or a batch (units). Not metered.",
    body=_decoder,
    data=UnitAssignments | AssignBatch,
    meta=AssignMeta,
    errors=(401, 404, 503),
    auth="optional",
    example={
        "public_key": "61d94cdccd0641ef99d1d2fd9525704a",
        "unit_id": "visitor-42",
        "url": "https://mystore.com/pricing",
    },
)

_NAME_ONE = (
    "name exactly one of experiment_id (with an API key), public_key or site_id (with an API key)"
)


def _experiments(
    request: AssignRequest, kv: ConfigKV, scope: Scope, ledger: KeyLedger | None
) -> tuple[CompiledExperiment, ...]:
    named = (request.experiment_id, request.public_key, request.site_id)
    if sum(name is not None for name in named) != 1:
        raise InvalidRequest(_NAME_ONE)
    if request.experiment_id is not None:
        workspace = require_workspace(kv, scope, "experiment_id", ledger)
        found = kv.assignable_by_id.get(request.experiment_id)
        if found is None or found[0] != workspace:
            raise NotFound(
                "no launched experiment with that experiment_id in this workspace; launch "
                "it first, or check the id POST /v1/experiments returned"
            )
        return found[1]
    if request.public_key is not None:
        bundle = kv.by_public_key.get(request.public_key)
        if bundle is None:
            raise NotFound("no site has that public_key; copy it from the site's snippet tag")
        return bundle.public_experiments
    workspace = require_workspace(kv, scope, "site_id", ledger)
    bundle = kv.by_site_id.get(request.site_id or "")
    if bundle is None or bundle.site.workspace_id != workspace:
        raise NotFound("no site with that site_id in this workspace")
    return bundle.experiments


def _units(request: AssignRequest) -> tuple[list[AssignUnit], bool]:
    if request.units is not None:
        if request.unit_id is not None or request.url is not None or request.attributes:
            raise InvalidRequest("pass either unit_id (with url, attributes) or units, not both")
        return request.units, True
    if request.unit_id is None:
        raise InvalidRequest("unit_id is required (or units, a list, for a batch)")
    return [AssignUnit(request.unit_id, request.url, request.attributes)], False


def _assignments(experiments: tuple[CompiledExperiment, ...], unit: AssignUnit) -> bytes:
    path = None if unit.url is None else pathname_of(unit.url)
    fragments = []
    for experiment in experiments:
        if path is not None and not experiment.matcher.matches(path):
            continue
        index = experiment.table.assign(unit.unit_id)
        if index is not None:
            fragments.append(experiment.fragments[index])
    return b'{"unit_id":%b,"assignments":[%b]}' % (_encode(unit.unit_id), b",".join(fragments))


class AssignEndpoint:
    """Raw ASGI endpoint for assignment; the answer is joined from precomputed bytes.
    ``catch_up`` brings the KV up to this server's latest write, to the store's for a
    request with an API key, and looks an unknown public key up again in the store's
    latest version (`edge.serving.KVCatchUp`)."""

    def __init__(
        self,
        holder: KVHolder,
        ledger: KeyLedger | None = None,
        catch_up: CatchUp | None = None,
    ) -> None:
        self.holder = holder
        self.ledger = ledger
        self.catch_up = catch_up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = decode_body(
            _decoder, await read_body(scope, receive, MAX_ASSIGN_BODY), "assign request"
        )
        kv = self.holder.require()
        ledger = self.ledger
        catch_up = self.catch_up
        if catch_up is not None:
            if kv.version < catch_up.board_version():
                kv = await catch_up.current(kv)
            if request.public_key is None:
                kv, latest = await catch_up(kv)
                if latest:
                    ledger = None  # the KV is the store's latest: it answers for the key
            elif request.public_key not in kv.by_public_key:
                kv = await catch_up.after_miss(kv)
        experiments = _experiments(request, kv, scope, ledger)
        units, batch = _units(request)
        if batch:
            data = b'{"units":[%b]}' % b",".join(_assignments(experiments, u) for u in units)
        else:
            data = _assignments(experiments, units[0])
        body = b'{"data":%b,"meta":{"config_version":%d}}' % (data, kv.version)
        await send_response(send, 200, JSON_HEADERS, body)
