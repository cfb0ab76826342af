"""``splitedge credits``: grant credits to a workspace and show its balance and ledger.

Credits matter only for workspaces on a metered plan (`edge.control.plans`); the operator
grants them here. A grant is recorded in the ledger and in the audit trail (with no key:
it came from the command line).
"""

from __future__ import annotations

import argparse
import sys

from edge.control import audit, credits
from edge.control.keys_cli import data_dir_parent
from edge.control.records import Workspace
from edge.control.store import Store
from edge.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``credits`` command and its subcommands."""
    command = sub.add_parser("credits", help="grant credits to a workspace and show them")
    actions = command.add_subparsers(dest="credits_command", required=True)
    parent = data_dir_parent()
    grant = actions.add_parser(
        "grant", parents=[parent], help="add credits (a negative amount takes them back)"
    )
    grant.add_argument("--workspace", required=True, metavar="NAME")
    grant.add_argument("amount", type=int, metavar="AMOUNT")
    show = actions.add_parser("show", parents=[parent], help="the balance and recent ledger")
    show.add_argument("--workspace", required=True, metavar="NAME")


def _workspace(store: Store, name: str) -> Workspace | None:
    workspace = store.workspace_by_name(name)
    if workspace is None:
        print(
            f"splitedge: no workspace named {name!r}; `splitedge keys create --workspace "
            f"{name}` creates it",
            file=sys.stderr,
        )
    return workspace


def _grant(store: Store, name: str, amount: int) -> int:
    workspace = _workspace(store, name)
    if workspace is None:
        return 1
    with store.transaction():
        after = credits.grant(store, workspace.id, amount)
        audit.record(
            store, workspace.id, None, "credits.grant", "workspace", workspace.id,
            {"amount": amount, "balance": after},
        )  # fmt: skip
    print(f"workspace {name!r} now has {after} credits", file=sys.stderr)
    print(after)
    return 0


def _show(store: Store, name: str) -> int:
    workspace = _workspace(store, name)
    if workspace is None:
        return 1
    print(f"{name}: plan {workspace.plan}, {store.credit_balance(workspace.id)} credits")
    entries, total = store.credit_ledger(workspace.id, 20, 0)
    for entry in entries:
        print(f"  {entry.created_at}  {entry.delta:+6d}  → {entry.balance:6d}  {entry.reason}")
    if total > len(entries):
        print(f"  … {total - len(entries)} older entries (GET /v1/credits/ledger)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``credits`` command; the exit code."""
    store = Store(Settings(data_dir=args.data_dir).store_path)
    try:
        if args.credits_command == "grant":
            return _grant(store, args.workspace, args.amount)
        return _show(store, args.workspace)
    finally:
        store.close()
