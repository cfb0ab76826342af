"""The SQLite schema of the control-plane store, and its migrations.

The schema is laid out for the whole control plane (workspaces, keys, sites, experiments,
variants, goals); later features add tables as new migrations, never by editing an
applied one. ``PRAGMA user_version`` records how many migrations a file has.

Every table whose rows change what the edge serves carries triggers that bump the single
``config_version`` row, so no code path can change the served config and forget to tell
the edge. API keys bump it on create and revoke only: ``last_used_at`` updates must not.
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "insert_sql", "migrate"]

_SERVED_TABLES = ("sites", "experiments", "variants", "goals")


def _bump_triggers() -> str:
    bump = "BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;"
    parts = []
    for table in _SERVED_TABLES:
        for event in ("INSERT", "UPDATE", "DELETE"):
            parts.append(
                f"CREATE TRIGGER {table}_{event.lower()}_bumps_config "
                f"AFTER {event} ON {table} {bump}"
            )
    for event in ("INSERT", "DELETE", "UPDATE OF revoked_at"):
        name = event.split()[0].lower()
        parts.append(
            f"CREATE TRIGGER api_keys_{name}_bumps_config AFTER {event} ON api_keys {bump}"
        )
    return "\n".join(parts)


_V1 = f"""
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    plan       TEXT NOT NULL DEFAULT 'enterprise',
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    sha256       TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_keys_workspace ON api_keys(workspace_id);

CREATE TABLE sites (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    url          TEXT NOT NULL,
    domain       TEXT NOT NULL,
    platform     TEXT,
    public_key   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (workspace_id, domain)
);

CREATE TABLE experiments (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    site_id        TEXT REFERENCES sites(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('web', 'agent')),
    name           TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'draft'
                   CHECK (status IN ('draft', 'running', 'paused', 'completed', 'archived')),
    hypothesis     TEXT,
    target_url     TEXT,
    url_pattern    TEXT,
    coverage_bps   INTEGER NOT NULL DEFAULT 10000 CHECK (coverage_bps BETWEEN 0 AND 10000),
    sample_size    INTEGER,
    primary_metric TEXT,
    confidence     REAL,
    winner_variant_id TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    started_at     TEXT,
    ended_at       TEXT
);
CREATE INDEX experiments_site_status ON experiments(site_id, status);
CREATE INDEX experiments_workspace_status ON experiments(workspace_id, status);

CREATE TABLE variants (
    id            TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    name          TEXT NOT NULL,
    is_control    INTEGER NOT NULL CHECK (is_control IN (0, 1)),
    weight_bps    INTEGER NOT NULL CHECK (weight_bps BETWEEN 0 AND 10000),
    changes       TEXT NOT NULL DEFAULT '[]',
    redirect_url  TEXT,
    config        TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (experiment_id, position)
);

CREATE TABLE goals (
    id            TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    name          TEXT NOT NULL,
    type          TEXT NOT NULL,
    selector      TEXT,
    url_pattern   TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (experiment_id, position)
);

{_bump_triggers()}
"""

# Version 2: how long a site's snippet may hide a page while a change is pending.
_V2 = """
ALTER TABLE sites ADD COLUMN anti_flicker_ms INTEGER NOT NULL DEFAULT 250
    CHECK (anti_flicker_ms BETWEEN 0 AND 5000);
"""

# Version 3: webhook endpoints and their delivery log (edge.control.webhooks). Neither
# changes what the edge serves, so neither bumps config_version.
#
# ``webhooks.secret`` is kept as issued, unlike an API key's digest: an API key is only
# ever *checked* (a digest suffices), but the signing secret must *sign* every delivery,
# and an HMAC cannot be computed from a hash of its key. Whoever can read this file can
# already send as the control plane, so encrypting it with a key kept beside it would
# protect nothing; the API shows the secret once, on creation, and never again.
#
# A delivery row is one event for one endpoint; its ``payload`` is the exact body sent,
# so every retry carries (and signs) the same bytes. ``next_attempt_at`` (Unix seconds)
# is when a pending row is due, and for a row a dispatcher has claimed ('delivering'),
# when its claim lapses: a claimed row whose process died is due again after that.
# Each attempt appends a webhook_attempts row, the log a user reads.
_V3 = """
CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    events       TEXT NOT NULL,
    secret       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    deleted_at   TEXT
);
CREATE INDEX webhooks_workspace ON webhooks(workspace_id, deleted_at);

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    webhook_id       TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL,
    event            TEXT NOT NULL,
    payload          BLOB NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivering', 'delivered', 'failed',
                                       'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);

CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    UNIQUE (delivery_id, number)
);
"""

# Version 4: the per-key request counter of the plans' rate limit (edge.control.plans): one
# row per key, its current one-minute window (start, Unix seconds) and the requests counted
# in it. In the store, not in memory, so that every worker process counts the same
# requests; it does not change what the edge serves, so it does not bump config_version.
_V4 = """
CREATE TABLE rate_windows (
    key_id       TEXT PRIMARY KEY REFERENCES api_keys(id) ON DELETE CASCADE,
    window_start INTEGER NOT NULL,
    requests     INTEGER NOT NULL
);
"""

# Version 5: the credits ledger (edge.control.credits) and the audit trail
# (edge.control.audit). ``workspaces.credits`` is the balance; every debit and grant also
# appends a ``credit_ledger`` row with the balance after it, in the same transaction, so the
# ledger always sums to the balance. An audit row names who made a change (the API key, or
# NULL for the command line), what it was and when; neither table changes what the edge
# serves.
_V5 = """
ALTER TABLE workspaces ADD COLUMN credits INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0);

CREATE TABLE credit_ledger (
    id           INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_id       TEXT REFERENCES api_keys(id) ON DELETE SET NULL,
    delta        INTEGER NOT NULL,
    balance      INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX credit_ledger_workspace ON credit_ledger(workspace_id, id);

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_id       TEXT REFERENCES api_keys(id) ON DELETE SET NULL,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    detail       TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX audit_log_workspace ON audit_log(workspace_id, id);
CREATE INDEX audit_log_target ON audit_log(workspace_id, target_id, id);
"""

# Version 6: A/B test ideas (edge.control.ideas), in the reference's shape. An idea's
# ``mockup_data`` is JSON; its ``mutations`` become a variant's changes when an experiment is
# created with ``idea_id``. Ideas are not served, so they do not bump config_version.
_V6 = """
CREATE TABLE ideas (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    site_id          TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    title            TEXT NOT NULL,
    hypothesis       TEXT,
    category         TEXT,
    priority         TEXT,
    status           TEXT NOT NULL DEFAULT 'new'
                     CHECK (status IN ('new', 'approved', 'implemented', 'rejected', 'archived')),
    output_type      TEXT NOT NULL DEFAULT 'html',
    estimated_impact TEXT,
    mockup_data      TEXT NOT NULL DEFAULT '{}',
    source_url       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX ideas_workspace_site ON ideas(workspace_id, site_id, created_at);
"""

# Version 7: an experiment's cost guardrail (analytics.decision_rules): how much more a
# variant's mean cost per unit may be than the control's (0.3 = 30% more) before the
# experiment is stopped; NULL: no cost guardrail.
_V7 = """
ALTER TABLE experiments ADD COLUMN max_cost_increase REAL CHECK (max_cost_increase > 0);
"""

# Version 8: continuous loops (edge.control.loops) and idea-generation schedules
# (edge.control.schedules). A loop is a champion-challenger optimiser whose every round is
# an experiment (loop_rounds.experiment_id); the experiment is what the edge serves, so the
# loop tables themselves do not bump config_version. ``next_tick_at`` (ISO 8601, UTC) is
# when the scheduler next looks at a loop or runs a schedule; ``claimed_until`` is how a
# ticker claims a row in a transaction, so that two tickers never advance it twice. A
# schedule's ``key_id`` is the API key that created it: its runs are charged and audited
# in that key's name. A round's runtime excludes the time its loop was paused:
# ``loops.paused_at`` is when the current pause began, ``loop_rounds.paused_seconds`` the
# pauses the round has had; ``last_look`` is the index of the last daily look its decision
# took (analytics.loop_decisions).
_V8 = """
CREATE TABLE loops (
    id                          TEXT PRIMARY KEY,
    workspace_id                TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    site_id                     TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    name                        TEXT NOT NULL,
    target_url                  TEXT NOT NULL,
    url_pattern                 TEXT,
    element_types               TEXT NOT NULL,
    selector_hints              TEXT,
    primary_goal                TEXT NOT NULL,
    status                      TEXT NOT NULL DEFAULT 'running'
                                CHECK (status IN ('running', 'paused', 'completed', 'archived')),
    current_round_id            TEXT,
    current_champion_variant_id TEXT,
    champion_changes            TEXT NOT NULL DEFAULT '[]',
    min_round_days              REAL NOT NULL DEFAULT 7 CHECK (min_round_days >= 0),
    max_round_days              REAL NOT NULL DEFAULT 28,
    min_samples_per_arm         INTEGER NOT NULL DEFAULT 500 CHECK (min_samples_per_arm >= 1),
    decision_threshold          REAL NOT NULL DEFAULT 0.95
                                CHECK (decision_threshold > 0.5 AND decision_threshold < 1),
    consecutive_inconclusive    INTEGER NOT NULL DEFAULT 0,
    rounds_since_check          INTEGER NOT NULL DEFAULT 0,
    pause_reason                TEXT,
    paused_at                   TEXT,
    next_tick_at                TEXT NOT NULL,
    claimed_until               TEXT,
    created_at                  TEXT NOT NULL,
    updated_at                  TEXT NOT NULL,
    CHECK (max_round_days >= min_round_days)
);
CREATE INDEX loops_workspace ON loops(workspace_id, created_at);
CREATE INDEX loops_due ON loops(status, next_tick_at);

CREATE TABLE loop_rounds (
    id                    TEXT PRIMARY KEY,
    loop_id               TEXT NOT NULL REFERENCES loops(id) ON DELETE CASCADE,
    round_number          INTEGER NOT NULL,
    experiment_id         TEXT REFERENCES experiments(id) ON DELETE SET NULL,
    champion_variant_id   TEXT,
    challenger_variant_id TEXT,
    challenger_changes    TEXT NOT NULL DEFAULT '[]',
    is_regression_check   INTEGER NOT NULL DEFAULT 0 CHECK (is_regression_check IN (0, 1)),
    outcome               TEXT NOT NULL DEFAULT 'pending'
                          CHECK (outcome IN ('pending', 'challenger_promoted', 'champion_held',
                                             'inconclusive')),
    final_prob_to_win     REAL,
    final_lift            REAL,
    started_at            TEXT NOT NULL,
    decided_at            TEXT,
    paused_seconds        REAL NOT NULL DEFAULT 0,
    last_look             INTEGER,
    UNIQUE (loop_id, round_number)
);

CREATE TABLE schedules (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    site_id       TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL REFERENCES api_keys(id),
    enabled       INTEGER NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
    frequency     TEXT NOT NULL DEFAULT 'weekly'
                  CHECK (frequency IN ('daily', 'weekly', 'monthly')),
    day_of_week   INTEGER NOT NULL DEFAULT 1 CHECK (day_of_week BETWEEN 1 AND 7),
    ideas_per_run INTEGER NOT NULL DEFAULT 2 CHECK (ideas_per_run BETWEEN 1 AND 10),
    output_type   TEXT NOT NULL DEFAULT 'html' CHECK (output_type IN ('html', 'screenshot')),
    target_pages  TEXT NOT NULL DEFAULT '[]',
    next_run_at   TEXT,
    last_run_at   TEXT,
    claimed_until TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX schedules_workspace ON schedules(workspace_id, created_at);
CREATE INDEX schedules_due ON schedules(enabled, next_run_at);
"""

# v9: edge tokens, the credentials remote edge nodes pull config snapshots and relay
# events with (edge.control.edge_tokens); only their SHA-256 is kept.
_V9 = """
CREATE TABLE edge_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX edge_tokens_prefix ON edge_tokens(prefix);
"""

# v10: an ended experiment's verdict (edge.control.store.experiments): the weights in force
# while it ran, kept when it completes (a promotion then gives the winner all the weight,
# which the sample-ratio test must not see), and its decision, kept once. Experiments that
# ended before v10 and were not promoted still have the weights they ran with.
_V10 = """
CREATE TABLE experiment_verdicts (
    experiment_id        TEXT PRIMARY KEY REFERENCES experiments(id) ON DELETE CASCADE,
    weights              TEXT NOT NULL,
    status               TEXT CHECK (status IN ('significant', 'no_winner', 'guardrail')),
    winner_variant_id    TEXT,
    guardrail_variant_id TEXT,
    reason               TEXT,
    decided_at           TEXT
);
INSERT INTO experiment_verdicts (experiment_id, weights)
SELECT e.id, json_group_object(v.id, v.weight_bps)
FROM experiments e JOIN variants v ON v.experiment_id = e.id
WHERE e.status IN ('completed', 'archived') AND e.winner_variant_id IS NULL
GROUP BY e.id;
"""

# v11: guardrails besides the primary metric (analytics.metric_results): a goal marked as
# one, and an agent experiment's guardrail metrics (a JSON array of metric keys; NULL:
# none). A challenger significantly worse on one stops the experiment.
_V11 = """
ALTER TABLE goals ADD COLUMN guardrail INTEGER NOT NULL DEFAULT 0 CHECK (guardrail IN (0, 1));
ALTER TABLE experiments ADD COLUMN guardrail_metrics TEXT;
"""

# v12: a webhook endpoint's flavour, the flavour of the API key that registered it
# (edge.api_keys): a ClawSplit key's endpoints get X-ClawSplit-Signature as ClawSplit
# documents it (edge.control.webhook_dispatch). Endpoints registered before are splitedge's.
_V12 = """
ALTER TABLE webhooks ADD COLUMN flavour TEXT NOT NULL DEFAULT 'splitedge'
    CHECK (flavour IN ('splitedge', 'clawsplit', 'clawtrait', 'crewkit'));
"""

# v13: the console's sign-in sessions (edge.control.console): only the SHA-256 of a
# session's token is kept, with the workspace and the API key it was exchanged for (a
# session ends with its key: revoking or deleting the key ends it) and its expiry (Unix
# seconds). Sessions change nothing the edge serves.
_V13 = """
CREATE TABLE console_sessions (
    id           TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_id       TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);
"""

MIGRATIONS: tuple[str, ...] = (
    _V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13,
)  # fmt: skip


def insert_sql(table: str, columns: str) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)`` with one placeholder per column of
    the comma-separated ``columns``, so the count cannot drift from the list."""
    marks = ", ".join("?" * len(columns.split(",")))
    return f"INSERT INTO {table} ({columns}) VALUES ({marks})"


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration the file has not seen yet, each in its own transaction."""
    (applied,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in enumerate(MIGRATIONS[applied:], start=applied + 1):
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
