from __future__ import annotations

import gzip
import json

import pytest

from edge.config import (
    ANTI_FLICKER_MS,
    ExperimentConfig,
    GoalConfig,
    MutationConfig,
    SiteConfig,
    VariantConfig,
)
from edge.snippet import build_snippet, load_runtime, script_safe_json

RUNTIME = load_runtime(b"(function(c){window.__sk=c})(__SPLITEDGE_CONFIG__);\n")


def site(payload: str = "Hi", kind: str = "web") -> SiteConfig:
    return SiteConfig(
        id="s1",
        workspace_id="w1",
        public_key="k1",
        url="https://example.com/",
        experiments=(
            ExperimentConfig(
                id="e1",
                kind=kind,  # type: ignore[arg-type]
                url_pattern="/pricing",
                variants=(
                    VariantConfig(id="v1", name="A", control=True, weight=5000),
                    VariantConfig(
                        id="v2",
                        name="B",
                        control=False,
                        weight=5000,
                        changes=(
                            MutationConfig(selector="h1", action="set_content", payload=payload),
                        ),
                        config={"soul_md": "secret prompt"},
                    ),
                ),
                goals=(GoalConfig(id="g1", name="Buy", type="click", selector=".buy"),),
            ),
        ),
    )


def inlined_config(body: bytes) -> dict[str, object]:
    head, tail = b"(function(c){window.__sk=c})(", b");\n"
    assert body.startswith(head) and body.endswith(tail)
    return json.loads(body[len(head) : -len(tail)])  # type: ignore[no-any-return]


def test_the_config_replaces_the_token() -> None:
    config = inlined_config(build_snippet(RUNTIME, site()).body)
    assert config["sk"] == "k1"
    (exp,) = config["experiments"]  # type: ignore[misc]
    assert exp["id"] == "e1" and exp["url_pattern"] == "/pricing" and exp["coverage"] == 10000
    assert [v["weight"] for v in exp["variants"]] == [5000, 5000]
    assert exp["variants"][1]["changes"][0]["payload"] == "Hi"
    assert exp["goals"][0]["selector"] == ".buy"
    assert config["anti_flicker_ms"] == ANTI_FLICKER_MS == 250


def test_agent_configs_never_reach_the_browser() -> None:
    assert b"secret prompt" not in build_snippet(RUNTIME, site()).body
    assert inlined_config(build_snippet(RUNTIME, site(kind="agent")).body)["experiments"] == []


@pytest.mark.parametrize(
    "hostile", ["</script><script>alert(1)</script>", "<!--", "a\u2028b\u2029c", "x&y>z"]
)
def test_config_is_safe_inside_a_script(hostile: str) -> None:
    body = build_snippet(RUNTIME, site(hostile)).body
    for raw in (b"</script", b"<!--", "\u2028".encode(), "\u2029".encode(), b"<", b"&"):
        assert raw not in body.replace(b"(function(c){window.__sk=c})(", b"")
    changes = inlined_config(body)["experiments"][0]["variants"][1]["changes"]  # type: ignore[index]
    assert changes[0]["payload"] == hostile


def test_script_safe_json_round_trips() -> None:
    value = {"a": "</script>\u2028&<>", "b": [1, 2.5, None, True]}
    assert json.loads(script_safe_json(value)) == value


def test_gzip_body_and_etags() -> None:
    snippet = build_snippet(RUNTIME, site())
    assert gzip.decompress(snippet.gzip_body) == snippet.body
    assert snippet.etag != snippet.gzip_etag
    assert snippet.etag.startswith(b'"') and snippet.etag.endswith(b'"')
    assert build_snippet(RUNTIME, site()).etag == snippet.etag  # deterministic
    assert build_snippet(RUNTIME, site("other")).etag != snippet.etag
    headers = dict(snippet.gzip_headers)
    assert headers[b"content-encoding"] == b"gzip"
    assert headers[b"content-length"] == str(len(snippet.gzip_body)).encode()
    assert dict(snippet.headers)[b"cache-control"] == b"public, max-age=60"


@pytest.mark.parametrize("source", [b"no token", b"__SPLITEDGE_CONFIG__ __SPLITEDGE_CONFIG__"])
def test_a_broken_runtime_build_is_refused(source: bytes) -> None:
    with pytest.raises(RuntimeError, match="exactly once"):
        load_runtime(source)


def test_the_shipped_runtime_has_the_token_once() -> None:
    runtime = load_runtime()
    assert runtime.head and runtime.tail


def test_the_config_has_what_the_runtime_reads() -> None:
    # snippet/README.md documents this shape; the runtime reads these keys and no others.
    config = inlined_config(build_snippet(RUNTIME, site()).body)
    assert sorted(config) == ["anti_flicker_ms", "experiments", "sk"]
    (exp,) = config["experiments"]  # type: ignore[misc]
    assert sorted(exp) == ["coverage", "goals", "id", "url_pattern", "variants"]
    assert sorted(exp["variants"][1]) == [
        "changes",
        "control",
        "id",
        "name",
        "redirect_url",
        "weight",
    ]
    # Always there, empty or not: the runtime does not default them.
    assert exp["variants"][0]["changes"] == [] and exp["variants"][0]["control"] is True
