"""Reading the served configuration out of the store as one consistent `ConfigSnapshot`."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec

from edge.api_keys import digests_match, key_prefix
from edge.config import (
    ApiKeyEntry,
    ConfigSnapshot,
    ExperimentConfig,
    GoalConfig,
    MutationConfig,
    SiteConfig,
    SitelessExperiments,
    VariantConfig,
)
from edge.control.store import Store

__all__ = ["DEMO_SITE_META_KEY", "StoreKeyLedger", "StoreSource", "load_snapshot"]

DEMO_SITE_META_KEY = "demo_site_id"

_changes_decoder = msgspec.json.Decoder(tuple[MutationConfig, ...])
_config_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


# What the edge serves: running experiments, and completed ones whose winner was promoted
# (deployed: the promotion gave the winner all the weight, so every unit gets it; their
# goals are not served, and nothing counts).
_SERVED = "(e.status = 'running' OR (e.status = 'completed' AND e.winner_variant_id IS NOT NULL))"


def load_snapshot(conn: sqlite3.Connection) -> ConfigSnapshot:
    """The served experiments of every site and of no site, and the active API keys,
    read in one transaction so the version and the rows agree."""
    conn.execute("BEGIN")
    try:
        return _read(conn)
    finally:
        conn.execute("COMMIT")


def _read(conn: sqlite3.Connection) -> ConfigSnapshot:
    (version,) = conn.execute("SELECT version FROM config_version").fetchone()

    variants: defaultdict[str, list[VariantConfig]] = defaultdict(list)
    for exp_id, vid, name, is_control, weight, changes, redirect, config in conn.execute(
        "SELECT v.experiment_id, v.id, v.name, v.is_control, v.weight_bps, v.changes, "
        "v.redirect_url, v.config FROM variants v JOIN experiments e ON e.id = v.experiment_id "
        f"WHERE {_SERVED} ORDER BY v.experiment_id, v.position"
    ):
        variants[exp_id].append(
            VariantConfig(
                id=vid,
                name=name,
                control=bool(is_control),
                weight=weight,
                changes=_changes_decoder.decode(changes),
                redirect_url=redirect,
                config=None if config is None else _config_decoder.decode(config),
            )
        )

    goals: defaultdict[str, list[GoalConfig]] = defaultdict(list)
    for exp_id, gid, name, gtype, selector, pattern in conn.execute(
        "SELECT g.experiment_id, g.id, g.name, g.type, g.selector, g.url_pattern "
        "FROM goals g JOIN experiments e ON e.id = g.experiment_id "
        "WHERE e.status = 'running' ORDER BY g.experiment_id, g.position"
    ):
        goals[exp_id].append(
            GoalConfig(id=gid, name=name, type=gtype, selector=selector, url_pattern=pattern)
        )

    # By site id; an experiment on no site (an agent experiment made without one) is
    # served by workspace instead, for assignment by experiment id.
    experiments: defaultdict[str, list[ExperimentConfig]] = defaultdict(list)
    siteless: defaultdict[str, list[ExperimentConfig]] = defaultdict(list)
    for exp_id, workspace_id, site_id, kind, pattern, coverage, status in conn.execute(
        "SELECT e.id, e.workspace_id, e.site_id, e.kind, e.url_pattern, e.coverage_bps, "
        f"e.status FROM experiments e WHERE {_SERVED} ORDER BY e.started_at, e.id"
    ):
        config = ExperimentConfig(
            id=exp_id,
            kind=kind,
            variants=tuple(variants[exp_id]),
            goals=tuple(goals[exp_id]),
            url_pattern=pattern,
            coverage=coverage,
            deployed=status == "completed",
        )
        if site_id is None:
            siteless[workspace_id].append(config)
        else:
            experiments[site_id].append(config)

    sites = tuple(
        SiteConfig(
            id=site_id,
            workspace_id=workspace_id,
            public_key=public_key,
            url=url,
            experiments=tuple(experiments[site_id]),
            anti_flicker_ms=anti_flicker_ms,
        )
        for site_id, workspace_id, public_key, url, anti_flicker_ms in conn.execute(
            "SELECT id, workspace_id, public_key, url, anti_flicker_ms FROM sites ORDER BY id"
        )
    )
    api_keys = tuple(
        ApiKeyEntry(prefix=prefix, sha256=digest, workspace_id=workspace_id)
        for prefix, digest, workspace_id in conn.execute(
            "SELECT prefix, sha256, workspace_id FROM api_keys WHERE revoked_at IS NULL"
        )
    )
    demo = conn.execute(
        "SELECT s.public_key FROM meta m JOIN sites s ON s.id = m.value WHERE m.key = ?",
        (DEMO_SITE_META_KEY,),
    ).fetchone()
    return ConfigSnapshot(
        version=version,
        sites=sites,
        api_keys=api_keys,
        demo_public_key=None if demo is None else demo[0],
        siteless=tuple(
            SitelessExperiments(workspace_id, tuple(configs))
            for workspace_id, configs in sorted(siteless.items())
        ),
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
        return load_snapshot(self.store.conn)

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
