"""Always-valid verdicts against a live server (issue 21, "Against a live server"): many
A/A agent experiments in one real server (Granian on 127.0.0.1, embedded ClickHouse,
the decider passing every few seconds) are fed their task events through POST /v1/events in
ten batches, and their results are read through GET /v1/experiments/{id}/results after
each batch. The share of experiments that ever show a verdict (``significant`` or
``guardrail``, the decider's stop included) stays within binomial error of
1 - confidence, as the simulations of bench/sequential.py find at scale."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest

from tests.support import Seed, Server, api_call, running_server, seed_store, wait_flushed

pytestmark = pytest.mark.server

EXPERIMENTS = 80
BATCHES = 10
# Units per arm per batch: 600 per arm at the end, past the 500 a winner needs; the
# guardrails may trip from the second batch (100 units per arm) on.
PER_BATCH = 60
CONFIDENCE = 0.95
SUCCESS = 0.7
COST_MEAN, COST_SIGMA = 0.01, 1.0


class Env(msgspec.Struct):
    server: Server
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("sequential") / "data"
    seed = seed_store(data / "splitedge.sqlite3")
    with running_server(data, env={"SPLITEDGE_DECISION_INTERVAL": "5"}, args=["--dev"]) as server:
        yield Env(server, seed)


def call(env: Env, method: str, path: str, body: Any = None) -> httpx.Response:
    return api_call(env.server, env.seed.key.key, method, path, body)


def launch(env: Env, count: int) -> list[dict[str, Any]]:
    """``count`` running A/A agent experiments without a sample size, served by the edge."""
    experiments = []
    for n in range(count):
        created = call(env, "POST", "/v1/experiments", {
            "site_id": env.seed.site.id, "name": f"a/a {n}",
            "variants": [{"name": "control", "soul_md": "Same."},
                         {"name": "twin", "soul_md": "Same, twice."}],
            "primary_metric": "task_completion", "confidence": CONFIDENCE,
            "max_cost_increase": 0.3, "auto_launch": True,
        })  # fmt: skip
        assert created.status_code == 201, created.text
        experiments.append(created.json()["data"]["experiment"])
    deadline = time.monotonic() + 10
    wanted = {e["id"] for e in experiments}
    while True:
        assigned = call(env, "POST", "/v1/assign", {"site_id": env.seed.site.id, "unit_id": "u"})
        if wanted <= {a["experiment_id"] for a in assigned.json()["data"]["assignments"]}:
            return experiments
        assert time.monotonic() < deadline, "the edge did not serve the experiments in 10 s"
        time.sleep(0.1)


def batch(rng: np.random.Generator, experiment: dict[str, Any], first: int) -> list[dict[str, Any]]:
    """One batch of an experiment: units ``first`` to ``first + PER_BATCH - 1`` of each
    arm, one task each, the arms drawn from the same distributions."""
    events = []
    for arm, variant in enumerate(experiment["variants"]):
        outcomes = rng.random(PER_BATCH) < SUCCESS
        costs = COST_MEAN * np.exp(rng.normal(-(COST_SIGMA**2) / 2, COST_SIGMA, PER_BATCH))
        for k in range(PER_BATCH):
            events.append({
                "agentId": "fleet", "task": "triage",
                "outcome": "success" if outcomes[k] else "failure",
                "cost": float(costs[k]), "durationMs": 1000, "turns": 3,
                "experiment_id": experiment["id"], "variant_id": variant["id"],
                "session_id": f"{experiment['id']}-{arm}-{first + k}",
            })  # fmt: skip
    return events


def test_equal_arms_read_after_every_batch_rarely_show_a_verdict(env: Env) -> None:
    started = time.monotonic()
    experiments = launch(env, EXPERIMENTS)
    rng = np.random.default_rng(20261205)
    verdicts: dict[str, str] = {}  # experiment id -> the first verdict it showed
    sent = 0
    for look in range(BATCHES):
        live = [e for e in experiments if e["id"] not in verdicts]
        events = [event for e in live for event in batch(rng, e, look * PER_BATCH)]
        for start in range(0, len(events), 500):
            chunk = events[start : start + 500]
            answer = call(env, "POST", "/v1/events", chunk)
            if answer.status_code == 404:
                # The decider completed one of them on a guardrail it saw before the last
                # read (on part of a batch): send the others alone.
                for experiment_id in dict.fromkeys(e["experiment_id"] for e in chunk):
                    own = [e for e in chunk if e["experiment_id"] == experiment_id]
                    answer = call(env, "POST", "/v1/events", own)
                    if answer.status_code == 404:
                        verdicts[experiment_id] = "stopped"
                        continue
                    assert answer.status_code == 201, answer.text
                    sent += len(own)
                continue
            assert answer.status_code == 201, answer.text
            sent += len(chunk)
        wait_flushed(env.server, sent)
        for experiment in experiments:
            if experiment["id"] in verdicts:
                continue
            read = call(env, "GET", f"/v1/experiments/{experiment['id']}/results")
            assert read.status_code == 200, read.text
            data = read.json()["data"]
            assert data["p_value"] is None or 0.0 <= data["p_value"] <= 1.0
            if data["status"] in ("significant", "guardrail"):
                verdicts[experiment["id"]] = data["status"]
    meta = call(env, "GET", f"/v1/experiments/{experiments[0]['id']}/results").json()["meta"]
    assert meta["rules"]["method"] == "sequential"
    share = len(verdicts) / EXPERIMENTS
    alpha = 1 - CONFIDENCE
    se = math.sqrt(alpha * (1 - alpha) / EXPERIMENTS)
    print(
        f"{EXPERIMENTS} A/A experiments, {BATCHES} looks: ever a verdict {share:.1%} "
        f"(bound {alpha:.0%} + 2 se = {alpha + 2 * se:.1%}); {sorted(verdicts.values())}; "
        f"{time.monotonic() - started:.0f} s"
    )
    assert share <= alpha + 2 * se
