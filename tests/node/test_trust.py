"""node.trust.TrustStore: telling the node's parts about a new manifest, whichever process
stored it, and the pin of what it trusts outside its database (real SQLite database, real
signed manifests)."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from federation.clock import FixedClock
from federation.errors import FailedPreconditionError
from federation.manifest import Manifest, SignedManifest, build_manifest, next_version
from node.storage import open_database
from node.storage.database import Database
from node.storage.repositories import ManifestRepository
from node.storage.schema import manifests
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


# --- the pin outside the database ----------------------------------------------------------

OTHER_V1 = build_manifest(
    federation_id="jiaodong",
    federation_name="胶东经济圈",
    members=[QINGDAO.member, RIZHAO.member],  # someone's own federation, with this node in it
    threshold=1,
    expires=NOW + YEAR,
)
SIGNED_OTHER_V1 = SignedManifest(OTHER_V1).sign(RIZHAO.key).to_bytes()


def pinned(database: Database, tmp_path: Path) -> TrustStore:
    return TrustStore(
        ManifestRepository(database), FixedClock(NOW), pin_path=tmp_path / "trust-pin.json"
    )


def delete_versions_from(database: Database, version: int) -> None:
    """What someone with write access to the database alone could do."""
    with database.transaction() as connection:
        connection.execute(delete(manifests).where(manifests.c.version >= version))


def test_the_pin_follows_each_version_adopted_and_is_private(
    database: Database, tmp_path: Path
) -> None:
    node = pinned(database, tmp_path)
    node.install(SIGNED_V1, source="operator")
    pin_file = tmp_path / "trust-pin.json"
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600
    assert json.loads(pin_file.read_bytes())["version"] == 1
    node.adopt_chain([SIGNED_V2], source="peer:370200")
    assert json.loads(pin_file.read_bytes()) == {
        "first_sha256": hashlib.sha256(SIGNED_V1).hexdigest(),
        "version": 2,
        "sha256": hashlib.sha256(SIGNED_V2).hexdigest(),
    }
    pinned(database, tmp_path).check_pin()  # a restart with the chain as adopted


def test_a_chain_cut_short_in_the_database_is_refused_at_start_up(
    database: Database, tmp_path: Path
) -> None:
    node = pinned(database, tmp_path)
    node.install(SIGNED_V1, source="operator")
    node.adopt_chain([SIGNED_V2], source="peer:370200")
    delete_versions_from(database, 2)  # Weihai, removed in v2, would be trusted again
    restarted = pinned(database, tmp_path)
    assert restarted.current.version == 1
    with pytest.raises(FailedPreconditionError, match="ends at v1, before v2"):
        restarted.check_pin()
    # The operator's CLI can still install what the restored database lacks.
    pinned(database, tmp_path).install(SIGNED_V2, source="operator")
    pinned(database, tmp_path).check_pin()


def test_another_first_manifest_in_the_database_is_refused_at_start_up(
    database: Database, tmp_path: Path
) -> None:
    pinned(database, tmp_path).install(SIGNED_V1, source="operator")
    delete_versions_from(database, 1)
    pinned(database, tmp_path).install(SIGNED_OTHER_V1, source="operator")
    with pytest.raises(FailedPreconditionError, match="does not start with the first manifest"):
        pinned(database, tmp_path).check_pin()


def test_a_node_without_a_pin_pins_what_it_trusts_at_start_up(
    database: Database, tmp_path: Path
) -> None:
    store(database).install(SIGNED_V1, source="operator")  # a node from before pins
    node = pinned(database, tmp_path)
    node.check_pin()
    assert json.loads((tmp_path / "trust-pin.json").read_bytes())["version"] == 1
    delete_versions_from(database, 1)
    store(database).install(SIGNED_OTHER_V1, source="operator")
    with pytest.raises(FailedPreconditionError, match="pinned in"):
        pinned(database, tmp_path).check_pin()


def test_a_pin_file_that_is_not_one_is_refused(database: Database, tmp_path: Path) -> None:
    pinned(database, tmp_path).install(SIGNED_V1, source="operator")
    pin_file = tmp_path / "trust-pin.json"
    pin_file.write_bytes(b"{}")
    with pytest.raises(FailedPreconditionError, match="is not a trust pin this node wrote"):
        pinned(database, tmp_path).check_pin()
