"""Automatic decisions: an experiment that reached its sample size is concluded, and an
agent experiment whose guardrail tripped is stopped, with the webhooks that say so.

A `Decider` thread in the server's parent process (one per server, like the flusher and
the webhook dispatcher) looks at every running experiment that has something to decide
every ``decision_interval`` seconds; `decide_once` is one such pass. The results are the
same as ``GET /v1/experiments/{id}/results`` (`analytics.results`):

- **Guardrail** (agent experiments, and web experiments with a guardrail goal): a
  challenger significantly worse than the control on the primary metric or a guardrail
  metric (`analytics.metric_results`), or costing significantly more than the
  experiment's ``max_cost_increase`` allows, early looks included
  (`analytics.guardrails`). The experiment is completed at once; ``experiment.stopped``
  carries the reason and the arm.
- **Sample size reached** (any experiment with ``sample_size``): every arm has that many
  units. ``experiment.sample_reached``, then ``experiment.winner_declared`` (status
  ``significant``) or ``experiment.no_winner``, and the experiment is completed: a
  fixed-horizon test ends at its horizon. A winner is declared, not deployed: promoting
  it (``POST /v1/experiments/{id}/deploy``) stays a person's or an agent's call.

Each conclusion is one store transaction, with its webhook events and an audit entry
(no key: the server decided), and only if the experiment is still running then, so a
pass racing a manual change never concludes an experiment twice.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import msgspec

from analytics.result_views import clawsplit_view
from analytics.results import ExperimentResults
from edge.control import audit
from edge.control.lifecycle import event_payload
from edge.control.records import ExperimentRecord
from edge.control.results_api import ResultsSource, keep_verdict
from edge.control.store import Store
from edge.control.webhooks import enqueue_event
from edge.periodic import PeriodicPass

__all__ = ["Conclusion", "Decider", "decide_once"]

log = logging.getLogger("splitedge.decisions")


class Conclusion(msgspec.Struct, frozen=True):
    """What a pass did to one experiment: ``stopped`` by its guardrail, or ``concluded``
    at its sample size with ``winner`` (a variant id) or none."""

    experiment_id: str
    outcome: Literal["stopped", "concluded"]
    winner: str | None
    reason: str | None
    events: tuple[str, ...]


def _variants(results: ExperimentResults) -> dict[str, dict[str, Any]]:
    """Each arm by name, with the figures of ClawSplit's webhook example."""
    view = clawsplit_view(results)
    return {
        name: {
            "variant_id": arm.id,
            "units": arm.units,
            "task_completion": arm.task_completion,
            "completion": arm.completion,
            "avg_cost": arm.avg_cost,
            "p_value": arm.p_value,
        }
        for name, arm in view.variants.items()
    }


def _verdict(record: ExperimentRecord, results: ExperimentResults) -> Conclusion | None:
    """What the results call for, if anything."""
    if results.status == "guardrail" and _guarded(record) and results.guardrail:
        stopped = ("experiment.stopped", "experiment.completed")
        return Conclusion(record.id, "stopped", None, results.guardrail_reason, stopped)
    size = record.sample_size
    if size is None or min(v.units for v in results.variants) < size:
        return None
    winner = results.winner.id if results.status == "significant" and results.winner else None
    declared = "experiment.winner_declared" if winner else "experiment.no_winner"
    reason = f"every arm reached the sample size of {size} units"
    events = ("experiment.sample_reached", declared, "experiment.completed")
    return Conclusion(record.id, "concluded", winner, reason, events)


def _payload(
    event: str, record: ExperimentRecord, results: ExperimentResults, conclusion: Conclusion
) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "confidence": results.rules.confidence,
        "sample_size": record.sample_size,
        "primary_metric": results.primary_metric,
        "variants": _variants(results),
    }
    if event == "experiment.stopped":
        guard = results.guardrail
        extra |= {
            "reason": conclusion.reason,
            "guardrail": guard.name if guard else None,
            "guardrail_variant_id": guard.id if guard else None,
            # The p-value of the test that stopped it, which the reason quotes; the
            # leader's p-value on the primary metric can say the opposite.
            "p_value": results.guardrail_p_value,
        }
    elif event in ("experiment.winner_declared", "experiment.no_winner"):
        extra |= {
            "winner": results.winner.name if results.winner else None,
            "winner_variant_id": results.winner.id if results.winner else None,
            "p_value": results.p_value,
            "prob_to_win": results.prob_to_win,
            "lift": results.lift,
        }
    return event_payload(record, **extra)


def _conclude(
    store: Store, record: ExperimentRecord, results: ExperimentResults, conclusion: Conclusion
) -> bool:
    """Complete the experiment and queue the conclusion's events, if it is still running;
    whether it was."""
    with store.transaction():
        current = store.experiment_record(record.id, record.workspace_id)
        if current is None or current.status != "running":
            return False
        store.set_experiment_status(record.id, "completed")
        # The decision taken now stays the experiment's (results recomputed at the end
        # could not see an early guardrail stop).
        keep_verdict(store, record.id, results)
        done = store.experiment_record(record.id, record.workspace_id)
        assert done is not None  # completed in this transaction
        for event in conclusion.events:
            enqueue_event(
                store, record.workspace_id, event, _payload(event, done, results, conclusion)
            )
        audit.record(
            store, record.workspace_id, None, "experiment.complete", "experiment", record.id,
            {"status": "completed", "outcome": conclusion.outcome, "reason": conclusion.reason,
             "winner_variant_id": conclusion.winner},
        )  # fmt: skip
    return True


def _guarded(record: ExperimentRecord) -> bool:
    """Whether a guardrail stops the experiment: every agent experiment's does, a web
    experiment's once one of its goals is a guardrail."""
    return record.kind == "agent" or any(g.guardrail for g in record.goals)


def _candidates(store: Store) -> list[ExperimentRecord]:
    """Running experiments with something to decide: a sample size, or a guardrail."""
    return [
        record
        for record in store.running_experiment_records()
        if _guarded(record) or record.sample_size is not None
    ]


def decide_once(source: ResultsSource) -> list[Conclusion]:
    """One pass over the running experiments; what it concluded."""
    store = Store(source.store_path)
    try:
        concluded = []
        for record in _candidates(store):
            try:
                results = source.compute(record).results
            except Exception:  # one experiment's query never stops the others
                log.exception("results of experiment %s failed; it is looked at again "
                              "next pass", record.id)  # fmt: skip
                continue
            conclusion = _verdict(record, results)
            if conclusion is not None and _conclude(store, record, results, conclusion):
                log.info(
                    "experiment %s %s", record.id, conclusion.outcome,
                    extra={"winner": conclusion.winner, "reason": conclusion.reason},
                )  # fmt: skip
                concluded.append(conclusion)
        return concluded
    finally:
        store.close()


class Decider(PeriodicPass):
    """Runs `decide_once` every ``interval`` seconds on a thread until stopped."""

    def __init__(self, source: ResultsSource, interval: float) -> None:
        super().__init__("decider", interval)
        self.source = source

    def run_pass(self) -> None:
        decide_once(self.source)
