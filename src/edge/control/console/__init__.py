"""The console: the control plane's server-rendered pages for people, at ``/`` and under
``/console/`` (docs/console.md). `routes` assembles them, one module per area.

Rules for page authors
======================

Adding an area
    Write ``edge/control/console/AREA.py`` with ``routes(console: Console) ->
    list[BaseRoute]`` and add the module to `AREAS` below (one line). Paths live under
    ``/console/AREA...``; the app places the console before every other route, and a
    ``/console/...`` path no area answers is the console's 404 page.

A page
    ``console.route(path, endpoint, methods=("GET",))`` (`frame.Console.route`) where
    ``async def endpoint(request: Request, session: Session) -> Response``. The route
    checks the session first: a signed-out request is sent (303) to the sign-in page. A
    `SplitedgeError` raised inside (an API failure, a refused form, `NotFound`) becomes the
    error page with its status and message, so an endpoint raises rather than renders
    errors, unless it wants to show them beside its form.

Calling the API
    Never the store: pages answer what the key's workspace may see through the same
    authorisation code as the API, by calling the REST routes in this process as the
    session's key. ``data = await session.api("GET", "/v1/sites", query={"limit": 100})``
    answers ``data``; ``answer = await session.api.answer(method, path, body=..., query=...)``
    answers a `RestAnswer` (``status``, ``data``, ``meta``). An error answer raises
    `RestFailure` (``status``, ``error`` = the API's error object, ``message``): left
    alone, it is the error page (another workspace's id is the API's 404, so the console's
    404 page); caught, a form can show ``exc.message`` beside its fields. Answers are
    splitedge's shapes whatever the key's flavour.

Rendering
    ``return page(request, session, "console/AREA.html", status=200, **context)``
    (`frame.page`). The template extends ``console/base.html`` and fills ``{% block title
    %}`` and ``{% block content %}``; it gets ``session``, ``workspace_name``,
    ``csrf_field()``, ``root`` (prefix every link: ``{{ root }}/console/sites``),
    ``static(name)`` and ``current``. Everything printed is autoescaped; never mark user
    data safe. The response carries `frame.SECURITY_HEADERS`: a CSP with no inline script
    or style (no ``style=`` attributes, no ``<script>`` bodies, no ``on*=`` handlers:
    give SVG charts presentation attributes (``fill``, ``stroke``, ``width``) or classes
    from console.css), nosniff, ``referrer-policy: same-origin``, ``cache-control:
    no-store``. Keep a page under 150 KB.

Forms
    Every form that changes something is ``<form method="post" action="{{ root
    }}/console/...">{{ csrf_field() }} ...`` with a ``<label>`` on every control. Its
    handler's first line is ``form = await read_form(request, session)`` (`frame.read_form`):
    403 for a missing or forged CSRF token, 400 for a body that is not a form, 413 over
    64 KB; ``form.get(name)`` and ``form.getlist(name)`` read the fields. After the change,
    ``return see_other(request, "/console/...")`` (303), so a reload does not post again.
    A secret shown once (a new key, a webhook's secret) is rendered in the POST's own
    answer (``page(...)``), never put in a URL.

Navigation
    The nav's entries are in ``templates/console/base.html`` (Sites is ``/``; the others
    are ``/console/experiments``, ``webhooks``, ``keys``, ``credits``, ``audit``,
    ``loops``, ``ideas``): an area answers its entry's path.

Static files
    Vendored in ``edge/control/static/`` (no build step), served at
    ``/console/static/NAME?v=HASH`` with a year's cache; ``{{ static("console.css") }}``
    makes the URL. ``console.js`` holds the little script there is (the copy buttons:
    ``<button type="button" class="copy" data-copy="TEXT">Copy</button>``).

Tests
    ``tests/console_support.py``: ``signed_in(server, key)`` is an ``httpx.Client``
    signed in with ``csrf(client, path)`` reading a page's token; `tests.support.seed_store`
    makes two workspaces (``seed.key``, ``seed.other_key``) for isolation checks.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from edge.control.console import (
    account,
    experiments,
    home,
    ideas,
    keys,
    loops,
    results,
    sign_in,
    sites,
    webhooks,
)
from edge.control.console.frame import Console

__all__ = ["AREAS", "Console", "routes"]

AREAS = (
    sign_in,
    home,
    sites,
    experiments,
    results,
    webhooks,
    keys,
    account,
    loops,
    ideas,
)
"""The console's areas, each a module with ``routes(console) -> list[BaseRoute]``."""


def routes(console: Console) -> list[BaseRoute]:
    """Every console route: the static files, each area's pages, then the 404 page of
    every other ``/console/...`` path."""
    found: list[BaseRoute] = [console.static_route()]
    for area in AREAS:
        found += area.routes(console)
    return [*found, console.not_found_route()]
