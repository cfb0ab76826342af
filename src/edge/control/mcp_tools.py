"""The reference's 14 MCP tools (abtestbot-mcp-tools.txt): their names, descriptions,
parameters and what each one does.

A tool is a `Tool`: its parameters are a msgspec Struct (the tool's ``inputSchema`` is
generated from it, and arguments are decoded into it), and its ``call`` does the work
through the REST API of the same process (`Rest`, `edge.control.in_process`), so that a
tool and its route share one implementation: validation, credits, audit and webhooks.
What a tool adds is the reference's MCP answer shape (``{sites: [...]}`` for list_sites,
``{experiment_id, status, message}`` for launch_experiment, ...); get_experiment answers
as create_experiment does (``{experiment, preview_urls, activation_hint}``) and adds the
experiment's ``results`` once it has run (those of ``GET
/v1/experiments/{id}/results``: every goal or metric per variant). generate_ideas waits
for its ideas (``"wait": true``): over REST the run is asynchronous by default (202 and
the ideas.generated webhook), but a tool answers what it made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import quote

import msgspec

from edge.config import MutationConfig
from edge.control.experiment_input import GoalIn
from edge.errors import SplitedgeError

__all__ = ["TOOLS", "Rest", "Tool", "input_schema"]


class Rest(Protocol):
    """The REST API as a tool calls it: one request, its ``data`` back; an error answer
    raises `edge.control.in_process.RestFailure`."""

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any: ...


ToolCall = Callable[[Rest, Any], Awaitable[Any]]


class Tool(msgspec.Struct, frozen=True):
    """One tool: ``params`` is its parameters' Struct; ``site_scoped`` tools check their
    ``site_id`` first, with the reference's texts."""

    name: str
    description: str
    params: type[msgspec.Struct]
    call: ToolCall
    site_scoped: bool = False


def _one(kind: str, value: str) -> str:
    return f"/v1/{kind}/{quote(value, safe='')}"


def _body(params: msgspec.Struct) -> dict[str, Any]:
    """The parameters as a REST body: the fields the caller set (defaults omitted)."""
    return msgspec.to_builtins(params)  # type: ignore[no-any-return]


_SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="From list_sites")]
_Limit = Annotated[int, msgspec.Meta(ge=1, le=100, description="Max results, default 20, max 100")]


class _Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


# --- sites ---------------------------------------------------------------------------


class CreateSiteParams(_Params, frozen=True):
    url: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=2048,
            description="The website URL (e.g. https://example.com). Protocol is added if missing.",
        ),
    ]
    name: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                max_length=200,
                description="Display name. Defaults to the domain (e.g. example.com).",
            ),
        ]
        | None
    ) = None
    reuse_if_exists: Annotated[
        bool,
        msgspec.Meta(
            description="Default false. When true, a duplicate-domain call succeeds with "
            "{ reused: true, site } instead of returning a conflict."
        ),
    ] = False


def _site_answer(created: dict[str, Any]) -> dict[str, Any]:
    site = {key: created[key] for key in ("id", "name", "url", "public_key")}
    answer: dict[str, Any] = {"site": site}
    if created.get("reused"):
        answer = {"reused": True, "site": site}
    return answer | {"snippet": created["snippet"], "instructions": created["instructions"]}


async def _create_site(rest: Rest, params: CreateSiteParams) -> Any:
    return _site_answer(await rest("POST", "/v1/sites", _body(params)))


class NoParams(_Params, frozen=True):
    pass


async def _list_sites(rest: Rest, params: NoParams) -> Any:
    return {"sites": await rest("GET", "/v1/sites", query={"limit": 100})}


class SiteParams(_Params, frozen=True):
    site_id: _SiteId


async def _site_intelligence(rest: Rest, params: SiteParams) -> Any:
    return await rest("GET", f"{_one('sites', params.site_id)}/intelligence")


# --- ideas ---------------------------------------------------------------------------


class ListIdeasParams(_Params, frozen=True):
    site_id: _SiteId
    status: (
        Annotated[
            Literal["new", "approved", "implemented", "rejected", "archived"],
            msgspec.Meta(description="new | approved | implemented | rejected | archived"),
        ]
        | None
    ) = None
    limit: _Limit = 20


