"""Which technologies a page is built with, read from markers in its HTML.

Only markers a platform puts in the markup it serves (script and asset paths, generator
meta tags, data attributes, well-known globals) are looked for, so a page is never
fetched twice and no third-party service is asked. Detection is by substring or
regular expression on the raw HTML; the order of `MARKERS` is the order reported.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MARKERS", "detect_stack"]

MARKERS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (name, re.compile(pattern, re.I))
    for name, pattern in (
        ("Next.js", r'id="__NEXT_DATA__"|/_next/static/'),
        ("Nuxt", r"window\.__NUXT__|/_nuxt/|data-n-head"),
        ("Gatsby", r'id="___gatsby"|/page-data/|gatsby-'),
        ("Shopify", r"cdn\.shopify\.com|Shopify\.theme|myshopify\.com"),
        ("Webflow", r"data-wf-page|data-wf-site|webflow\.js|website-files\.com"),
        ("WordPress", r"/wp-content/|/wp-includes/|content=\"WordPress"),
        ("Wix", r"static\.wixstatic\.com|wix-warmup-data"),
        ("Squarespace", r"static1\.squarespace\.com|Squarespace\.Constants"),
        ("Framer", r"framerusercontent\.com|data-framer-"),
        ("React", r"data-reactroot|react(?:-dom)?(?:\.production)?(?:\.min)?\.js|__REACT_"),
        ("Vue", r"data-v-[0-9a-f]{6,}|vue(?:\.runtime)?(?:\.global)?(?:\.prod)?(?:\.min)?\.js"),
        ("Angular", r"ng-version=|ng-app"),
        ("Svelte", r"svelte-[a-z0-9]{5,}|__sveltekit"),
        ("jQuery", r"/jquery[-.\w]*\.js"),
        ("Tailwind CSS", r"tailwindcss|cdn\.tailwindcss\.com"),
        ("Bootstrap", r"bootstrap(?:\.bundle)?(?:\.min)?\.(?:js|css)"),
        ("Stripe", r"js\.stripe\.com|buy\.stripe\.com|checkout\.stripe\.com"),
        ("Google Tag Manager", r"googletagmanager\.com/gtm\.js|GTM-[A-Z0-9]{4,}"),
        ("Google Analytics", r"google-analytics\.com/|googletagmanager\.com/gtag/js"),
        ("Segment", r"cdn\.segment\.com"),
        ("HubSpot", r"js\.hs-scripts\.com|js\.hsforms\.net"),
        ("Intercom", r"widget\.intercom\.io|window\.intercomSettings"),
    )
)
"""(technology, marker) in report order: frameworks and platforms first."""

# Next.js, Nuxt and Gatsby pages are React or Vue pages: the framework says more, and a
# reader of "Next.js, React" learns nothing from the second name.
_IMPLIED: Final = {"React": ("Next.js", "Gatsby"), "Vue": ("Nuxt",)}


def detect_stack(html: str) -> tuple[str, ...]:
    """The technologies whose markers ``html`` contains, in `MARKERS` order."""
    found = [name for name, marker in MARKERS if marker.search(html)]
    return tuple(
        name for name in found if not any(parent in found for parent in _IMPLIED.get(name, ()))
    )
