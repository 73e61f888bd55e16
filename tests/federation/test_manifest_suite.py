"""The federation's signature suite: one per manifest, and how a federation changes it.

Table-driven: which member keys a manifest of a given suite accepts, which updates are
valid (an SM2/SM3 federation's own updates; a switch of suite that rotates every key,
signed by a threshold of the old keys and all the new ones), and the same through
``credit-node federation create|sign|show|verify``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from federation.canonical import canonical_bytes
from federation.clock import FixedClock
from federation.errors import (
    ManifestError,
    ManifestFormatError,
    UnsignedManifestError,
)
from federation.manifest import (
    Manifest,
    SignedManifest,
    TrustedChain,
    build_manifest,
    members_suite,
    next_version,
    verify_initial,
    verify_update,
)
from federation.signing import ED25519, SM2_SM3, SigningKey
from node.cli import federation as federation_cli
from node.cli.main import main
from tests.federation.conftest import NOW, YEAR, TestCity, make_city

QINGDAO, YANTAI, WEIFANG = "370200", "370600", "370700"
CODES = (QINGDAO, YANTAI, WEIFANG)
ZIBO = "370300"


def with_suite(city: TestCity, suite: str) -> TestCity:
    """The same city with a fresh signing key of ``suite``."""
    key = SigningKey.generate(suite)
    return dataclasses.replace(
        city, member=dataclasses.replace(city.member, signing_key=key.public_key), key=key
    )


def city(code: str, suite: str) -> TestCity:
    return with_suite(make_city(code), suite)


def signed_by(manifest: Manifest, cities: Sequence[TestCity]) -> SignedManifest:
    signed = SignedManifest(manifest)
    for signer in cities:
        signed = signed.sign(signer.key, city_code=signer.code)
    return signed


# --- one suite per manifest ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SuiteCase:
    name: str
    key_suites: tuple[str, ...]  # of QINGDAO, YANTAI, WEIFANG
    suite: str | None  # the manifest's; None: build_manifest infers it
    match: str = ""  # empty: valid


SUITE_CASES = [
    SuiteCase("ed25519 keys, ed25519 federation", (ED25519,) * 3, ED25519),
    SuiteCase("sm2 keys, sm2 federation", (SM2_SM3,) * 3, SM2_SM3),
    SuiteCase("sm2 keys, suite inferred", (SM2_SM3,) * 3, None),
    SuiteCase("ed25519 keys, suite inferred", (ED25519,) * 3, None),
    SuiteCase(
        "one sm2 key in an ed25519 federation",
        (ED25519, SM2_SM3, ED25519),
        ED25519,
        r"^member 370600 \(sm2-sm3\) has a signing key not of the federation's signature "
        r"suite ed25519; every member's key must be ed25519$",
    ),
    SuiteCase(
        "ed25519 keys left in an sm2 federation",
        (SM2_SM3, ED25519, ED25519),
        SM2_SM3,
        r"^members 370600 \(ed25519\), 370700 \(ed25519\) have signing keys not of the "
        r"federation's signature suite sm2-sm3",
    ),
    SuiteCase(
        "all ed25519 keys, sm2 federation",
        (ED25519,) * 3,
        SM2_SM3,
        r"members 370200 \(ed25519\), 370600 \(ed25519\), 370700 \(ed25519\) have",
    ),
    SuiteCase(
        "mixed keys, suite inferred",
        (SM2_SM3, ED25519, SM2_SM3),
        None,
        r"^the members' signing keys mix signature suites \(ed25519: 370600; sm2-sm3: "
        r"370200, 370700\); a federation signs with one suite$",
    ),
    SuiteCase("unknown suite", (ED25519,) * 3, "sm2", r"unknown signature suite 'sm2'"),
    SuiteCase("suite names are exact", (SM2_SM3,) * 3, "SM2-SM3", "unknown signature suite"),
]


@pytest.mark.parametrize("case", SUITE_CASES, ids=lambda c: c.name)
def test_manifest_suite(case: SuiteCase) -> None:
    cities = [city(code, suite) for code, suite in zip(CODES, case.key_suites, strict=True)]

    def build() -> Manifest:
        return build_manifest(
            federation_id="jiaodong",
            federation_name="胶东经济圈",
            members=[c.member for c in cities],
            threshold=2,
            expires=NOW + YEAR,
            signature_suite=case.suite,
        )

    if case.match:
        with pytest.raises(ManifestFormatError, match=case.match):
            build()
        return
    manifest = build()
    assert manifest.signature_suite == case.key_suites[0]
    signed = signed_by(manifest, cities[:2])
    assert verify_initial(signed, now=NOW) == manifest
    parsed = SignedManifest.from_bytes(signed.to_bytes())
    assert parsed == signed and parsed.manifest.signature_suite == manifest.signature_suite
    assert f'"signature_suite":"{manifest.signature_suite}"'.encode() in manifest.signed_bytes()


def test_an_ed25519_signature_does_not_count_in_an_sm2_manifest() -> None:
    cities = [city(code, SM2_SM3) for code in CODES]
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[c.member for c in cities],
        threshold=2,
        expires=NOW + YEAR,
    )
    stranger = make_city(YANTAI)  # an Ed25519 key claiming to be Yantai
    signed = signed_by(manifest, [cities[0]]).sign(stranger.key, city_code=YANTAI)
    with pytest.raises(UnsignedManifestError, match=r"1 valid signature from its own members"):
        verify_initial(signed, now=NOW)


def test_members_suite() -> None:
    assert members_suite([city(QINGDAO, SM2_SM3).member]) == SM2_SM3
    assert members_suite([make_city(QINGDAO).member]) == ED25519
    with pytest.raises(ManifestFormatError, match="at least one member"):
        members_suite([])


# --- the document ---------------------------------------------------------------------


def _document(manifest: Manifest) -> dict[str, object]:
    document: dict[str, object] = json.loads(SignedManifest(manifest).to_bytes())
    return document


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, r"missing \['signature_suite'\]"),
        (1, "manifest: signature_suite must be a string"),
        ("rsa", "unknown signature suite 'rsa'"),
        (SM2_SM3, r"members 370200 \(ed25519\), 370600 \(ed25519\), 370700 \(ed25519\) have"),
    ],
    ids=["missing", "not a string", "unknown", "keys of another suite"],
)
def test_document_signature_suite_is_required_and_checked(value: object, match: str) -> None:
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[make_city(code).member for code in CODES],
        threshold=2,
        expires=NOW + YEAR,
    )
    document = _document(manifest)
    signed_part = document["signed"]
    assert isinstance(signed_part, dict) and signed_part["signature_suite"] == ED25519
    if value is None:
        del signed_part["signature_suite"]
    else:
        signed_part["signature_suite"] = value
    with pytest.raises(ManifestFormatError, match=match):
        SignedManifest.from_bytes(canonical_bytes(document))


# --- updates ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UpdateCase:
    name: str
    start: str  # the suite of v1
    rotate: dict[str, str]  # city -> suite of its new key in v2
    suite: str | None = None  # v2's suite; None: unchanged
    old_signers: tuple[str, ...] = CODES  # v1 keys that sign v2
    new_signers: tuple[str, ...] | None = None  # v2 keys that sign (None: every new one)
    add: str | None = None  # suite of a new member, Zibo
    error: type[ManifestError] | None = None
    match: str = ""
    switched: bool = False  # the suite-change step is reported


ALL_SM2 = dict.fromkeys(CODES, SM2_SM3)
ALL_ED = dict.fromkeys(CODES, ED25519)

UPDATE_CASES = [
    UpdateCase("sm2 federation renews its expiry", SM2_SM3, {}, old_signers=(QINGDAO, YANTAI)),
    UpdateCase("sm2 federation rotates one key", SM2_SM3, {QINGDAO: SM2_SM3}),
    UpdateCase("sm2 federation adds an sm2 member", SM2_SM3, {}, add=SM2_SM3),
    UpdateCase(
        "sm2 federation refuses an ed25519 member",
        SM2_SM3,
        {},
        add=ED25519,
        error=ManifestFormatError,
        match=r"^member 370300 \(ed25519\) has a signing key not of the federation's "
        r"signature suite sm2-sm3",
    ),
    UpdateCase(
        "sm2 federation: below the trusted threshold",
        SM2_SM3,
        {},
        old_signers=(QINGDAO,),
        new_signers=(),
        error=UnsignedManifestError,
        match=r"1 valid signature from members of v1 \(370200\); 2 needed",
    ),
    UpdateCase(
        "switch to sm2, every key rotated, signed by a threshold of old keys and all new",
        ED25519,
        ALL_SM2,
        SM2_SM3,
        old_signers=(QINGDAO, WEIFANG),
        switched=True,
    ),
    UpdateCase(
        "switch back to ed25519 the same way",
        SM2_SM3,
        ALL_ED,
        ED25519,
        old_signers=(YANTAI, WEIFANG),
        switched=True,
    ),
    UpdateCase(
        "switch signed by only one old key",
        ED25519,
        ALL_SM2,
        SM2_SM3,
        old_signers=(QINGDAO,),
        error=UnsignedManifestError,
        match=r"1 valid signature from members of v1 \(370200\); 2 needed",
    ),
    UpdateCase(
        "switch where a new key has not signed",
        ED25519,
        ALL_SM2,
        SM2_SM3,
        new_signers=(QINGDAO, YANTAI),
        error=UnsignedManifestError,
        match=r"introduces keys that have not signed it: 370700 \(key [0-9a-f]{16}\)",
    ),
    UpdateCase(
        "partial switch: one member keeps its ed25519 key",
        ED25519,
        {QINGDAO: SM2_SM3, YANTAI: SM2_SM3},
        SM2_SM3,
        error=ManifestFormatError,
        match=r"^member 370700 \(ed25519\) has a signing key not of the federation's "
        r"signature suite sm2-sm3",
    ),
    UpdateCase(
        "sm2 keys without changing the suite",
        ED25519,
        ALL_SM2,
        error=ManifestFormatError,
        match=r"members 370200 \(sm2-sm3\), 370600 \(sm2-sm3\), 370700 \(sm2-sm3\) have",
    ),
    UpdateCase(
        "suite changed without rotating the keys",
        ED25519,
        {},
        SM2_SM3,
        error=ManifestFormatError,
        match=r"members 370200 \(ed25519\), 370600 \(ed25519\), 370700 \(ed25519\) have",
    ),
]


@pytest.mark.parametrize("case", UPDATE_CASES, ids=lambda c: c.name)
def test_update_suite(case: UpdateCase) -> None:
    old = {code: city(code, case.start) for code in CODES}
    v1 = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[c.member for c in old.values()],
        threshold=2,
        expires=NOW + YEAR,
    )
    assert v1.signature_suite == case.start
    chain = TrustedChain.bootstrap(signed_by(v1, list(old.values())), now=NOW)
    new = {code: with_suite(old[code], suite) for code, suite in case.rotate.items()}
    added = [city(ZIBO, case.add)] if case.add else []

    def propose() -> Manifest:
        return next_version(
            v1,
            replace=[c.member for c in new.values()],
            add=[c.member for c in added],
            signature_suite=case.suite,
            expires=NOW + YEAR,
        )

    if case.error is ManifestFormatError:
        with pytest.raises(ManifestFormatError, match=case.match):
            propose()
        return
    v2 = propose()
    current = {**old, **new, **{c.code: c for c in added}}
    introduced = (*new, *(c.code for c in added))
    new_signers = introduced if case.new_signers is None else case.new_signers
    signers = [old[c] for c in case.old_signers] + [current[c] for c in new_signers]
    candidate = signed_by(v2, signers)
    if case.error is not None:
        with pytest.raises(case.error, match=case.match):
            chain.update(candidate, now=NOW)
        assert chain.current == v1
        return
    steps: list[str] = []
    assert verify_update(v1, candidate, now=NOW, on_check=steps.append) == v2
    assert chain.update(candidate, now=NOW) == v2
    assert v2.signature_suite == (case.suite or case.start)
    assert all(m.signing_key.suite == v2.signature_suite for m in v2.members)
    suite_steps = [s for s in steps if s.startswith("suite:")]
    expected = (
        [f"suite: {case.start} -> {case.suite}, every member's key rotated and signed: ok"]
        if case.switched
        else []
    )
    assert suite_steps == expected
    # A stored chain across the switch re-verifies.
    assert TrustedChain.restore(chain.documents()).current == v2


# --- the CLI --------------------------------------------------------------------------


class Site:
    """Node directories (one per city and generation) and files under one root."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.capsys = capsys
        self.cities: dict[str, TestCity] = {}

    def node(self, name: str, city: TestCity) -> str:
        directory = self.root / name
        city.write_node_dir(directory)
        self.cities[name] = city
        return str(directory)

    def card(self, name: str) -> str:
        return str(self.root / name / "member-card.json")

    def key_file(self, name: str) -> str:
        return str(self.root / name / "keys" / "signing.pem")

    def path(self, name: str) -> str:
        return str(self.root / name)

    def run(self, *argv: str) -> tuple[int, str, str]:
        code = main(["federation", *argv])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    def ok(self, *argv: str) -> str:
        code, out, err = self.run(*argv)
        assert (code, err) == (0, ""), err
        return out


