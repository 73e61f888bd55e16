"""``credit-node serve``: run the node until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from node.config import load_config
from node.logs import configure_logging
from node.service.server import run_node


class _StoppedWhileStarting(Exception):
    """SIGTERM arrived before the node's own signal handling was in place."""


def _stop_while_starting(signum: int, frame: FrameType | None) -> None:
    raise _StoppedWhileStarting


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the node (peer API and client API) until SIGTERM/SIGINT",
        description="Run the node. Exits 0 after a clean shutdown on SIGTERM or SIGINT, "
        "1 if it cannot start (the message says why).",
    )
    parser.add_argument("--dir", type=Path, required=True, help="the node directory")
    parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    # Until run_node installs its handlers, a SIGTERM (an orchestrator changing its mind)
    # ends the start-up cleanly instead of killing the process mid-way.
    signal.signal(signal.SIGTERM, _stop_while_starting)
    try:
        config = load_config(args.dir)
        configure_logging(city_code=config.city_code, level=config.log_level, fmt=config.log_format)
        asyncio.run(run_node(config))
    except _StoppedWhileStarting:
        return 0
    return 0
