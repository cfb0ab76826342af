"""Seed a running server for bench/locustfile.py: a site, a running web experiment with a
goal and a running agent experiment, in the workspace of ``--key``; prints the
``SPLITEDGE_LOAD_*`` variables to export.

    .venv/bin/python bench/seed_load.py --base-url http://127.0.0.1:8000 --key sk_live_...
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx


def seed(base_url: str, key: str, domain: str = "load.example.com") -> dict[str, str]:
    """Create (or reuse) the site and launch the two experiments; the variables."""
    client = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {key}"},
                          timeout=30)  # fmt: skip

    def ok(answer: httpx.Response) -> Any:
        if answer.status_code >= 300:
            raise SystemExit(f"{answer.request.method} {answer.request.url}: {answer.text}")
        return answer.json()["data"]

    site = ok(client.post("/v1/sites", json={"url": f"https://{domain}", "reuse_if_exists": True}))
    site = site.get("site", site)
    web = {"site_id": site["id"], "name": "Load: hero", "auto_launch": True,
           "variants": [{"name": "Bold", "changes": [
               {"selector": "h1", "action": "set_content", "payload": "Bold"}]}],
           "goals": [{"name": "Buy", "type": "click", "selector": ".buy"}]}  # fmt: skip
    agent = {"site_id": site["id"], "name": "Load: agent prompt", "auto_launch": True,
             "primary_metric": "task_completion",
             "variants": [{"name": "control", "soul_md": "Be careful."},
                          {"name": "terse", "soul_md": "Be brief."}]}  # fmt: skip
    ok(client.post("/v1/experiments", json=web))
    ok(client.post("/v1/experiments", json=agent))
    client.close()
    return {"SPLITEDGE_LOAD_API_KEY": key, "SPLITEDGE_LOAD_SITE_ID": site["id"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="a workspace API key (sk_live_...)")
    args = parser.parse_args()
    for name, value in seed(args.base_url, args.key).items():
        print(f"export {name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