async def _list_ideas(rest: Rest, params: ListIdeasParams) -> Any:
    return {"ideas": await rest("GET", "/v1/ideas", query=_body(params))}


class GenerateIdeasParams(_Params, frozen=True):
    site_id: _SiteId
    num_ideas: Annotated[
        int, msgspec.Meta(ge=1, le=10, description="Ideas to generate, default 5, max 10")
    ] = 5


async def _generate_ideas(rest: Rest, params: GenerateIdeasParams) -> Any:
    body = _body(params) | {"wait": True}
    return await rest("POST", "/v1/ideas/generate", body)


# --- variants and experiments ----------------------------------------------------------


class GenerateVariantParams(_Params, frozen=True):
    site_id: _SiteId
    prompt: Annotated[
        str,
        msgspec.Meta(
            min_length=10,
            max_length=4000,
            description="Plain-English description of the test (min 10 chars). Include full "
            "URLs for any Stripe products, competitor references, etc.",
        ),
    ]
    target_url: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=2048,
                description="Specific page URL the change applies to. If omitted, a URL is "
                "taken from the prompt; if still ambiguous, the answer is needs_clarification.",
            ),
        ]
        | None
    ) = None


async def _generate_variant(rest: Rest, params: GenerateVariantParams) -> Any:
    return await rest("POST", "/v1/variants/generate", _body(params))


# The reference's list says "active" for the status its experiments report as "running":
# both are taken, as by GET /v1/experiments.
_ExperimentStatus = Literal["draft", "active", "running", "paused", "completed", "archived"]


class ListExperimentsParams(_Params, frozen=True):
    site_id: _SiteId
    status: (
        Annotated[
            _ExperimentStatus,
            msgspec.Meta(
                description="draft | active | paused | completed | archived (running is "
                "active: what an experiment reports once launched)"
            ),
        ]
        | None
    ) = None
    limit: _Limit = 20


async def _list_experiments(rest: Rest, params: ListExperimentsParams) -> Any:
    return {"experiments": await rest("GET", "/v1/experiments", query=_body(params))}


class ExperimentParams(_Params, frozen=True):
    experiment_id: Annotated[
        str, msgspec.Meta(min_length=1, max_length=200, description="From list_experiments")
    ]


async def _get_experiment(rest: Rest, params: ExperimentParams) -> Any:
    answer = await rest("GET", _one("experiments", params.experiment_id))
    experiment = answer["experiment"]
    answer["results"] = None
    if experiment["status"] != "draft":
        try:
            answer["results"] = await rest(
                "GET", _one("experiments", experiment["id"]) + "/results"
            )
        except SplitedgeError as exc:
            # ClickHouse unavailable: the experiment still answers, and says why it has
            # no results.
            if exc.status != 503:
                raise
            answer["results_error"] = exc.message
    return answer


class VariantParams(_Params, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    changes: Annotated[
        tuple[MutationConfig, ...],
        msgspec.Meta(description="VariantMutation[]: generate_variant's variant.mutations"),
    ] = ()
    redirect_url: (
        Annotated[str, msgspec.Meta(description="For split-URL tests", max_length=2048)] | None
    ) = None


class CreateExperimentParams(_Params, frozen=True):
    site_id: _SiteId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Experiment name")]
    prompt: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=4000,
                description="Plain-English description; the server authors the variant (10 "
                "more credits). Mutually exclusive with idea_id and variants[].changes.",
            ),
        ]
        | None
    ) = None
    target_url: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=2048,
                description="The page the prompt's DOM comes from; stored to build preview URLs.",
            ),
        ]
        | None
    ) = None
    url_pattern: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=2048,
                description="Glob scoping the experiment to pages (* one segment, ** any "
                "depth). Omit for site-wide.",
            ),
        ]
        | None
    ) = None
    auto_launch: Annotated[
        bool,
        msgspec.Meta(
            description="Default false. If true, launch on create when preconditions pass."
        ),
    ] = False
    idea_id: (
        Annotated[str, msgspec.Meta(max_length=200, description="An idea to source mutations from")]
        | None
    ) = None
    hypothesis: (
        Annotated[
            str, msgspec.Meta(max_length=2000, description="What you expect and why, in one line")
        ]
        | None
    ) = None
    traffic_split: (
        Annotated[
            int, msgspec.Meta(ge=1, le=99, description="% of traffic on the variant (default 50)")
        ]
        | None
    ) = None
    variants: (
        Annotated[
            tuple[VariantParams, ...],
            msgspec.Meta(
                max_length=1, description="Up to one variant: [{ name, changes?, redirect_url? }]"
            ),
        ]
        | None
    ) = None
    goals: (
        Annotated[
            tuple[GoalIn, ...],
            msgspec.Meta(
                max_length=20,
                description="[{ name, type, selector?, url_pattern? }]; the first is primary",
            ),
        ]
        | None
    ) = None


