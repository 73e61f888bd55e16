"""The federation manifest: format, bootstrap, updates, key rotation, chains.

In the style of python-tuf's key rotation tests: a small in-memory federation
(:class:`Federation`) proposes versions, chosen keys sign them, and a table of cases says
which error (if any) the verifier must raise, with what message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.canonical import MAX_DOCUMENT_BYTES, canonical_bytes
from federation.errors import (
    BadVersionNumberError,
    CreditNetError,
    ExpiredManifestError,
    InvalidInputError,
    ManifestError,
    ManifestFormatError,
    UnsignedManifestError,
    WrongFederationError,
)
from federation.manifest import (
    MANIFEST_TYPE,
    MAX_VERSION,
    Manifest,
    ManifestSignature,
    SignedManifest,
    TrustedChain,
    build_manifest,
    new_keys,
    next_version,
    valid_signers,
    verify_initial,
    verify_update,
)
from tests.federation.conftest import NOW, YEAR, TestCity, make_city

JIAODONG = ("370200", "370600", "370700", "371000", "371100")
ZIBO = "370300"  # 淄博: not in the preset, a plausible sixth member
DAY = dt.timedelta(days=1)


def signature_by(manifest: Manifest, city: TestCity, *, as_city: str | None = None) -> Any:
    return ManifestSignature(
        as_city or city.code, city.key.public_key.keyid, city.key.sign(manifest.signed_bytes())
    )


class Federation:
    """An in-memory federation: the cities' current keys, their old keys, the versions."""

    def __init__(self, codes: Sequence[str] = JIAODONG, *, threshold: int = 3) -> None:
        self.cities = {code: make_city(code) for code in codes}
        self.old: dict[str, TestCity] = {}
        self.stranger = make_city("999999")
        v1 = build_manifest(
            federation_id="jiaodong",
            federation_name="胶东经济圈",
            members=[c.member for c in self.cities.values()],
            threshold=threshold,
            expires=NOW + YEAR,
        )
        self.v1 = self.signed(v1, *codes)

    def propose(
        self,
        trusted: Manifest,
        *,
        rotate: Sequence[str] = (),
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        threshold: int | None = None,
        expires: dt.datetime = NOW + YEAR,
    ) -> Manifest:
        """The next version; rotated and added cities get new keys (the old ones are kept)."""
        for code in rotate:
            self.old[code] = self.cities[code]
            self.cities[code] = self.cities[code].with_new_key()
        for code in add:
            self.cities[code] = make_city(code)
        return next_version(
            trusted,
            add=[self.cities[c].member for c in add],
            remove=remove,
            replace=[self.cities[c].member for c in rotate],
            threshold=threshold,
            expires=expires,
        )

    def signer(self, label: str) -> TestCity:
        if label.startswith("old:"):
            return self.old[label[4:]]
        return self.cities[label]

    def signed(self, manifest: Manifest, *labels: str) -> SignedManifest:
        """Signed by the cities named by ``labels``.

        ``CODE`` is the city's current key, ``old:CODE`` its key before rotation,
        ``stranger`` a key no member has, ``stranger-as:CODE`` that key claiming to be CODE,
        ``bad:CODE`` a garbage signature under CODE's current key id, ``dup:CODE`` a second
        copy of CODE's signature, ``swap:A:B`` A's key recorded as B's.
        """
        signatures = []
        for label in labels:
            kind, _, code = label.partition(":")
            if label == "stranger":
                signatures.append(signature_by(manifest, self.stranger))
            elif kind == "stranger-as":
                signatures.append(signature_by(manifest, self.stranger, as_city=code))
            elif kind == "bad":
                keyid = self.cities[code].key.public_key.keyid
                signatures.append(ManifestSignature(code, keyid, bytes(64)))
            elif kind == "dup":
                signatures.append(signature_by(manifest, self.cities[code]))
            elif kind == "swap":
                owner, claimed = code.split(":")
                signatures.append(signature_by(manifest, self.cities[owner], as_city=claimed))
            else:
                signatures.append(signature_by(manifest, self.signer(label)))
        return SignedManifest(manifest, tuple(signatures))


# --- bootstrap ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BootstrapCase:
    name: str
    signers: tuple[str, ...]
    error: type[ManifestError] | None = None
    match: str = ""
    now: dt.datetime = NOW


