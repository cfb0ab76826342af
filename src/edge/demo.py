"""The demo site a fresh install starts with, and its page at ``/demo``.

The page loads its own snippet first in ``<head>``, exactly as a customer's site would,
so a newcomer can watch an experiment split traffic in their own browser.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from edge.config import MutationConfig
from edge.control.records import NewExperiment, NewGoal, NewVariant
from edge.control.snapshot import DEMO_SITE_META_KEY
from edge.control.store import Store
from edge.control.templating import render
from edge.http import JSON_HEADERS, error_body, send_response
from edge.kv import KVHolder

__all__ = ["DemoPage", "ensure_demo_site"]

DEMO_PATH = "/demo"


def ensure_demo_site(store: Store, workspace_id: str, base_url: str) -> str | None:
    """Create the demo site with one running experiment, once per store. Returns the new
    site's public key, or None when the store already has its demo site."""
    with store.transaction():
        if store.get_meta(DEMO_SITE_META_KEY) is not None:
            return None
        return _create_demo_site(store, workspace_id, base_url)


def _create_demo_site(store: Store, workspace_id: str, base_url: str) -> str:
    site = store.create_site(workspace_id, base_url, name="splitedge demo")
    experiment_id = store.create_experiment(
        NewExperiment(
            workspace_id=workspace_id,
            site_id=site.id,
            name="Demo: outcome-led headline",
            url_pattern=DEMO_PATH,
            hypothesis="An outcome-led headline and a louder button get more clicks.",
            variants=(
                NewVariant(name="Control (A)", weight=50),
                NewVariant(
                    name="Variant B",
                    weight=50,
                    changes=(
                        MutationConfig(
                            selector="#headline",
                            action="set_content",
                            payload="Ship the winning page, not the guess",
                        ),
                        MutationConfig(
                            selector=".cta",
                            action="set_style",
                            payload="background:#0a7d32;color:#fff;font-weight:700",
                        ),
                        MutationConfig(selector=".cta", action="add_class", payload="variant-b"),
                    ),
                ),
            ),
            goals=(NewGoal(name="CTA click", type="click", selector=".cta"),),
        )
    )
    store.set_experiment_status(experiment_id, "running")
    store.set_meta(DEMO_SITE_META_KEY, site.id)
    return site.public_key


class DemoPage:
    """``GET /demo``: the demo site's page, or 404 when this install has none."""

    def __init__(self, holder: KVHolder) -> None:
        self.holder = holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kv = self.holder.kv
        demo_key = None if kv is None else kv.demo_public_key
        bundle = None if kv is None or demo_key is None else kv.by_public_key.get(demo_key)
        if bundle is None:
            body = error_body("not_found", "this install has no demo site")
            await send_response(send, 404, JSON_HEADERS, body)
            return
        page = render(
            "demo.html",
            key=bundle.site.public_key,
            demo_path=DEMO_PATH,
            variants=[v for e in bundle.site.experiments for v in e.variants],
        )
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
        await send_response(send, 200, headers, page.encode())
