"""Plans: how many requests per minute an API key may make, how many sites a workspace
may register, and whether it may run continuous loops, by the workspace's plan.

A self-hosted install is unmetered and unlimited: the ``limits`` setting (``--limits``,
``SPLITEDGE_LIMITS``) is ``off`` by default. ``reference`` switches on the reference's
plans (`REFERENCE_PLANS`); any other value is the path of a JSON file of the same shape,
plan name to limits::

    {"free": {"requests_per_minute": 30, "sites": 1, "metered": true, "loops": false},
     "starter": {"requests_per_minute": 60, "sites": 1, "metered": true},
     "enterprise": {"requests_per_minute": 1200}}

A limit left out (or null) is no limit, and so is a plan the table does not name. A
``metered`` plan pays for calls in credits (`edge.control.credits`); plans are unmetered
unless they say so. Loops (`edge.control.loops_api`) are open to every plan unless it says
``"loops": false``: then creating one is ``402 plan_required``. A workspace's plan is its
``workspaces.plan`` (``enterprise`` unless set otherwise).

The rate limit is a fixed one-minute window per key, counted in the SQLite store
(`edge.control.store.Store.count_request`) so that every worker process shares it; it
is checked by `edge.control.api.authenticate` in the same store visit that finds the
key, and answered ``429 rate_limited`` with ``Retry-After`` (seconds to the window's end).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import msgspec

from edge.errors import InvalidSetting, PlanRequired, RateLimited

__all__ = [
    "OFF",
    "REFERENCE",
    "REFERENCE_PLANS",
    "WINDOW_SECONDS",
    "Plan",
    "PlansError",
    "PlanLimits",
    "load_plans",
    "plan_limits",
    "window_start",
]

OFF = "off"
"""The ``limits`` setting of an unmetered, unlimited install (the default)."""

REFERENCE = "reference"
"""The ``limits`` setting that applies `REFERENCE_PLANS`."""

WINDOW_SECONDS = 60
"""The rate limit's window: requests are counted per key per clock minute."""


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The limits of one plan; None is no limit. ``metered``: calls cost credits;
    ``loops``: the workspace may run continuous loops."""

    requests_per_minute: Annotated[int, msgspec.Meta(ge=1)] | None = None
    sites: Annotated[int, msgspec.Meta(ge=0)] | None = None
    metered: bool = False
    loops: bool = True


# The reference's figures: requests per minute from ClawSplit (Starter 60, Pro 300, Team 600,
# Enterprise "custom"), sites from abtestbot (Starter 1, Pro 10, Enterprise 25). Where the
# reference gives no number we pick one: Enterprise gets 1200 requests per minute (twice
# Team), and Team, which abtestbot does not list, keeps Pro's 10 sites (it buys throughput).
# abtestbot's Free plan has no loops ("Free is blocked with plan_required"); its rate is
# ours (half of Starter's), its one site Starter's.
REFERENCE_PLANS: Mapping[str, Plan] = {
    "free": Plan(requests_per_minute=30, sites=1, metered=True, loops=False),
    "starter": Plan(requests_per_minute=60, sites=1, metered=True),
    "pro": Plan(requests_per_minute=300, sites=10, metered=True),
    "team": Plan(requests_per_minute=600, sites=10, metered=True),
    "enterprise": Plan(requests_per_minute=1200, sites=25),  # the reference: unmetered
}

_plans_decoder = msgspec.json.Decoder(dict[str, Plan])


class PlansError(InvalidSetting):
    """The ``limits`` setting names no usable plans table; the message says why."""

    code = "invalid_plans"


def load_plans(setting: str) -> Mapping[str, Plan] | None:
    """The plans of the ``limits`` setting: None for ``off``, `REFERENCE_PLANS` for
    ``reference``, else those of the JSON file at that path; `PlansError` if it cannot be
    read or is not a plans table."""
    if setting == OFF:
        return None
    if setting == REFERENCE:
        return REFERENCE_PLANS
    path = Path(setting)
    try:
        plans = _plans_decoder.decode(path.read_bytes())
    except OSError as exc:
        raise PlansError(
            f"limits must be {OFF!r}, {REFERENCE!r} or a plans JSON file; "
            f"cannot read {setting!r}: {exc.strerror}"
        ) from None
    except msgspec.ValidationError as exc:
        raise PlansError(
            f"{path} is not a plans table ({exc}); it maps plan names to "
            '{"requests_per_minute": N, "sites": N}'
        ) from None
    except msgspec.DecodeError as exc:
        raise PlansError(f"{path} is not JSON: {exc}") from None
    if not plans:
        raise PlansError(f"{path} names no plans; use {OFF!r} for no limits")
    return plans


def window_start(now: float) -> int:
    """The start (Unix seconds) of the rate limit's window ``now`` falls in."""
    return int(now // WINDOW_SECONDS) * WINDOW_SECONDS


class PlanLimits:
    """The limits of a plans table, by plan name: requests per minute per key (what
    `edge.control.api.authenticate` enforces), which plans pay in credits (what it tells
    the handlers), sites per workspace (what `edge.control.sites_api` enforces) and the
    plans without loops (`check_loops`, for `edge.control.loops_api`). A plan missing from
    a map has no such limit."""

    def __init__(
        self,
        per_minute: Mapping[str, int],
        metered: frozenset[str] = frozenset(),
        sites: Mapping[str, int] | None = None,
        without_loops: frozenset[str] = frozenset(),
    ) -> None:
        self.per_minute = dict(per_minute)
        self.metered = metered
        self.sites = dict(sites or {})
        self.without_loops = without_loops

    def check_loops(self, plan: str) -> None:
        """`PlanRequired` (402) if ``plan`` has no continuous loops."""
        if plan in self.without_loops:
            raise PlanRequired(
                f"continuous loops are not part of the {plan} plan; move the workspace to a "
                "plan with loops (`splitedge keys create --workspace NAME --plan PLAN`)"
            )

    def check(self, plan: str, count: int, now: float) -> None:
        """`RateLimited` if ``count`` requests in the current window are over ``plan``'s
        limit; its Retry-After is the whole seconds to the window's end."""
        limit = self.per_minute.get(plan)
        if limit is None or count <= limit:
            return
        retry_after = max(1, math.ceil(window_start(now) + WINDOW_SECONDS - now))
        raise RateLimited(
            f"rate limit reached: the {plan} plan allows {limit} requests per minute per "
            f"API key; retry in {retry_after} s (Retry-After)",
            retry_after,
        )


def plan_limits(plans: Mapping[str, Plan] | None) -> PlanLimits | None:
    """The limits of ``plans``; None when no plan has any."""
    if plans is None:
        return None
    per_minute = {
        name: plan.requests_per_minute
        for name, plan in plans.items()
        if plan.requests_per_minute is not None
    }
    metered = frozenset(name for name, plan in plans.items() if plan.metered)
    sites = {name: plan.sites for name, plan in plans.items() if plan.sites is not None}
    without_loops = frozenset(name for name, plan in plans.items() if not plan.loops)
    if not (per_minute or metered or sites or without_loops):
        return None
    return PlanLimits(per_minute, metered, sites, without_loops)