BOOTSTRAP_CASES = [
    BootstrapCase("all five sign", JIAODONG),
    BootstrapCase("exactly the threshold", ("370200", "370700", "371100")),
    BootstrapCase(
        "below threshold",
        ("370200", "370600"),
        UnsignedManifestError,
        r"^manifest v1 of jiaodong has 2 valid signatures from its own members "
        r"\(370200, 370600\); 3 needed$",
    ),
    BootstrapCase(
        "no signatures",
        (),
        UnsignedManifestError,
        r"has 0 valid signatures from its own members \(none\); 3 needed",
    ),
    BootstrapCase(
        "unknown signer does not count",
        ("370200", "370600", "stranger"),
        UnsignedManifestError,
        r"2 valid signatures",
    ),
    BootstrapCase(
        "unknown key claiming a member's city does not count",
        ("370200", "370600", "stranger-as:370700"),
        UnsignedManifestError,
        r"2 valid signatures",
    ),
    BootstrapCase(
        "duplicate signatures count once",
        ("370200", "370600", "dup:370600"),
        UnsignedManifestError,
        r"2 valid signatures from its own members \(370200, 370600\)",
    ),
    BootstrapCase(
        "invalid signature by a known key does not count",
        ("370200", "370600", "bad:370700"),
        UnsignedManifestError,
        r"2 valid signatures",
    ),
    BootstrapCase(
        "a member's key recorded under another city does not count",
        ("370200", "370600", "swap:370700:371000"),
        UnsignedManifestError,
        r"2 valid signatures",
    ),
    BootstrapCase(
        "a bad signature next to a valid one by the same key still counts once",
        ("370200", "370600", "370700", "bad:370700"),
    ),
    BootstrapCase(
        "expired",
        JIAODONG,
        ExpiredManifestError,
        r"^manifest v1 of jiaodong expired at 2027-06-01T08:00:00Z \(now 2027-06-02T08:00:00Z\)$",
        now=NOW + YEAR + DAY,
    ),
    BootstrapCase(
        "expired at exactly its expiry time", JIAODONG, ExpiredManifestError, "expired", NOW + YEAR
    ),
    BootstrapCase("one second before expiry", JIAODONG, now=NOW + YEAR - dt.timedelta(seconds=1)),
]


@pytest.mark.parametrize("case", BOOTSTRAP_CASES, ids=lambda c: c.name)
def test_bootstrap(case: BootstrapCase) -> None:
    federation = Federation()
    signed = federation.signed(federation.v1.manifest, *case.signers)
    if case.error is None:
        assert verify_initial(signed, now=case.now) == signed.manifest
        chain = TrustedChain.bootstrap(signed, now=case.now)
        assert chain.current == signed.manifest
        assert chain.documents() == (signed,)
    else:
        with pytest.raises(case.error, match=case.match):
            verify_initial(signed, now=case.now)
        with pytest.raises(case.error):
            TrustedChain.bootstrap(signed, now=case.now)


# --- one update, v1 -> v2 -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UpdateCase:
    name: str
    signers: tuple[str, ...]
    rotate: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    threshold: int | None = None
    expires: dt.datetime = NOW + YEAR
    error: type[ManifestError] | None = None
    match: str = ""


THREE = ("370200", "370600", "370700")

