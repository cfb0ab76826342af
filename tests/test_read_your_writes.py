"""Read-your-writes on a real server with two workers: after a 2xx control-plane write, the
very next request, to either worker, sees it: the snippet of a site just created, the
snippet, the assignments and a browser's exposure beacon of an experiment just launched.
The workers' poll is set to 30 s, so nothing here is the poll's doing. A site written to
the store outside the server's routes is found by a KV miss asking the store's version,
and a flood of unknown snippet keys asks it no more often than the rate limit allows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from edge.control.store import Store
from edge.serving import MISS_CHECK_INTERVAL
from tests.support import Seed, Server, metric, running_server, seed_store

WORKERS = 2
SEQUENCES = 1000
THREADS = 8
MISS_CHECKS = "splitedge_kv_miss_version_checks_total"
T = TypeVar("T")


class Env:
    """The server, its seeded workspace, its store file, and one client per thread, each
    with the key of a workspace of its own (a workspace checks the URLs of at most two
    new sites at once)."""

    def __init__(self, server: Server, seed: Seed, store_path: Path, keys: list[str]) -> None:
        self.server = server
        self.seed = seed
        self.store_path = store_path
        self.clients = [
            # A connection per request: the read after a write reaches either worker
            # (the kernel spreads connections over them), not the writer's always.
            httpx.Client(
                base_url=server.base_url,
                headers={"authorization": f"Bearer {key}"},
                timeout=30,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            for key in keys
        ]

    def in_parallel(self, sequence: Callable[[httpx.Client, int], T], count: int) -> list[T]:
        """``sequence(client, i)`` for each i < ``count``, on `THREADS` threads, each with
        a client of its own and an equal share of the i."""

        def share(thread: int) -> list[T]:
            client = self.clients[thread]
            return [sequence(client, i) for i in range(thread, count, THREADS)]

        with ThreadPoolExecutor(THREADS) as pool:
            return [answer for shares in pool.map(share, range(THREADS)) for answer in shares]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("ryw") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        keys = [
            store.issue_api_key(store.create_workspace(f"ryw-{n}").id).key for n in range(THREADS)
        ]
    finally:
        store.close()
    poll = {"SPLITEDGE_CONFIG_POLL_INTERVAL": "30"}
    args = ["--allow-private-targets"]  # no DNS for the made-up site domains
    with running_server(data, workers=WORKERS, env=poll, args=args) as server:
        environment = Env(server, seed, store_path, keys)
        yield environment
        for client in environment.clients:
            client.close()


def test_a_new_sites_snippet_answers_at_once(env: Env) -> None:
    def create_then_fetch(client: httpx.Client, i: int) -> int:
        created = client.post("/v1/sites", json={"url": f"https://ryw-{i}.example"})
        assert created.status_code == 201, created.text
        key = created.json()["data"]["public_key"]
        # No Authorization header: the snippet is what a visitor's browser fetches.
        return client.get(f"/s/{key}.js", headers={"authorization": ""}).status_code

    statuses = env.in_parallel(create_then_fetch, SEQUENCES)
    assert statuses.count(404) == 0
    assert set(statuses) == {200}


def test_a_launch_is_served_at_once(env: Env) -> None:
    def launch_then_assign(client: httpx.Client, i: int) -> tuple[int, int, bool, bool, int]:
        # A few sites of the thread's workspace, each launching in turn.
        url = f"https://launch-{i % (THREADS * 4)}.example"
        site = client.post("/v1/sites", json={"url": url, "reuse_if_exists": True}).json()["data"]
        body = {
            "site_id": site["id"],
            "name": f"launch {i}",
            "variants": [{"name": "B", "changes": []}],
            "goals": [{"name": "click", "type": "click", "selector": "a"}],
        }
        created = client.post("/v1/experiments", json=body)
        assert created.status_code == 201, created.text
        experiment_id = created.json()["data"]["experiment"]["id"]
        launched = client.patch(f"/v1/experiments/{experiment_id}", json={"action": "launch"})
        assert launched.status_code == 200, launched.text
        by_id = client.post("/v1/assign", json={"experiment_id": experiment_id, "unit_id": "u"})
        public = client.post(
            "/v1/assign",
            json={"public_key": site["public_key"], "unit_id": "u"},
            headers={"authorization": ""},
        )
        snippet = client.get(f"/s/{site['public_key']}.js", headers={"authorization": ""})
        named = {a["experiment_id"] for a in public.json()["data"]["assignments"]}
        variant = next(
            a["variant_id"]
            for a in public.json()["data"]["assignments"]
            if a["experiment_id"] == experiment_id
        )
        exposure = {
            "event_id": uuid.uuid4().hex,
            "type": "exposure",
            "visitor_id": "u",
            "ts": int(time.time() * 1000),
            "experiment_id": experiment_id,
            "variant_id": variant,
        }
        beacon = client.post(
            "/v1/collect",
            json={"public_key": site["public_key"], "events": [exposure]},
            headers={"authorization": ""},
        )
        return (
            by_id.status_code,
            public.status_code,
            experiment_id in named,
            (experiment_id in snippet.text),
            beacon.status_code,
        )

    answers = env.in_parallel(launch_then_assign, SEQUENCES)
    assert [a[0] for a in answers].count(404) == 0
    assert {a[0] for a in answers} == {200}
    assert {a[1] for a in answers} == {200}
    assert all(a[2] for a in answers), "a public-key assign missed a just-launched experiment"
    assert all(a[3] for a in answers), "a snippet missed a just-launched experiment"
    assert {a[4] for a in answers} == {200}, "a beacon was refused right after a launch"


def test_a_site_written_outside_the_routes_is_found_by_a_miss(env: Env) -> None:
    store = Store(env.store_path)
    try:
        site = store.create_site(env.seed.workspace_id, f"https://{uuid.uuid4().hex}.example")
    finally:
        store.close()
    time.sleep(MISS_CHECK_INTERVAL * 2)  # past the rate limit of any earlier miss
    for _ in range(WORKERS * 4):  # connections reach either worker
        answer = httpx.get(f"{env.server.base_url}/s/{site.public_key}.js")
        assert answer.status_code == 200


def test_unknown_keys_ask_the_store_at_a_bounded_rate(env: Env) -> None:
    before = metric(env.server, MISS_CHECKS)
    started = time.monotonic()

    def unknown(client: httpx.Client, i: int) -> int:
        return client.get(f"/s/{uuid.uuid4().hex}.js").status_code

    statuses = env.in_parallel(unknown, 4000)
    elapsed = time.monotonic() - started
    time.sleep(0.1)
    checks = metric(env.server, MISS_CHECKS) - before
    assert set(statuses) == {404}
    # At most one ask per interval per worker (and a first one each).
    assert 0 < checks <= WORKERS * (elapsed / MISS_CHECK_INTERVAL + 1)
    assert checks < len(statuses) / 2
