"""The served configuration: what the control plane publishes and every edge process serves.

A `ConfigSnapshot` is everything an edge needs to answer snippet, assign and event
requests without touching the store: the running experiments of every site, those of
no site (agent experiments, assigned by experiment id), those launched once that are not
running now (assigned by experiment id only, and counted no more), and the hashes of the
API keys that may write events. It is produced by the store
(`edge.control.snapshot`), compiled into a `edge.kv.ConfigKV`, and (in a later issue)
shipped to remote edge nodes as msgspec-encoded JSON. The version only ever grows.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "ANTI_FLICKER_MS",
    "MAX_ANTI_FLICKER_MS",
    "ApiKeyEntry",
    "ConfigSnapshot",
    "ExperimentConfig",
    "GoalConfig",
    "MutationConfig",
    "SiteConfig",
    "SitelessExperiments",
    "VariantConfig",
]

# How long the snippet may hide a page while a variant's changes are pending, by default
# and at most (a site setting).
ANTI_FLICKER_MS = 250
MAX_ANTI_FLICKER_MS = 5_000

MutationAction = Literal[
    "set_style",
    "set_content",
    "set_attribute",
    "insert_before",
    "insert_after",
    "add_class",
    "remove_class",
]


class MutationConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    """One DOM change of a variant (the reference's VariantMutation)."""

    selector: str
    action: MutationAction
    payload: str = ""
    attribute_name: str | None = None
    description: str | None = None


class GoalConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    """A conversion goal; the first goal of an experiment is its primary one."""

    id: str
    name: str
    type: str
    selector: str | None = None
    url_pattern: str | None = None


class VariantConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    """A variant with its weight in basis points (all weights of an experiment sum to 10000).

    Web variants carry ``changes`` or a ``redirect_url``; agent variants carry ``config``,
    any JSON the agent needs (a system prompt, a model setting, a config version hash).
    """

    id: str
    name: str
    control: bool
    weight: int
    changes: tuple[MutationConfig, ...] = ()
    redirect_url: str | None = None
    config: Any = None


class ExperimentConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    """An experiment as the edge serves it.

    ``coverage`` is the share of units in the experiment at all, in basis points; a unit
    outside it sees the page unchanged and is not counted.

    ``deployed``: the experiment is over and its winner was promoted. It is served with all
    the weight on the winner, so every unit gets it, and counts nothing: no goals, no
    exposures, and events naming it are refused like those of any experiment that is not
    running (but for the late events of `Settings.late_event_grace`).

    ``status`` is the experiment's: one that is not running answers every unit with one
    variant, counted nowhere: its deployed winner, else its control (the weights say
    which), and its snippet config carries no goals. ``ended_at`` is when it was
    completed (Unix seconds; None while it runs or is paused): its late events are taken
    for a grace period after it (`takes_events`), by API key and by the site's public key
    (``site_id``: the site it runs on), so its goals stay listed for those.
    """

    id: str
    kind: Literal["web", "agent"]
    variants: tuple[VariantConfig, ...]
    goals: tuple[GoalConfig, ...] = ()
    url_pattern: str | None = None
    coverage: int = 10_000
    deployed: bool = False
    status: Literal["running", "paused", "completed", "archived"] = "running"
    ended_at: float | None = None
    site_id: str | None = None

    def takes_events(self, since: float) -> bool:
        """Whether events may name the experiment: it runs, or it ended at ``since`` (Unix
        seconds: now less the late-event grace) or later."""
        if self.status == "running":
            return True
        return self.ended_at is not None and self.ended_at >= since


class SiteConfig(msgspec.Struct, frozen=True):
    """A site, identified by its public key, with its running experiments.

    ``anti_flicker_ms`` bounds how long its snippet hides a page while a change is pending.
    """

    id: str
    workspace_id: str
    public_key: str
    url: str
    experiments: tuple[ExperimentConfig, ...]
    anti_flicker_ms: int = ANTI_FLICKER_MS


class SitelessExperiments(msgspec.Struct, frozen=True):
    """A workspace's experiments served by experiment id only: those that belong to no
    site (agent experiments made without one), or (`ConfigSnapshot.inactive`) that are
    not running and have no deployed winner. No snippet carries them: they are assigned
    by experiment id, with an API key of the workspace, and events name them like any
    other served experiment."""

    workspace_id: str
    experiments: tuple[ExperimentConfig, ...]


class ApiKeyEntry(msgspec.Struct, frozen=True):
    """An active API key as the edge knows it: never the key, only its SHA-256."""

    prefix: str
    sha256: str
    workspace_id: str


class ConfigSnapshot(msgspec.Struct, frozen=True):
    """Everything the edge serves, at one config version. ``sites`` and ``siteless`` hold
    the running and deployed experiments; ``inactive`` the others that were launched
    (paused, or completed or archived without a deployed winner), on a site or not."""

    version: int
    sites: tuple[SiteConfig, ...]
    api_keys: tuple[ApiKeyEntry, ...] = ()
    demo_public_key: str | None = None
    siteless: tuple[SitelessExperiments, ...] = ()
    inactive: tuple[SitelessExperiments, ...] = ()