UPDATE_CASES = [
    UpdateCase("all members sign", JIAODONG),
    UpdateCase("a threshold of members sign", THREE),
    UpdateCase(
        "below the trusted threshold",
        ("370200", "370600"),
        error=UnsignedManifestError,
        match=r"^manifest v2 of jiaodong has 2 valid signatures from members of v1 "
        r"\(370200, 370600\); 3 needed$",
    ),
    UpdateCase(
        "unknown signer does not count",
        ("370200", "370600", "stranger"),
        error=UnsignedManifestError,
        match="2 valid signatures from members of v1",
    ),
    UpdateCase(
        "duplicate signatures count once",
        ("370200", "370600", "dup:370200"),
        error=UnsignedManifestError,
        match=r"2 valid signatures from members of v1 \(370200, 370600\)",
    ),
    UpdateCase(
        "invalid signature by a known key does not count",
        ("370200", "370600", "bad:371000"),
        error=UnsignedManifestError,
        match="2 valid signatures from members of v1",
    ),
    UpdateCase(
        "rotated key: old keys reach the threshold but the new key has not signed",
        ("old:370200", "370600", "370700", "371000"),
        rotate=("370200",),
        error=UnsignedManifestError,
        match=r"introduces keys that have not signed it: 370200 \(key [0-9a-f]{16}\)",
    ),
    UpdateCase(
        "rotated key: old and new key sign",
        ("old:370200", "370200", "370600", "370700"),
        rotate=("370200",),
    ),
    UpdateCase(
        "rotated key: only the new key signs, so v1 sees 2 of its members",
        ("370200", "370600", "370700"),
        rotate=("370200",),
        error=UnsignedManifestError,
        match=r"2 valid signatures from members of v1 \(370600, 370700\); 3 needed",
    ),
    UpdateCase(
        "new member must sign",
        THREE,
        add=(ZIBO,),
        error=UnsignedManifestError,
        match=r"introduces keys that have not signed it: 370300",
    ),
    UpdateCase("new member signs", (*THREE, ZIBO), add=(ZIBO,)),
    UpdateCase(
        "new member's signature does not count towards the trusted threshold",
        ("370200", "370600", ZIBO),
        add=(ZIBO,),
        error=UnsignedManifestError,
        match="2 valid signatures from members of v1",
    ),
    UpdateCase(
        "removed member counts for v1 but not for the new version's own threshold",
        ("370200", "370600", "371100"),
        remove=("371100",),
        error=UnsignedManifestError,
        match=r"2 valid signatures from its own members \(370200, 370600\); 3 needed",
    ),
    UpdateCase(
        "removed member plus a threshold of remaining", (*THREE, "371100"), remove=("371100",)
    ),
    UpdateCase(
        "raised threshold must be met by the new version's own members",
        THREE,
        threshold=4,
        error=UnsignedManifestError,
        match=r"3 valid signatures from its own members .*; 4 needed",
    ),
    UpdateCase(
        "expired",
        JIAODONG,
        expires=NOW - DAY,
        error=ExpiredManifestError,
        match=r"^manifest v2 of jiaodong expired at 2026-05-31T08:00:00Z",
    ),
]


@pytest.mark.parametrize("case", UPDATE_CASES, ids=lambda c: c.name)
def test_update(case: UpdateCase) -> None:
    federation = Federation()
    chain = TrustedChain.bootstrap(federation.v1, now=NOW)
    v2 = federation.propose(
        chain.current,
        rotate=case.rotate,
        add=case.add,
        remove=case.remove,
        threshold=case.threshold,
        expires=case.expires,
    )
    candidate = federation.signed(v2, *case.signers)
    if case.error is None:
        assert chain.update(candidate, now=NOW) == v2
        assert chain.current.version == 2
        assert chain.documents() == (federation.v1, candidate)
    else:
        with pytest.raises(case.error, match=case.match):
            chain.update(candidate, now=NOW)
        assert chain.documents() == (federation.v1,)


def test_update_message_names_who_must_still_sign() -> None:
    federation = Federation()
    v2 = federation.signed(federation.propose(federation.v1.manifest), "370200")
    with pytest.raises(UnsignedManifestError) as caught:
        verify_update(federation.v1.manifest, v2, now=NOW)
    assert caught.value.hint is not None
    assert "370600, 370700, 371000, 371100" in caught.value.hint


@pytest.mark.parametrize(
    ("trusted", "candidate", "match"),
    [
        (1, 1, r"^manifest v1 has the same version as the trusted one; the next must be v2$"),
        (3, 3, r"^manifest v3 has the same version as the trusted one; the next must be v4$"),
        (3, 5, r"^manifest v5 skips versions: the trusted version is v3, so the next must be v4$"),
        (3, 2, r"^manifest v2 is older than the trusted v3: rollback refused$"),
        (3, 1, r"^manifest v1 is older than the trusted v3: rollback refused$"),
    ],
)
def test_bad_version(trusted: int, candidate: int, match: str) -> None:
    federation = Federation()
    base = federation.v1.manifest
    signed = federation.signed(dataclasses.replace(base, version=candidate), *JIAODONG)
    with pytest.raises(BadVersionNumberError, match=match):
        verify_update(dataclasses.replace(base, version=trusted), signed, now=NOW)


def test_rollback_refused() -> None:
    federation = Federation()
    chain = TrustedChain.bootstrap(federation.v1, now=NOW)
    v2 = federation.signed(federation.propose(chain.current), *JIAODONG)
    chain.update(v2, now=NOW)
    with pytest.raises(
        BadVersionNumberError,
        match=r"^manifest v1 is older than the trusted v2: rollback refused$",
    ):
        chain.update(federation.v1, now=NOW)
    with pytest.raises(BadVersionNumberError, match="same version"):
        chain.update(v2, now=NOW)  # replay of the current version
    assert chain.current.version == 2


