"""The operator's path through the CLI: init, create, sign, verify, install."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from node.cli.main import main
from node.config import load_config
from node.storage.database import open_database
from node.storage.repositories import ManifestRepository


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("operators")
    homes = {}
    for port, city in enumerate(["370200", "370600", "370700"], start=17600):
        home = root / city
        assert (
            main(
                [
                    "init",
                    "--city",
                    city,
                    "--dir",
                    str(home),
                    "--paillier-bits",
                    "1024",
                    "--endpoint",
                    f"127.0.0.1:{port}",
                    "--client-listen",
                    f"127.0.0.1:{port + 100}",
                ]
            )
            == 0
        )
        homes[city] = home
    return homes


def _stored_versions(home: Path) -> list[int]:
    database = open_database(load_config(home).database_url)
    try:
        return [m.version for m in ManifestRepository(database).chain()]
    finally:
        database.close()


def test_forming_and_updating_a_federation_through_the_cli(
    homes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    qd, yt, wf = homes["370200"], homes["370600"], homes["370700"]
    v1 = tmp_path / "manifest-v1.json"
    cards = [arg for h in (qd, yt) for arg in ("--card", str(h / "member-card.json"))]
    assert (
        main(
            [
                "federation",
                "create",
                "--preset",
                "jiaodong",
                *cards,
                "--threshold",
                "2",
                "--out",
                str(v1),
            ]
        )
        == 0
    )
    # Unsigned: neither verify nor install accepts it.
    assert main(["federation", "verify", str(v1)]) == 1
    assert main(["federation", "install", str(v1), "--dir", str(qd)]) == 1
    assert "0 valid signatures" in capsys.readouterr().err

    for home in (qd, yt):
        assert main(["federation", "sign", str(v1), "--dir", str(home)]) == 0
    assert main(["federation", "verify", str(v1)]) == 0
    for home in (qd, yt):
        assert main(["federation", "install", str(v1), "--dir", str(home)]) == 0
    assert "installed manifest v1 of jiaodong" in capsys.readouterr().out

    # A node that is not in the manifest cannot make it its first.
    assert main(["federation", "install", str(v1), "--dir", str(wf)]) == 1
    assert "370700" in capsys.readouterr().err and _stored_versions(wf) == []

    # The same version twice is refused, and nothing is stored.
    assert main(["federation", "install", str(v1), "--dir", str(qd)]) == 1
    assert "version" in capsys.readouterr().err

    # Version 2 adds Weifang: needs 2 of v1's members, 2 of its own, and Weifang itself.
    v2 = tmp_path / "manifest-v2.json"
    assert (
        main(
            [
                "federation",
                "create",
                "--from",
                str(v1),
                "--add",
                str(wf / "member-card.json"),
                "--out",
                str(v2),
            ]
        )
        == 0
    )
    for home in (qd, yt):
        assert main(["federation", "sign", str(v2), "--dir", str(home)]) == 0
    assert main(["federation", "install", str(v2), "--dir", str(qd)]) == 1
    assert "370700" in capsys.readouterr().err
    assert main(["federation", "sign", str(v2), "--dir", str(wf)]) == 0
    assert main(["federation", "verify", str(v2), "--trusted", str(v1)]) == 0
    assert main(["federation", "install", str(v2), "--dir", str(qd)]) == 0
    assert _stored_versions(qd) == [1, 2]

    # A tampered copy of v2 is refused by a node that still trusts v1.
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(v2.read_bytes().replace(b'"threshold":2', b'"threshold":1'))
    assert main(["federation", "install", str(tampered), "--dir", str(yt)]) == 1
    assert _stored_versions(yt) == [1]


def test_install_into_a_directory_without_a_node_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text("{}")
    assert main(["federation", "install", str(manifest), "--dir", str(tmp_path / "none")]) == 1
    assert "credit-node init" in capsys.readouterr().err


@pytest.mark.parametrize("card", ["corrupt", "missing"])
def test_install_names_the_nodes_own_card_when_it_is_broken(
    homes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], card: str
) -> None:
    home = tmp_path / "node"
    shutil.copytree(homes["370700"], home)
    card_path = home / "member-card.json"
    if card == "corrupt":
        card_path.write_text('{"signed": ')
    else:
        card_path.unlink()
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    assert main(["federation", "install", str(manifest), "--dir", str(home)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first_line = err.splitlines()[0]
    assert first_line.startswith("credit-node: error: ")
    assert str(card_path) in first_line
    assert str(manifest) not in err
