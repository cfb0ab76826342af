"""Helpers for console tests: a client signed in with an API key, and a page's CSRF token.

Every console test runs a real server (`tests.support.running_server`);
`tests.support.seed_store` makes two workspaces, ``seed.key``'s and ``seed.other_key``'s,
for isolation checks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support import Server

__all__ = ["admin_key", "csrf", "sign_in", "signed_in"]

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
_ADMIN_KEY = re.compile(r"shown this once:\s+(sk_live_\S+)")


def admin_key(server: Server) -> str:
    """The admin key the server printed on its first start."""
    found = _ADMIN_KEY.search(server.output())
    assert found is not None, server.output()
    return found.group(1)


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    """POST the sign-in form (not following its redirect)."""
    return client.post("/console/sign-in", data={"api_key": key})


@contextmanager
def signed_in(server: Server, key: str) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` on ``server`` holding a session of ``key``, closed after."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        answer = sign_in(client, key)
        assert answer.status_code == 303, answer.text
        yield client


def csrf(client: httpx.Client, path: str = "/") -> str:
    """The CSRF token in the forms of the page at ``path`` (every signed-in page has the
    sign-out form)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)
