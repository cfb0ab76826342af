"""``splitedge keys``: create, list and revoke workspace API keys in the store.

``create`` prints the secret on stdout and nothing else there, so
``KEY=$(splitedge keys create --workspace acme)`` works; what it did goes to stderr. The
secret is never stored and cannot be shown again; ``list`` shows prefixes only.
"""

from __future__ import annotations

import argparse
import os
import sys

from edge.api_keys import FLAVOURS, Flavour
from edge.control.keys_api import issue_key, revoke_key
from edge.control.records import ApiKeyInfo
from edge.control.store import Store
from edge.settings import ENV_PREFIX, Settings

__all__ = ["add_parser", "data_dir_parent", "run"]


def data_dir_parent() -> argparse.ArgumentParser:
    """The ``--data-dir`` option of the store commands, as a parent parser."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data-dir",
        default=os.environ.get(ENV_PREFIX + "DATA_DIR", Settings().data_dir),
        help="where the store lives, as for serve (SPLITEDGE_DATA_DIR)",
    )
    return parent


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``keys`` command and its subcommands."""
    keys = sub.add_parser("keys", help="create, list and revoke workspace API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    data_dir = data_dir_parent()
    create = actions.add_parser(
        "create",
        parents=[data_dir],
        help="issue a key (creating the workspace if it is new) and print it once",
    )
    create.add_argument("--workspace", required=True, metavar="NAME")
    create.add_argument("--name", default="default", help="a label for the key")
    create.add_argument(
        "--flavour",
        choices=FLAVOURS,
        default="splitedge",
        help="whose API shapes the key's requests get: splitedge's (sk_live_), ClawSplit's "
        "(cs_live_), ClawTrait's (ct_) or crewkit's (ck_); docs/compatibility.md",
    )
    create.add_argument(
        "--plan",
        help="the workspace's plan (starter, pro, team, enterprise or one of your plans "
        "file), which sets its limits; a new workspace is enterprise unless given",
    )
    listing = actions.add_parser(
        "list", parents=[data_dir], help="keys with prefix, dates and state; never secrets"
    )
    listing.add_argument("--workspace", metavar="NAME", help="only this workspace's keys")
    revoke = actions.add_parser("revoke", parents=[data_dir], help="revoke a key at once")
    revoke.add_argument("key", metavar="KEY_ID_OR_PREFIX", help="as `keys list` shows it")


def _create(
    store: Store, workspace_name: str, key_name: str, plan: str | None, flavour: Flavour
) -> int:
    with store.transaction():
        workspace = store.workspace_by_name(workspace_name)
        created = workspace is None
        if workspace is None:
            workspace = store.create_workspace(workspace_name, plan or "enterprise")
        elif plan is not None and plan != workspace.plan:
            store.set_workspace_plan(workspace.id, plan)
            print(f"workspace {workspace_name!r} moved to plan {plan!r}", file=sys.stderr)
        issued = issue_key(store, workspace.id, None, key_name, flavour)
    if created:
        print(f"created workspace {workspace_name!r} ({workspace.id})", file=sys.stderr)
    print(
        f"issued key {issued.record.prefix}... (id {issued.record.id}) for workspace "
        f"{workspace_name!r}; it is shown this once, only its hash is kept:",
        file=sys.stderr,
    )
    print(issued.key)
    return 0


def _list(store: Store, workspace_name: str | None) -> int:
    workspace_id = None
    if workspace_name is not None:
        workspace = store.workspace_by_name(workspace_name)
        if workspace is None:
            print(f"splitedge: no workspace named {workspace_name!r}", file=sys.stderr)
            return 1
        workspace_id = workspace.id
    rows = [("ID", "PREFIX", "WORKSPACE", "NAME", "CREATED", "LAST USED", "REVOKED")]
    rows += [
        (
            k.id, k.prefix + "...", k.workspace_name, k.name, k.created_at,
            k.last_used_at or "never", k.revoked_at or "-",
        )
        for k in store.list_api_keys(workspace_id)
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def _describe(key: ApiKeyInfo) -> str:
    return f"{key.prefix}... (id {key.id}) of workspace {key.workspace_name!r}"


def _revoke(store: Store, wanted: str) -> int:
    # A prefix ends at its 16th character; accept it as `keys list` prints it.
    found = store.find_api_keys(wanted.removesuffix("..."))
    if not found:
        print(f"splitedge: no API key with id or prefix {wanted!r}", file=sys.stderr)
        return 1
    if len(found) > 1:
        ids = ", ".join(key.id for key in found)
        print(
            f"splitedge: {wanted!r} names {len(found)} keys; revoke by id: {ids}", file=sys.stderr
        )
        return 1
    (key,) = found
    if key.revoked_at is not None:
        print(f"splitedge: {_describe(key)} was revoked at {key.revoked_at}", file=sys.stderr)
        return 1
    with store.transaction():
        revoke_key(store, key, None)
    print(f"revoked {_describe(key)}; requests with it now get 401", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``keys`` command; the exit code."""
    store = Store(Settings(data_dir=args.data_dir).store_path)
    try:
        if args.keys_command == "create":
            return _create(store, args.workspace, args.name, args.plan, args.flavour)
        if args.keys_command == "list":
            return _list(store, args.workspace)
        return _revoke(store, args.key)
    finally:
        store.close()
