"""The config KV: public_key → `SiteBundle`, experiment id → compiled experiment, rebuilt
whole for every config version.

Each worker process holds one `ConfigKV` behind a `KVHolder`. A `ConfigFollower` polls
the snapshot source for a new version and, when it sees one, builds a fresh KV off the
event loop and swaps the holder's reference in one assignment. Requests read
``holder.kv`` once and use that object throughout, so they never see a half-built KV
and never take a lock. Bundles of sites whose config did not change are carried over
into the new KV, so a change to one site does not re-gzip every other site's snippet.

``assignable_by_id`` answers "which experiment is this id" for assignments and agent
events: it holds every served experiment (deployed ones, those no longer running and
those on no site included); events may name a running one, or a concluded one within its
grace period (`edge.ingest.events_route`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import msgspec
import xxhash

from edge.api_keys import KEY_PREFIX_CHARS, digests_match
from edge.assign import AssignmentTable
from edge.config import ApiKeyEntry, ConfigSnapshot, ExperimentConfig, SiteConfig
from edge.errors import ServiceUnavailable
from edge.snippet import Runtime, SnippetBody, build_snippet
from edge.urlglob import UrlMatcher, compile_pattern
from edge.wire import assignment_fragment

__all__ = [
    "Assignable",
    "CatchUp",
    "CompiledExperiment",
    "ConfigFollower",
    "ConfigKV",
    "KVHolder",
    "SiteBundle",
    "SnapshotSource",
    "build_kv",
]

log = logging.getLogger("splitedge.kv")


class CompiledExperiment:
    """A running experiment ready for the hot path: URL matcher, assignment table, the
    encoded assignment of each variant, and the variant and goal ids events may name."""

    __slots__ = ("config", "fragments", "goal_ids", "matcher", "table", "variant_ids")

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.variant_ids = frozenset(v.id for v in config.variants)
        self.goal_ids = frozenset(g.id for g in config.goals)
        self.matcher: UrlMatcher = compile_pattern(config.url_pattern)
        self.table = AssignmentTable.build(
            config.id, [v.weight for v in config.variants], config.coverage
        )
        self.fragments: tuple[bytes, ...] = tuple(
            assignment_fragment(config, v) for v in config.variants
        )


class SiteBundle:
    """Everything the edge serves for one site, immutable once built.

    ``experiments`` are all the site's served experiments (an API key of its workspace
    may assign in any of them); ``public_experiments`` are what its public key reaches:
    the web ones only, since an agent experiment's variants carry prompts and configs
    that are the workspace's secrets, even when it names a site."""

    __slots__ = (
        "digest",
        "experiments",
        "experiments_by_id",
        "public_experiments",
        "site",
        "snippet",
    )

    def __init__(self, site: SiteConfig, digest: str, runtime: Runtime) -> None:
        self.site = site
        self.digest = digest
        self.snippet: SnippetBody = build_snippet(runtime, site)
        self.experiments = tuple(CompiledExperiment(e) for e in site.experiments)
        self.public_experiments = tuple(e for e in self.experiments if e.config.kind == "web")
        # The experiments browser events (public key) may name: a deployed one counts
        # nothing, and agent experiments take their events by API key (/v1/events).
        self.experiments_by_id = {
            e.config.id: e for e in self.public_experiments if not e.config.deployed
        }


# An experiment's workspace, and the experiment as a one-element tuple: what an assign by
# experiment id iterates, made once here rather than per request.
Assignable = tuple[str, tuple[CompiledExperiment]]


class ConfigKV:
    """One config version, compiled. Never mutated after `build_kv` returns it.

    ``siteless`` are the compiled experiments served by id only (on no site, or no longer
    running without a deployed winner), with their workspace ids.
    ``built_at`` is when it was compiled (Unix seconds): /readyz reports it, so how long
    a change took to reach a worker can be read off the worker itself.
    """

    __slots__ = (
        "assignable_by_id",
        "built_at",
        "by_public_key",
        "by_site_id",
        "demo_public_key",
        "keys_by_prefix",
        "version",
    )

    def __init__(
        self,
        version: int,
        bundles: list[SiteBundle],
        api_keys: tuple[ApiKeyEntry, ...],
        demo_public_key: str | None,
        siteless: list[tuple[str, CompiledExperiment]] | None = None,
    ) -> None:
        self.version = version
        self.by_public_key = {b.site.public_key: b for b in bundles}
        self.by_site_id = {b.site.id: b for b in bundles}
        served = [(b.site.workspace_id, e) for b in bundles for e in b.experiments]
        served += siteless or []
        self.assignable_by_id: dict[str, Assignable] = {
            e.config.id: (workspace_id, (e,)) for workspace_id, e in served
        }
        keys: dict[str, list[ApiKeyEntry]] = {}
        for entry in api_keys:
            keys.setdefault(entry.prefix, []).append(entry)
        self.keys_by_prefix = {prefix: tuple(entries) for prefix, entries in keys.items()}
        self.demo_public_key = demo_public_key
        self.built_at = time.time()

    def workspace_of_key(self, key: str) -> str | None:
        """The workspace an API key belongs to, or None for an unknown or revoked key."""
        for entry in self.keys_by_prefix.get(key[:KEY_PREFIX_CHARS], ()):
            if digests_match(key, entry.sha256):
                return entry.workspace_id
        return None