def test_wrong_federation() -> None:
    jiaodong = Federation()
    other = Federation()
    yellow_river = dataclasses.replace(other.v1.manifest, federation_id="yellow-river", version=2)
    with pytest.raises(
        WrongFederationError,
        match=r"^manifest is for federation 'yellow-river', not the trusted 'jiaodong'$",
    ):
        verify_update(jiaodong.v1.manifest, other.signed(yellow_river, *JIAODONG), now=NOW)


def test_update_without_expiry_check_accepts_an_expired_version() -> None:
    federation = Federation()
    v2 = federation.propose(federation.v1.manifest, expires=NOW - DAY)
    signed = federation.signed(v2, *JIAODONG)
    assert verify_update(federation.v1.manifest, signed, now=NOW, check_expiry=False) == v2
    with pytest.raises(ExpiredManifestError):
        verify_update(federation.v1.manifest, signed, now=NOW)


def test_on_check_reports_each_step() -> None:
    federation = Federation()
    v2 = federation.signed(federation.propose(federation.v1.manifest, add=(ZIBO,)), *THREE, ZIBO)
    steps: list[str] = []
    verify_update(federation.v1.manifest, v2, now=NOW, on_check=steps.append)
    assert [s.split(":")[0] for s in steps] == [
        "federation",
        "version",
        "signatures",
        "signatures",
        "new keys signed",
        "expiry",
    ]
    assert "new keys signed: 370300: ok" in steps


# --- key rotation and removal across versions --------------------------------------


def test_rotated_key_signs_the_next_version_and_the_old_key_no_longer_counts() -> None:
    federation = Federation()
    chain = TrustedChain.bootstrap(federation.v1, now=NOW)
    v2 = federation.propose(chain.current, rotate=("370200",))
    chain.update(federation.signed(v2, "old:370200", "370200", "370600", "370700"), now=NOW)

    v3 = federation.propose(chain.current)
    with pytest.raises(
        UnsignedManifestError,
        match=r"2 valid signatures from members of v2 \(370600, 370700\); 3 needed",
    ):
        chain.update(federation.signed(v3, "old:370200", "370600", "370700"), now=NOW)
    assert chain.update(federation.signed(v3, "370200", "370600", "370700"), now=NOW) == v3


def test_removed_members_signature_no_longer_counts() -> None:
    federation = Federation()
    chain = TrustedChain.bootstrap(federation.v1, now=NOW)
    v2 = federation.propose(chain.current, remove=("371100",))
    chain.update(federation.signed(v2, *JIAODONG), now=NOW)
    v3 = federation.propose(chain.current)
    with pytest.raises(UnsignedManifestError, match=r"2 valid signatures from members of v2"):
        chain.update(federation.signed(v3, "370200", "370600", "371100"), now=NOW)


def build_chain(federation: Federation) -> list[SignedManifest]:
    """v1..v5: rotate a key, add a member and raise the threshold, remove, new endpoint."""
    documents = [federation.v1]
    v1 = federation.v1.manifest
    v2 = federation.propose(v1, rotate=("370200",))
    documents.append(federation.signed(v2, "old:370200", "370200", "370600", "370700"))
    v3 = federation.propose(v2, add=(ZIBO,), threshold=4)
    documents.append(federation.signed(v3, "370200", "370600", "370700", "371000", ZIBO))
    v4 = federation.propose(v3, remove=("371100",))
    documents.append(federation.signed(v4, "370200", ZIBO, "370600", "370700"))
    moved = federation.cities["370600"].with_new_endpoint("yantai.example.cn:9443")
    federation.cities["370600"] = moved
    v5 = next_version(v4, replace=[moved.member], expires=NOW + YEAR)
    documents.append(federation.signed(v5, "370200", ZIBO, "370600", "371000"))
    return documents


def test_chain_of_five_versions() -> None:
    federation = Federation()
    documents = build_chain(federation)
    chain = TrustedChain.bootstrap(documents[0], now=NOW)
    for document in documents[1:]:
        chain.update(document, now=NOW)
    current = chain.current
    assert current.version == 5
    assert [m.city_code for m in current.members] == [
        "370200",
        "370300",
        "370600",
        "370700",
        "371000",
    ]
    assert current.threshold == 4
    assert current.member("370600") is not None
    assert current.member("370600").endpoint == "yantai.example.cn:9443"  # type: ignore[union-attr]
    assert current.member("371100") is None
    assert chain.documents() == tuple(documents)

    walked = TrustedChain.bootstrap(documents[0], now=NOW)
    assert walked.update_many(documents[1:], now=NOW) == current
    assert TrustedChain.restore(documents).current == current


