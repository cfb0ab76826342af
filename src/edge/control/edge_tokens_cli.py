"""``splitedge edge-tokens``: issue, list and revoke the tokens of remote edge nodes
(`edge.control.edge_tokens`)."""

from __future__ import annotations

import argparse
import sys

from edge.control.edge_tokens import issue_edge_token, revoke_edge_token
from edge.control.keys_cli import data_dir_parent
from edge.control.store import Store
from edge.errors import NotFound
from edge.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``edge-tokens`` command and its subcommands."""
    command = sub.add_parser("edge-tokens", help="issue, list and revoke edge node tokens")
    actions = command.add_subparsers(dest="edge_tokens_command", required=True)
    parent = data_dir_parent()
    create = actions.add_parser("create", parents=[parent], help="issue a token, shown once")
    create.add_argument("--name", required=True, metavar="NODE", help="the node it is for")
    actions.add_parser("list", parents=[parent], help="the tokens (no secrets)")
    revoke = actions.add_parser("revoke", parents=[parent], help="revoke a token")
    revoke.add_argument("token", metavar="ID_OR_PREFIX")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``edge-tokens`` command; the exit code."""
    store = Store(Settings(data_dir=args.data_dir).store_path)
    try:
        if args.edge_tokens_command == "create":
            issued = issue_edge_token(store, args.name)
            print(f"issued edge token (id {issued.id}) for node {issued.name!r}; it is shown "
                  "this once, only its hash is kept:", file=sys.stderr)  # fmt: skip
            print(issued.token)
            return 0
        if args.edge_tokens_command == "list":
            print("ID  PREFIX  NAME  CREATED  REVOKED")
            for token in store.list_edge_tokens():
                print(f"{token.id}  {token.prefix}...  {token.name}  {token.created_at}  "
                      f"{token.revoked_at or '-'}")  # fmt: skip
            return 0
        try:
            revoked = revoke_edge_token(store, args.token.removesuffix("..."))
        except NotFound as exc:
            print(f"splitedge: {exc.message}", file=sys.stderr)
            return 1
        print(f"revoked edge token {revoked.prefix}... of node {revoked.name!r}", file=sys.stderr)
        return 0
    finally:
        store.close()
