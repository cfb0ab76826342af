"""``/mcp``: the MCP gateway, the reference's 14 tools (`edge.control.mcp_tools`) over MCP's
streamable HTTP transport, served by the official SDK (``mcp``).

Every HTTP request to ``/mcp`` carries ``Authorization: Bearer sk_live_...`` and is
authenticated like the REST API's (`edge.control.api.authenticate`: 401, 403 for a site's
public key, 429 over the plan's rate); the SDK never sees one that is not. The transport
is stateless and answers JSON, so any worker of the server answers any request.

A tool call runs the tool's REST request in this process, as the caller
(`edge.control.in_process.InProcessRest`, shared with the console): the key's `Auth`
travels in the request's scope, so the route does not authenticate or count the request a
second time. Credits are charged by the route, per the reference's table. A route's error
answer becomes the tool's ``isError`` result, whose text is the error's message and whose
structured content is the reference's error object (``{error, code, ...}``, e.g.
``existing_site`` on a duplicate domain). Site-scoped tools check their ``site_id`` first,
with the reference's texts ("Call `create_site` first."). Texts name tools, not routes: the
routes word their next steps for tools when called by one (`edge.control.api.TOOL_SCOPE_KEY`),
and the REST routes an error or an answer's own text names are put in tool words (`tool_words`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import msgspec
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.control.api import AUTH_SCOPE_KEY, Auth, authenticate, in_store
from edge.control.in_process import InProcessRest, RestFailure
from edge.control.mcp_tools import TOOLS, Tool, input_schema
from edge.control.services import Services
from edge.control.sites_api import SiteHints, require_site
from edge.errors import SplitedgeError

__all__ = ["MCP_SITE_HINTS", "McpGateway", "tool_words"]

MCP_SITE_HINTS = SiteHints(
    register="No sites registered in this workspace. Call `create_site` first.",
    choose="Call `list_sites` for the ids of this workspace's sites, or `create_site` to add "
    "a new one.",
)
"""A missing site's 404 in the words of the tools (the reference's texts)."""

# The REST wording of the routes' texts (errors shared by both APIs, a site's install
# instructions) and its tool wording, most specific first; a route without a tool is
# pointed at the tool that gives the id instead.
_TOOL_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"or POST /v1/sites again", "or call create_site again"),
        (r"create an experiment with POST /v1/experiments and", "call create_experiment with"),
        (r"GET /v1/loops lists its loops", "create_loop answers a loop's id"),
        (
            r", and launch moves a draft experiment to running; (its actions are|no action).*",
            "; launch_experiment launches a draft experiment only",
        ),
        (r"POST /v1/variants/generate", "generate_variant"),
        (r"POST /v1/ideas/generate", "generate_ideas"),
        (r"GET /v1/ideas\b(?!/)", "list_ideas"),
        (r"GET /v1/sites\b(?!/)", "list_sites"),
        (r"POST /v1/sites\b(?!/)", "create_site"),
        (r"GET /v1/experiments\b(?!/)", "list_experiments"),
        (r"POST /v1/experiments\b(?!/)", "create_experiment"),
    )
)

_TEXT_KEYS = frozenset({"instructions", "message", "next_step"})
"""The keys of a tool answer's own texts (create_site's instructions, ...)."""

_BODY_LIMIT = 1 << 20  # a tool's arguments: the REST bodies' bound, with room for JSON-RPC


def _required(params: type[msgspec.Struct]) -> tuple[str, ...]:
    info = msgspec.inspect.type_info(params)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(f.name for f in info.fields if f.required)


def _arguments(tool: Tool, arguments: dict[str, Any] | None) -> msgspec.Struct:
    """The call's arguments decoded into the tool's parameters; a 400 whose text names
    the field to fix (a missing one in the reference's words: "site_id is required")."""
    arguments = arguments or {}
    for name in _required(tool.params):
        if arguments.get(name) in (None, ""):
            raise RestFailure(400, {"code": "invalid_request", "message": f"{name} is required"})
    try:
        return msgspec.convert(arguments, tool.params)
    except msgspec.ValidationError as exc:
        raise RestFailure(
            400, {"code": "invalid_request", "message": f"invalid arguments for {tool.name}: {exc}"}
        ) from None


def tool_words(text: str) -> str:
    """``text`` with the REST routes it names put as the tools that do the same."""
    for pattern, words in _TOOL_WORDS:
        text = pattern.sub(words, text)
    return text


def _result(data: Any) -> types.CallToolResult:
    if isinstance(data, dict):
        # Only the answer's own texts: the rest (a hypothesis, a name) is the user's data.
        data = {k: tool_words(v) if k in _TEXT_KEYS else v for k, v in data.items()}
    text = msgspec.json.encode(data).decode()
    structured = data if isinstance(data, dict) else {"result": data}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )


def _failure(exc: RestFailure) -> types.CallToolResult:
    """The reference's error object: ``error`` is the message, beside ``code`` and any
    fields the route added (e.g. ``existing_site``)."""
    error = dict(exc.error)
    message = tool_words(str(error.pop("message", ""))) or (
        f"the call failed with status {exc.status}"
    )
    body = {"error": message, **error, "status": exc.status}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)],
        structured_content=body,
        is_error=True,
    )


class McpGateway:
    """The ``/mcp`` endpoint: authenticates, then hands the request to the SDK's
    stateless streamable-HTTP transport, whose tool calls run through ``rest_app`` (the
    app's REST routes: set once the app is built, which contains this endpoint).
    ``lifespan`` must be entered once by the app (the SDK runs its tasks there)."""

    rest_app: ASGIApp

    def __init__(self, services: Services) -> None:
        self.services = services
        self._tools = [
            types.Tool(
                name=tool.name, description=tool.description, input_schema=input_schema(tool.params)
            )
            for tool in TOOLS.values()
        ]
        server: Server[Any] = Server(
            "splitedge",
            version="1",
            instructions="A/B tests and continuous loops on your sites: register a site "
            "(create_site), author variants (generate_variant), create and launch "
            "experiments, run always-on loops.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self._sessions = StreamableHTTPSessionManager(
            server, stateless=True, json_response=True, max_request_body_size=_BODY_LIMIT
        )

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the SDK's session manager for the life of the worker."""
        async with self._sessions.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = await authenticate(self.services, scope)
        scope[AUTH_SCOPE_KEY] = auth
        await self._sessions.handle_request(scope, receive, send)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self._tools)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = TOOLS.get(params.name)
        if tool is None:
            known = ", ".join(TOOLS)
            return _failure(
                RestFailure(
                    404,
                    {
                        "code": "not_found",
                        "message": f"no tool {params.name[:100]!r}; the tools are {known}",
                    },
                )
            )
        request = ctx.request
        assert request is not None  # the streamable-HTTP transport sets it
        scope = request.scope
        auth: Auth = scope[AUTH_SCOPE_KEY]
        try:
            arguments = _arguments(tool, params.arguments)
            if tool.site_scoped:
                site_id: str = getattr(arguments, "site_id")
                await in_store(
                    self.services,
                    lambda store: require_site(store, auth.workspace_id, site_id, MCP_SITE_HINTS),
                )
            data = await tool.call(InProcessRest(self.rest_app, scope, auth, tool=True), arguments)
        except RestFailure as exc:
            return _failure(exc)
        except SplitedgeError as exc:
            return _failure(RestFailure(exc.status, {"code": exc.code, "message": exc.message}))
        return _result(data)
