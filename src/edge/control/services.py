"""What the control-plane routes of one worker share, built once by the app.

`edge.app.create_app` makes one `Services` per worker process and hands it to every route
factory (``routes(services)``) and to the MCP mount. A handler reaches the store through
it (`edge.control.api.in_store` and its siblings open `Services.open_store` on a thread),
authenticates against its plan limits, authors through its author, fetches through its
outbound guard and queries the warehouse through its runner.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from edge.control import plans
from edge.control.plans import PlanLimits
from edge.control.store import Store
from edge.settings import Settings

if TYPE_CHECKING:
    from analytics.gateway import ClickHouseRunner, GatewayRunner
    from edge.authoring.author import Author
    from edge.outbound import OutboundGuard

__all__ = ["Services"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Services:
    """One worker's control-plane services: its settings (the store file, the spool, the
    flags), the plans' limits (None: unmetered and unlimited), the guard every outbound
    request goes through, the author (one per worker: its page cache serves every route
    that authors) and the warehouse's query runner."""

    settings: Settings
    guard: OutboundGuard
    author: Author
    run: GatewayRunner | ClickHouseRunner
    limits: PlanLimits | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """The services ``settings`` configure, the plans those of ``settings.limits``."""
        # Imported here: what reaches the store through the services alone (the API
        # helpers, edge tokens and their CLI) loads no HTTP client, HTML parser or Arrow.
        from analytics.gateway import query_runner
        from edge.authoring import configured_author
        from edge.outbound import OutboundGuard

        guard = OutboundGuard.from_settings(settings)
        return cls(
            settings=settings,
            guard=guard,
            author=configured_author(guard),
            run=query_runner(settings.clickhouse_dsn, settings.run_dir),
            limits=plans.plan_limits(plans.load_plans(settings.limits)),
        )

    @property
    def store_path(self) -> Path:
        """The SQLite control-plane store."""
        return self.settings.store_path

    def open_store(self) -> Store:
        """A connection of its own to the store; the caller closes it. Blocking: call it
        on a thread."""
        return Store(self.settings.store_path)

    def close(self) -> None:
        """Let go of the warehouse runner (at the worker's shutdown)."""
        self.run.close()
