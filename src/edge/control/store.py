"""The control-plane store: one SQLite file in WAL mode.

Writers take ``BEGIN IMMEDIATE`` transactions so two processes never interleave a
change; readers (every edge worker) never block writers. What the edge serves is read
through `edge.control.snapshot.load_snapshot`; the schema triggers bump the config
version on every change that affects it.

The rows it writes and reads are `edge.control.records`'s Structs.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from edge.assign import weights_to_bps
from edge.config import ANTI_FLICKER_MS, MAX_ANTI_FLICKER_MS, MutationConfig
from edge.control.auth import key_digest, key_prefix, new_api_key
from edge.control.records import (
    ApiKeyCredential,
    ApiKeyInfo,
    ApiKeyRecord,
    ExperimentRecord,
    ExperimentStatus,
    Goal,
    IssuedKey,
    NewExperiment,
    Site,
    SiteRecord,
    VariantRecord,
    Workspace,
    utc_now,
)
from edge.control.schema import migrate
from edge.errors import Conflict, InvalidRequest, NotFound
from edge.urlglob import validate_pattern

__all__ = ["Store", "normalize_site_url"]

_API_KEY_INFO_COLUMNS = (
    "k.id, k.workspace_id, k.name, k.prefix, k.created_at, w.name, k.last_used_at, k.revoked_at"
)


_SITE_RECORD_COLUMNS = (
    "id, workspace_id, name, url, domain, public_key, created_at, anti_flicker_ms, "
    "platform, updated_at"
)


# The record's fields read from a row (all but variants and goals), and their columns.
_EXPERIMENT_RECORD_FIELDS = ExperimentRecord.__struct_fields__[:-2]
_EXPERIMENT_RECORD_COLUMNS = (
    ", ".join(f"e.{name}" for name in _EXPERIMENT_RECORD_FIELDS[:-2]) + ", s.name, s.url"
)
_variant_changes = msgspec.json.Decoder(tuple[MutationConfig, ...])
_variant_config: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def _new_id() -> str:
    return str(uuid.uuid4())


def normalize_site_url(url: str) -> tuple[str, str]:
    """The site URL with a scheme (https:// added when missing) and its lower-case domain."""
    text = url.strip()
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise InvalidRequest(
            f"url {url[:200]!r} has a space or a control character; pass e.g. https://example.com"
        )
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port  # a ValueError too when it is not a number from 0 to 65535
    except ValueError as exc:  # e.g. "Invalid IPv6 URL", "Port out of range 0-65535"
        raise InvalidRequest(
            f"url {url[:200]!r} is not a website address ({exc}); pass e.g. https://example.com"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"url {url!r} is not a website address; pass e.g. https://example.com")
    domain = parts.hostname.lower()
    host = f"[{domain}]" if ":" in domain else domain  # an IPv6 address keeps its brackets
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path or '/'}", domain


