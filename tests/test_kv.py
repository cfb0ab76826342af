from __future__ import annotations

import asyncio
from pathlib import Path

from edge.control.records import NewExperiment, NewVariant
from edge.control.snapshot import StoreSource, load_snapshot
from edge.control.store import Store
from edge.kv import ConfigFollower, KVHolder, build_kv
from edge.snippet import browser_experiment, load_runtime
from tests.support import pricing_experiment, seed_store

RUNTIME = load_runtime(b"(function(c){})(__SPLITEDGE_CONFIG__);")


def test_kv_indexes_sites_by_public_key_and_id(store_path: Path) -> None:
    seed = seed_store(store_path)
    store = Store(store_path)
    kv = build_kv(load_snapshot(store), RUNTIME)
    store.close()
    bundle = kv.by_public_key[seed.site.public_key]
    assert kv.by_site_id[seed.site.id] is bundle
    (exp,) = bundle.experiments
    assert exp.matcher.matches("/pricing/pro") and not exp.matcher.matches("/about")
    assert exp.table.assign("visitor-1") in (0, 1)
    assert b'"variant_name":"Bold"' in exp.fragments[1]


def test_unchanged_sites_keep_their_bundle(store_path: Path) -> None:
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        first = build_kv(load_snapshot(store), RUNTIME)
        exp = store.create_experiment(pricing_experiment(seed.workspace_id, seed.site.id, None))
        store.set_experiment_status(exp, "running")
        second = build_kv(load_snapshot(store), RUNTIME, first)
    finally:
        store.close()
    assert second.version > first.version
    other = seed.other_site.public_key
    assert second.by_public_key[other] is first.by_public_key[other]
    changed = seed.site.public_key
    assert second.by_public_key[changed] is not first.by_public_key[changed]
    assert second.by_public_key[changed].snippet.etag != first.by_public_key[changed].snippet.etag
    assert len(second.by_public_key[changed].experiments) == 2


def test_experiments_by_id_for_assignment_and_for_events(store_path: Path) -> None:
    """Assignment by id finds every launched experiment: running, deployed, on no site,
    and no longer running (served its control to every unit, by id only); not a draft."""
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        agent = NewExperiment(
            workspace_id=seed.workspace_id,
            name="prompts",
            kind="agent",
            variants=(NewVariant("a", 1, config={"soul_md": "A"}), NewVariant("b", 1, config=2)),
        )
        siteless = store.create_experiment(agent)
        store.set_experiment_status(siteless, "running")
        draft = store.create_experiment(agent)
        first = build_kv(load_snapshot(store), RUNTIME)
        winner = store.conn.execute(
            "SELECT id FROM variants WHERE experiment_id = ? AND position = 1",
            (seed.experiment_id,),
        ).fetchone()[0]
        store.promote_variant(seed.experiment_id, winner)
        store.set_experiment_status(seed.experiment_id, "archived")
        store.set_experiment_status(seed.other_experiment_id, "paused")
        second = build_kv(load_snapshot(store), RUNTIME, first)
    finally:
        store.close()
    assert set(first.assignable_by_id) == {seed.experiment_id, seed.other_experiment_id, siteless}
    workspace, (compiled,) = first.assignable_by_id[siteless]
    assert workspace == seed.workspace_id and draft not in first.assignable_by_id
    assert b'"payload":{"soul_md":"A"}' in compiled.fragments[0]
    assert b'"deployed":false,"in_experiment":true,"reason":null' in compiled.fragments[1]
    # No snippet carries an experiment on no site.
    assert all(siteless.encode() not in b.snippet.body for b in first.by_public_key.values())
    # Promoted and archived: still assignable, every unit gets the winner, uncounted.
    _, (deployed,) = second.assignable_by_id[seed.experiment_id]
    # Its goals stay listed for late events; its snippet config has none: nothing counts.
    assert deployed.config.deployed and deployed.config.goals
    assert not browser_experiment(deployed.config).goals
    assert {deployed.table.assign(f"u{i}") for i in range(100)} == {1}
    assert (
        b'"deployed":true,"in_experiment":false,"reason":"winner_deployed"'
        in (deployed.fragments[1])
    )
    assert second.by_public_key[seed.site.public_key].experiments == (deployed,)
    # Paused: by id only (no snippet, no site assignment), every unit gets the control.
    _, (paused,) = second.assignable_by_id[seed.other_experiment_id]
    assert {paused.table.assign(f"u{i}") for i in range(100)} == {0}
    assert b'"in_experiment":false,"reason":"experiment_paused"' in paused.fragments[0]
    assert second.by_public_key[seed.other_site.public_key].experiments == ()
    # An unchanged experiment on no site is not compiled again.
    assert second.assignable_by_id[siteless][1][0] is compiled


def test_api_keys_resolve_to_their_workspace(store_path: Path) -> None:
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        kv = build_kv(load_snapshot(store), RUNTIME)
        assert kv.workspace_of_key(seed.key.key) == seed.workspace_id
        assert kv.workspace_of_key(seed.other_key.key) == seed.other_site.workspace_id
        assert kv.workspace_of_key(seed.key.key[:-1] + "x") is None
        assert kv.workspace_of_key("") is None
        store.revoke_api_key(seed.key.record.id)
        kv = build_kv(load_snapshot(store), RUNTIME, kv)
        assert kv.workspace_of_key(seed.key.key) is None
    finally:
        store.close()


def test_follower_swaps_in_a_new_version(store_path: Path) -> None:
    seed = seed_store(store_path)
    holder = KVHolder()
    source = StoreSource(store_path)
    follower = ConfigFollower(source, RUNTIME, holder, interval=0.01)

    async def scenario() -> tuple[int, int]:
        first = follower.load()
        task = asyncio.create_task(follower.follow())
        writer = Store(store_path)
        writer.set_experiment_status(seed.experiment_id, "paused")
        writer.close()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if holder.kv is not first:
                break
        task.cancel()
        assert holder.kv is not None
        return first.version, holder.kv.version

    before, after = asyncio.run(scenario())
    source.close()
    assert after > before
    assert holder.kv is not None
    assert holder.kv.by_public_key[seed.site.public_key].experiments == ()
