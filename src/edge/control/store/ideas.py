"""A/B test ideas of a workspace's sites (`edge.control.ideas` moves and generates them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from edge.control.idea_records import Idea, IdeaFilter, IdeaOut, IdeaSite, IdeaStatus
from edge.control.store.connection import StoreConnection
from edge.control.store.schema import insert_sql

__all__ = ["IdeaQueries"]

_COLUMNS = (
    "id, workspace_id, site_id, title, hypothesis, category, priority, status, output_type, "
    "estimated_impact, mockup_data, source_url, created_at, updated_at"
)
_OUT_COLUMNS = (
    "i.id, i.title, i.hypothesis, i.category, i.priority, i.status, i.output_type, "
    "i.estimated_impact, i.mockup_data, i.source_url, i.site_id, s.name, s.url, "
    "i.created_at, i.updated_at"
)
_OUT_FROM = "FROM ideas i JOIN sites s ON s.id = i.site_id"
_mockup_decoder = msgspec.json.Decoder(dict[str, Any])


def _out(row: Sequence[Any]) -> IdeaOut:
    (id_, title, hypothesis, category, priority, status, output_type, impact, mockup,
     source_url, site_id, site_name, site_url, created_at, updated_at) = row  # fmt: skip
    return IdeaOut(
        id=id_, title=title, hypothesis=hypothesis, category=category, priority=priority,
        status=status, output_type=output_type, estimated_impact=impact,
        mockup_data=_mockup_decoder.decode(mockup), source_url=source_url, site_id=site_id,
        sites=IdeaSite(site_name, site_url), created_at=created_at, updated_at=updated_at,
    )  # fmt: skip


class IdeaQueries(StoreConnection):
    """The queries of the ``ideas`` table."""

    def insert_idea(self, idea: Idea) -> None:
        """Store a new idea."""
        self.conn.execute(
            insert_sql("ideas", _COLUMNS),
            (
                idea.id, idea.workspace_id, idea.site_id, idea.title, idea.hypothesis,
                idea.category, idea.priority, idea.status, idea.output_type,
                idea.estimated_impact, msgspec.json.encode(idea.mockup_data).decode(),
                idea.source_url, idea.created_at, idea.updated_at,
            ),
        )  # fmt: skip

    def find_idea(self, workspace_id: str, idea_id: str) -> Idea | None:
        """The workspace's idea; None when it has no such idea (another workspace's is
        not there either)."""
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM ideas WHERE id = ? AND workspace_id = ?",
            (idea_id, workspace_id),
        ).fetchone()
        if row is None:
            return None
        (id_, ws, site, title, hypothesis, category, priority, status, output_type, impact,
         mockup, source_url, created_at, updated_at) = row  # fmt: skip
        return Idea(
            title=title, hypothesis=hypothesis, category=category, priority=priority,
            output_type=output_type, estimated_impact=impact,
            mockup_data=_mockup_decoder.decode(mockup), source_url=source_url, id=id_,
            workspace_id=ws, site_id=site, status=status, created_at=created_at,
            updated_at=updated_at,
        )  # fmt: skip

    def find_idea_out(self, workspace_id: str, idea_id: str) -> IdeaOut | None:
        """The workspace's idea with its site, as the API shows it; None when it has no
        such idea."""
        row = self.conn.execute(
            f"SELECT {_OUT_COLUMNS} {_OUT_FROM} WHERE i.id = ? AND i.workspace_id = ?",
            (idea_id, workspace_id),
        ).fetchone()
        return None if row is None else _out(row)

    def list_ideas(
        self, workspace_id: str, where: IdeaFilter, limit: int, offset: int
    ) -> tuple[list[IdeaOut], int]:
        """A page of the workspace's ideas that ``where`` admits, newest first, and how
        many it admits in all."""
        condition = (
            "i.workspace_id = ? AND (? IS NULL OR i.site_id = ?) AND (? IS NULL OR i.status = ?) "
            "AND (? IS NULL OR i.category = ?)"
        )
        args = (workspace_id, where.site_id, where.site_id, where.status, where.status,
                where.category, where.category)  # fmt: skip
        rows = self.conn.execute(
            f"SELECT {_OUT_COLUMNS} {_OUT_FROM} WHERE {condition} "
            "ORDER BY i.created_at DESC, i.rowid DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        (total,) = self.conn.execute(
            f"SELECT count(*) {_OUT_FROM} WHERE {condition}", args
        ).fetchone()
        return [_out(row) for row in rows], int(total)

    def update_idea_status(self, idea_id: str, status: IdeaStatus, updated_at: str) -> None:
        """Move an idea to ``status``."""
        self.conn.execute(
            "UPDATE ideas SET status = ?, updated_at = ? WHERE id = ?",
            (status, updated_at, idea_id),
        )