async def _create_experiment(rest: Rest, params: CreateExperimentParams) -> Any:
    return await rest("POST", "/v1/experiments", _body(params))


async def _launch_experiment(rest: Rest, params: ExperimentParams) -> Any:
    moved = await rest("PATCH", _one("experiments", params.experiment_id), {"action": "launch"})
    return {
        "experiment_id": moved["id"],
        "status": moved["status"],
        "message": "Experiment launched successfully",
    }


# --- loops ---------------------------------------------------------------------------


class GoalParams(_Params, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    selector: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    url_pattern: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


class CreateLoopParams(_Params, frozen=True):
    site_id: _SiteId
    element_types: Annotated[
        tuple[str, ...],
        msgspec.Meta(
            min_length=1,
            max_length=4,
            description="What the loop may vary. v1 supports headline and copy; image and "
            "layout are coming soon (coming_soon error).",
        ),
    ]
    name: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1, max_length=200, description="Display name; required to launch."
            ),
        ]
        | None
    ) = None
    target_url: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=2048, description="The page the loop optimises; default the site root."
            ),
        ]
        | None
    ) = None
    url_pattern: (
        Annotated[
            str, msgspec.Meta(max_length=2048, description="Glob of the pages the loop runs on.")
        ]
        | None
    ) = None
    selector_hints: (
        Annotated[
            dict[str, str],
            msgspec.Meta(
                description='CSS selectors per element type, e.g. {"headline": ".hero h1"}'
            ),
        ]
        | None
    ) = None
    primary_goal: (
        Annotated[GoalParams, msgspec.Meta(description="The goal to optimise; required to launch.")]
        | None
    ) = None
    selected_idea_id: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=200,
                description="Omit: the server returns 3-5 seed ideas and creates nothing. "
                "Give one of their ids (with name and primary_goal) to launch round 1.",
            ),
        ]
        | None
    ) = None


async def _create_loop(rest: Rest, params: CreateLoopParams) -> Any:
    return await rest("POST", "/v1/loops", _body(params))


class LoopParams(_Params, frozen=True):
    loop_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=200, description="From create_loop or get_loop_status"
        ),
    ]


async def _get_loop_status(rest: Rest, params: LoopParams) -> Any:
    return await rest("GET", _one("loops", params.loop_id))


async def _pause_loop(rest: Rest, params: LoopParams) -> Any:
    return await rest("POST", f"{_one('loops', params.loop_id)}/pause")


async def _resume_loop(rest: Rest, params: LoopParams) -> Any:
    return await rest("POST", f"{_one('loops', params.loop_id)}/resume")