def test_chain_refuses_a_version_out_of_order() -> None:
    federation = Federation()
    documents = build_chain(federation)
    chain = TrustedChain.bootstrap(documents[0], now=NOW)
    with pytest.raises(BadVersionNumberError, match="skips versions"):
        chain.update_many([documents[1], documents[3]], now=NOW)
    assert chain.documents() == (documents[0],)  # all or nothing
    with pytest.raises(BadVersionNumberError):
        TrustedChain.restore([documents[0], documents[2]])


def test_intermediate_expired_version_is_fine_when_the_last_is_current() -> None:
    federation = Federation()
    v2 = federation.propose(federation.v1.manifest, expires=NOW - DAY)
    v3 = federation.propose(v2, expires=NOW + YEAR)
    signed_v2, signed_v3 = federation.signed(v2, *THREE), federation.signed(v3, *THREE)

    chain = TrustedChain.bootstrap(federation.v1, now=NOW)
    with pytest.raises(ExpiredManifestError, match="manifest v2 of jiaodong expired"):
        chain.update_many([signed_v2], now=NOW)
    assert chain.current.version == 1
    assert chain.update_many([signed_v2, signed_v3], now=NOW) == v3
    assert [d.manifest.version for d in chain.documents()] == [1, 2, 3]


def test_final_expired_version_refused_and_chain_unchanged() -> None:
    federation = Federation()
    v2 = federation.propose(federation.v1.manifest)
    v3 = federation.propose(v2, expires=NOW - DAY)
    chain = TrustedChain.bootstrap(federation.v1, now=NOW)
    with pytest.raises(ExpiredManifestError, match="manifest v3"):
        chain.update_many([federation.signed(v2, *THREE), federation.signed(v3, *THREE)], now=NOW)
    assert chain.current.version == 1
    assert chain.update_many([], now=NOW) == chain.current


def test_restore_keeps_an_expired_current_version() -> None:
    federation = Federation()
    later = NOW + 2 * YEAR
    assert TrustedChain.restore([federation.v1]).current.is_expired(later)
    with pytest.raises(ManifestFormatError, match="cannot be empty"):
        TrustedChain.restore([])
    with pytest.raises(UnsignedManifestError):
        TrustedChain.restore([federation.signed(federation.v1.manifest, "370200")])


def test_new_keys_lists_added_and_rotated_members() -> None:
    federation = Federation()
    v2 = federation.propose(federation.v1.manifest, rotate=("370700",), add=(ZIBO,))
    assert [m.city_code for m in new_keys(federation.v1.manifest, v2)] == [ZIBO, "370700"]


# --- signing --------------------------------------------------------------------------


def test_sign_records_the_member_and_replaces_its_earlier_signature() -> None:
    federation = Federation()
    unsigned = SignedManifest(federation.v1.manifest)
    qingdao = federation.cities["370200"]
    once = unsigned.sign(qingdao.key)
    twice = once.sign(qingdao.key).sign(federation.cities["370600"].key)
    assert [(s.city_code, s.keyid) for s in once.signatures] == [
        ("370200", qingdao.key.public_key.keyid)
    ]
    assert [s.city_code for s in twice.signatures] == ["370200", "370600"]
    assert valid_signers(twice, twice.manifest) == ("370200", "370600")
    assert unsigned.signatures == ()  # sign() returns a new document


def test_sign_refuses_a_key_the_manifest_does_not_list_unless_a_city_is_named() -> None:
    federation = Federation()
    unsigned = SignedManifest(federation.v1.manifest)
    with pytest.raises(InvalidInputError, match="is not the signing key of any member of"):
        unsigned.sign(federation.stranger.key)
    with pytest.raises(InvalidInputError, match=r"is the signing key of 370200 .*not of 370600"):
        unsigned.sign(federation.cities["370200"].key, city_code="370600")
    with pytest.raises(InvalidInputError, match="six-digit"):
        unsigned.sign(federation.cities["370200"].key, city_code="37020")


