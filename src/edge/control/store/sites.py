"""Sites: a workspace's websites, each with the public key its snippet is loaded with."""

from __future__ import annotations

import sqlite3
import uuid
from urllib.parse import urlsplit

from edge.config import ANTI_FLICKER_MS, MAX_ANTI_FLICKER_MS
from edge.control.records import Site, SiteRecord, utc_now
from edge.control.store.connection import StoreConnection, new_id
from edge.errors import Conflict, InvalidRequest, NotFound

__all__ = ["SiteQueries", "normalize_site_url"]

_SITE_RECORD_COLUMNS = (
    "id, workspace_id, name, url, domain, public_key, created_at, anti_flicker_ms, "
    "platform, updated_at"
)


def normalize_site_url(url: str) -> tuple[str, str]:
    """The site URL with a scheme (https:// added when missing) and its lower-case domain."""
    text = url.strip()
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise InvalidRequest(
            f"url {url[:200]!r} has a space or a control character; pass e.g. https://example.com"
        )
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port  # a ValueError too when it is not a number from 0 to 65535
    except ValueError as exc:  # e.g. "Invalid IPv6 URL", "Port out of range 0-65535"
        raise InvalidRequest(
            f"url {url[:200]!r} is not a website address ({exc}); pass e.g. https://example.com"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"url {url!r} is not a website address; pass e.g. https://example.com")
    domain = parts.hostname.lower()
    host = f"[{domain}]" if ":" in domain else domain  # an IPv6 address keeps its brackets
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path or '/'}", domain


class SiteQueries(StoreConnection):
    """The queries of the ``sites`` table."""

    def create_site(
        self,
        workspace_id: str,
        url: str,
        name: str | None = None,
        anti_flicker_ms: int = ANTI_FLICKER_MS,
    ) -> Site:
        """Register a site; the URL gets a scheme if it lacks one, the name defaults to the
        domain. A second site with the same domain in a workspace is a conflict.
        ``anti_flicker_ms`` bounds how long its snippet hides a page (0 never hides)."""
        if not 0 <= anti_flicker_ms <= MAX_ANTI_FLICKER_MS:
            raise InvalidRequest(
                f"anti_flicker_ms must be between 0 and {MAX_ANTI_FLICKER_MS} (milliseconds)"
            )
        normalized, domain = normalize_site_url(url)
        now = utc_now()
        site = Site(
            id=new_id(),
            workspace_id=workspace_id,
            name=name or domain,
            url=normalized,
            domain=domain,
            public_key=uuid.uuid4().hex,
            created_at=now,
            anti_flicker_ms=anti_flicker_ms,
        )
        try:
            self.conn.execute(
                "INSERT INTO sites (id, workspace_id, name, url, domain, public_key, "
                "created_at, updated_at, anti_flicker_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    site.id, workspace_id, site.name, site.url, domain, site.public_key, now,
                    now, anti_flicker_ms,
                ),
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise Conflict(f"a site for {domain} is already registered") from None
        return site

    def get_site(self, site_id: str) -> Site:
        """One site by id."""
        row = self.conn.execute(
            "SELECT id, workspace_id, name, url, domain, public_key, created_at, "
            "anti_flicker_ms FROM sites WHERE id = ?",
            (site_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no site with id {site_id!r}")
        return Site(*row)

    def is_public_key(self, key: str) -> bool:
        """Whether ``key`` is a site's public (snippet) key."""
        found = self.conn.execute("SELECT 1 FROM sites WHERE public_key = ?", (key,))
        return found.fetchone() is not None

    def list_sites(
        self, workspace_id: str, limit: int, offset: int
    ) -> tuple[list[SiteRecord], int]:
        """A page of a workspace's sites, newest first, and how many it has in all."""
        sites = [
            SiteRecord(*row)
            for row in self.conn.execute(
                f"SELECT {_SITE_RECORD_COLUMNS} FROM sites WHERE workspace_id = ? "
                "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (workspace_id, limit, offset),
            )
        ]
        return sites, self.count_sites(workspace_id)

    def count_sites(self, workspace_id: str) -> int:
        """How many sites a workspace has."""
        (count,) = self.conn.execute(
            "SELECT count(*) FROM sites WHERE workspace_id = ?", (workspace_id,)
        ).fetchone()
        return int(count)

    def all_sites(self) -> list[SiteRecord]:
        """Every workspace's sites, by id."""
        return [
            SiteRecord(*row)
            for row in self.conn.execute(f"SELECT {_SITE_RECORD_COLUMNS} FROM sites ORDER BY id")
        ]

    def find_site(self, site_id: str, workspace_id: str) -> SiteRecord | None:
        """A site of a workspace; None when that workspace has no such site (another
        workspace's is not there either)."""
        row = self.conn.execute(
            f"SELECT {_SITE_RECORD_COLUMNS} FROM sites WHERE id = ? AND workspace_id = ?",
            (site_id, workspace_id),
        ).fetchone()
        return None if row is None else SiteRecord(*row)

    def site_by_domain(self, workspace_id: str, domain: str) -> SiteRecord | None:
        """The workspace's site for a (lower-case) domain, if it has one."""
        row = self.conn.execute(
            f"SELECT {_SITE_RECORD_COLUMNS} FROM sites WHERE workspace_id = ? AND domain = ?",
            (workspace_id, domain),
        ).fetchone()
        return None if row is None else SiteRecord(*row)
