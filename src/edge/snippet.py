"""The per-site snippet: the browser runtime with that site's running experiments inlined.

The runtime (built from ``snippet/`` into ``edge/static/runtime.js``) contains the token
``__SPLITEDGE_CONFIG__`` exactly once; the site's config JSON takes its place. Bodies,
their gzip and the response headers are made once per site config, never per request.
"""

from __future__ import annotations

import gzip
from importlib.resources import files

import msgspec
import xxhash

from edge.config import ExperimentConfig, GoalConfig, MutationConfig, SiteConfig

__all__ = [
    "PREVIEW_HEADERS",
    "PREVIEW_PATH",
    "BrowserConfig",
    "BrowserExperiment",
    "BrowserVariant",
    "Runtime",
    "SnippetBody",
    "browser_config",
    "browser_experiment",
    "build_snippet",
    "load_runtime",
    "script_safe_json",
]

PREVIEW_PATH = "/s/{public_key}/preview/{token}.json"
"""Where the snippet fetches the preview config of an ``sk_preview`` token that names none
of its variants, on the origin it was loaded from: the control plane
(`edge.control.previews`), or an edge node, which relays it there (`edge.node.previews`)."""
PREVIEW_HEADERS = [
    (b"content-type", b"application/json"),
    # A draft changes while it is reviewed: never a stale preview.
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    # Fetched by the snippet from the customer's pages, another origin.
    (b"access-control-allow-origin", b"*"),
]
"""The headers of every answer on `PREVIEW_PATH`, errors included."""

CONFIG_TOKEN = b"__SPLITEDGE_CONFIG__"
CACHE_CONTROL = b"public, max-age=60"
JS_CONTENT_TYPE = b"application/javascript; charset=utf-8"


class BrowserVariant(msgspec.Struct, frozen=True):
    """A variant as the browser needs it (agent payloads never reach the browser)."""

    id: str
    name: str
    control: bool
    weight: int
    changes: tuple[MutationConfig, ...]
    redirect_url: str | None


class BrowserExperiment(msgspec.Struct, frozen=True):
    """A web experiment as the runtime reads it. One without goals sends no exposure: a
    deployed one (`edge.config.ExperimentConfig.deployed`) is served without them."""

    id: str
    url_pattern: str | None
    coverage: int
    variants: tuple[BrowserVariant, ...]
    goals: tuple[GoalConfig, ...]


class BrowserConfig(msgspec.Struct, frozen=True):
    """The JSON inlined into a site's snippet.

    ``anti_flicker_ms`` bounds how long the runtime hides the page (``html`` opacity 0)
    while a variant's changes are pending; the page is shown as soon as they are applied.
    """

    sk: str
    experiments: tuple[BrowserExperiment, ...]
    anti_flicker_ms: int


class Runtime(msgspec.Struct, frozen=True):
    """The built runtime split at the config token."""

    head: bytes
    tail: bytes


class SnippetBody(msgspec.Struct, frozen=True):
    """A site's snippet with everything a response needs, precomputed.

    The two representations (identity and gzip) carry distinct strong ETags; a
    conditional request naming either one is answered 304.
    """

    body: bytes
    gzip_body: bytes
    etag: bytes
    gzip_etag: bytes
    headers: list[tuple[bytes, bytes]]
    gzip_headers: list[tuple[bytes, bytes]]
    not_modified_headers: list[tuple[bytes, bytes]]
    gzip_not_modified_headers: list[tuple[bytes, bytes]]


def load_runtime(source: bytes | None = None) -> Runtime:
    """Split the built runtime at its config token; fails loudly on a broken build."""
    if source is None:
        source = files("edge").joinpath("static", "runtime.js").read_bytes()
    if source.count(CONFIG_TOKEN) != 1:
        raise RuntimeError(
            "edge/static/runtime.js must contain __SPLITEDGE_CONFIG__ exactly once; "
            "rebuild it with `make snippet`"
        )
    head, tail = source.split(CONFIG_TOKEN)
    return Runtime(head=head, tail=tail)


_UNSAFE_IN_SCRIPT = (
    # `</script` and `<!--` end or confuse an inline script; U+2028/9 end a JS line in
    # engines before ES2019. Inside JSON strings their \u escapes mean the same text.
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def script_safe_json(value: object) -> bytes:
    """JSON that can sit anywhere inside a ``<script>`` element and a JS file."""
    data = msgspec.json.encode(value)
    for raw, escaped in _UNSAFE_IN_SCRIPT:
        data = data.replace(raw, escaped)
    return data


def browser_config(site: SiteConfig) -> BrowserConfig:
    """The part of a site's config the browser needs: its web experiments."""
    return BrowserConfig(
        sk=site.public_key,
        experiments=tuple(browser_experiment(e) for e in site.experiments if e.kind == "web"),
        anti_flicker_ms=site.anti_flicker_ms,
    )


def browser_experiment(exp: ExperimentConfig) -> BrowserExperiment:
    """An experiment as the snippet's config carries it."""
    return BrowserExperiment(
        id=exp.id,
        url_pattern=exp.url_pattern,
        coverage=exp.coverage,
        variants=tuple(
            BrowserVariant(
                id=v.id,
                name=v.name,
                control=v.control,
                weight=v.weight,
                changes=v.changes,
                redirect_url=v.redirect_url,
            )
            for v in exp.variants
        ),
        # One not running counts nothing: no goal, so no exposure either.
        goals=exp.goals if exp.status == "running" else (),
    )


def build_snippet(runtime: Runtime, site: SiteConfig) -> SnippetBody:
    """The snippet of one site, its gzip (level 9: built once, served many times) and
    the headers of each response."""
    body = runtime.head + script_safe_json(browser_config(site)) + runtime.tail
    gzip_body = gzip.compress(body, compresslevel=9, mtime=0)
    tag = xxhash.xxh3_64_hexdigest(body).encode()
    etag, gzip_etag = b'"' + tag + b'"', b'"' + tag + b'-gz"'
    revalidation = [(b"cache-control", CACHE_CONTROL), (b"vary", b"accept-encoding")]
    common = [
        *revalidation,
        (b"content-type", JS_CONTENT_TYPE),
        (b"x-content-type-options", b"nosniff"),
        (b"access-control-allow-origin", b"*"),
    ]
    return SnippetBody(
        body=body,
        gzip_body=gzip_body,
        etag=etag,
        gzip_etag=gzip_etag,
        headers=[*common, (b"etag", etag), (b"content-length", str(len(body)).encode())],
        gzip_headers=[
            *common,
            (b"etag", gzip_etag),
            (b"content-encoding", b"gzip"),
            (b"content-length", str(len(gzip_body)).encode()),
        ],
        not_modified_headers=[*revalidation, (b"etag", etag)],
        gzip_not_modified_headers=[*revalidation, (b"etag", gzip_etag)],
    )