def test_sign_with_a_previous_key_counts_for_the_trusted_version() -> None:
    federation = Federation()
    v2 = federation.propose(federation.v1.manifest, rotate=("370200",))
    signed = SignedManifest(v2).sign(federation.old["370200"].key, city_code="370200")
    for code in ("370200", "370600", "370700"):
        signed = signed.sign(federation.cities[code].key)
    assert len(signed.signatures) == 4
    assert verify_update(federation.v1.manifest, signed, now=NOW) == v2
    status = {s.keyid: what for s, what in signed.signature_status(v2)}
    assert status[federation.old["370200"].key.public_key.keyid] == "unknown key"
    assert status[federation.cities["370200"].key.public_key.keyid] == "valid"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda doc: doc["signed"].update(federation_name="胶东半岛"),
        lambda doc: doc["signed"].update(threshold=1),
        lambda doc: doc["signed"]["members"][0].update(endpoint="evil.example.com:443"),
        lambda doc: doc["signed"].update(expires="2030-01-01T00:00:00Z"),
    ],
    ids=["name", "threshold", "endpoint", "expires"],
)
def test_tampered_after_signing_is_unsigned(tamper: Callable[[dict[str, Any]], None]) -> None:
    federation = Federation()
    document = json.loads(federation.v1.to_bytes())
    tamper(document)
    tampered = SignedManifest.from_bytes(canonical_bytes(document))
    assert tampered.manifest != federation.v1.manifest
    with pytest.raises(UnsignedManifestError, match="0 valid signatures"):
        verify_initial(tampered, now=NOW)


# --- the model --------------------------------------------------------------------------


def test_lookups_and_expiry() -> None:
    federation = Federation()
    manifest = federation.v1.manifest
    yantai = federation.cities["370600"].member
    assert manifest.member("370600") == yantai
    assert manifest.member("370100") is None
    assert manifest.member_by_fingerprint(yantai.tls_fingerprint) == yantai
    assert manifest.member_by_fingerprint(yantai.tls_fingerprint.upper()) == yantai
    assert manifest.member_by_fingerprint("00" * 32) is None
    assert manifest.member_by_keyid(yantai.signing_key.keyid) == yantai
    assert not manifest.is_expired(NOW)
    assert manifest.is_expired(manifest.expires)


def test_members_are_sorted_and_expiry_normalised() -> None:
    cities = [make_city(code) for code in reversed(JIAODONG)]
    beijing_time = dt.timezone(dt.timedelta(hours=8))
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[c.member for c in cities],
        threshold=3,
        expires=dt.datetime(2027, 1, 1, 8, 0, 0, 123456, tzinfo=beijing_time),
    )
    assert [m.city_code for m in manifest.members] == list(JIAODONG)
    assert manifest.expires == dt.datetime(2027, 1, 1, 0, 0, 0, tzinfo=dt.UTC)
    assert manifest.to_json()["expires"] == "2027-01-01T00:00:00Z"
    assert manifest.to_json()["type"] == MANIFEST_TYPE
    assert SignedManifest.from_bytes(SignedManifest(manifest).to_bytes()).manifest == manifest


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"federation_id": "Jiaodong"}, "federation id 'Jiaodong'"),
        ({"federation_id": ""}, "federation id"),
        ({"federation_name": ""}, "federation name"),
        ({"version": 0}, "version must be an integer from 1 to"),
        ({"version": 2**63}, "version must be an integer from 1 to 9223372036854775807"),
        ({"threshold": 0}, r"threshold must be between 1 and the number of members \(5\)"),
        ({"threshold": 6}, r"threshold must be between 1 and the number of members \(5\), not 6"),
        ({"members": ()}, "at least one member"),
        ({"expires": dt.datetime(2027, 1, 1)}, "timezone-aware"),
        ({"common_scale": ()}, "common scale"),
        ({"common_scale": ("A", "A")}, "common scale"),
        ({"common_scale": ("A", "B ")}, "not starting or ending with a space"),
        ({"common_scale": ("A", "B\x00")}, "printable"),
        ({"common_scale": ("A", "B\u2028C")}, "printable"),
        ({"common_scale": ("A", "B" * 17)}, "1 to 16"),
    ],
)
def test_invalid_manifest_fields(change: dict[str, Any], match: str) -> None:
    federation = Federation()
    with pytest.raises(ManifestFormatError, match=match):
        dataclasses.replace(federation.v1.manifest, **change)


