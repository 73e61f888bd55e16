"""Placeholder: replaced by the real `status` verbs."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: "argparse._SubParsersAction[Any]") -> None:
    pass
