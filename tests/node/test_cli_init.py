"""`credit-node init` through the real entry point."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from federation.member import parse_member_card
from node.cli.main import main
from node.config import load_config
from node.keystore import load_node_keys


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_init_creates_a_node_and_says_what_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "qingdao"
    code, out, err = run(
        [
            "init",
            "--city",
            "370200",
            "--dir",
            str(home),
            "--endpoint",
            "qingdao.example.cn:7600",
            "--client-listen",
            "127.0.0.1:9601",
            "--paillier-bits",
            "1024",
        ],
        capsys,
    )
    assert (code, err) == (0, "")
    card = parse_member_card((home / "member-card.json").read_bytes())
    assert card.name == "青岛"  # from the Jiaodong preset
    assert card.endpoint == "qingdao.example.cn:7600"
    keys = load_node_keys(home)
    assert card.signing_key == keys.signing_key.public_key
    assert load_config(home, env={}).client_listen == "127.0.0.1:9601"
    assert stat.S_IMODE((home / "keys").stat().st_mode) == 0o700
    for path in (home / "node.toml", home / "member-card.json", home / "keys" / "signing.pem"):
        assert str(path) in out
    assert card.tls_fingerprint in out
    assert "(1024 bits: for tests only, use 2048 in production)" in out
    assert card.signing_key.keyid in out
    assert "370200" in out
    assert "hand member-card.json to the other members" in out
    assert "credit-node federation" in out
    assert keys.client_token not in out


def test_init_refuses_an_existing_node_then_force_replaces_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["init", "--city", "370600", "--dir", str(tmp_path), "--paillier-bits", "1024"]
    assert run(argv, capsys)[0] == 0
    first = (tmp_path / "member-card.json").read_bytes()

    code, out, err = run(argv, capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("credit-node: error: ")
    assert "already holds a node identity" in err
    assert "--force" in err
    assert (tmp_path / "member-card.json").read_bytes() == first

    code, out, _ = run([*argv, "--force"], capsys)
    assert code == 0
    assert "Replaced the previous identity" in out
    assert (tmp_path / "member-card.json").read_bytes() != first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--city", "110000"], "needs a name"),
        (["--city", "3702"], "six-digit"),
        (["--city", "370200", "--endpoint", "nohost"], "HOST:PORT"),
        (["--city", "370200", "--paillier-bits", "512"], "1024 to 8192"),
    ],
)
def test_invalid_input_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, _out, err = run(["init", "--dir", str(tmp_path / "n"), *extra], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "n").exists()


def test_city_and_dir_are_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["init"])
    assert info.value.code == 2
    assert "--city" in capsys.readouterr().err