class Store:
    """A connection to the store file. One per thread; cheap to open."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA busy_timeout = 5000")
        migrate(self.conn)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first statement.
        Inside another transaction it joins that one, so store methods compose."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def config_version(self) -> int:
        """The current config version; it grows with every change the edge serves."""
        (version,) = self.conn.execute("SELECT version FROM config_version").fetchone()
        return int(version)

    def get_meta(self, key: str) -> str | None:
        """A value of the store's own key/value table."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the store's own key/value table."""
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # workspaces and keys

    def create_workspace(self, name: str, plan: str = "enterprise") -> Workspace:
        """Create a workspace; its name is unique."""
        ws = Workspace(id=_new_id(), name=name, plan=plan, created_at=utc_now())
        try:
            self.conn.execute(
                "INSERT INTO workspaces (id, name, plan, created_at) VALUES (?, ?, ?, ?)",
                (ws.id, ws.name, ws.plan, ws.created_at),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"a workspace named {name!r} already exists") from None
        return ws

    def is_public_key(self, key: str) -> bool:
        """Whether ``key`` is a site's public (snippet) key."""
        found = self.conn.execute("SELECT 1 FROM sites WHERE public_key = ?", (key,))
        return found.fetchone() is not None

    def set_workspace_plan(self, workspace_id: str, plan: str) -> None:
        """Move a workspace to another plan (its limits follow on the next request)."""
        self.conn.execute("UPDATE workspaces SET plan = ? WHERE id = ?", (plan, workspace_id))

    def workspace_by_name(self, name: str) -> Workspace | None:
        """The workspace of that name, if any."""
        row = self.conn.execute(
            "SELECT id, name, plan, created_at FROM workspaces WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else Workspace(*row)

    def issue_api_key(self, workspace_id: str, name: str = "default") -> IssuedKey:
        """Issue a key for a workspace and return the secret, which is not stored."""
        key = new_api_key()
        record = ApiKeyRecord(
            id=_new_id(),
            workspace_id=workspace_id,
            name=name,
            prefix=key_prefix(key),
            created_at=utc_now(),
        )
        self.conn.execute(
            "INSERT INTO api_keys (id, workspace_id, name, prefix, sha256, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.id, workspace_id, name, record.prefix, key_digest(key), record.created_at),
        )
        return IssuedKey(record=record, key=key)

    def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key; the edge stops accepting it at the next config version."""
        cur = self.conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (utc_now(), key_id),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no active API key with id {key_id!r}")

    # sites

    def create_site(
        self,
        workspace_id: str,
        url: str,
        name: str | None = None,
        anti_flicker_ms: int = ANTI_FLICKER_MS,
    ) -> Site:
        """Register a site; the URL gets a scheme if it lacks one, the name defaults to the
        domain. A second site with the same domain in a workspace is a conflict.
        ``anti_flicker_ms`` bounds how long its snippet hides a page (0 never hides)."""
        if not 0 <= anti_flicker_ms <= MAX_ANTI_FLICKER_MS:
            raise InvalidRequest(
                f"anti_flicker_ms must be between 0 and {MAX_ANTI_FLICKER_MS} (milliseconds)"
            )
        normalized, domain = normalize_site_url(url)
        now = utc_now()
        site = Site(
            id=_new_id(),
            workspace_id=workspace_id,
            name=name or domain,
            url=normalized,
            domain=domain,
            public_key=uuid.uuid4().hex,
            created_at=now,
            anti_flicker_ms=anti_flicker_ms,
        )
        try:
            self.conn.execute(
                "INSERT INTO sites (id, workspace_id, name, url, domain, public_key, "
                "created_at, updated_at, anti_flicker_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    site.id, workspace_id, site.name, site.url, domain, site.public_key, now,
                    now, anti_flicker_ms,
                ),
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise Conflict(f"a site for {domain} is already registered") from None
        return site

    def get_site(self, site_id: str) -> Site:
        """One site by id."""
        row = self.conn.execute(
            "SELECT id, workspace_id, name, url, domain, public_key, created_at, "
            "anti_flicker_ms FROM sites WHERE id = ?",
            (site_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no site with id {site_id!r}")
        return Site(*row)

    # experiments

    def create_experiment(self, new: NewExperiment) -> str:
        """Create a draft experiment with its variants and goals; returns its id."""
        if len(new.variants) < 2:
            raise InvalidRequest("an experiment needs at least 2 variants: a control and one more")
        weights = weights_to_bps([v.weight for v in new.variants])
        url_pattern = validate_pattern(new.url_pattern)
        goal_patterns = [validate_pattern(g.url_pattern) for g in new.goals]
        if not 0 <= new.coverage_bps <= 10_000:
            raise InvalidRequest("coverage_bps must be between 0 and 10000")
        experiment_id, now = _new_id(), utc_now()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO experiments (id, workspace_id, site_id, kind, name, hypothesis, "
                "target_url, url_pattern, coverage_bps, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    experiment_id, new.workspace_id, new.site_id, new.kind, new.name,
                    new.hypothesis, new.target_url, url_pattern, new.coverage_bps, now, now,
                ),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO variants (id, experiment_id, position, name, is_control, "
                "weight_bps, changes, redirect_url, config, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        _new_id(), experiment_id, i, v.name, int(i == 0), weights[i],
                        msgspec.json.encode(v.changes).decode(), v.redirect_url,
                        None if v.config is None else msgspec.json.encode(v.config).decode(),
                        now,
                    )
                    for i, v in enumerate(new.variants)
                ],
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO goals (id, experiment_id, position, name, type, selector, "
                "url_pattern, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (_new_id(), experiment_id, i, g.name, g.type, g.selector, pattern, now)
                    for i, (g, pattern) in enumerate(zip(new.goals, goal_patterns, strict=True))
                ],
            )
        return experiment_id

    def set_experiment_status(self, experiment_id: str, status: ExperimentStatus) -> None:
        """Move an experiment to a status. The lifecycle rules live in the control API;
        this only records the move and its timestamps."""
        now = utc_now()
        cur = self.conn.execute(
            "UPDATE experiments SET status = ?, updated_at = ?, "
            "started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?) "
            "ELSE started_at END, "
            "ended_at = CASE WHEN ? = 'completed' THEN ? ELSE ended_at END WHERE id = ?",
            (status, now, status, now, status, now, experiment_id),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no experiment with id {experiment_id!r}")

    def set_variant_weights(self, experiment_id: str, weights: Sequence[float]) -> None:
        """Re-split traffic: relative weights in variant order, normalised to basis points."""
        with self.transaction() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM variants WHERE experiment_id = ? ORDER BY position",
                    (experiment_id,),
                )
            ]
            if not ids:
                raise NotFound(f"no experiment with id {experiment_id!r}")
            if len(ids) != len(weights):
                raise InvalidRequest(
                    f"the experiment has {len(ids)} variants; pass {len(ids)} weights"
                )
            conn.executemany(
                "UPDATE variants SET weight_bps = ? WHERE id = ?",
                list(zip(weights_to_bps(weights), ids, strict=True)),
            )

    # -- sites and keys (API) --

    def api_keys_with_prefix(self, prefix: str) -> list[ApiKeyCredential]:
        """The keys whose display prefix is ``prefix`` (almost always one), revoked
        ones too, so the caller can tell a revoked key from an unknown one."""
        return [
            ApiKeyCredential(*row)
            for row in self.conn.execute(
                "SELECT id, workspace_id, sha256, last_used_at, revoked_at FROM api_keys "
                "WHERE prefix = ?",
                (prefix,),
            )
        ]

    def touch_api_key(self, key_id: str, at: str) -> None:
        """Record that a key was used at ``at``; it does not bump the config version."""
        self.conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    def list_api_keys(self, workspace_id: str | None = None) -> list[ApiKeyInfo]:
        """Keys (of one workspace, or all), oldest first; never their secrets."""
        return [
            ApiKeyInfo(*row)
            for row in self.conn.execute(
                f"SELECT {_API_KEY_INFO_COLUMNS} FROM api_keys k "
                "JOIN workspaces w ON w.id = k.workspace_id "
                "WHERE ? IS NULL OR k.workspace_id = ? ORDER BY k.created_at, k.rowid",
                (workspace_id, workspace_id),
            )
        ]

    def find_api_keys(self, id_or_prefix: str) -> list[ApiKeyInfo]:
        """The keys whose id or display prefix is ``id_or_prefix``."""
        return [
            ApiKeyInfo(*row)
            for row in self.conn.execute(
                f"SELECT {_API_KEY_INFO_COLUMNS} FROM api_keys k "
                "JOIN workspaces w ON w.id = k.workspace_id "
                "WHERE k.id = ? OR k.prefix = ? ORDER BY k.created_at, k.rowid",
                (id_or_prefix, id_or_prefix),
            )
        ]

    def get_workspace(self, workspace_id: str) -> Workspace:
        """One workspace by id."""
        row = self.conn.execute(
            "SELECT id, name, plan, created_at FROM workspaces WHERE id = ?", (workspace_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no workspace with id {workspace_id!r}")
        return Workspace(*row)

    def list_sites(
        self, workspace_id: str, limit: int, offset: int
    ) -> tuple[list[SiteRecord], int]:
        """A page of a workspace's sites, newest first, and how many it has in all."""
        sites = [
            SiteRecord(*row)
            for row in self.conn.execute(
                f"SELECT {_SITE_RECORD_COLUMNS} FROM sites WHERE workspace_id = ? "
                "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (workspace_id, limit, offset),
            )
        ]
        return sites, self.count_sites(workspace_id)

    def count_sites(self, workspace_id: str) -> int:
        """How many sites a workspace has."""
        (count,) = self.conn.execute(
            "SELECT count(*) FROM sites WHERE workspace_id = ?", (workspace_id,)
        ).fetchone()
        return int(count)

    def find_site(self, site_id: str, workspace_id: str) -> SiteRecord | None:
        """A site of a workspace; None when that workspace has no such site (another
        workspace's is not there either)."""
        row = self.conn.execute(
            f"SELECT {_SITE_RECORD_COLUMNS} FROM sites WHERE id = ? AND workspace_id = ?",
            (site_id, workspace_id),
        ).fetchone()
        return None if row is None else SiteRecord(*row)

    def site_by_domain(self, workspace_id: str, domain: str) -> SiteRecord | None:
        """The workspace's site for a (lower-case) domain, if it has one."""
        row = self.conn.execute(
            f"SELECT {_SITE_RECORD_COLUMNS} FROM sites WHERE workspace_id = ? AND domain = ?",
            (workspace_id, domain),
        ).fetchone()
        return None if row is None else SiteRecord(*row)

    # -- experiments (API) --

    def experiment_record(
        self, experiment_id: str, workspace_id: str | None
    ) -> ExperimentRecord | None:
        """An experiment of a workspace as the API shows it; None when that workspace has
        no such experiment (another workspace's is not there either). ``workspace_id=None``
        finds it in any workspace: only for a caller that proved access another way (a
        signed report link)."""
        records = self._experiment_records(
            "e.id = ? AND (? IS NULL OR e.workspace_id = ?)",
            (experiment_id, workspace_id, workspace_id),
        )
        return records[0] if records else None

    def list_experiment_records(
        self,
        workspace_id: str,
        *,
        site_id: str | None,
        status: ExperimentStatus | None,
        limit: int,
        offset: int,
    ) -> tuple[list[ExperimentRecord], int]:
        """A page of a workspace's experiments, newest first, optionally of one site and
        one status, and how many match in all."""
        where = (
            "e.workspace_id = ? AND (? IS NULL OR e.site_id = ?) AND (? IS NULL OR e.status = ?)"
        )
        args = (workspace_id, site_id, site_id, status, status)
        with self._read_snapshot():
            (total,) = self.conn.execute(
                f"SELECT count(*) FROM experiments e WHERE {where}", args
            ).fetchone()
            records = self._experiment_records(
                f"{where} ORDER BY e.created_at DESC, e.rowid DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
        return records, int(total)

    def running_experiment_records(self) -> list[ExperimentRecord]:
        """Every workspace's running experiments, oldest start first (one read)."""
        return self._experiment_records("e.status = 'running' ORDER BY e.started_at, e.id", ())

    def set_experiment_targets(
        self,
        experiment_id: str,
        sample_size: int | None,
        primary_metric: str | None,
        confidence: float | None,
        max_cost_increase: float | None = None,
    ) -> None:
        """Record what the results judge an experiment by (ClawSplit's sample_size,
        primary_metric and confidence, and the cost guardrail: how much more a variant's
        mean cost may be than the control's, 0.3 = 30%); None keeps the defaults of the
        analysis."""
        self.conn.execute(
            "UPDATE experiments SET sample_size = ?, primary_metric = ?, confidence = ?, "
            "max_cost_increase = ?, updated_at = ? WHERE id = ?",
            (sample_size, primary_metric, confidence, max_cost_increase, utc_now(), experiment_id),
        )

    def delete_experiment(self, experiment_id: str) -> None:
        """Delete an experiment with its variants and goals (the lifecycle rules, which
        statuses may be deleted, live in `edge.control.lifecycle`)."""
        self.conn.execute("DELETE FROM experiments WHERE id = ?", (experiment_id,))

    def promote_variant(self, experiment_id: str, variant_id: str) -> None:
        """Give a variant all the traffic, record it as the winner and complete the
        experiment, in one transaction."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE variants SET weight_bps = CASE WHEN id = ? THEN 10000 ELSE 0 END "
                "WHERE experiment_id = ?",
                (variant_id, experiment_id),
            )
            conn.execute(
                "UPDATE experiments SET winner_variant_id = ? WHERE id = ?",
                (variant_id, experiment_id),
            )
            self.set_experiment_status(experiment_id, "completed")

    @contextmanager
    def _read_snapshot(self) -> Iterator[None]:
        """Reads from one snapshot: a read transaction, or the caller's transaction."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def _experiment_records(self, where: str, args: Sequence[Any]) -> list[ExperimentRecord]:
        with self._read_snapshot():
            rows = self.conn.execute(
                f"SELECT {_EXPERIMENT_RECORD_COLUMNS} FROM experiments e "
                f"LEFT JOIN sites s ON s.id = e.site_id WHERE {where}",
                args,
            ).fetchall()
            ids = [row[0] for row in rows]
            marks = ", ".join("?" * len(ids))
            variants: dict[str, list[VariantRecord]] = {i: [] for i in ids}
            for exp_id, vid, name, control, weight, changes, redirect, config in self.conn.execute(
                "SELECT experiment_id, id, name, is_control, weight_bps, changes, redirect_url, "
                f"config FROM variants WHERE experiment_id IN ({marks}) "
                "ORDER BY experiment_id, position",
                ids,
            ):
                variants[exp_id].append(
                    VariantRecord(
                        vid, name, bool(control), weight,
                        changes=_variant_changes.decode(changes),
                        redirect_url=redirect,
                        config=None if config is None else _variant_config.decode(config),
                    )
                )  # fmt: skip
            goals: dict[str, list[Goal]] = {i: [] for i in ids}
            for exp_id, *goal in self.conn.execute(
                "SELECT experiment_id, id, name, type, selector, url_pattern FROM goals "
                f"WHERE experiment_id IN ({marks}) ORDER BY experiment_id, position",
                ids,
            ):
                goals[exp_id].append(Goal(*goal))
        return [
            ExperimentRecord(
                **dict(zip(_EXPERIMENT_RECORD_FIELDS, row, strict=True)),
                variants=tuple(variants[row[0]]),
                goals=tuple(goals[row[0]]),
            )
            for row in rows
        ]

    # -- limits --

    def count_request(self, key_id: str, window_start: int, weight: int = 1) -> int:
        """Count a request of ``key_id`` (as ``weight`` requests) in the window starting
        at ``window_start`` and return how many it has made in it (this one included).
        One statement, so concurrent workers never lose a count; a new window starts
        again at ``weight``."""
        (requests,) = self.conn.execute(
            "INSERT INTO rate_windows (key_id, window_start, requests) VALUES (?, ?, ?) "
            "ON CONFLICT (key_id) DO UPDATE SET "
            "requests = CASE WHEN window_start = excluded.window_start "
            "THEN requests + excluded.requests ELSE excluded.requests END, "
            "window_start = excluded.window_start "
            "RETURNING requests",
            (key_id, window_start, weight),
        ).fetchone()
        return int(requests)
