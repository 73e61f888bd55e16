"""``credit-node demo``: a whole federation on this machine (see :mod:`node.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from node.demo import run_demo


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the five Jiaodong cities as node processes on loopback",
        description="Create five nodes, form a signed federation, start them, show the "
        "federation, run the scenarios, stop everything. Exits 0 when all went as expected.",
    )
    parser.add_argument("--dir", type=Path, help="keep the nodes here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="do not delete the node directories")
    parser.add_argument(
        "--paillier-bits", type=int, default=2048, help="Paillier key size (default 2048)"
    )
    parser.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    return run_demo(workdir=args.dir, paillier_bits=args.paillier_bits, keep=args.keep)
