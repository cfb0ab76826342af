"""Preview tokens and ``GET /s/{public_key}/preview/{token}.json`` (`edge.control.previews`),
through the real server: a token of this server names one variant of one experiment of
one site; anything else, and an archived experiment, is a 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from edge.control.previews import PreviewTokens
from tests.support import Seed, Server, api_call, running_server, seed_store


class Env(msgspec.Struct):
    server: Server
    store_path: Path
    seed: Seed


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("previews") / "data"
    store_path = data / "splitedge.sqlite3"
    seed = seed_store(store_path)
    with running_server(data) as server:
        yield Env(server, store_path, seed)


def draft(env: Env, site_id: str | None = None, key: str | None = None) -> dict[str, Any]:
    body = {
        "site_id": site_id or env.seed.site.id,
        "name": "preview route",
        "url_pattern": "/pricing",
        "variants": [{"name": "B", "changes": [{"selector": "h1", "action": "set_content",
                                                 "payload": "Draft"}]}],
        "goals": [{"name": "Buy", "type": "click", "selector": ".buy"}],
    }  # fmt: skip
    created = api_call(env.server, key or env.seed.key.key, "POST", "/v1/experiments", body)
    assert created.status_code == 201, created.text
    data: dict[str, Any] = created.json()["data"]
    return data


def fetch(env: Env, token: str, public_key: str | None = None) -> httpx.Response:
    public_key = public_key or env.seed.site.public_key
    return httpx.get(f"{env.server.base_url}/s/{public_key}/preview/{token}.json")


def token_of(data: dict[str, Any]) -> str:
    return str(data["preview_urls"][0]["url"].split("sk_preview=")[1])


def test_tokens_name_one_variant_and_are_unforgeable(tmp_path: Path) -> None:
    tokens = PreviewTokens(tmp_path / "splitedge.sqlite3")
    seed_store(tokens.store_path)
    experiment = "b1c7a8a4-5a1e-4c52-9d49-3f0d2f5d8e01"
    variant = "0f6b0c1e-7d4a-4b7e-9e0e-4d1b1c2a3f40"
    token = tokens.token(experiment, variant)
    assert len(token) == 64 and token.replace("-", "").replace("_", "").isalnum()
    assert tokens.read(token) == (experiment, variant)
    assert PreviewTokens(tokens.store_path).token(experiment, variant) == token, "one secret"
    swapped = tokens.token(variant, experiment)
    assert swapped != token and tokens.read(swapped) == (variant, experiment)
    for forged in (
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        token[:32] + swapped[32:],  # another token's MAC
        token[:-2],
        token + "A",
        "!" * 64,
        variant,
    ):
        assert tokens.read(forged) is None, forged
    # Another server (another store, another secret) signs differently.
    other = PreviewTokens(tmp_path / "other" / "splitedge.sqlite3")
    seed_store(other.store_path)
    assert other.read(token) is None


def test_a_draft_preview_config(env: Env) -> None:
    data = draft(env)
    experiment = data["experiment"]
    response = fetch(env, token_of(data))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    control, variant = experiment["variants"]
    assert response.json() == {
        "variant": variant["id"],
        "experiment": {
            "id": experiment["id"],
            "url_pattern": "/pricing",
            "coverage": 10000,
            "variants": [
                {
                    "id": v["id"],
                    "name": v["name"],
                    "control": v["is_control"],
                    "weight": v["weight_bps"],
                    "changes": v["changes"],
                    "redirect_url": None,
                }
                for v in (control, variant)
            ],  # fmt: skip
            "goals": [
                {"id": g["id"], "name": "Buy", "type": "click", "selector": ".buy"}
                for g in experiment["goals"]
            ],
        },
    }
    # Never in the public snippet.
    snippet = httpx.get(f"{env.server.base_url}/s/{env.seed.site.public_key}.js").text
    assert experiment["id"] not in snippet


def test_wrong_tokens_and_keys_are_404(env: Env) -> None:
    data = draft(env)
    token = token_of(data)
    assert fetch(env, token, public_key=env.seed.other_site.public_key).status_code == 404
    assert fetch(env, token, public_key="no-such-key").status_code == 404
    for forged in (token[:-1] + ("A" if token[-1] != "A" else "B"), "x" * 64, "short"):
        response = fetch(env, forged)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert response.headers["access-control-allow-origin"] == "*"


def test_running_and_paused_preview_but_archived_does_not(env: Env) -> None:
    data = draft(env)
    experiment_id = data["experiment"]["id"]
    token = token_of(data)
    key = env.seed.key.key
    path = f"/v1/experiments/{experiment_id}"
    for action, status in (("launch", 200), ("pause", 200), ("complete", 200)):
        assert api_call(env.server, key, "PATCH", path, {"action": action}).status_code == 200
        assert fetch(env, token).status_code == status, action
    assert api_call(env.server, key, "PATCH", path, {"action": "archive"}).status_code == 200
    assert fetch(env, token).status_code == 404
    assert api_call(env.server, key, "GET", path).json()["data"]["preview_urls"] == []
