"""Entry point of ``credit-node``.

Exit codes: 0 success; 1 an error the message explains; 2 bad usage or invalid input
(for ``subject check``: at least one identifier is invalid); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from federation.errors import CreditNetError, ErrorCode
from node.cli import (
    audit,
    demo,
    federation,
    init,
    lists,
    match,
    reports,
    serve,
    status,
    subject,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

COMMAND_GROUPS = (init, serve, status, federation, subject, lists, match, reports, audit, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credit-node",
        description="A city's node in a credit federation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except CreditNetError as exc:
        print(f"credit-node: error: {exc.diagnostics()}", file=sys.stderr)
        return EXIT_USAGE if exc.code is ErrorCode.INVALID_INPUT else EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``credit-node status | head``): nothing left to say.
        sys.stderr.close()
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
