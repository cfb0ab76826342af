"""Experiments with their variants and goals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from edge.assign import BUCKETS, weights_to_bps
from edge.config import MutationConfig
from edge.control.records import (
    ExperimentRecord,
    ExperimentStatus,
    ExperimentVerdict,
    Goal,
    NewExperiment,
    NewGoal,
    NewVariant,
    VariantRecord,
    VerdictStatus,
    utc_now,
)
from edge.control.store.connection import StoreConnection, new_id
from edge.errors import InvalidRequest, NotFound
from edge.urlglob import validate_pattern

__all__ = ["ExperimentQueries"]

# The record's fields read from a row (all but variants and goals), and their columns.
_EXPERIMENT_RECORD_FIELDS = ExperimentRecord.__struct_fields__[:-2]
_EXPERIMENT_RECORD_COLUMNS = (
    ", ".join(f"e.{name}" for name in _EXPERIMENT_RECORD_FIELDS[:-2]) + ", s.name, s.url"
)
# What the edge serves: every experiment launched once. One that is not running answers
# each unit with its deployed winner, else its control (edge.control.snapshot).
_SERVED = "e.started_at IS NOT NULL"
_variant_changes = msgspec.json.Decoder(tuple[MutationConfig, ...])
_variant_config: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_weights = msgspec.json.Decoder(dict[str, int])
_metric_keys = msgspec.json.Decoder(tuple[str, ...])
_VERDICT_COLUMNS = "weights, status, winner_variant_id, guardrail_variant_id, reason"


class ExperimentQueries(StoreConnection):
    """The queries of the ``experiments``, ``variants`` and ``goals`` tables."""

    def create_experiment(self, new: NewExperiment) -> str:
        """Create a draft experiment with its variants (the control first; a blank draft has
        only it) and goals; returns its id."""
        url_pattern = validate_pattern(new.url_pattern)
        if not 0 <= new.coverage_bps <= 10_000:
            raise InvalidRequest("coverage_bps must be between 0 and 10000")
        experiment_id, now = new_id(), utc_now()
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
            self._insert_variants(experiment_id, new.variants, now)
            self._insert_goals(experiment_id, new.goals, now)
        return experiment_id

    def edit_draft(
        self, experiment_id: str, new: NewExperiment, variants: bool, goals: bool
    ) -> None:
        """Make a draft what ``new`` describes: its name, hypothesis, target URL and
        url_pattern; with ``variants``, all its variants replaced by ``new``'s (new ids);
        with ``goals``, all its goals replaced. The lifecycle rules (only a draft) live in
        the control API."""
        url_pattern = validate_pattern(new.url_pattern)
        now = utc_now()
        with self.transaction() as conn:
            conn.execute(
                "UPDATE experiments SET name = ?, hypothesis = ?, target_url = ?, "
                "url_pattern = ?, updated_at = ? WHERE id = ?",
                (new.name, new.hypothesis, new.target_url, url_pattern, now, experiment_id),
            )
            if variants:
                conn.execute("DELETE FROM variants WHERE experiment_id = ?", (experiment_id,))
                self._insert_variants(experiment_id, new.variants, now)
            if goals:
                conn.execute("DELETE FROM goals WHERE experiment_id = ?", (experiment_id,))
                self._insert_goals(experiment_id, new.goals, now)

    def _insert_variants(
        self, experiment_id: str, variants: Sequence[NewVariant], now: str
    ) -> None:
        """Insert an experiment's variants, the control first (a blank draft has only it)."""
        if not variants:
            raise InvalidRequest("an experiment needs at least its control variant")
        # A blank draft's control holds all the traffic; a split needs two variants.
        weights = weights_to_bps([v.weight for v in variants]) if len(variants) > 1 else (BUCKETS,)
        self.conn.executemany(
            "INSERT INTO variants (id, experiment_id, position, name, is_control, "
            "weight_bps, changes, redirect_url, config, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    new_id(), experiment_id, i, v.name, int(i == 0), weights[i],
                    msgspec.json.encode(v.changes).decode(), v.redirect_url,
                    None if v.config is None else msgspec.json.encode(v.config).decode(),
                    now,
                )
                for i, v in enumerate(variants)
            ],
        )  # fmt: skip

    def _insert_goals(self, experiment_id: str, goals: Sequence[NewGoal], now: str) -> None:
        """Insert an experiment's goals, the primary first."""
        patterns = [validate_pattern(g.url_pattern) for g in goals]
        self.conn.executemany(
            "INSERT INTO goals (id, experiment_id, position, name, type, selector, "
            "url_pattern, guardrail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    new_id(), experiment_id, i, g.name, g.type, g.selector, pattern,
                    int(g.guardrail), now,
                )
                for i, (g, pattern) in enumerate(zip(goals, patterns, strict=True))
            ],
        )  # fmt: skip

    def set_experiment_status(self, experiment_id: str, status: ExperimentStatus) -> None:
        """Move an experiment to a status. The lifecycle rules live in the control API;
        this only records the move and its timestamps, and on completion the weights the
        experiment ran with (`experiment_verdict`)."""
        now = utc_now()
        if status == "completed":
            self._keep_weights(experiment_id)
        cur = self.conn.execute(
            "UPDATE experiments SET status = ?, updated_at = ?, "
            "started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?) "
            "ELSE started_at END, "
            # A completed experiment promoted later keeps the end of its run.
            "ended_at = CASE WHEN ? = 'completed' AND status <> 'completed' THEN ? "
            "ELSE ended_at END WHERE id = ?",
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
        with self.read_snapshot():
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

    def live_experiment_records(self) -> list[ExperimentRecord]:
        """Every workspace's running and paused experiments, oldest start first (one
        read): those whose results are read from a kept summary."""
        return self._experiment_records(
            "e.status IN ('running', 'paused') ORDER BY e.started_at, e.id", ()
        )

    def served_experiment_records(self) -> list[ExperimentRecord]:
        """The experiments the edge serves (every one launched once: running ones, and
        those that ran, with their deployed winner if they have one), oldest start first
        (one read)."""
        return self._experiment_records(f"{_SERVED} ORDER BY e.started_at, e.id", ())

    def set_experiment_targets(
        self,
        experiment_id: str,
        sample_size: int | None,
        primary_metric: str | None,
        confidence: float | None,
        max_cost_increase: float | None = None,
        guardrail_metrics: Sequence[str] = (),
    ) -> None:
        """Record what the results judge an experiment by (ClawSplit's sample_size,
        primary_metric and confidence, the cost guardrail: how much more a variant's mean
        cost may be than the control's, 0.3 = 30%, and the agent metrics that are
        guardrails); None keeps the defaults of the analysis."""
        metrics = (
            msgspec.json.encode(tuple(guardrail_metrics)).decode() if guardrail_metrics else None
        )
        self.conn.execute(
            "UPDATE experiments SET sample_size = ?, primary_metric = ?, confidence = ?, "
            "max_cost_increase = ?, guardrail_metrics = ?, updated_at = ? WHERE id = ?",
            (
                sample_size, primary_metric, confidence, max_cost_increase, metrics,
                utc_now(), experiment_id,
            ),
        )  # fmt: skip

    def delete_experiment(self, experiment_id: str) -> None:
        """Delete an experiment with its variants and goals (the lifecycle rules, which
        statuses may be deleted, live in `edge.control.lifecycle`)."""
        self.conn.execute("DELETE FROM experiments WHERE id = ?", (experiment_id,))

    def promote_variant(self, experiment_id: str, variant_id: str) -> None:
        """Give a variant all the traffic, record it as the winner and complete the
        experiment, in one transaction."""
        with self.transaction() as conn:
            # The weights it ran with, before the winner takes them all.
            self._keep_weights(experiment_id)
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

    def _keep_weights(self, experiment_id: str) -> None:
        """Keep the experiment's current weights as those it ran with, unless it already
        has some (a completed experiment promoted later keeps those of its run)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO experiment_verdicts (experiment_id, weights) "
            "SELECT experiment_id, json_group_object(id, weight_bps) FROM variants "
            "WHERE experiment_id = ? GROUP BY experiment_id",
            (experiment_id,),
        )

    def experiment_verdict(self, experiment_id: str) -> ExperimentVerdict | None:
        """What an ended experiment keeps: the weights it ran with and its decision, once
        taken; None for an experiment that never completed (or ended, promoted, before
        the store kept weights)."""
        row = self.conn.execute(
            f"SELECT {_VERDICT_COLUMNS} FROM experiment_verdicts WHERE experiment_id = ?",
            (experiment_id,),
        ).fetchone()
        if row is None:
            return None
        weights, *decision = row
        return ExperimentVerdict(_weights.decode(weights), *decision)

    def record_verdict(
        self,
        experiment_id: str,
        status: VerdictStatus,
        winner_variant_id: str | None,
        guardrail_variant_id: str | None,
        reason: str | None,
    ) -> None:
        """Record a completed experiment's decision: its status, the winner or the
        guardrail arm (variant ids), the guardrail's reason. The first decision stays: a
        later one, a deploy, a promotion or an archive never changes it."""
        self.conn.execute(
            "UPDATE experiment_verdicts SET status = ?, winner_variant_id = ?, "
            "guardrail_variant_id = ?, reason = ?, decided_at = ? "
            "WHERE experiment_id = ? AND status IS NULL",
            (status, winner_variant_id, guardrail_variant_id, reason, utc_now(), experiment_id),
        )

    def _experiment_records(self, where: str, args: Sequence[Any]) -> list[ExperimentRecord]:
        with self.read_snapshot():
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
            for exp_id, goal_id, name, kind, selector, pattern, guardrail in self.conn.execute(
                "SELECT experiment_id, id, name, type, selector, url_pattern, guardrail "
                f"FROM goals WHERE experiment_id IN ({marks}) ORDER BY experiment_id, position",
                ids,
            ):
                goals[exp_id].append(
                    Goal(goal_id, name, kind, selector, pattern, guardrail=bool(guardrail))
                )
        records = []
        for row in rows:
            fields = dict(zip(_EXPERIMENT_RECORD_FIELDS, row, strict=True))
            metrics = fields["guardrail_metrics"]
            fields["guardrail_metrics"] = () if metrics is None else _metric_keys.decode(metrics)
            records.append(
                ExperimentRecord(
                    **fields, variants=tuple(variants[row[0]]), goals=tuple(goals[row[0]])
                )
            )
        return records