def test_members_must_not_share_keys_or_certificates() -> None:
    qingdao, yantai = make_city("370200"), make_city("370600")
    same_key = dataclasses.replace(yantai.member, signing_key=qingdao.member.signing_key)
    same_cert = dataclasses.replace(yantai.member, tls_certificate=qingdao.member.tls_certificate)
    for members, match in [
        ((qingdao.member, qingdao.member), "duplicate city code 370200"),
        ((qingdao.member, same_key), r"duplicate signing key [0-9a-f]{16} \(members 370200 and"),
        ((qingdao.member, same_cert), "duplicate TLS certificate"),
    ]:
        with pytest.raises(ManifestFormatError, match=match):
            build_manifest(
                federation_id="jiaodong",
                federation_name="胶东经济圈",
                members=members,
                threshold=1,
                expires=NOW + YEAR,
            )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"add": ["370200"]}, InvalidInputError, "370200 is already a member of manifest v1"),
        ({"remove": ["370100"]}, InvalidInputError, "370100 is not a member"),
        ({"replace": [ZIBO]}, InvalidInputError, "370300 is not a member"),
        (
            {"remove": ["370200"], "replace": ["370200"]},
            InvalidInputError,
            "named more than once",
        ),
        (
            {"remove": ["370200", "370600", "370700"]},
            ManifestFormatError,
            r"threshold must be between 1 and the number of members \(2\), not 3",
        ),
    ],
)
def test_next_version_refuses(
    kwargs: dict[str, list[str]], error: type[CreditNetError], match: str
) -> None:
    federation = Federation()
    cities = {ZIBO: make_city(ZIBO), **federation.cities}
    with pytest.raises(error, match=match):
        next_version(
            federation.v1.manifest,
            add=[cities[c].member for c in kwargs.get("add", [])],
            remove=kwargs.get("remove", []),
            replace=[cities[c].member for c in kwargs.get("replace", [])],
            expires=NOW + YEAR,
        )


def test_next_version_keeps_identity_and_bumps_version() -> None:
    federation = Federation()
    v2 = next_version(federation.v1.manifest, remove=["371100"], threshold=2, expires=NOW + DAY)
    assert (v2.federation_id, v2.federation_name, v2.version, v2.threshold) == (
        "jiaodong",
        "胶东经济圈",
        2,
        2,
    )
    assert v2.expires == NOW + DAY
    assert v2.common_scale == federation.v1.manifest.common_scale


# --- malformed documents -------------------------------------------------------------


@functools.cache
def valid_document() -> bytes:
    return Federation().v1.to_bytes()


def mutated(change: Callable[[dict[str, Any]], object]) -> bytes:
    document = json.loads(valid_document())
    replacement = change(document)
    return json.dumps(document if replacement is None else replacement).encode()


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return change


_DELETE = object()


def _swap_members(document: dict[str, Any]) -> None:
    members = document["signed"]["members"]
    members[0], members[1] = members[1], members[0]


MALFORMED = [
    ("not JSON", b"{not json", r"^federation manifest is not valid JSON: .* line 1 column 2$"),
    ("not UTF-8", b"\xff\xfe", "not UTF-8"),
    ("not an object", b"[]", "must be a JSON object"),
    ("too large", b" " * (MAX_DOCUMENT_BYTES + 1), "more than 1048576"),
    ("empty object", b"{}", r"expected exactly the fields 'signed' and 'signatures', found \[\]"),
    ("signed not an object", mutated(_set("signed", [])), "'signed' part must be a JSON object"),
    (
        "wrong type",
        mutated(_set("signed.type", "creditnet.member-card/v1")),
        r"not a federation manifest: type is 'creditnet.member-card/v1'",
    ),
    ("missing field", mutated(_set("signed.threshold", _DELETE)), r"missing \['threshold'\]"),
    ("unknown field", mutated(_set("signed.root", 1)), r"unknown \['root'\]"),
    ("version a string", mutated(_set("signed.version", "2")), "version must be an integer"),
    ("version a boolean", mutated(_set("signed.version", True)), "version must be an integer"),
    ("version 0", mutated(_set("signed.version", 0)), "version must be an integer from 1 to"),
    (
        "version 2**63",
        mutated(_set("signed.version", 2**63)),
        "version must be an integer from 1 to 9223372036854775807",
    ),
    ("float in document", mutated(_set("signed.version", 1.0)), "floats are not allowed"),
    ("threshold 0", mutated(_set("signed.threshold", 0)), "threshold must be between 1"),
    (
        "threshold above members",
        mutated(_set("signed.threshold", 6)),
        r"number of members \(5\), not 6",
    ),
    (
        "duplicate city codes",
        mutated(lambda d: d["signed"]["members"].__setitem__(1, d["signed"]["members"][0])),
        "duplicate city code 370200",
    ),
    ("members unsorted", mutated(_swap_members), "members must be sorted by city code"),
    ("no members", mutated(_set("signed.members", [])), "members must be a non-empty list"),
    (
        "member with a bad fingerprint",
        mutated(_set("signed.members.0.tls_cert_sha256", "00" * 32)),
        r"members\[0\]: member 370200: tls_cert_sha256 does not match",
    ),
    (
        "member with a bad city code",
        mutated(_set("signed.members.0.city_code", "0370200")),
        r"members\[0\]: city code '0370200'",
    ),
    ("expires not UTC", mutated(_set("signed.expires", "2027-06-01T08:00:00")), "expires is not"),
    (
        "expires with a fraction",
        mutated(_set("signed.expires", "2027-06-01T08:00:00.5Z")),
        "not in canonical form",
    ),
    (
        "upper-case Paillier hex",
        mutated(
            lambda d: d["signed"]["members"][0]["paillier_public_key"].update(
                n=d["signed"]["members"][0]["paillier_public_key"]["n"].upper()
            )
        ),
        "not in canonical form",
    ),
    ("federation id", mutated(_set("signed.federation_id", "JD")), "federation id 'JD'"),
    ("common scale", mutated(_set("signed.common_scale", [])), "common scale"),
    ("signatures not a list", mutated(_set("signatures", {})), "signatures must be a list"),
    (
        "signature missing sig",
        mutated(_set("signatures.0.sig", _DELETE)),
        r"signatures\[0\]: fields do not match \(missing \['sig'\]",
    ),
    ("signature not base64", mutated(_set("signatures.1.sig", "***")), "not valid base64"),
    ("signature empty", mutated(_set("signatures.1.sig", "")), r"signatures\[1\]: signature"),
    (
        "keyid upper case",
        mutated(lambda d: d["signatures"][0].update(keyid=d["signatures"][0]["keyid"].upper())),
        r"signatures\[0\]: signature: keyid must be 64 lower-case hex",
    ),
    (
        "signature city code",
        mutated(_set("signatures.0.city_code", 370200)),
        "city_code, keyid and sig must be strings",
    ),
]


