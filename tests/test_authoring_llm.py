"""The LLM author against a local fake OpenAI-compatible endpoint (the only mock: the
LLM vendor), on the real fixture pages: its answer is validated against the page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from edge.authoring import AuthorUnavailable, LlmAuthor, LlmSettings, PageFetcher
from edge.authoring.drafts import NeedsClarification, VariantDraft, VariantRequest
from tests.page_server import serve_pages
from tests.support import LOOPBACK_ALLOWED


@contextmanager
def fake_llm(content: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An endpoint answering every chat completion with ``content``; yields its base URL
    and the requests it got (path, headers, body)."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            seen.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
            answer = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_pages() as url:
        yield url


def _author(url: str) -> LlmAuthor:
    return LlmAuthor(
        LlmSettings(url=url, model="test-model", api_key="k-123"),
        PageFetcher(guard=LOOPBACK_ALLOWED),
    )


def test_valid_changes_are_kept(base: str) -> None:
    answer = {
        "name": "Price $499",
        "hypothesis": "A higher price raises revenue per visitor.",
        "mutations": [
            {"selector": ".plan--pro .price__amount", "action": "set_content", "payload": "$499"},
        ],
        "suggested_goals": [{"name": "Pro click", "type": "click", "selector": ".plan--pro .cta"}],
    }
    with fake_llm(json.dumps(answer)) as (url, seen):
        request = VariantRequest(base, "Change the hero price from $99 to $499", "/pricing")
        draft = _author(url).generate_variant(request)
    assert isinstance(draft, VariantDraft)
    (change,) = draft.variant.mutations
    assert (change.selector, change.payload) == (".plan--pro .price__amount", "$499")
    assert draft.context.page_analyzed == f"{base}/pricing"
    assert draft.suggested_goals[0].selector == ".plan--pro .cta"
    (sent,) = seen
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer k-123"
    assert sent["model"] == "test-model"
    assert sent["response_format"] == {"type": "json_object"}
    assert "from $99 to $499" in sent["messages"][-1]["content"]
    assert ".plan--pro .price__amount" in sent["messages"][-1]["content"]


PROMPT = (
    "Change the hero price from $99 to $499 and update the CTA to "
    "https://buy.stripe.com/pro_abc123 on every /pricing/* page"
)


@pytest.mark.parametrize(
    ("mutations", "clarify", "says"),
    [
        # A change the page cannot take: the rest is not shipped without it.
        (
            [{"selector": ".plan--pro .price__amount", "action": "set_content", "payload": "$499"},
             {"selector": ".no-such-thing", "action": "set_content", "payload": "x"},
             {"selector": ".hero__title", "action": "run_script", "payload": "alert(1)"}],
            [],
            ".no-such-thing",
        ),
        # The URL as the button's text: the wrong change.
        (
            [{"selector": ".plan--pro a.cta", "action": "set_content",
              "payload": "https://buy.stripe.com/pro_abc123"}],
            [],
            "link's destination",
        ),
        # Scope words as text.
        (
            [{"selector": ".hero__title", "action": "set_content",
              "payload": "$499 on every /pricing/* page"}],
            [],
            "where the test runs",
        ),
        ([], ["Which CTA: Starter, Pro or Enterprise?"], "Which CTA"),
    ],
)  # fmt: skip
def test_an_unsure_or_wrong_answer_is_a_question(
    base: str, mutations: list[Any], clarify: list[str], says: str
) -> None:
    answer = {"name": "x", "mutations": mutations, "clarify": clarify}
    with fake_llm(json.dumps(answer)) as (url, _):
        result = _author(url).generate_variant(VariantRequest(base, PROMPT, "/pricing"))
    assert isinstance(result, NeedsClarification), result
    [question] = result.questions
    assert question.field == "prompt" and says in question.reason


def test_malformed_json_is_a_clear_error(base: str) -> None:
    with fake_llm("this is not json {") as (url, _):
        with pytest.raises(AuthorUnavailable) as caught:
            _author(url).generate_variant(VariantRequest(base, "Make the headline say Hi", "/"))
    assert caught.value.status == 502 and "not the JSON asked for" in caught.value.message


def test_clarification_needs_no_llm_call(base: str) -> None:
    with fake_llm("{}") as (url, seen):
        result = _author(url).generate_variant(VariantRequest(base, "Make the headline say Hi"))
    assert not isinstance(result, VariantDraft) and seen == []
