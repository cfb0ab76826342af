"""A realistic load on splitedge's edge, for Locust (FastHttpUser).

Visitors load a site's snippet, first without and then with ``If-None-Match`` (a 304),
send exposure beacons for the variant they got, and now and then a goal. Agents ask
``/v1/assign`` for a variant and report task events to ``/v1/events``. Every answer is
checked: a 5xx other than a documented 503 with ``Retry-After`` is a failure, and so is
any 4xx.

Shape, from the environment (defaults in brackets):

- ``SPLITEDGE_LOAD_API_KEY`` (required): a workspace API key. At the start the file reads
  the workspace's running experiments from ``SPLITEDGE_LOAD_CONTROL`` [the host] with it:
  web ones of the site ``SPLITEDGE_LOAD_SITE_ID`` [the first site], and agent ones.
  ``bench/seed_load.py`` creates such a workspace on a running server and prints the
  variables.
- ``SPLITEDGE_LOAD_HOSTS``: comma-separated base URLs the users spread over (e.g. two edge
  nodes) [Locust's ``--host``].
- ``SPLITEDGE_LOAD_VISITOR_WEIGHT`` [3], ``SPLITEDGE_LOAD_AGENT_WEIGHT`` [1]: the mix of
  user kinds; ``SPLITEDGE_LOAD_WAIT`` [0.5]: the mean seconds between a user's requests.
- ``SPLITEDGE_LOAD_ACKED``: a file to write, at the end, one acknowledged event id per
  line (what a soak checks ClickHouse against: every one exactly once).
- ``SPLITEDGE_LOAD_FAILURES``: a file to write, at the end, the failures as JSON lines
  (method, path, status, body start).

Headless, bounded in time::

    .venv/bin/python bench/seed_load.py --base-url http://127.0.0.1:8000 --key sk_live_...
    SPLITEDGE_LOAD_API_KEY=sk_live_... .venv/bin/locust -f bench/locustfile.py --headless \\
        -u 50 -r 10 -t 60s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from typing import Any

import httpx
from locust import FastHttpUser, between, events, task
from locust.env import Environment

API_KEY = os.environ.get("SPLITEDGE_LOAD_API_KEY", "")
WAIT = float(os.environ.get("SPLITEDGE_LOAD_WAIT", "0.5"))


class Targets:
    """What the users load: found once at the start."""

    hosts: list[str] = []
    public_key = ""
    site_id = ""
    web: list[dict[str, Any]] = []
    agent: list[dict[str, Any]] = []
    acked: list[str] = []
    failures: list[dict[str, Any]] = []


_next_host = itertools.count()


@events.test_start.add_listener
def _find_targets(environment: Environment, **kwargs: Any) -> None:
    host = environment.host or ""
    Targets.hosts = [h.strip() for h in os.environ.get("SPLITEDGE_LOAD_HOSTS", host).split(",")]
    control = os.environ.get("SPLITEDGE_LOAD_CONTROL", Targets.hosts[0]).rstrip("/")
    if not API_KEY:
        raise SystemExit("set SPLITEDGE_LOAD_API_KEY (bench/seed_load.py prints one)")
    auth = {"authorization": f"Bearer {API_KEY}"}
    sites = httpx.get(f"{control}/v1/sites", headers=auth, timeout=30).json()["data"]
    wanted = os.environ.get("SPLITEDGE_LOAD_SITE_ID", sites[0]["id"])
    site = next(s for s in sites if s["id"] == wanted)
    Targets.site_id, Targets.public_key = site["id"], site["public_key"]
    listed = httpx.get(f"{control}/v1/experiments?status=running&limit=100", headers=auth,
                       timeout=30).json()["data"]  # fmt: skip
    for item in listed:
        full = httpx.get(f"{control}/v1/experiments/{item['id']}", headers=auth, timeout=30)
        experiment = full.json()["data"]["experiment"]
        if experiment.get("kind") == "agent":
            Targets.agent.append(experiment)
        elif experiment.get("site_id") == Targets.site_id:
            Targets.web.append(experiment)


@events.test_stop.add_listener
def _write_outcomes(environment: Environment, **kwargs: Any) -> None:
    acked = os.environ.get("SPLITEDGE_LOAD_ACKED")
    if acked:
        with open(acked, "w") as out:
            out.writelines(f"{event_id}\n" for event_id in Targets.acked)
    failures = os.environ.get("SPLITEDGE_LOAD_FAILURES")
    if failures:
        with open(failures, "w") as out:
            out.writelines(json.dumps(f) + "\n" for f in Targets.failures)


class EdgeUser(FastHttpUser):
    """A user bound to one of the hosts, with the answer checks."""

    abstract = True
    wait_time = between(0, 2 * WAIT)

    def __init__(self, environment: Environment) -> None:
        hosts = Targets.hosts or [environment.host or ""]
        self.host = hosts[next(_next_host) % len(hosts)]
        super().__init__(environment)

    def check(self, response: Any, method: str, path: str, ok: tuple[int, ...]) -> bool:
        """Whether the answer is one of ``ok``; a documented 503 (Retry-After) is not a
        failure but is not an acknowledgement either."""
        status = response.status_code
        if status in ok:
            response.success()
            return True
        if status == 503 and response.headers.get("retry-after"):
            response.success()
            return False
        text = (response.text or "")[:300]
        Targets.failures.append({"method": method, "path": path, "status": status, "body": text})
        response.failure(f"{status}: {text}")
        return False


class Visitor(EdgeUser):
    """A browser: the snippet, exposures, sometimes a goal."""

    weight = int(os.environ.get("SPLITEDGE_LOAD_VISITOR_WEIGHT", "3"))

    def on_start(self) -> None:
        self.visitor = uuid.uuid4().hex
        self.etag = ""

    @task(4)
    def snippet(self) -> None:
        path = f"/s/{Targets.public_key}.js"
        headers = {"accept-encoding": "gzip"}
        if self.etag:
            headers["if-none-match"] = self.etag
        with self.client.get(path, headers=headers, name="/s/[key].js", catch_response=True) as r:
            if self.check(r, "GET", path, (200, 304)) and r.status_code == 200:
                self.etag = r.headers.get("etag", "")

    def _beacon(self, kind: str, experiment: dict[str, Any], goal: str = "") -> None:
        variant = random.choice(experiment["variants"])["id"]
        event = {"event_id": uuid.uuid4().hex, "type": kind, "visitor_id": self.visitor,
                 "ts": int(time.time() * 1000), "experiment_id": experiment["id"],
                 "variant_id": variant}  # fmt: skip
        if goal:
            event["goal_id"] = goal
        body = {"public_key": Targets.public_key, "events": [event]}
        with self.client.post("/v1/collect", json=body, catch_response=True) as r:
            if self.check(r, "POST", "/v1/collect", (200,)):
                Targets.acked.append(event["event_id"])

    @task(3)
    def exposure(self) -> None:
        if Targets.web:
            self._beacon("exposure", random.choice(Targets.web))

    @task(1)
    def goal(self) -> None:
        experiments = [e for e in Targets.web if e.get("goals")]
        if experiments:
            experiment = random.choice(experiments)
            self._beacon("goal", experiment, experiment["goals"][0]["id"])


class Agent(EdgeUser):
    """An AI agent: a variant per run, then the run's task event."""

    weight = int(os.environ.get("SPLITEDGE_LOAD_AGENT_WEIGHT", "1"))

    @task(2)
    def assign(self) -> None:
        if not Targets.agent:
            return
        body = {"experiment_id": random.choice(Targets.agent)["id"], "unit_id": uuid.uuid4().hex}
        headers = {"authorization": f"Bearer {API_KEY}"}
        with self.client.post("/v1/assign", json=body, headers=headers,
                              catch_response=True) as r:  # fmt: skip
            self.check(r, "POST", "/v1/assign", (200,))

    @task(2)
    def task_event(self) -> None:
        if not Targets.agent:
            return
        experiment = random.choice(Targets.agent)
        variant = random.choice(experiment["variants"])
        event_id = uuid.uuid4().hex
        event = {"event_id": event_id, "agentId": "load-bot", "task": "triage",
                 "outcome": random.choice(["success", "failure"]), "cost": 0.01,
                 "durationMs": 800, "turns": 3, "experiment_id": experiment["id"],
                 "variant_id": variant["id"], "session_id": uuid.uuid4().hex}  # fmt: skip
        headers = {"authorization": f"Bearer {API_KEY}"}
        with self.client.post("/v1/events", json=[event], headers=headers,
                              catch_response=True) as r:  # fmt: skip
            if self.check(r, "POST", "/v1/events", (201,)):
                Targets.acked.append(event_id)
