"""Previews of a web experiment's variants, before launch as well as after: signed preview
tokens, and the preview-only config the snippet fetches with one.

A preview URL is the experiment's target URL with ``sk_preview=<token>``. The token is
``base64url(experiment uuid ‖ variant uuid ‖ MAC)`` (64 characters), the MAC being the
first 16 bytes of HMAC-SHA256 over both uuids under a secret of this server (kept in the
store, `edge.control.report_links.server_secret`): bound to one variant of one
experiment, unguessable, and checked without a table of tokens. It does not expire: like
the variant ids of the older preview URLs, it is a review link; it stops working when the
experiment is archived or deleted.

The snippet carries only running experiments. Given a ``sk_preview`` that is none of its
variants' ids, it fetches ``GET /s/{public_key}/preview/{token}.json`` (`PreviewEndpoint`):
that experiment of that site, whatever its status but archived, and the variant to show.
A draft or paused experiment thus reaches only the holders of its preview URLs. A snippet
loaded from an edge node asks the node, which relays the request here (`edge.node.previews`):
the node's snapshot carries no draft.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from pathlib import Path

import msgspec
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from edge.control.api import in_store
from edge.control.records import ExperimentRecord
from edge.control.report_links import server_secret
from edge.control.services import Services
from edge.control.snapshot import experiment_config
from edge.control.store import Store
from edge.http import send_response
from edge.snippet import PREVIEW_HEADERS, PREVIEW_PATH, BrowserExperiment, browser_experiment

__all__ = [
    "PREVIEW_PATH",
    "PREVIEW_SECRET_META_KEY",
    "PreviewConfig",
    "PreviewEndpoint",
    "PreviewTokens",
    "preview_config",
    "routes",
]

PREVIEW_SECRET_META_KEY = "preview_token_secret"
_MAC_BYTES = 16
_TOKEN_CHARS = 64  # base64 of 16 + 16 + 16 bytes, no padding

_NOT_FOUND = msgspec.json.encode(
    {
        "error": {
            "code": "not_found",
            "message": "no such preview: the link is wrong, or its experiment was archived "
            "or deleted; GET /v1/experiments/{id} gives its preview URLs",
        }
    }
)


class PreviewTokens:
    """Makes and reads preview tokens with the server's secret (read once per process)."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self._secret: bytes | None = None

    def _mac(self, ids: bytes) -> bytes:
        if self._secret is None:
            self._secret = server_secret(self.store_path, PREVIEW_SECRET_META_KEY)
        return hmac.new(self._secret, b"preview\n" + ids, hashlib.sha256).digest()[:_MAC_BYTES]

    def token(self, experiment_id: str, variant_id: str) -> str:
        """The token that previews ``variant_id`` of ``experiment_id`` (store ids: uuids)."""
        ids = uuid.UUID(experiment_id).bytes + uuid.UUID(variant_id).bytes
        return base64.urlsafe_b64encode(ids + self._mac(ids)).decode()

    def read(self, token: str) -> tuple[str, str] | None:
        """The experiment and variant ids a token of this server names, else None."""
        if len(token) != _TOKEN_CHARS:
            return None
        try:
            raw = base64.b64decode(token, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return None
        ids, mac = raw[:32], raw[32:]
        if not hmac.compare_digest(mac, self._mac(ids)):
            return None
        return str(uuid.UUID(bytes=ids[:16])), str(uuid.UUID(bytes=ids[16:]))


class PreviewConfig(msgspec.Struct, frozen=True):
    """What ``GET /s/{public_key}/preview/{token}.json`` answers: one experiment as the
    snippet's config has it (`edge.snippet.BrowserExperiment`), and the id of the variant
    to show."""

    variant: str
    experiment: BrowserExperiment


def preview_config(record: ExperimentRecord, variant_id: str) -> PreviewConfig:
    """The preview of one variant of a web experiment, whatever its status."""
    return PreviewConfig(variant_id, browser_experiment(experiment_config(record)))


class PreviewEndpoint:
    """``GET /s/{public_key}/preview/{token}.json``: the preview config of a token, if the
    token is this server's and names a non-archived web experiment of that site that
    still has that variant; else a 404."""

    def __init__(self, services: Services, tokens: PreviewTokens) -> None:
        self.services = services
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        public_key, token = params["public_key"], params["token"]

        def work(store: Store) -> PreviewConfig | None:
            named = self.tokens.read(token)
            if named is None:
                return None
            experiment_id, variant_id = named
            record = store.experiment_record(experiment_id, None)
            if (
                record is None
                or record.kind != "web"
                or record.status == "archived"
                or record.site_id is None
                or store.get_site(record.site_id).public_key != public_key
                or all(v.id != variant_id for v in record.variants)
            ):
                return None
            return preview_config(record, variant_id)

        config = await in_store(self.services, work)
        if config is None:
            await send_response(send, 404, PREVIEW_HEADERS, _NOT_FOUND)
        else:
            await send_response(send, 200, PREVIEW_HEADERS, msgspec.json.encode(config))


def routes(services: Services) -> list[Route]:
    """The preview config route (unauthenticated: the token is the credential)."""
    tokens = PreviewTokens(services.store_path)
    return [Route(PREVIEW_PATH, PreviewEndpoint(services, tokens), methods=["GET"])]
