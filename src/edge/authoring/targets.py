"""Which page a prompt is about, and what to ask when that cannot be told.

Shared by every author (the deterministic one and the LLM one resolve targets the same
way, so a prompt means the same page whoever authors it):

1. the request's ``target_url`` (a path such as ``/pricing`` is on the site);
2. else a URL in the prompt on the site's own domain (a URL on another domain, such as a
   Stripe checkout link, is a payload to put on the page, not the page);
3. else a path in the prompt ("on /pricing");
4. else a "homepage" / "home page" / "landing page" hint: the site's root;
5. else nothing: the caller answers `clarification`, the reference's structured
   ``needs_clarification``, with suggestions mined from the homepage's links.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

from edge.authoring.drafts import ClarificationQuestion, NeedsClarification, VariantRequest
from edge.authoring.fetch import FetchedPage, PageUnavailable
from edge.authoring.page import Page
from edge.errors import InvalidRequest, InvalidUrlPattern
from edge.urlglob import validate_pattern

__all__ = [
    "COMMON_PATHS",
    "MAX_SUGGESTIONS",
    "URL_IN_TEXT",
    "clarification",
    "domain_warning",
    "resolve_target",
    "same_site",
    "site_root",
    "suggestions",
    "unsure",
    "url_pattern_for",
    "urls_in",
]

COMMON_PATHS: Final = ("/", "/pricing", "/checkout", "/signup", "/about")
"""The pages conversion tests most often target, suggested when the homepage has no
links to them (or cannot be fetched)."""

MAX_SUGGESTIONS: Final = 8

URL_IN_TEXT: Final = re.compile(r"https?://[^\s\"'<>`]+", re.I)
_TRAILING: Final = ".,;:!?)]}"
_PATH_IN_TEXT: Final = re.compile(r"(?:^|(?<=[\s\"'(]))(/[A-Za-z0-9][\w\-./]*)(?![\w*])")
_HOME_HINT: Final = re.compile(
    r"\b(?:home\s?page|home\s+screen|landing(?:\s+page)?|front\s+page|main\s+page|site\s+root)\b",
    re.I,
)
# Paths a visitor rarely converts on: suggested last, if at all.
_LOW_VALUE: Final = re.compile(r"^/(?:privacy|terms|legal|cookies?|login|signin|sign-in)\b")

RETRY_HINT: Final = (
    "Re-send the same call with target_url set to one of the suggestions below (or any "
    "specific URL on your site where this change should apply)."
)
QUESTION: Final = "Which page URL should this test target?"
REASON: Final = (
    "The prompt didn't include a URL and the service couldn't infer one from context (no "
    "'homepage' / 'landing' hint either). We need the exact page so we can fetch its DOM "
    "and author selectors that actually exist."
)


def urls_in(text: str) -> list[str]:
    """The http(s) URLs written in ``text``, without trailing punctuation."""
    return [match.group(0).rstrip(_TRAILING) for match in URL_IN_TEXT.finditer(text)]


def _host(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def same_site(url: str, other: str) -> bool:
    """Whether two URLs are on the same host (``www.`` aside; ports aside)."""
    return _host(url) == _host(other)


def site_root(site_url: str) -> str:
    """The root page of the site registered as ``site_url`` (``https://host/``)."""
    parts = urlsplit(site_url)
    return urlunsplit((parts.scheme, parts.netloc, "/", "", ""))


def _absolute(site_url: str, url: str) -> str:
    text = url.strip()
    resolved = urljoin(site_root(site_url), text) if text.startswith("/") else text
    parts = urlsplit(resolved)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(
            f"target_url {url[:200]!r} is not an absolute http(s) URL; pass the page's URL, "
            "e.g. https://example.com/pricing"
        )
    return resolved


def resolve_target(request: VariantRequest) -> str | None:
    """The URL of the page ``request`` is about, or None when it cannot be told (see the
    module docstring for the order)."""
    if request.target_url and request.target_url.strip():
        return _absolute(request.site_url, request.target_url)
    prompt_urls = urls_in(request.prompt)
    for url in prompt_urls:
        if same_site(url, request.site_url):
            return url
    without_urls = URL_IN_TEXT.sub(" ", request.prompt)
    path = _PATH_IN_TEXT.search(without_urls)
    if path:
        return urljoin(site_root(request.site_url), str(path.group(1)).rstrip(_TRAILING))
    if _HOME_HINT.search(request.prompt):
        return site_root(request.site_url)
    return None


def _page_path(url: str) -> str:
    return urlsplit(url).path or "/"


def suggestions(site_url: str, fetch: Callable[[str], FetchedPage]) -> tuple[str, ...]:
    """Candidate target pages: the homepage's links on the site's domain, the common
    conversion paths first, then the common paths it does not link to; at most
    `MAX_SUGGESTIONS`. Only the common paths when the homepage cannot be fetched."""
    root = site_root(site_url)
    try:
        linked = [url for url in Page(fetch(root)).links() if same_site(url, site_url)]
    except PageUnavailable:
        linked = []
    paths: dict[str, None] = {}
    for url in linked:
        paths.setdefault(_page_path(url), None)
    common = [path for path in COMMON_PATHS if path in paths or path == "/"]
    others = [path for path in paths if path not in COMMON_PATHS and not _LOW_VALUE.match(path)]
    missing = [path for path in COMMON_PATHS if path not in common]
    low = [path for path in paths if _LOW_VALUE.match(path)]
    ordered = [*common, *others, *missing, *low][:MAX_SUGGESTIONS]
    return tuple(urljoin(root, path) for path in ordered)


def clarification(site_url: str, fetch: Callable[[str], FetchedPage]) -> NeedsClarification:
    """The reference's ``needs_clarification`` for a prompt whose page is unknown."""
    question = ClarificationQuestion(
        field="target_url",
        prompt=QUESTION,
        reason=REASON,
        input_type="url",
        required=True,
        suggestions=suggestions(site_url, fetch),
    )
    return NeedsClarification(retry_hint=RETRY_HINT, questions=(question,))


def domain_warning(site_url: str, page_url: str) -> str | None:
    """The mismatch notice for a page on another domain than the site's, else None."""
    if same_site(site_url, page_url):
        return None
    return (
        f"The target page is on {_host(page_url) or page_url} but the site is "
        f"{_host(site_url) or site_url}; check the site_id or the URL (the snippet only runs "
        "on the site's own pages)."
    )


UNSURE_HINT: Final = (
    "Re-send the same call with the prompt rephrased as the questions below say: name text "
    "that is on the page, or the element by what it shows (e.g. 'the Pro plan button')."
)


def unsure(page_url: str, reasons: Sequence[str], examples: Sequence[str]) -> NeedsClarification:
    """The answer when the author is not sure what a prompt asks of ``page_url``: nothing
    is authored (so nothing can launch), and the question says why (``reasons``) and
    offers ``examples``, phrasings the author acts on that name things on the page."""
    question = ClarificationQuestion(
        field="prompt",
        prompt=f"What exactly should change on {page_url}?",
        reason=" ".join(reasons)[:2000],
        input_type="text",
        required=True,
        suggestions=tuple(examples)[:MAX_SUGGESTIONS],
    )
    return NeedsClarification(retry_hint=UNSURE_HINT, questions=(question,))


_GLOB_IN_TEXT: Final = re.compile(r"(?<![\w$])/[\w\-./]*\*[\w\-./*]*")
_CLASS_OF_PAGES: Final = re.compile(
    r"\b(?:all|every|each|any)\s+(?:of\s+the\s+|the\s+)?(?P<kind>[a-z][\w-]*)\s+pages?\b", re.I
)
_SITE_WIDE: Final = re.compile(
    r"\b(?:site[\s-]?wide|everywhere|(?:across|on)\s+the\s+(?:whole\s+|entire\s+)?(?:site|website)"
    r"|(?:on|across)\s+(?:all|every)\s+pages?)\b",
    re.I,
)


def _singular(word: str) -> str:
    lowered = word.lower()
    return lowered[:-1] if lowered.endswith("s") and len(lowered) > 3 else lowered


def url_pattern_for(prompt: str, target_url: str) -> tuple[str | None, list[str], list[str]]:
    """The url_pattern a prompt implies, with the assumption made reading it or the
    warning when it could not be read: an explicit glob ("every /checkout/*"), "site-wide"
    or "on every page" (``/**``), or "all product pages" read against the target's path
    (/products/blue-mug gives /products/*). No pattern for a test of one page."""
    glob = _GLOB_IN_TEXT.search(URL_IN_TEXT.sub(" ", prompt))
    if glob:
        pattern = glob.group(0).rstrip(_TRAILING)
        try:
            return validate_pattern(pattern), [f"Scoped to the pages matching {pattern}"], []
        except InvalidUrlPattern as exc:
            return None, [], [f"Ignored the URL pattern {pattern!r} in the prompt: {exc.message}"]
    if _SITE_WIDE.search(prompt):
        return "/**", ["Scoped to every page of the site (/**), as the prompt says"], []
    kind = _CLASS_OF_PAGES.search(prompt)
    if not kind:
        return None, [], []
    segments = [segment for segment in urlsplit(target_url).path.split("/") if segment]
    wanted = _singular(kind.group("kind"))
    for index, segment in enumerate(segments):
        if _singular(segment) == wanted:
            base = "/" + "/".join(segments[: index + 1])
            deeper = len(segments) - index - 1
            pattern = base if deeper == 0 else f"{base}/*" if deeper == 1 else f"{base}/**"
            note = f'Read "{kind.group(0)}" as the pages matching {pattern} (the target\'s path)'
            return pattern, [note], []
    return (
        None,
        [],
        [
            f'The prompt speaks of "{kind.group(0)}" but the target URL\'s path has no '
            f"{kind.group('kind')!r} segment; pass url_pattern to create_experiment to scope it"
        ],
    )