_site_encoder = msgspec.json.Encoder()


def build_kv(
    snapshot: ConfigSnapshot, runtime: Runtime, previous: ConfigKV | None = None
) -> ConfigKV:
    """Compile a snapshot, reusing the previous KV's bundle of every unchanged site and
    its compilation of every unchanged experiment on no site."""
    reusable = {} if previous is None else previous.by_public_key
    bundles = []
    for site in snapshot.sites:
        digest = xxhash.xxh3_64_hexdigest(_site_encoder.encode(site))
        old = reusable.get(site.public_key)
        if old is None or old.digest != digest:
            old = SiteBundle(site, digest, runtime)
        bundles.append(old)
    compiled = {} if previous is None else previous.assignable_by_id
    siteless = [
        (group.workspace_id, _reuse_or_compile(compiled, config))
        for group in (*snapshot.siteless, *snapshot.inactive)
        for config in group.experiments
    ]
    return ConfigKV(
        snapshot.version, bundles, snapshot.api_keys, snapshot.demo_public_key, siteless
    )


def _reuse_or_compile(
    compiled: dict[str, Assignable], config: ExperimentConfig
) -> CompiledExperiment:
    old = compiled.get(config.id)
    if old is not None and old[1][0].config == config:
        return old[1][0]
    return CompiledExperiment(config)


class SnapshotSource(Protocol):
    """Where a worker reads the served config from (the store here; the control plane
    over HTTP for remote edge nodes)."""

    def version(self) -> int:
        """The latest config version, cheaply."""
        ...

    def snapshot(self) -> ConfigSnapshot:
        """The whole config at its latest version."""
        ...


class CatchUp(Protocol):
    """Brings a request's KV up to what the server has written (`edge.serving.KVCatchUp`).

    ``board_version`` is the latest version a control-plane write of this server posted
    (`edge.version_board`; 0 where nothing posts, as on an edge node): a read of shared
    memory, so a hot route compares it with its KV's version on every request and calls
    `current` only when it is behind."""

    board_version: Callable[[], int]

    async def __call__(self, kv: ConfigKV) -> tuple[ConfigKV, bool]:
        """For a request with an API key: the KV to answer with, and whether it is the
        store's latest (then it answers for API keys)."""
        ...

    async def current(self, kv: ConfigKV) -> ConfigKV:
        """``kv``, or the KV at the board's version when the board is ahead of it."""
        ...

    async def after_miss(self, kv: ConfigKV) -> ConfigKV:
        """After ``kv`` knew no such site or experiment: the KV to look again in (a newer
        one when the store has moved past it; the store is asked at a bounded rate)."""
        ...


class KVHolder:
    """The reference to the current KV; ``kv`` is None until the first load."""

    __slots__ = ("kv",)

    def __init__(self) -> None:
        self.kv: ConfigKV | None = None

    def require(self) -> ConfigKV:
        """The current KV, or a 503 (retry in a second) while the first one loads."""
        kv = self.kv
        if kv is None:
            raise ServiceUnavailable("the edge is loading its config; retry in a second")
        return kv


class ConfigFollower:
    """Keeps a `KVHolder` on the latest config version of a `SnapshotSource`."""

    def __init__(
        self,
        source: SnapshotSource,
        runtime: Runtime,
        holder: KVHolder,
        interval: float = 0.2,
    ) -> None:
        self.source = source
        self.runtime = runtime
        self.holder = holder
        self.interval = interval
        # The poll and a request's catch-up (edge.serving) may load at once: one at a
        # time, so a slower load of an older snapshot never replaces a newer KV.
        self._loading = threading.Lock()

    def load(self) -> ConfigKV:
        """Build the KV of the source's current snapshot and make it current."""
        with self._loading:
            kv = build_kv(self.source.snapshot(), self.runtime, self.holder.kv)
            self.holder.kv = kv
        return kv

    async def follow(self) -> None:
        """Poll for new versions until cancelled. A failing rebuild keeps the current
        KV serving and is retried on the next poll."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                current = self.holder.kv
                if current is None or self.source.version() != current.version:
                    kv = await asyncio.to_thread(self.load)
                    log.info("config version %d loaded", kv.version)
            except Exception:
                log.exception("config reload failed; still serving the previous version")
