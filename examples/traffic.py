"""Send a site's running experiments the visitors of the README's walk-through.

Each visitor does what the snippet does in a browser: it is assigned (``POST /v1/assign``
with the site's public key and the page's URL, as public as the snippet itself), sends an
exposure for each experiment it is in and, if it converts, a goal event, to
``POST /v1/collect``. Conversions are fixed, not random: in each arm, a share ``rate`` of
its visitors converts (the control's ``--control-rate``, every other arm's
``--variant-rate``), so a run's counts can be told in advance from the units per arm.

Only the standard library: run it with any Python 3.11, no virtualenv needed::

    python3 examples/traffic.py --url http://127.0.0.1:8000 --site-key PUBLIC_KEY \\
        --page http://localhost:8080/ --goal GOAL_ID --visitors 1200
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from typing import Any

BATCH = 500
"""Events per ``/v1/collect`` request: the route's own limit."""


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


def _converts(index: int, rate: float) -> bool:
    """Whether an arm's ``index``-th visitor converts: exactly ``floor(n * rate)`` of an
    arm's first ``n`` visitors do."""
    return math.floor((index + 1) * rate) > math.floor(index * rate)


def main() -> None:
    """Assign ``--visitors`` new visitors on ``--page``, send their events, print the
    counts per arm as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--site-key", required=True, help="the site's public_key")
    parser.add_argument("--page", required=True, help="the page the visitors load")
    parser.add_argument("--goal", required=True, help="the id of the goal a conversion hits")
    parser.add_argument("--visitors", type=int, default=1200)
    parser.add_argument("--control-rate", type=float, default=0.10)
    parser.add_argument("--variant-rate", type=float, default=0.20)
    args = parser.parse_args()
    base = args.url.rstrip("/")
    pathname = urllib.parse.urlsplit(args.page).path or "/"
    visitors = [f"visitor-{uuid.uuid4().hex[:12]}" for _ in range(args.visitors)]
    units = [{"unit_id": v, "url": args.page} for v in visitors]
    assigned = []
    for start in range(0, len(units), 1000):  # /v1/assign's batch limit
        answer = _post(
            f"{base}/v1/assign",
            {"public_key": args.site_key, "units": units[start : start + 1000]},
        )
        assigned.extend(answer["data"]["units"])
    now = int(time.time() * 1000)
    seen: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    events: list[dict[str, Any]] = []
    for unit in assigned:
        visitor = unit["unit_id"]
        for a in unit["assignments"]:
            if not a["in_experiment"]:
                continue
            name = a["variant_name"]
            rate = args.control_rate if a["is_control"] else args.variant_rate
            common = {
                "visitor_id": visitor,
                "session_id": f"s-{visitor}",
                "ts": now,
                "experiment_id": a["experiment_id"],
                "variant_id": a["variant_id"],
                "pathname": pathname,
                "device": "desktop",
            }
            events.append({**common, "event_id": uuid.uuid4().hex, "type": "exposure"})
            if _converts(seen[name], rate):
                converted[name] += 1
                events.append(
                    {**common, "event_id": uuid.uuid4().hex, "type": "goal", "goal_id": args.goal}
                )
            seen[name] += 1
    for start in range(0, len(events), BATCH):
        _post(
            f"{base}/v1/collect",
            {"public_key": args.site_key, "events": events[start : start + BATCH]},
        )
    arms = {name: {"units": seen[name], "conversions": converted[name]} for name in sorted(seen)}
    print(json.dumps({"visitors": len(visitors), "events": len(events), "arms": arms}))


if __name__ == "__main__":
    main()
