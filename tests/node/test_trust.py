"""node.trust.TrustStore: telling the node's parts about a new manifest, whichever process
stored it (real SQLite database, real signed manifests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.clock import FixedClock
from federation.manifest import Manifest, SignedManifest, build_manifest, next_version
from node.storage import open_database
from node.storage.database import Database
from node.storage.repositories import ManifestRepository
from node.trust import TrustStore
from tests.federation.conftest import NOW, YEAR, make_city

QINGDAO, YANTAI, WEIHAI, RIZHAO = (make_city(c) for c in ("370200", "370600", "371000", "371100"))
V1 = build_manifest(
    federation_id="jiaodong",
    federation_name="胶东经济圈",
    members=[QINGDAO.member, YANTAI.member, WEIHAI.member],
    threshold=2,
    expires=NOW + YEAR,
)
V2 = next_version(V1, expires=NOW + YEAR, add=[RIZHAO.member], remove=[WEIHAI.code])
SIGNED_V1 = SignedManifest(V1).sign(QINGDAO.key).sign(YANTAI.key).to_bytes()
SIGNED_V2 = SignedManifest(V2).sign(QINGDAO.key).sign(YANTAI.key).sign(RIZHAO.key).to_bytes()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(f"sqlite:///{tmp_path / 'node.db'}")
    yield db
    db.close()


def store(database: Database) -> TrustStore:
    return TrustStore(ManifestRepository(database), FixedClock(NOW))


def test_a_version_the_cli_stored_first_is_still_told_to_the_node(database: Database) -> None:
    node = store(database)
    node.install(SIGNED_V1, source="operator")
    told: list[int] = []
    node.on_change(lambda manifest: told.append(manifest.version))
    store(database).install(SIGNED_V2, source="operator")  # the CLI, another process
    # The node meanwhile has v2 from a peer: the CLI's copy is stored already.
    adopted = node.adopt_chain([SIGNED_V2], source="peer:370200")
    assert adopted.version == 2
    assert told == [2]
    assert node.refresh() is False
    assert told == [2]  # once


def test_a_listener_that_fails_does_not_keep_the_others_from_the_news(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    node = store(database)
    node.install(SIGNED_V1, source="operator")
    told: list[int] = []
    failures = [RuntimeError("not now")]

    def fragile(manifest: Manifest) -> None:
        if failures:
            raise failures.pop()

    node.on_change(fragile)
    node.on_change(lambda manifest: told.append(manifest.version))
    node.adopt_chain([SIGNED_V2], source="peer:370200")
    assert told == [2]
    assert "a part of the node did not take the new manifest" in caplog.text
    assert node.refresh() is False
    assert told == [2, 2]  # told again, as the first listener missed it
    assert node.refresh() is False
    assert told == [2, 2]
