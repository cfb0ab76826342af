"""The Python client of a splitedge server, for agents: one call to get the variant and
its prompt, task events batched in the background, results.

    from splitedge_client import Client

    with Client("http://127.0.0.1:8000", api_key, spill_path="events.spill") as splitedge:
        variant = splitedge.assign(experiment_id, run_id, default=DEFAULT_CONFIG)
        prompt = variant.payload["soul_md"] if variant else DEFAULT_PROMPT
        outcome, cost = run_agent(prompt)
        splitedge.track_task("support-bot", "refund", outcome, cost=cost, assignment=variant)

`Client` blocks (a sender thread posts the events), `AsyncClient` is awaited (a sender
task does). ``assign`` never raises unless ``strict``: without the server it answers
from its cache or the caller's ``default``. Task events are retried with backoff until
the server takes them; ``close`` (or the end of the ``with`` block) delivers what it
can and spills the rest to ``spill_path`` for the next client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from splitedge_client.batches import DeliveryStats
from splitedge_client.errors import (
    ApiError,
    ClientClosed,
    DeliveryTimeout,
    InvalidRequest,
    SplitedgeClientError,
    Unreachable,
)
from splitedge_client.retry import RetryPolicy
from splitedge_client.sync import Client
from splitedge_client.wire import AssignedVariant, MetadataValue, Outcome, Source

if TYPE_CHECKING:
    from splitedge_client.aio import AsyncClient

__all__ = [
    "ApiError",
    "AssignedVariant",
    "AsyncClient",
    "Client",
    "ClientClosed",
    "DeliveryStats",
    "DeliveryTimeout",
    "InvalidRequest",
    "MetadataValue",
    "Outcome",
    "RetryPolicy",
    "Source",
    "SplitedgeClientError",
    "Unreachable",
]


def __getattr__(name: str) -> Any:
    # AsyncClient is loaded on first use: asyncio is about half the import time of the
    # package, and an agent that runs on an event loop has it loaded already.
    if name == "AsyncClient":
        from splitedge_client.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
