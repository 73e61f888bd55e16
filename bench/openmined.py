"""Baseline: OpenMined's ECDH PSI (``openmined-psi``), run in a virtualenv of its own.

``openmined-psi`` 2.0.6 pins ``protobuf==6.30.2`` while the project needs protobuf 7, so
the two cannot share an environment. :func:`ensure_openmined_venv` creates
``.bench-venvs/openmined`` on first use (``python -m venv`` with the interpreter running
the benchmark, then ``pip install openmined-psi==2.0.6``; this needs the package index),
and :func:`run_openmined` runs :mod:`bench.openmined_driver` there as a subprocess: the
job goes in as JSON on its standard input, the figures come back as JSON on its standard
output (what each figure means is in the driver's docstring). The result is checked
against the intersection computed here in the clear: a wrong intersection is a failed
benchmark, not a figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import BenchmarkFailedError, say

OPENMINED_PSI_VERSION = "2.0.6"
REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_DIR = REPO_ROOT / ".bench-venvs" / "openmined"
DRIVER = Path(__file__).resolve().parent / "openmined_driver.py"

#: Numeric figures the driver must report (all returned by :func:`run_openmined`).
FIGURES = (
    "fpr",
    "server_items",
    "client_items",
    "server_setup_seconds",
    "client_setup_load_seconds",
    "client_request_seconds",
    "server_process_seconds",
    "client_intersection_seconds",
    "online_seconds",
    "setup_bytes",
    "request_bytes",
    "response_bytes",
    "intersection_size",
)

__all__ = [
    "OPENMINED_PSI_VERSION",
    "OpenMinedFailedError",
    "ensure_openmined_venv",
    "run_openmined",
]


class OpenMinedFailedError(BenchmarkFailedError):
    """The OpenMined baseline could not be installed or run, or its answer is wrong."""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(command: Sequence[str | Path], what: str, *, timeout: float) -> str:
    try:
        result = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        raise OpenMinedFailedError(f"{what}: no answer after {timeout:.0f} s") from error
    if result.returncode != 0:
        raise OpenMinedFailedError(
            f"{what} failed with exit code {result.returncode}:\n{_tail(result.stderr)}"
        )
    return result.stdout


def _installed_version(python: Path) -> str | None:
    probe = "import private_set_intersection.python as psi; print(psi.__version__)"
    try:
        return _run([python, "-c", probe], "probe", timeout=120).strip()
    except OpenMinedFailedError:
        return None


def ensure_openmined_venv() -> Path:
    """The interpreter of ``.bench-venvs/openmined`` (``…/bin/python``), with
    ``openmined-psi`` 2.0.6 importable; the virtualenv is created and the package
    installed when missing (a few seconds, needs the package index)."""
    python = VENV_DIR / "bin" / "python"
    if python.exists() and _installed_version(python) == OPENMINED_PSI_VERSION:
        return python
    if not python.exists():
        say(f"creating {VENV_DIR.relative_to(REPO_ROOT)} for openmined-psi")
        _run([sys.executable, "-m", "venv", VENV_DIR], "python -m venv", timeout=300)
    say(f"installing openmined-psi=={OPENMINED_PSI_VERSION} there")
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"openmined-psi=={OPENMINED_PSI_VERSION}",
        ],
        f"pip install openmined-psi=={OPENMINED_PSI_VERSION}",
        timeout=900,
    )
    installed = _installed_version(python)
    if installed != OPENMINED_PSI_VERSION:
        raise OpenMinedFailedError(
            f"{VENV_DIR} has openmined-psi {installed or 'not importable'}, "
            f"expected {OPENMINED_PSI_VERSION}"
        )
    return python


def _check(
    report: dict[str, Any],
    server_items: Sequence[str],
    client_items: Sequence[str],
    *,
    reveal_intersection: bool,
) -> dict[str, float | int]:
    figures: dict[str, float | int] = {}
    for key in FIGURES:
        value = report.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise OpenMinedFailedError(f"the driver reported {key}={value!r}")
        figures[key] = value
    if (figures["server_items"], figures["client_items"]) != (
        len(server_items),
        len(client_items),
    ):
        raise OpenMinedFailedError("the driver ran on sets of other sizes than those sent")
    server_set = set(server_items)
    common = set(client_items) & server_set
    # Client items repeated in the client's set may be counted once or each time, depending
    # on the data structure; a false positive at the chosen rate is not expected.
    counted = sum(1 for item in client_items if item in server_set)
    size = figures["intersection_size"]
    if not len(common) <= size <= counted:
        expected = f"{len(common)}" + (f" to {counted}" if counted != len(common) else "")
        raise OpenMinedFailedError(f"OpenMined found {size} common items, expected {expected}")
    if reveal_intersection:
        found = report.get("intersection")
        if not isinstance(found, list) or set(found) != common:
            raise OpenMinedFailedError("the intersection OpenMined revealed is wrong")
    return figures


def run_openmined(
    server_items: Sequence[str],
    client_items: Sequence[str],
    *,
    reveal_intersection: bool = True,
    fpr: float = 1e-12,
    data_structure: str = "GCS",
    timeout: float = 3600,
) -> dict[str, float | int]:
    """One OpenMined PSI exchange on these sets (the client learns which of its items the
    server holds, or only how many), timed phase by phase in the baseline's virtualenv.

    Returns the numeric figures of :data:`FIGURES`: the sizes and ``fpr``, the seconds of
    each phase and ``online_seconds``, the bytes of each message, ``intersection_size``.
    Raises :class:`OpenMinedFailedError` when the driver fails or its answer differs from
    the intersection computed here, :class:`ValueError` for an empty client set (the
    library refuses to build a setup message for no client items)."""
    if not client_items:
        raise ValueError("OpenMined PSI needs at least one client item")
    python = ensure_openmined_venv()
    job = {
        "server_items": list(server_items),
        "client_items": list(client_items),
        "fpr": fpr,
        "reveal_intersection": reveal_intersection,
        "data_structure": data_structure,
    }
    try:
        result = subprocess.run(
            [str(python), str(DRIVER)],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        raise OpenMinedFailedError(f"the OpenMined driver ran over {timeout:.0f} s") from error
    if result.returncode != 0:
        raise OpenMinedFailedError(
            f"the OpenMined driver failed with exit code {result.returncode}:\n"
            + _tail(result.stderr)
        )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise OpenMinedFailedError(
            f"the OpenMined driver printed no JSON result: {_tail(result.stdout, 3)!r}"
        ) from error
    if not isinstance(report, dict):
        raise OpenMinedFailedError("the OpenMined driver printed no JSON object")
    return _check(report, server_items, client_items, reveal_intersection=reveal_intersection)
