"""The Python client of a splitedge server, for agents: one call to get the variant and
its prompt, task events batched in the background, results.

    from edge.client import Client

    with Client("http://127.0.0.1:8000", api_key) as splitedge:
        variant = splitedge.assign(experiment_id, unit_id=run_id)
        prompt = variant.payload["soul_md"] if variant else DEFAULT_PROMPT
        outcome, cost = run_agent(prompt)
        splitedge.track_task("support-bot", "refund", outcome, cost=cost, assignment=variant)

`Client` blocks (a sender thread posts the events), `AsyncClient` is awaited (a sender
task does). Both retry a connection error, a 429 and a 5xx with backoff, and deliver
everything queued on ``close`` (or at the end of the ``with`` block).
"""

from __future__ import annotations

from edge.client.aio import AsyncClient
from edge.client.batches import DeliveryStats
from edge.client.errors import ApiError, ClientClosed, DeliveryTimeout, QueueFull, Unreachable
from edge.client.retry import RetryPolicy
from edge.client.sync import Client
from edge.client.wire import AssignedVariant

__all__ = [
    "ApiError",
    "AssignedVariant",
    "AsyncClient",
    "Client",
    "ClientClosed",
    "DeliveryStats",
    "DeliveryTimeout",
    "QueueFull",
    "RetryPolicy",
    "Unreachable",
]