@pytest.fixture
def site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Site:
    monkeypatch.setattr(federation_cli, "CLOCK", FixedClock(NOW))
    return Site(tmp_path, capsys)


def _cards(site: Site, names: Sequence[str]) -> list[str]:
    return [arg for name in names for arg in ("--card", site.card(name))]


@pytest.mark.parametrize(
    ("key_suites", "option", "exit_code", "expected"),
    [
        ((SM2_SM3,) * 3, (), 0, "suite:        sm2-sm3"),
        ((ED25519,) * 3, (), 0, "suite:        ed25519"),
        ((SM2_SM3,) * 3, ("--signature-suite", SM2_SM3), 0, "suite:        sm2-sm3"),
        (
            (SM2_SM3, ED25519, SM2_SM3),
            (),
            2,
            r"member cards: the members' signing keys mix signature suites \(ed25519: 370600; "
            r"sm2-sm3: 370200, 370700\)",
        ),
        (
            (SM2_SM3,) * 3,
            ("--signature-suite", ED25519),
            2,
            r"members 370200 \(sm2-sm3\), 370600 \(sm2-sm3\), 370700 \(sm2-sm3\) have signing "
            r"keys not of the federation's signature suite ed25519",
        ),
    ],
    ids=["sm2 cards", "ed25519 cards", "sm2 named", "mixed cards", "wrong suite named"],
)
def test_cli_create_first_version_suite(
    site: Site, key_suites: tuple[str, ...], option: tuple[str, ...], exit_code: int, expected: str
) -> None:
    for code, suite in zip(CODES, key_suites, strict=True):
        site.node(code, city(code, suite))
    out_file = site.path("v1.json")
    argv = ["create", "--preset", "jiaodong", *_cards(site, CODES), *option, "--out", out_file]
    if exit_code:
        status, _out, err = site.run(*argv)
        assert status == exit_code, err
        assert err.startswith("credit-node: error: ")
        assert re.search(expected, err), err
        assert not Path(out_file).exists()
        return
    out = site.ok(*argv)
    assert f"signature suite {key_suites[0]}" in out
    assert site.ok("show", out_file).count(expected) == 1
    for code in CODES[:2]:
        site.ok("sign", out_file, "--dir", site.path(code))
    assert "  format: manifest v1 of jiaodong, 3 members, threshold 2, suite " in site.ok(
        "verify", out_file
    )


