"""Reading the served configuration out of the store as one consistent `ConfigSnapshot`."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

import msgspec

from edge.api_keys import digests_match, key_prefix
from edge.assign import BUCKETS
from edge.config import (
    ConfigSnapshot,
    ExperimentConfig,
    GoalConfig,
    SiteConfig,
    SitelessExperiments,
    VariantConfig,
)
from edge.control.records import ExperimentRecord
from edge.control.store import Store

__all__ = ["DEMO_SITE_META_KEY", "StoreKeyLedger", "StoreSource", "load_snapshot"]

DEMO_SITE_META_KEY = "demo_site_id"


def load_snapshot(store: Store) -> ConfigSnapshot:
    """The served experiments of every site and of no site, those that stopped running
    without a deployed winner, and the active API keys, read in one transaction so the
    version and the rows agree."""
    with store.read_snapshot():
        version = store.config_version()
        served = store.served_experiment_records()
        sites = store.all_sites()
        api_keys = store.active_api_keys()
        demo_site_id = store.get_meta(DEMO_SITE_META_KEY)
    # By site id; an experiment on no site (an agent experiment made without one) is
    # served by workspace instead, for assignment by experiment id, and so is one no
    # longer running without a deployed winner (its control): no snippet carries it.
    experiments: defaultdict[str, list[ExperimentConfig]] = defaultdict(list)
    siteless: defaultdict[str, list[ExperimentConfig]] = defaultdict(list)
    inactive: defaultdict[str, list[ExperimentConfig]] = defaultdict(list)
    for record in served:
        config = _served_config(record)
        if record.status != "running" and record.winner_variant_id is None:
            inactive[record.workspace_id].append(config)
        elif record.site_id is None:
            siteless[record.workspace_id].append(config)
        else:
            experiments[record.site_id].append(config)
    return ConfigSnapshot(
        version=version,
        sites=tuple(
            SiteConfig(
                id=site.id,
                workspace_id=site.workspace_id,
                public_key=site.public_key,
                url=site.url,
                experiments=tuple(experiments[site.id]),
                anti_flicker_ms=site.anti_flicker_ms,
            )
            for site in sites
        ),
        api_keys=tuple(api_keys),
        demo_public_key=next((s.public_key for s in sites if s.id == demo_site_id), None),
        siteless=_by_workspace(siteless),
        inactive=_by_workspace(inactive),
    )


def _by_workspace(
    experiments: defaultdict[str, list[ExperimentConfig]],
) -> tuple[SitelessExperiments, ...]:
    return tuple(
        SitelessExperiments(workspace_id, tuple(configs))
        for workspace_id, configs in sorted(experiments.items())
    )


def _served_weights(record: ExperimentRecord) -> tuple[int, ...]:
    """The weights the edge assigns with: the experiment's while it runs; after, all on
    the one variant every unit gets: its deployed winner (promotion already put all the
    weight there), else its control."""
    if record.status == "running" or record.winner_variant_id is not None:
        return tuple(v.weight_bps for v in record.variants)
    control = next((i for i, v in enumerate(record.variants) if v.is_control), 0)
    return tuple(BUCKETS if i == control else 0 for i in range(len(record.variants)))


def experiment_config(record: ExperimentRecord) -> ExperimentConfig:
    """An experiment as configured, as the edge serves it while it runs: its weights,
    goals and coverage (a preview shows any experiment so, `edge.control.previews`)."""
    return ExperimentConfig(
        id=record.id,
        kind=record.kind,
        variants=tuple(
            VariantConfig(
                id=v.id,
                name=v.name,
                control=v.is_control,
                weight=v.weight_bps,
                changes=v.changes,
                redirect_url=v.redirect_url,
                config=v.config,
            )
            for v in record.variants
        ),
        goals=tuple(
            GoalConfig(
                id=g.id, name=g.name, type=g.type, selector=g.selector, url_pattern=g.url_pattern
            )
            for g in record.goals
        ),
        url_pattern=record.url_pattern,
        coverage=record.coverage_bps,
        deployed=record.winner_variant_id is not None,
        status="running",
        site_id=record.site_id,
    )


def _served_config(record: ExperimentRecord) -> ExperimentConfig:
    """An experiment as the edge serves it. One that is not running (deployed, paused,
    completed or archived) serves one variant to every unit, whatever its coverage, and
    its snippet config no goals: nothing counts. Its goals stay in the config for the
    late events of its grace period (`ExperimentConfig.takes_events`)."""
    assert record.status != "draft", "a draft is never served (Store.served_experiment_records)"
    config = experiment_config(record)
    if record.status == "running":
        return config
    variants = tuple(
        msgspec.structs.replace(v, weight=weight)
        for v, weight in zip(config.variants, _served_weights(record), strict=True)
    )
    ended_at = None if record.ended_at is None else datetime.fromisoformat(record.ended_at)
    return msgspec.structs.replace(
        config,
        variants=variants,
        coverage=BUCKETS,
        status=record.status,
        ended_at=None if ended_at is None else ended_at.timestamp(),
    )


class StoreSource:
    """The store as a `edge.kv.SnapshotSource`: a read connection of its own."""

    def __init__(self, path: Path) -> None:
        self.store = Store(path)

    def version(self) -> int:
        """The store's config version (one indexed row; microseconds)."""
        return self.store.config_version()

    def snapshot(self) -> ConfigSnapshot:
        """The whole served config at the current version."""
        return load_snapshot(self.store)

    def close(self) -> None:
        """Close the connection."""
        self.store.close()


class StoreKeyLedger:
    """The store as a worker's `edge.bearer.KeyLedger`: a read connection of its own,
    opened on first use by the thread that asks (the worker's event loop), and only
    used there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: Store | None = None

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self.path)
        return self._store

    def version(self) -> int:
        """The store's config version."""
        return self._open().config_version()

    def workspace_of_key(self, key: str) -> str | None:
        """The workspace of an active key as the store has it now."""
        for found in self._open().api_keys_with_prefix(key_prefix(key)):
            if found.revoked_at is None and digests_match(key, found.sha256):
                return found.workspace_id
        return None

    def close(self) -> None:
        """Close the connection, if one was opened."""
        if self._store is not None:
            self._store.close()
