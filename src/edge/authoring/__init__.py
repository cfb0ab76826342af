"""Variant authoring: from a prompt, a page and a site to DOM changes, ideas, loop
challengers and site intelligence (issue 8). See docs/authoring.md.

`configured_author` is the author the server uses: `DeterministicAuthor` by default,
`LlmAuthor` when ``SPLITEDGE_LLM_URL`` names an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from edge.authoring.author import Author
from edge.authoring.deterministic import DeterministicAuthor
from edge.authoring.fetch import FetchedPage, PageFetcher, PageUnavailable, fetch_page
from edge.authoring.ideas import NothingToVary
from edge.authoring.llm import AuthorUnavailable, LlmAuthor, LlmSettings
from edge.outbound import OutboundGuard

__all__ = [
    "Author",
    "AuthorUnavailable",
    "DeterministicAuthor",
    "FetchedPage",
    "LlmAuthor",
    "LlmSettings",
    "NothingToVary",
    "PageFetcher",
    "PageUnavailable",
    "configured_author",
    "fetch_page",
]


def configured_author(guard: OutboundGuard, environ: Mapping[str, str] | None = None) -> Author:
    """The author ``environ`` (default: the process environment) configures, fetching
    pages through ``guard``: an `LlmAuthor` when ``SPLITEDGE_LLM_URL`` is set, else a
    `DeterministicAuthor`. Make one per process: its page cache serves every caller."""
    settings = LlmSettings.from_environ(os.environ if environ is None else environ)
    fetcher = PageFetcher(guard=guard)
    if settings is None:
        return DeterministicAuthor(fetcher)
    return LlmAuthor(settings, fetcher)
