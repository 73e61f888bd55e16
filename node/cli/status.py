"""``credit-node status``: this node's view of the federation."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from creditnet.v1 import client_pb2
from federation.clock import format_utc
from node.cli.table import ago, render_table
from node.client import NodeClient
from node.config import load_config


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "status",
        help="show this node's view of the federation",
        description="Ask the running node for its view of the federation: members, "
        "reachable or not, the manifest version each holds, last contact.",
    )
    parser.add_argument("--dir", type=Path, required=True, help="the node directory")
    parser.set_defaults(handler=show_status)


def show_status(args: argparse.Namespace) -> int:
    config = load_config(args.dir)
    with NodeClient(config) as client:
        status = client.status()
        sync = client.sync_status()
    print(format_status(status, now=dt.datetime.now(dt.UTC), sync=sync))
    return 0


def format_status(
    status: client_pb2.GetStatusResponse,
    *,
    now: dt.datetime,
    sync: client_pb2.GetSyncStatusResponse | None = None,
) -> str:
    replicas = {r.origin: r for r in sync.replicas} if sync is not None else {}
    rows = []
    for member in status.members:
        if member.is_self:
            state, contact = "self", "-"
        else:
            state = "yes" if member.reachable else "NO"
            contact = (
                ago(member.last_contact.ToDatetime(dt.UTC), now)
                if member.HasField("last_contact")
                else "never"
            )
        version = f"v{member.manifest_version}" if member.manifest_version else "-"
        error = member.last_error if not member.reachable and not member.is_self else ""
        row = [member.city_code, member.name, member.endpoint, state, version, contact]
        if sync is not None:
            row.extend(_log_cells(member, sync, replicas.get(member.city_code)))
            replica = replicas.get(member.city_code)
            if replica is not None and replica.blocked:
                error = f"sync stopped: {replica.blocked_reason}"
            elif not error and replica is not None and replica.last_error and replica.lag:
                error = f"sync: {replica.last_error}"
        rows.append([*row, error])
    reachable = sum(1 for m in status.members if m.reachable)
    expires_at = status.manifest_expires.ToDatetime(dt.UTC)
    expires = format_utc(expires_at)
    if expires_at <= now:
        expires = f"EXPIRED {expires}: peers are refused until a newer version is installed"
    head = (
        f"federation {status.federation_id}  manifest v{status.manifest_version} "
        f"(expires {expires})  seen from {status.city_code}\n"
        f"{reachable} of {len(status.members)} members reachable\n"
    )
    columns = ["CITY", "NAME", "ENDPOINT", "REACHABLE", "MANIFEST", "LAST CONTACT"]
    if sync is not None:
        columns += ["LIST LOG", "LAG"]
    table = render_table([*columns, "LAST ERROR"], rows)
    if sync is not None and sync.split_views:
        lines = [
            f"  {v.origin}: {v.reason} (reported by {v.reported_by}, "
            f"{format_utc(v.detected_at.ToDatetime(dt.UTC))})"
            for v in sync.split_views
        ]
        table += (
            "\n\nSPLIT VIEWS (a city showed two histories; sync from it is stopped until "
            "`credit-node list resume CITY`):\n" + "\n".join(lines)
        )
    if status.recent_events:
        lines = [
            f"  {format_utc(e.at.ToDatetime(dt.UTC))}  {e.kind}  {e.detail}"
            for e in status.recent_events
        ]
        table += "\n\nrecent events (newest first):\n" + "\n".join(lines)
    return head + table


def _log_cells(
    member: client_pb2.MemberStatus,
    sync: client_pb2.GetSyncStatusResponse,
    replica: client_pb2.ReplicaSync | None,
) -> list[str]:
    """The size of the member's list log held here, and how far behind it is."""
    if member.is_self:
        return [str(sync.own_log_size), "-"]
    if replica is None:
        return ["-", "-"]
    return [str(replica.verified_size), str(replica.lag)]
