from __future__ import annotations

from pathlib import Path

import pytest

from edge.control.records import NewExperiment, NewVariant
from edge.control.snapshot import load_snapshot
from edge.control.store import Store, normalize_site_url
from edge.control.store.schema import insert_sql
from edge.errors import Conflict, InvalidRequest, InvalidUrlPattern, NotFound
from edge.snippet import browser_config
from tests.support import pricing_experiment, seed_store


def test_store_file_is_wal_and_migrated(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"workspaces", "api_keys", "sites", "experiments", "variants", "goals"} <= tables


def test_reopening_keeps_data_and_does_not_remigrate(store_path: Path) -> None:
    seed = seed_store(store_path)
    again = Store(store_path)
    try:
        assert again.get_site(seed.site.id) == seed.site
    finally:
        again.close()


def test_every_served_change_bumps_the_version(store: Store) -> None:
    seen = [store.config_version()]

    def bumped() -> None:
        now = store.config_version()
        assert now > seen[-1]
        seen.append(now)

    ws = store.create_workspace("w")
    assert store.config_version() == seen[-1]  # a workspace alone serves nothing
    issued = store.issue_api_key(ws.id)
    bumped()
    site = store.create_site(ws.id, "example.com")
    bumped()
    exp = store.create_experiment(pricing_experiment(ws.id, site.id, None))
    bumped()
    store.set_experiment_status(exp, "running")
    bumped()
    store.set_variant_weights(exp, [30, 70])
    bumped()
    store.revoke_api_key(issued.record.id)
    bumped()


def test_key_use_does_not_bump_the_version(store: Store) -> None:
    ws = store.create_workspace("w")
    issued = store.issue_api_key(ws.id)
    before = store.config_version()
    store.conn.execute("UPDATE api_keys SET last_used_at = 'now' WHERE id = ?", (issued.record.id,))
    assert store.config_version() == before


def test_keys_are_stored_hashed(store: Store) -> None:
    ws = store.create_workspace("w")
    issued = store.issue_api_key(ws.id)
    assert issued.key.startswith("sk_live_") and len(issued.key) > 40
    dump = "\n".join(store.conn.iterdump())
    assert issued.key not in dump
    assert issued.record.prefix in dump


@pytest.mark.parametrize(
    ("given", "url", "domain"),
    [
        ("example.com", "https://example.com/", "example.com"),
        ("HTTP://Shop.Example.com:8080/x", "http://shop.example.com:8080/x", "shop.example.com"),
        ("https://example.com", "https://example.com/", "example.com"),
        ("http://[fd00::1]/", "http://[fd00::1]/", "fd00::1"),
        ("https://[2001:DB8::1]:8443/shop", "https://[2001:db8::1]:8443/shop", "2001:db8::1"),
    ],
)
def test_site_urls_are_normalised(given: str, url: str, domain: str) -> None:
    assert normalize_site_url(given) == (url, domain)


@pytest.mark.parametrize("bad", ["ftp://example.com", "https://", "   "])
def test_bad_site_urls_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="website address"):
        normalize_site_url(bad)


def test_duplicate_domain_conflicts(store: Store) -> None:
    ws = store.create_workspace("w")
    store.create_site(ws.id, "example.com")
    with pytest.raises(Conflict, match="example.com"):
        store.create_site(ws.id, "https://example.com/other")


def test_a_sites_anti_flicker_timeout_reaches_its_snippet_config(store: Store) -> None:
    ws = store.create_workspace("w")
    default = store.create_site(ws.id, "a.example")
    quick = store.create_site(ws.id, "b.example", anti_flicker_ms=80)
    assert (default.anti_flicker_ms, quick.anti_flicker_ms) == (250, 80)
    assert store.get_site(quick.id) == quick
    version = store.config_version()
    sites = {s.id: s for s in load_snapshot(store).sites}
    assert store.config_version() == version
    assert (sites[default.id].anti_flicker_ms, sites[quick.id].anti_flicker_ms) == (250, 80)
    config = browser_config(sites[quick.id])
    assert config.anti_flicker_ms == 80
    for bad in (-1, 5001):
        with pytest.raises(InvalidRequest, match="anti_flicker_ms must be between 0 and 5000"):
            store.create_site(ws.id, f"c{bad}.example", anti_flicker_ms=bad)


def test_invalid_url_pattern_is_refused_at_creation(store: Store) -> None:
    ws = store.create_workspace("w")
    site = store.create_site(ws.id, "example.com")
    with pytest.raises(InvalidUrlPattern):
        store.create_experiment(pricing_experiment(ws.id, site.id, "https://example.com/x"))
    assert store.conn.execute("SELECT count(*) FROM experiments").fetchone()[0] == 0


def test_an_experiment_needs_its_control_and_a_blank_draft_is_the_control_alone(
    store: Store,
) -> None:
    ws = store.create_workspace("w")
    with pytest.raises(InvalidRequest, match="at least its control"):
        store.create_experiment(NewExperiment(workspace_id=ws.id, name="x", variants=()))
    blank = store.create_experiment(
        NewExperiment(workspace_id=ws.id, name="x", variants=(NewVariant("A", 1),))
    )
    record = store.experiment_record(blank, ws.id)
    assert record is not None
    assert [(v.is_control, v.weight_bps) for v in record.variants] == [(True, 10_000)]


def test_unknown_ids_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.set_experiment_status("nope", "running")
    with pytest.raises(NotFound):
        store.set_variant_weights("nope", [1, 1])
    with pytest.raises(NotFound):
        store.get_site("nope")


def test_snapshot_holds_only_running_experiments(store_path: Path) -> None:
    seed = seed_store(store_path)
    store = Store(store_path)
    try:
        draft = store.create_experiment(pricing_experiment(seed.workspace_id, seed.site.id, None))
        snap = load_snapshot(store)
        assert snap.version == store.config_version()
        site = next(s for s in snap.sites if s.id == seed.site.id)
        assert [e.id for e in site.experiments] == [seed.experiment_id]
        exp = site.experiments[0]
        assert [v.weight for v in exp.variants] == [5000, 5000]
        assert exp.variants[0].control and not exp.variants[1].control
        assert exp.url_pattern == "/pricing"
        assert exp.goals[0].selector == ".buy"
        store.set_experiment_status(draft, "running")
        store.set_experiment_status(seed.experiment_id, "paused")
        site = next(s for s in load_snapshot(store).sites if s.id == seed.site.id)
        assert [e.id for e in site.experiments] == [draft]
        assert {k.workspace_id for k in snap.api_keys} == {
            seed.workspace_id,
            seed.other_site.workspace_id,
        }
    finally:
        store.close()


def test_store_methods_compose_into_one_transaction(store: Store) -> None:
    ws = store.create_workspace("w")
    before = store.config_version()
    with pytest.raises(RuntimeError), store.transaction():
        site = store.create_site(ws.id, "example.com")
        store.create_experiment(pricing_experiment(ws.id, site.id, None))
        raise RuntimeError("crash halfway")
    assert store.conn.execute("SELECT count(*) FROM sites").fetchone()[0] == 0
    assert store.conn.execute("SELECT count(*) FROM experiments").fetchone()[0] == 0
    assert store.config_version() == before


def test_insert_sql_has_one_placeholder_per_column() -> None:
    assert insert_sql("t", "a, b,c") == "INSERT INTO t (a, b,c) VALUES (?, ?, ?)"
    assert insert_sql("t", "only") == "INSERT INTO t (only) VALUES (?)"
