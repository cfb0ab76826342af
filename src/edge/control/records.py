"""The control plane's records: what `edge.control.store.Store` writes and reads, as
typed Structs (a workspace, its API keys, sites, experiments, variants and goals)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from edge.config import ANTI_FLICKER_MS, MutationConfig

__all__ = [
    "ApiKeyCredential",
    "ApiKeyInfo",
    "ApiKeyRecord",
    "ExperimentRecord",
    "ExperimentStatus",
    "ExperimentVerdict",
    "Goal",
    "IssuedKey",
    "NewExperiment",
    "NewGoal",
    "NewVariant",
    "Site",
    "SiteRecord",
    "Variant",
    "VariantRecord",
    "VerdictStatus",
    "Workspace",
    "utc_now",
]

ExperimentStatus = Literal["draft", "running", "paused", "completed", "archived"]
VerdictStatus = Literal["significant", "no_winner", "guardrail"]


def utc_now() -> str:
    """The store's timestamp format: ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat()


class ExperimentVerdict(msgspec.Struct, frozen=True):
    """What an ended experiment keeps: the weights (basis points by variant id) in force
    while it ran, and its decision once taken: ``status`` (None until then), the winner or
    the guardrail arm (variant ids) and the guardrail's reason."""

    weights: dict[str, int]
    status: VerdictStatus | None = None
    winner_variant_id: str | None = None
    guardrail_variant_id: str | None = None
    reason: str | None = None


class Workspace(msgspec.Struct, frozen=True):
    """A tenant: every key, site and experiment belongs to exactly one."""

    id: str
    name: str
    plan: str
    created_at: str


class ApiKeyRecord(msgspec.Struct, frozen=True):
    """An API key as stored: its prefix and digest, never the key."""

    id: str
    workspace_id: str
    name: str
    prefix: str
    created_at: str


class IssuedKey(msgspec.Struct, frozen=True):
    """A freshly issued key: ``key`` is the only copy of the secret there will ever be."""

    record: ApiKeyRecord
    key: str


class ApiKeyCredential(msgspec.Struct, frozen=True):
    """What checking a presented key needs of its row."""

    id: str
    workspace_id: str
    sha256: str
    last_used_at: str | None
    revoked_at: str | None


class ApiKeyInfo(ApiKeyRecord, frozen=True):
    """A key for listings: the record, its workspace's name, when it was last used and
    revoked (None: never)."""

    workspace_name: str = ""
    last_used_at: str | None = None
    revoked_at: str | None = None


class Site(msgspec.Struct, frozen=True):
    """A website registered for testing; ``public_key`` names its snippet, and
    ``anti_flicker_ms`` bounds how long the snippet may hide its pages."""

    id: str
    workspace_id: str
    name: str
    url: str
    domain: str
    public_key: str
    created_at: str
    anti_flicker_ms: int = ANTI_FLICKER_MS


class SiteRecord(Site, frozen=True):
    """A site with what the API shows besides: its platform (when known) and when it last
    changed."""

    platform: str | None = None
    updated_at: str = ""


class NewVariant(msgspec.Struct, frozen=True):
    """A variant to create. ``weight`` is relative; weights are normalised to basis points."""

    name: str
    weight: float
    changes: tuple[MutationConfig, ...] = ()
    redirect_url: str | None = None
    config: Any = None


class NewGoal(msgspec.Struct, frozen=True):
    """A goal to create; ``url_pattern`` is validated like the experiment's; a
    ``guardrail`` goal stops the experiment when a challenger converts significantly less
    on it."""

    name: str
    type: str
    selector: str | None = None
    url_pattern: str | None = None
    guardrail: bool = False


class NewExperiment(msgspec.Struct, frozen=True):
    """An experiment to create as a draft. The first variant is the control."""

    workspace_id: str
    name: str
    variants: tuple[NewVariant, ...]
    site_id: str | None = None
    kind: Literal["web", "agent"] = "web"
    goals: tuple[NewGoal, ...] = ()
    url_pattern: str | None = None
    coverage_bps: int = 10_000
    hypothesis: str | None = None
    target_url: str | None = None


class Variant(msgspec.Struct, frozen=True):
    """A variant as stored; ``weight_bps`` is its share of the covered traffic."""

    id: str
    name: str
    is_control: bool
    weight_bps: int


class Goal(msgspec.Struct, frozen=True):
    """A goal as stored."""

    id: str
    name: str
    type: str
    selector: str | None
    url_pattern: str | None
    guardrail: bool = False


class VariantRecord(Variant, frozen=True):
    """A variant with what the API shows besides its weight: its DOM changes or redirect
    (web) or its config (agent)."""

    changes: tuple[MutationConfig, ...] = ()
    redirect_url: str | None = None
    config: Any = None


class ExperimentRecord(msgspec.Struct, frozen=True):
    """An experiment as the experiments API shows it: every column, its site's name and
    URL, its variants (control first) and goals (primary first) in position order."""

    id: str
    workspace_id: str
    site_id: str | None
    kind: Literal["web", "agent"]
    name: str
    status: ExperimentStatus
    hypothesis: str | None
    target_url: str | None
    url_pattern: str | None
    coverage_bps: int
    sample_size: int | None
    primary_metric: str | None
    confidence: float | None
    winner_variant_id: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    ended_at: str | None
    max_cost_increase: float | None
    guardrail_metrics: tuple[str, ...]
    site_name: str | None
    site_url: str | None
    variants: tuple[VariantRecord, ...] = ()
    goals: tuple[Goal, ...] = ()