@pytest.mark.parametrize(("name", "data", "match"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_documents(name: str, data: bytes, match: str) -> None:
    with pytest.raises(ManifestFormatError, match=match):
        SignedManifest.from_bytes(data)


def test_valid_document_parses() -> None:
    signed = SignedManifest.from_bytes(valid_document())
    assert signed.to_bytes() == valid_document()
    assert len(signed.signatures) == 5


# --- properties -----------------------------------------------------------------------


@functools.cache
def city_pool() -> tuple[TestCity, ...]:
    return tuple(make_city(code) for code in (*JIAODONG, ZIBO))


#: Grades of a common scale: printable, trimmed (spaces only inside).
GRADES = st.text(
    st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="\u3000\xa0"),
    min_size=1,
    max_size=4,
).filter(lambda grade: grade.isprintable() and grade == grade.strip())


@st.composite
def signed_manifests(draw: st.DrawFn) -> SignedManifest:
    pool = city_pool()
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
    manifest = build_manifest(
        federation_id=draw(st.from_regex(re.compile(r"[a-z][a-z0-9-]{0,20}"), fullmatch=True)),
        federation_name=draw(st.text(min_size=1, max_size=30)),
        members=[c.member for c in chosen],
        threshold=draw(st.integers(1, len(chosen))),
        expires=draw(
            st.datetimes(
                min_value=dt.datetime(2000, 1, 1),
                max_value=dt.datetime(2999, 1, 1),
                timezones=st.just(dt.UTC),
            )
        ),
        version=draw(st.integers(1, MAX_VERSION)),
        common_scale=draw(st.lists(GRADES, min_size=1, max_size=6, unique=True)),
    )
    signed = SignedManifest(manifest)
    for city in draw(st.lists(st.sampled_from(chosen), unique=True)):
        signed = signed.sign(city.key)
    return signed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signed_manifests())
def test_round_trip(signed: SignedManifest) -> None:
    data = signed.to_bytes()
    parsed = SignedManifest.from_bytes(data)
    assert parsed == signed
    assert parsed.to_bytes() == data
    assert valid_signers(parsed, parsed.manifest) == tuple(
        sorted(s.city_code for s in signed.signatures)
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_project_errors(data: bytes) -> None:
    with pytest.raises(CreditNetError):
        SignedManifest.from_bytes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_documents_raise_only_project_errors(data: st.DataObject) -> None:
    document = json.loads(valid_document())
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = data.draw(json_values)
    with contextlib.suppress(CreditNetError):
        SignedManifest.from_bytes(json.dumps(document).encode())
