"""Answers in the shapes of the product whose key made the request (docs/compatibility.md).

A key's flavour (`edge.api_keys`) picks whose documented shapes its requests get. The
reference documents show some answers as a bare object where splitedge answers
``{"data": ..., "meta": ...}``: ClawSplit's create (the quickstart reads ``experiment.id``)
and results, ClawTrait's agent stats and drift. For those calls a handler answers with
`flavoured`, naming the flavours whose product shows it bare; every other answer, and
every answer to a ``sk_live_`` key, is splitedge's envelope as before.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import msgspec

from edge.api_keys import Flavour
from edge.control.api import Meta, Reply, ok

__all__ = ["CLAWSPLIT", "CLAWTRAIT", "flavoured"]

CLAWSPLIT: frozenset[Flavour] = frozenset({"clawsplit"})
"""The flavours that take ClawSplit's shape of a call."""

CLAWTRAIT: frozenset[Flavour] = frozenset({"clawtrait"})
"""The flavours that take ClawTrait's shape of a call."""


def flavoured(
    flavour: Flavour,
    bare_for: Container[Flavour],
    data: Any,
    meta: Meta | None = None,
    status: int = 200,
    bare: Any = None,
) -> Reply:
    """`ok` (``{data, meta}``), or for a key whose flavour is in ``bare_for`` the product's
    own shape: ``bare`` when given (e.g. the experiment alone where ``data`` wraps it),
    else ``data`` itself, with no envelope."""
    if flavour in bare_for:
        return Reply(status, msgspec.json.encode(data if bare is None else bare))
    return ok(data, meta, status)