TOOLS: Mapping[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "create_site",
            "Register a new website in your workspace for A/B testing. Returns the site ID "
            "with the tracking snippet and install instructions; add the snippet to the "
            "<head> of the site before experiments can run. A duplicate domain is a conflict "
            "that includes existing_site; pass reuse_if_exists: true to reuse it. Credits: 5.",
            CreateSiteParams,
            _create_site,
        ),
        Tool(
            "list_sites",
            "List all websites registered in your workspace. Credits: 1.",
            NoParams,
            _list_sites,
        ),
        Tool(
            "get_site_intelligence",
            "What the site's homepage says about it: title, description, headings, "
            "keywords and detected tech stack. Credits: 2.",
            SiteParams,
            _site_intelligence,
            site_scoped=True,
        ),
        Tool(
            "list_ideas",
            "List A/B test ideas for a site, newest first. Credits: 1.",
            ListIdeasParams,
            _list_ideas,
            site_scoped=True,
        ),
        Tool(
            "generate_ideas",
            "Analyse a site's page and generate new CRO-informed A/B test ideas, stored for "
            "list_ideas and create_experiment's idea_id. Credits: 10.",
            GenerateIdeasParams,
            _generate_ideas,
            site_scoped=True,
        ),
        Tool(
            "generate_variant",
            "Generate A/B test variant code (DOM mutations, suggested goals, a hypothesis) "
            "from a natural-language prompt. Selectors are checked against the fetched page. "
            "Pass variant.mutations into create_experiment as variants[0].changes. When the "
            "target page cannot be resolved the answer is needs_clarification. Credits: 10, "
            "charged for either answer.",
            GenerateVariantParams,
            _generate_variant,
            site_scoped=True,
        ),
        Tool(
            "list_experiments",
            "List A/B experiments for a site. Credits: 1.",
            ListExperimentsParams,
            _list_experiments,
            site_scoped=True,
        ),
        Tool(
            "get_experiment",
            "Get full details for an experiment including all variants, goals and preview "
            "URLs, and once it has run its results: status, winner, and every goal or "
            "metric per variant with lift, interval, P(beats control) and p-value. "
            "Credits: 2.",
            ExperimentParams,
            _get_experiment,
        ),
        Tool(
            "create_experiment",
            "Create an A/B experiment from a prompt (the server authors the variant; 10 more "
            "credits), from variants[0].changes, from an idea_id, or as an empty draft. "
            "auto_launch: true launches it when it has 2 variants and a goal. Credits: 5 "
            "(15 with a prompt).",
            CreateExperimentParams,
            _create_experiment,
            site_scoped=True,
        ),
        Tool(
            "launch_experiment",
            "Move a draft experiment to running: the snippet starts splitting traffic. It "
            "needs 2 variants (control + 1) and 1 goal. Credits: 2.",
            ExperimentParams,
            _launch_experiment,
        ),
        Tool(
            "create_loop",
            "Start a Continuous Loop, an always-on champion-challenger optimiser. Call it "
            "without selected_idea_id for 3-5 seed ideas (nothing is created), then again "
            "with selected_idea_id, name and primary_goal to launch round 1. Credits: 15 per "
            "call; none when it fails validation.",
            CreateLoopParams,
            _create_loop,
            site_scoped=True,
        ),
        Tool(
            "get_loop_status",
            "A loop's config, current round, last 10 rounds, and its next decision (wait / "
            "hold / promote / inconclusive) with the samples and days it still needs. "
            "Credits: 2.",
            LoopParams,
            _get_loop_status,
        ),
        Tool(
            "pause_loop",
            "Pause a running loop and its current round's experiment. Idempotent (no_op). "
            "Credits: 2.",
            LoopParams,
            _pause_loop,
        ),
        Tool(
            "resume_loop",
            "Resume a paused loop: its next tick is now, its inconclusive streak resets. "
            "Idempotent (no_op). Credits: 2.",
            LoopParams,
            _resume_loop,
        ),
    )
}
"""The tools by name, in the reference's order."""


def input_schema(params: type[msgspec.Struct]) -> dict[str, Any]:
    """A tool's ``inputSchema``: the JSON Schema of its parameters, an object at the root
    (the Struct's own definition, with the others it refers to under ``$defs``). Every
    ``enum`` carries its ``type`` too: msgspec leaves it out, and some tool-calling
    clients refuse a parameter without one."""
    schema = msgspec.json.schema(params, ref_template="#/$defs/{name}")
    defs: dict[str, Any] = schema.get("$defs", {})
    root = dict(defs.pop(params.__name__))
    root.pop("title", None)
    if defs:
        root["$defs"] = defs
    _type_enums(root)
    return root


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


def _json_type(value: Any) -> str:
    # bool first: a bool is an int too.
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "null")


def _type_enums(node: Any) -> None:
    """Give every ``enum`` in the schema ``node`` the ``type`` of its values, in place."""
    if isinstance(node, dict):
        if "enum" in node and "type" not in node:
            kinds = sorted({_json_type(v) for v in node["enum"]})
            node["type"] = kinds[0] if len(kinds) == 1 else kinds
        for value in node.values():
            _type_enums(value)
    elif isinstance(node, list):
        for item in node:
            _type_enums(item)
