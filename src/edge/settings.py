"""Server settings, from command-line flags or ``SPLITEDGE_*`` environment variables.

The CLI resolves the settings once and exports them to the environment, so that every
Granian worker process builds the same app from the same values.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

__all__ = ["ENV_PREFIX", "Settings", "env_flag"]

ENV_PREFIX = "SPLITEDGE_"


def env_flag(name: str) -> bool:
    """Whether the ``SPLITEDGE_<NAME>`` variable switches a flag on (``1`` or ``true``)."""
    return os.environ.get(ENV_PREFIX + name.upper(), "").lower() in ("1", "true")


class Settings(msgspec.Struct, frozen=True):
    """Everything ``splitedge serve`` can be told."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: str = "data"
    clickhouse: str = ""
    clickhouse_cluster: str = ""
    spool_cap_mb: int = 1024
    config_poll_interval: float = 0.2
    # Development mode: webhooks may use plain http://, and outbound requests (page
    # fetches, webhooks) may go to loopback and private addresses (edge.outbound).
    dev: bool = False
    # Outbound requests may go to loopback and private addresses, without the rest of --dev.
    allow_private_targets: bool = False
    # Webhook deliveries (edge.control.webhook_dispatch.RetryPolicy), in seconds.
    webhook_timeout: float = 10.0
    webhook_backoff: float = 30.0
    webhook_backoff_cap: float = 3600.0
    webhook_max_attempts: int = 12
    # Plans (edge.control.plans): "off" (unmetered, unlimited), "reference" or a JSON file.
    limits: str = "off"
    # Seconds between passes of the automatic decisions (edge.control.decisions).
    decision_interval: float = 30.0
    # Experiments with at least this many events have their results read from a summary
    # the server keeps from the units that change (analytics.summaries); smaller ones are
    # counted from every unit's state at each read, which costs less than waiting.
    summary_from_events: int = 500_000
    # Seconds between scheduler passes over loops and idea schedules (edge.control.scheduler);
    # 0: no scheduler in the server (run `splitedge tick` from cron).
    tick_interval: float = 3600.0
    # What a successful agent task is worth, for netROI in GET /v1/agents/{id}/stats when
    # the request does not say (edge.control.agents_api); 0: no value, netROI is null.
    agent_value_per_success: float = 0.0
    # Seconds after an experiment ended during which /v1/events still takes its late
    # events (sessions that were running when it ended); stored, outside its results.
    late_event_grace: float = 86_400.0
    # A remote edge node's control plane and its edge token (`splitedge edge`, edge.node).
    control_url: str = ""
    edge_token: str = ""
    # The origin clients reach this server at (``https://ab.example.com``), for every URL
    # it hands out; empty: each request's own scheme and Host (edge.http.PublicOrigin).
    public_url: str = ""
    # Peers (IPs or CIDRs, comma-separated; ``*``: any) whose X-Forwarded-Proto/-Host and
    # Forwarded headers say how the client reached the proxy in front of this server.
    forwarded_allow_ips: str = ""
    # The server's loggers' level: debug, info, warning or error.
    log_level: str = "info"

    @property
    def store_path(self) -> Path:
        """The SQLite control-plane store."""
        return Path(self.data_dir) / "splitedge.sqlite3"

    @property
    def spool_dir(self) -> Path:
        """Arrow IPC segments of accepted events not yet in ClickHouse."""
        return Path(self.data_dir) / "spool"

    @property
    def run_dir(self) -> Path:
        """Files of the running server, emptied at every start: the workers' metric files
        (prometheus_client multiprocess mode) and the warehouse gateway's socket."""
        return Path(self.data_dir) / "run"

    @property
    def clickhouse_dsn(self) -> str:
        """The ClickHouse DSN; embedded chDB under the data dir unless one is given."""
        return self.clickhouse or f"chdb://{Path(self.data_dir).resolve() / 'clickhouse'}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Settings from ``SPLITEDGE_<FIELD>`` variables, defaults for the rest."""
        env = os.environ if environ is None else environ
        values = {
            name: env[ENV_PREFIX + name.upper()]
            for name in cls.__struct_fields__
            if ENV_PREFIX + name.upper() in env
        }
        return msgspec.convert(values, cls, strict=False)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a worker."""
        return {
            ENV_PREFIX + name.upper(): str(getattr(self, name)) for name in self.__struct_fields__
        }