def test_cli_unknown_suite_is_a_usage_error(site: Site) -> None:
    site.node(QINGDAO, make_city(QINGDAO))
    argv = ["create", "--preset", "jiaodong", *_cards(site, [QINGDAO]), "--signature-suite"]
    with pytest.raises(SystemExit) as caught:
        site.run(*argv, "sm2", "--out", site.path("v1.json"))
    assert caught.value.code == 2
    assert "invalid choice: 'sm2'" in site.capsys.readouterr().err


def test_cli_switch_to_sm2_rotating_every_key(site: Site) -> None:
    for code in CODES:
        site.node(code, make_city(code))
        site.node(f"{code}-sm2", with_suite(site.cities[code], SM2_SM3))
    site.ok("create", "--preset", "jiaodong", *_cards(site, CODES), "--out", site.path("v1.json"))
    for code in CODES:
        site.ok("sign", site.path("v1.json"), "--dir", site.path(code))

    # --from keeps the suite.
    out = site.ok("create", "--from", site.path("v1.json"), "--out", site.path("renewal.json"))
    assert "signature suite ed25519" in out
    # A partial switch is refused, naming the member left behind.
    status, out, err = site.run(
        "create",
        "--from",
        site.path("v1.json"),
        "--signature-suite",
        SM2_SM3,
        "--replace",
        site.card(f"{QINGDAO}-sm2"),
        "--replace",
        site.card(f"{YANTAI}-sm2"),
        "--out",
        site.path("partial.json"),
    )
    assert status == 2
    assert "every member's card must be replaced by one with a sm2-sm3 key" in out
    assert re.search(r"member 370700 \(ed25519\) has a signing key not of the federation", err)
    assert not Path(site.path("partial.json")).exists()

    replace = [arg for c in CODES for arg in ("--replace", site.card(f"{c}-sm2"))]
    v2 = site.path("v2.json")
    out = site.ok(
        "create", "--from", site.path("v1.json"), "--signature-suite", SM2_SM3, *replace,
        "--out", v2,
    )  # fmt: skip
    assert "signature suite sm2-sm3" in out
    for code in CODES:
        site.ok("sign", v2, "--dir", site.path(f"{code}-sm2"))
    status, _out, err = site.run("verify", v2, "--trusted", site.path("v1.json"))
    assert status == 1
    assert "0 valid signatures from members of v1 (none); 2 needed" in err

    for code in (QINGDAO, YANTAI):  # a threshold of the old (Ed25519) keys
        site.ok("sign", v2, "--key", site.key_file(code), "--city", code)
    out = site.ok("verify", v2, "--trusted", site.path("v1.json"))
    assert "  new keys signed: 370200, 370600, 370700: ok" in out
    assert "  suite: ed25519 -> sm2-sm3, every member's key rotated and signed: ok" in out
    assert out.endswith("valid: manifest v2 of jiaodong\n")
    assert "suite:        sm2-sm3" in site.ok("show", v2)

    # The next version keeps SM2/SM3 and needs only the new keys.
    v3 = site.path("v3.json")
    assert "signature suite sm2-sm3" in site.ok("create", "--from", v2, "--out", v3)
    for code in (QINGDAO, WEIFANG):
        site.ok("sign", v3, "--dir", site.path(f"{code}-sm2"))
    out = site.ok("verify", v3, "--trusted", v2)
    assert "suite:" not in out and out.endswith("valid: manifest v3 of jiaodong\n")
