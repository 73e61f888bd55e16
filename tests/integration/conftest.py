"""A real federation for integration tests: node processes on loopback, real TLS, SQLite.

Built with the same functions as ``credit-node demo`` (``node.demo``), with three members
and 1024-bit Paillier keys so that key generation stays quick.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from federation.clock import SystemClock
from federation.errors import CreditNetError
from federation.manifest import SignedManifest, build_manifest
from node.demo import DemoNode, all_reachable, create_nodes, sign, start, stop
from node.trust import install_manifest

CITIES = ["370200", "370600", "371000"]


@dataclass
class Federation:
    root: Path
    nodes: list[DemoNode]
    manifest: SignedManifest

    def node(self, city: str) -> DemoNode:
        return next(n for n in self.nodes if n.member.city_code == city)

    def log(self, city: str) -> str:
        return (self.node(city).config.home / "node.log").read_text()


def wait_for(check: Callable[[], bool], *, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except CreditNetError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"condition not reached within {timeout_s}s (last error: {last})")


def form_federation(root: Path, cities: list[str]) -> Federation:
    nodes = create_nodes(root, cities, paillier_bits=1024)
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[n.member for n in nodes],
        threshold=min(2, len(nodes)),
        expires=SystemClock().now() + dt.timedelta(days=7),
    )
    signed = sign(manifest, nodes[: manifest.threshold])
    for node in nodes:
        install_manifest(node.config, signed.to_bytes(), clock=SystemClock())
    return Federation(root, nodes, signed)


@contextlib.contextmanager
def running_federation(
    root: Path, cities: list[str], configure: Callable[[Path, str], None] | None = None
) -> Iterator[Federation]:
    """:func:`form_federation`, each node's ``node.toml`` then given to ``configure`` (with
    its city code), every node started and connected; stopped cleanly at the end."""
    fed = form_federation(root, cities)
    for node in fed.nodes:
        if configure is not None:
            configure(node.config.config_path, node.member.city_code)
        start(node)
    try:
        wait_for(lambda: all_reachable(fed.nodes, 1), timeout_s=60)
        yield fed
    finally:
        codes = stop(fed.nodes)
        assert codes == [0] * len(codes), f"nodes did not stop cleanly: {codes}"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Three member nodes, running, all connected. Tests may change the manifest version
    but leave every node running."""
    with running_federation(tmp_path_factory.mktemp("federation"), CITIES) as fed:
        yield fed
