"""``credit-node federation create|sign|show|verify`` on real files."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from federation.clock import FixedClock
from federation.manifest import SignedManifest
from node.cli import federation as federation_cli
from node.cli.main import main
from tests.federation.conftest import NOW, TestCity, make_city

JIAODONG = ("370200", "370600", "370700", "371000", "371100")
ZIBO = "370300"


class Site:
    """A working directory with the cities' node directories and cards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cities: dict[str, TestCity] = {}
        for code in (*JIAODONG, ZIBO, "370100"):
            self.add(make_city(code))

    def add(self, city: TestCity, *, name: str | None = None) -> TestCity:
        self.cities[city.code] = city
        city.write_node_dir(self.node_dir(name or city.code))
        return city

    def node_dir(self, name: str) -> Path:
        return self.root / "nodes" / name

    def card(self, code: str) -> str:
        return str(self.node_dir(code) / "member-card.json")

    def path(self, name: str) -> str:
        return str(self.root / name)

    def manifest(self, name: str) -> SignedManifest:
        return SignedManifest.from_bytes((self.root / name).read_bytes())


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    fixed = FixedClock(NOW)
    monkeypatch.setattr(federation_cli, "CLOCK", fixed)
    return fixed


@pytest.fixture
def site(tmp_path: Path, clock: FixedClock) -> Site:
    return Site(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["federation", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def create_v1(site: Site, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    cards = [arg for code in JIAODONG for arg in ("--card", site.card(code))]
    code, out, err = run(
        capsys, "create", "--preset", "jiaodong", *cards, "--out", site.path("v1.json"), *extra
    )
    assert (code, err) == (0, ""), err
    return out


def sign(site: Site, capsys: pytest.CaptureFixture[str], name: str, *codes: str) -> None:
    for city in codes:
        code, _out, err = run(capsys, "sign", site.path(name), "--dir", str(site.node_dir(city)))
        assert (code, err) == (0, ""), err


def test_create_sign_show_verify_first_manifest(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    out = create_v1(site, capsys)
    assert "wrote unsigned manifest v1 of jiaodong" in out
    assert "5 members, threshold 3, expires 2027-06-01T08:00:00Z" in out
    v1 = site.manifest("v1.json")
    assert v1.signatures == ()
    assert [m.city_code for m in v1.manifest.members] == list(JIAODONG)
    assert v1.manifest.federation_name == "胶东经济圈"

    code, out, err = run(capsys, "verify", site.path("v1.json"))
    assert code == 1
    assert "checking" in out and "bootstrap" in out
    assert re.search(r"has 0 valid signatures from its own members \(none\); 3 needed", err)

    sign(site, capsys, "v1.json", "370200", "370600")
    code, _out, err = run(capsys, "verify", site.path("v1.json"))
    assert code == 1
    assert "2 valid signatures from its own members (370200, 370600); 3 needed" in err
    assert "hint: collect signatures" in err and "370700, 371000, 371100" in err

    code, out, err = run(
        capsys, "sign", site.path("v1.json"), "--dir", str(site.node_dir("370700"))
    )
    assert code == 0
    assert "signed manifest v1 of jiaodong as 370700" in out
    assert "valid signatures from its members: 3 of 3 needed (370200, 370600, 370700)" in out

    code, out, err = run(capsys, "verify", site.path("v1.json"))
    assert (code, err) == (0, "")
    assert "  signatures: manifest v1 of jiaodong has 3 valid signatures" in out
    assert "  expiry: valid until 2027-06-01T08:00:00Z: ok" in out
    assert out.endswith("valid: manifest v1 of jiaodong\n")

    code, out, err = run(capsys, "show", site.path("v1.json"))
    assert (code, err) == (0, "")
    assert "federation:   jiaodong (胶东经济圈)" in out
    assert "version:      1\n" in out
    assert "threshold:    3 of 5 members" in out
    qingdao = site.cities["370200"].member
    assert re.search(
        rf"370200  node-370200\.example\.cn:7443  {qingdao.tls_fingerprint[:16]}  "
        rf"{qingdao.signing_key.keyid[:16]}  青岛 Qingdao",
        out,
    )
    assert "signatures:   3 (3 valid from its members; 3 needed)" in out
    assert f"370600  key {site.cities['370600'].key.public_key.keyid[:16]}  valid" in out


def test_signing_twice_keeps_one_signature(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    create_v1(site, capsys)
    sign(site, capsys, "v1.json", "370200", "370200")
    assert [s.city_code for s in site.manifest("v1.json").signatures] == ["370200"]


def test_sign_to_another_file_leaves_the_original(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    create_v1(site, capsys)
    key = str(site.node_dir("370600") / "keys" / "signing.pem")
    code, _out, err = run(
        capsys, "sign", site.path("v1.json"), "--key", key, "--out", site.path("signed.json")
    )
    assert (code, err) == (0, "")
    assert site.manifest("v1.json").signatures == ()
    assert [s.city_code for s in site.manifest("signed.json").signatures] == ["370600"]


def test_update_adding_a_member(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    create_v1(site, capsys)
    sign(site, capsys, "v1.json", *JIAODONG)
    code, out, err = run(
        capsys,
        "create",
        "--from",
        site.path("v1.json"),
        "--add",
        site.card(ZIBO),
        "--threshold",
        "4",
        "--expires-days",
        "30",
        "--out",
        site.path("v2.json"),
    )
    assert (code, err) == (0, "")
    assert "manifest v2 of jiaodong" in out and "6 members, threshold 4" in out
    assert "expires 2026-07-01T08:00:00Z" in out

    sign(site, capsys, "v2.json", "370200", "370600", "370700", "371000")
    code, out, err = run(capsys, "verify", site.path("v2.json"), "--trusted", site.path("v1.json"))
    assert code == 1
    assert "introduces keys that have not signed it: 370300" in err

    sign(site, capsys, "v2.json", ZIBO)
    code, out, err = run(capsys, "verify", site.path("v2.json"), "--trusted", site.path("v1.json"))
    assert (code, err) == (0, "")
    assert "as the update of trusted manifest v1 of jiaodong" in out
    assert "  version: v2 follows the trusted v1: ok" in out
    assert "  new keys signed: 370300: ok" in out

    # Replaying v1 against v2 is a rollback.
    code, _out, err = run(capsys, "verify", site.path("v1.json"), "--trusted", site.path("v2.json"))
    assert code == 1
    assert "manifest v1 is older than the trusted v2: rollback refused" in err


def test_update_rotating_a_key_signed_with_the_old_key(
    site: Site, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    create_v1(site, capsys)
    sign(site, capsys, "v1.json", *JIAODONG)
    old_key = tmp_path / "old-signing.pem"
    old_key.write_bytes(site.cities["370200"].key.to_pem())
    old_key.chmod(0o600)
    site.add(site.cities["370200"].with_new_key())  # the node directory now holds the new key

    code, out, err = run(
        capsys,
        "create",
        "--from",
        site.path("v1.json"),
        "--replace",
        site.card("370200"),
        "--out",
        site.path("v2.json"),
    )
    assert (code, err) == (0, "")
    sign(site, capsys, "v2.json", "370200", "370600", "370700")
    code, _out, err = run(capsys, "verify", site.path("v2.json"), "--trusted", site.path("v1.json"))
    assert code == 1
    assert "2 valid signatures from members of v1 (370600, 370700); 3 needed" in err

    code, out, err = run(
        capsys, "sign", site.path("v2.json"), "--key", str(old_key), "--city", "370200"
    )
    assert (code, err) == (0, "")
    assert "note: this key is not in v2; it counts only if 370200 has this key in v1" in out
    code, out, err = run(capsys, "verify", site.path("v2.json"), "--trusted", site.path("v1.json"))
    assert (code, err) == (0, "")
    code, out, err = run(capsys, "show", site.path("v2.json"))
    assert "key not in this version" in out


def test_verify_expired_manifest(
    site: Site, capsys: pytest.CaptureFixture[str], clock: FixedClock
) -> None:
    create_v1(site, capsys, "--expires-days", "10")
    sign(site, capsys, "v1.json", *JIAODONG)
    clock.advance(dt.timedelta(days=11))
    code, out, err = run(capsys, "verify", site.path("v1.json"))
    assert code == 1
    assert "manifest v1 of jiaodong expired at 2026-06-11T08:00:00Z" in err
    assert "hint: the members must sign a new version" in err
    code, out, _err = run(capsys, "show", site.path("v1.json"))
    assert "expires:      2026-06-11T08:00:00Z (EXPIRED)" in out


def test_default_threshold_is_a_majority(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    for count, expected in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)]:
        cards = [arg for code in JIAODONG[:count] for arg in ("--card", site.card(code))]
        out_file = site.path(f"m{count}.json")
        code, _out, err = run(capsys, "create", "--preset", "jiaodong", *cards, "--out", out_file)
        assert (code, err) == (0, "")
        assert site.manifest(f"m{count}.json").manifest.threshold == expected


def _write(site: Site, name: str, data: bytes) -> str:
    (site.root / name).write_bytes(data)
    return site.path(name)


ERROR_CASES: list[tuple[str, Callable[[Site], list[str]], int, str]] = [
    (
        "card of a city outside the preset",
        lambda s: ["create", "--preset", "jiaodong", "--card", s.card("370100"), "--out", "x"],
        2,
        r"member card of 370100 .* is not for a city of jiaodong \(胶东经济圈\)\n"
        r"  hint: its cities are 370200, 370600, 370700, 371000, 371100",
    ),
    (
        "unknown preset",
        lambda s: ["create", "--preset", "shandong", "--card", s.card("370200"), "--out", "x"],
        1,
        r"no federation preset 'shandong'; known presets: jiaodong",
    ),
    (
        "no cards",
        lambda s: ["create", "--preset", "jiaodong", "--out", s.path("x")],
        2,
        r"needs the members' cards",
    ),
    (
        "threshold above members",
        lambda s: [
            "create",
            "--preset",
            "jiaodong",
            "--card",
            s.card("370200"),
            "--threshold",
            "2",
            "--out",
            s.path("x"),
        ],
        2,
        r"threshold must be between 1 and the number of members \(1\), not 2",
    ),
    (
        "duplicate card",
        lambda s: [
            "create",
            "--preset",
            "jiaodong",
            "--card",
            s.card("370200"),
            "--card",
            s.card("370200"),
            "--out",
            s.path("x"),
        ],
        2,
        r"duplicate city code 370200",
    ),
    (
        "card that is not a card",
        lambda s: [
            "create",
            "--preset",
            "jiaodong",
            "--card",
            _write(s, "bad-card.json", b'{"type": "x"}'),
            "--out",
            s.path("x"),
        ],
        2,
        r"bad-card\.json: not a member card",
    ),
    (
        "missing card",
        lambda s: ["create", "--preset", "jiaodong", "--card", s.path("nope"), "--out", "x"],
        1,
        r"member card .*nope does not exist",
    ),
    (
        "card with --from",
        lambda s: ["create", "--from", "v1", "--card", s.card("370200"), "--out", s.path("x")],
        2,
        r"--card goes with --preset",
    ),
    (
        "add with --preset",
        lambda s: ["create", "--preset", "jiaodong", "--add", s.card("370200"), "--out", "x"],
        2,
        r"--add, --remove and --replace go with --from",
    ),
    (
        "expiry out of range",
        lambda s: [
            "create",
            "--preset",
            "jiaodong",
            "--card",
            s.card("370200"),
            "--expires-days",
            "0",
            "--out",
            s.path("x"),
        ],
        2,
        r"--expires-days must be between 1 and 3650",
    ),
    (
        "output exists",
        lambda s: [
            "create",
            "--preset",
            "jiaodong",
            "--card",
            s.card("370200"),
            "--out",
            _write(s, "exists.json", b"keep me"),
        ],
        1,
        r"exists\.json already exists\n  hint: choose another --out or --force",
    ),
    (
        "malformed manifest",
        lambda s: ["show", _write(s, "broken.json", b'{"signed": 1.5, "signatures": []}')],
        2,
        r"broken\.json: federation manifest: floats are not allowed",
    ),
    (
        "not a manifest",
        lambda s: ["verify", _write(s, "card.json", (s.root / s.card("370200")).read_bytes())],
        2,
        r"card\.json: not a federation manifest document",
    ),
    (
        "missing manifest",
        lambda s: ["verify", s.path("absent.json")],
        1,
        r"manifest .*absent\.json does not exist",
    ),
]


@pytest.mark.parametrize(
    ("name", "argv", "exit_code", "message"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_errors(
    site: Site,
    capsys: pytest.CaptureFixture[str],
    name: str,
    argv: Callable[[Site], list[str]],
    exit_code: int,
    message: str,
) -> None:
    code = main(["federation", *argv(site)])
    _out, err = capsys.readouterr()
    assert code == exit_code, err
    assert err.startswith("credit-node: error: ")
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_exists_is_kept_and_force_overwrites(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    (site.root / "v1.json").write_bytes(b"keep me")
    cards = ["--card", site.card("370200")]
    code, _out, _err = run(
        capsys, "create", "--preset", "jiaodong", *cards, "--out", site.path("v1.json")
    )
    assert code == 1
    assert (site.root / "v1.json").read_bytes() == b"keep me"
    code, _out, _err = run(
        capsys, "create", "--preset", "jiaodong", *cards, "--out", site.path("v1.json"), "--force"
    )
    assert code == 0
    assert site.manifest("v1.json").manifest.version == 1


def test_sign_refuses_a_key_readable_by_others(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    create_v1(site, capsys)
    key = site.node_dir("370200") / "keys" / "signing.pem"
    key.chmod(0o644)
    code, _out, err = run(
        capsys, "sign", site.path("v1.json"), "--dir", str(site.node_dir("370200"))
    )
    assert code == 1
    assert "is accessible by other users (mode 0644)" in err and "hint: chmod 600" in err
    assert site.manifest("v1.json").signatures == ()


def test_sign_refuses_a_key_of_no_member(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    create_v1(site, capsys)
    stranger = site.node_dir(ZIBO) / "keys" / "signing.pem"
    code, _out, err = run(capsys, "sign", site.path("v1.json"), "--key", str(stranger))
    assert code == 2
    assert "is not the signing key of any member of manifest v1 of jiaodong" in err
    code, _out, err = run(
        capsys, "sign", site.path("v1.json"), "--key", str(stranger), "--city", "370200x"
    )
    assert code == 2
    assert "six-digit" in err


def test_sign_refuses_a_node_dir_whose_key_is_not_its_card(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    create_v1(site, capsys)
    node = site.node_dir("370200")
    other = site.node_dir("370600") / "keys" / "signing.pem"
    (node / "keys" / "signing.pem").write_bytes(other.read_bytes())
    code, _out, err = run(capsys, "sign", site.path("v1.json"), "--dir", str(node))
    assert code == 1
    assert "keys/signing.pem is not the key of" in err
    assert "hint: to sign with a previous key, use --key FILE --city CODE" in err


def test_remove_member_and_renew(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    create_v1(site, capsys)
    sign(site, capsys, "v1.json", *JIAODONG)
    code, _out, err = run(
        capsys,
        "create",
        "--from",
        site.path("v1.json"),
        "--remove",
        "371100",
        "--out",
        site.path("v2.json"),
    )
    assert (code, err) == (0, "")
    v2 = site.manifest("v2.json").manifest
    assert (v2.version, v2.threshold, len(v2.members)) == (2, 3, 4)
    code, out, err = run(
        capsys, "create", "--from", site.path("v1.json"), "--out", site.path("renew.json")
    )
    assert (code, err) == (0, "")
    assert "note: no member changes; v2 only renews the expiry" in out
    document = json.loads((site.root / "renew.json").read_bytes())
    assert document["signatures"] == []
    assert document["signed"]["version"] == 2
