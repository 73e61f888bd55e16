"""Credit reports: the model, the signed file, offline verification, status lists, verdicts."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import gzip
import json
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.canonical import canonical_bytes
from federation.errors import (
    CreditNetError,
    ErrorCode,
    ReportFormatError,
    ReportStatusError,
    StaleStatusListError,
    StatusListError,
)
from federation.manifest import Manifest, SignedManifest, TrustedChain, build_manifest, next_version
from federation.reports import (
    FORGOTTEN_REASON,
    MAX_REPORT_BYTES,
    REPORT_TYPE,
    CreditReport,
    ManifestEpoch,
    OfflineVerdict,
    ReportCommitment,
    ReportListEntry,
    ReportPenalty,
    ReportRating,
    ReportStatus,
    SignedReport,
    SignedStatusList,
    StatusList,
    accept_status_list,
    check_report_no,
    epochs,
    final_verdict,
    report_number,
    sign_report,
    sign_status_list,
    verify_offline,
    verify_status_list,
)
from federation.sanctions import (
    DEFAULT_POLICIES,
    EntryState,
    ListKind,
    Removal,
    RemovalReason,
    SanctionEntry,
    Subject,
)
from federation.signing import SigningKey
from federation.subjects import SubjectKind
from tests.federation.conftest import YEAR, make_city
from tests.federation.fixtures.reports import (
    COMPANY,
    FIXED_KEY,
    FIXTURES,
    ISSUED,
    PERSON_ID,
    QINGDAO,
    VALID_UNTIL,
    YANTAI,
    full_report,
    list_entry,
    minimal_report,
)

WEIFANG = "370700"
CITIES = {code: make_city(code) for code in (QINGDAO, YANTAI, WEIFANG)}
KEY = CITIES[QINGDAO].key
ROTATED = CITIES[QINGDAO].with_new_key()
V1 = build_manifest(
    federation_id="jiaodong",
    federation_name="胶东经济圈",
    members=[c.member for c in CITIES.values()],
    threshold=2,
    expires=ISSUED + YEAR,
)
#: v2: Qingdao rotated its key; v3: Qingdao left the federation.
V2 = next_version(V1, expires=ISSUED + YEAR, replace=[ROTATED.member])
V3 = next_version(V2, expires=ISSUED + YEAR, remove=[QINGDAO], threshold=2)
NOW = ISSUED + dt.timedelta(hours=1)
CHAIN = (ManifestEpoch(V1, None),)
SECOND = dt.timedelta(seconds=1)
CODE = re.compile(r"[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}")


def signed(report: CreditReport | None = None, key: Any = KEY) -> SignedReport:
    return sign_report(report if report is not None else full_report(), key)


def verify(document: SignedReport, **kwargs: Any) -> OfflineVerdict:
    kwargs.setdefault("chain", CHAIN)
    kwargs.setdefault("now", NOW)
    return verify_offline(document, **kwargs)


# --- the model ---------------------------------------------------------------------------


def test_round_trip_of_the_file() -> None:
    for report in (full_report(), minimal_report()):
        document = signed(report)
        again = SignedReport.from_bytes(document.to_bytes())
        assert again == document
        assert again.report == report
        assert again.to_bytes() == document.to_bytes()
        assert CreditReport.from_json(report.to_json()) == report


def test_wire_form() -> None:
    document = json.loads(signed().to_bytes())
    assert set(document) == {"report", "keyid", "signature"}
    report = document["report"]
    assert report["type"] == REPORT_TYPE
    assert report["report_no"] == "370200-20260601-000017"
    assert report["issued_at"] == "2026-06-01T06:30:00Z"
    assert report["registration"][0] == {"label": "名称", "value": "青岛海润贸易有限公司"}
    assert report["list_entries"][1]["removed_on"] == "2025-11-20"
    assert report["list_entries"][0]["removed_on"] is None
    assert signed().to_bytes() == canonical_bytes(document)


def test_regression_fixture_bytes_do_not_change() -> None:
    """The v1 wire format: a report signed with a fixed key has exactly these bytes."""
    fixture = (FIXTURES / "credit_report_v1.json").read_bytes()
    document = sign_report(full_report(), FIXED_KEY)
    assert document.to_bytes() == fixture
    assert SignedReport.from_bytes(fixture) == document
    assert document.verification_code == "7SAS-MVC2-KKYK-N5BJ"


def test_canonical_bytes_are_deterministic_and_key_order_is_irrelevant() -> None:
    assert full_report().signed_bytes() == full_report().signed_bytes()
    document = signed()
    shuffled = json.loads(document.to_bytes())

    def reorder(value: Any, rng: random.Random) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rng.shuffle(items)
            return {k: reorder(v, rng) for k, v in items}
        if isinstance(value, list):
            return [reorder(v, rng) for v in value]
        return value

    for seed in range(5):
        text = json.dumps(reorder(shuffled, random.Random(seed)), ensure_ascii=False, indent=2)
        again = SignedReport.from_bytes(text.encode("utf-8"))
        assert again == document
        assert again.to_bytes() == document.to_bytes()
        assert verify(again).state == "valid"


def test_times_are_kept_in_utc_to_the_second() -> None:
    beijing = dt.timezone(dt.timedelta(hours=8))
    local = dt.datetime(2026, 6, 1, 14, 30, 0, 999_999, tzinfo=beijing)
    assert full_report(issued_at=local) == full_report()


def test_report_number() -> None:
    late = dt.datetime(2026, 6, 1, 17, 0, tzinfo=dt.UTC)  # already June 2nd in China
    assert report_number(QINGDAO, late, 1) == "370200-20260602-000001"
    assert check_report_no("370200-20261202-000017") == "370200-20261202-000017"
    assert check_report_no("370200-20280229-000001") == "370200-20280229-000001"  # leap day
    for bad in (
        "370200-20261232-000001",
        "370200-20260229-000001",
        "370200-00001202-000001",
        "370200-20261202-000000",
        "070200-20261202-000001",
        "370200-2026120-000001",
        "370200-20261202-00001",
        17,
    ):
        with pytest.raises(ReportFormatError):
            check_report_no(bad)
    with pytest.raises(ReportFormatError):
        report_number(QINGDAO, late, 0)


INVALID_REPORTS: list[tuple[str, dict[str, Any]]] = [
    ("valid_until", {"valid_until": ISSUED}),
    ("valid_until", {"valid_until": ISSUED - SECOND}),
    ("report_no", {"report_no": "370600-20260601-000017"}),
    ("report_no", {"report_no": "370200-20260602-000017"}),
    ("report_no", {"report_no": "370200-20260601-17"}),
    ("issuer", {"issuer": "37020"}),
    ("issuer_name", {"issuer_name": ""}),
    ("issuer_name", {"issuer_name": " 青岛"}),
    ("issuer_name", {"issuer_name": "x" * 201}),
    ("issuer_name", {"issuer_name": "青岛\n中心"}),
    ("issued_at", {"issued_at": dt.datetime(2026, 6, 1, 6, 30)}),
    ("manifest_version", {"manifest_version": 0}),
    ("manifest_version", {"manifest_version": True}),
    ("status_index", {"status_index": -1}),
    ("status_index", {"status_index": 2**23}),
    ("supersedes", {"supersedes": "370200-20260601-000017"}),
    ("supersedes", {"supersedes": "370600-20260501-000001"}),
    ("supersedes", {"supersedes": "nonsense"}),
    ("registration", {"registration": (("名称", "a"), ("名称", "b"))}),
    ("registration", {"registration": (("名称",),)}),
    ("registration", {"registration": (("", "a"),)}),
    ("registration", {"registration": (("名称", "x" * 501),)}),
    ("registration", {"registration": tuple((f"l{i}", "v") for i in range(51))}),
    (
        "list_entries",
        {
            "list_entries": (
                list_entry(listed_on=dt.date(2026, 6, 2), publicity_end=dt.date(2027, 1, 1)),
            )
        },
    ),
    ("penalties", {"penalties": ("not a penalty",)}),
    (
        "commitments",
        {"commitments": (ReportCommitment(made_on=dt.date(2026, 6, 2), content="x"),)},
    ),
    ("subject", {"subject": "91110000600037341L"}),
]


@pytest.mark.parametrize(("field", "changes"), INVALID_REPORTS)
def test_invalid_reports_are_refused(field: str, changes: dict[str, Any]) -> None:
    with pytest.raises(ReportFormatError, match=field):
        full_report(**changes)


def test_a_resident_id_born_after_the_issue_date_is_refused() -> None:
    # Issued 2026-06-01; an ID whose birth date is later cannot be the subject's.
    born_later = "11010520260602" + "001"
    from federation.subjects import resident_id_check_char

    subject_id = born_later + resident_id_check_char(born_later)
    with pytest.raises(ReportFormatError, match=r"subject\.id") as caught:
        full_report(subject=Subject(SubjectKind.RESIDENT_ID, subject_id, "王五"))
    assert subject_id not in str(caught.value)


INVALID_ITEMS: list[tuple[type[Any], dict[str, Any], str]] = [
    (ReportListEntry, {"publicity_end": dt.date(2026, 1, 10)}, "publicity_end"),
    (ReportListEntry, {"removed_on": dt.date(2026, 2, 1)}, "removal_reason"),
    (
        ReportListEntry,
        {"removed_on": dt.date(2025, 1, 1), "removal_reason": "x", "active": False},
        "removed_on",
    ),
    (
        ReportListEntry,
        {"removed_on": dt.date(2026, 2, 1), "removal_reason": "repair", "active": True},
        "active",
    ),
    (ReportListEntry, {"active": 1}, "active"),
    (ReportListEntry, {"origin": "1234567"}, "origin"),
    (ReportListEntry, {"list_kind": "serious-dishonesty"}, "list_kind"),
    (ReportListEntry, {"listed_on": dt.datetime(2026, 1, 10, tzinfo=dt.UTC)}, "listed_on"),
    (ReportListEntry, {"reason": "x" * 4001}, "reason"),
]


@pytest.mark.parametrize(("cls", "changes", "field"), INVALID_ITEMS)
def test_invalid_section_items_are_refused(
    cls: type[Any], changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(ReportFormatError, match=field):
        dataclasses.replace(list_entry(), **changes)


def test_other_section_items_are_checked() -> None:
    with pytest.raises(ReportFormatError, match="valid_until"):
        ReportRating(
            issuer="税务局",
            scale="纳税信用等级",
            grade="A",
            common_grade=None,
            issued_on=dt.date(2026, 1, 2),
            valid_until=dt.date(2026, 1, 1),
        )
    with pytest.raises(ReportFormatError, match="summary"):
        ReportPenalty(authority="局", decision_no="1号", decided_on=dt.date(2026, 1, 1), summary="")
    with pytest.raises(ReportFormatError, match="made_on"):
        ReportCommitment(made_on="2026-01-01", content="x")  # type: ignore[arg-type]


def test_list_entry_from_a_sanction_list_state() -> None:
    entry = SanctionEntry.create(
        list_kind=ListKind.SERIOUS_DISHONESTY,
        subject_id=COMPANY.id,
        subject_name=COMPANY.name,
        reason="拒不履行",
        legal_basis="《条例》第十条",
        authority="烟台市发展和改革委员会",
        decision_no="烟发改信〔2026〕12号",
        listed_on=dt.date(2026, 1, 10),
        policy=DEFAULT_POLICIES[ListKind.SERIOUS_DISHONESTY],
    )
    state = EntryState(
        origin=YANTAI,
        entry_id=entry.entry_id(YANTAI),
        entry=entry,
        removal=None,
        objection=None,
        last_index=0,
        updated_at=ISSUED,
    )
    active = ReportListEntry.from_state(state, origin_name="烟台", at=ISSUED)
    assert active.active and active.removed_on is None
    assert active.why.startswith("listed on 2026-01-10")
    removal = Removal(dt.date(2026, 5, 1), RemovalReason.REPAIR, "烟台市发改委", "已修复")
    removed = ReportListEntry.from_state(
        dataclasses.replace(state, removal=removal), origin_name="烟台", at=ISSUED
    )
    assert not removed.active
    assert (removed.removed_on, removed.removal_reason) == (dt.date(2026, 5, 1), "repair: 已修复")
    full_report(list_entries=(active, removed))


# --- strict parsing ----------------------------------------------------------------------


def _document(**report_changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(signed().to_bytes())
    document["report"].update(report_changes)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_document(extra="x"), "unknown"),
        ({k: v for k, v in _document().items() if k != "keyid"}, "missing"),
        (_document(type="creditnet.checkpoint/v1"), "not a credit report"),
        (_document(issued_at="2026-06-01T06:30:00.000Z"), "canonical"),
        (_document(issued_at="2026-06-01T14:30:00+08:00"), "issued_at"),
        (_document(issued_at="2026-06-01T06:30:00"), "issued_at"),
        (_document(issued_at="9999-12-31T23:59:59Z"), "issued_at"),
        (_document(status_index="17"), "status_index"),
        (_document(status_index=17.0), "float"),
        (_document(registration={"名称": "x"}), "registration"),
        (_document(registration=[["名称", "x"]]), "registration"),
        (_document(subject={"kind": "uscc", "id": "91110000600037341l", "name": "x"}), "subject"),
        (_document(subject={"kind": "person", "id": "x", "name": "x"}), "subject"),
        (_document(penalties=[{"authority": "a"}]), r"penalties\[0\]"),
        (_document(list_entries=[{**list_entry().to_json(), "list_kind": "x"}]), "list_kind"),
        (
            _document(list_entries=[{**list_entry().to_json(), "listed_on": "2026-1-10"}]),
            "listed_on",
        ),
        ({**_document(), "signature": "%%%"}, "signature"),
        ({**_document(), "signature": ""}, "signature"),
        ({**_document(), "keyid": "AB" * 32}, "keyid"),
        ([], "JSON object"),
    ],
)
def test_malformed_documents_are_refused_with_a_clear_error(document: Any, message: str) -> None:
    with pytest.raises(ReportFormatError, match=message) as caught:
        SignedReport.from_bytes(json.dumps(document, ensure_ascii=False).encode("utf-8"))
    assert caught.value.code is ErrorCode.INVALID_INPUT


def test_from_bytes_refuses_oversized_and_non_json_input() -> None:
    with pytest.raises(ReportFormatError, match="more than"):
        SignedReport.from_bytes(b" " * (MAX_REPORT_BYTES + 1))
    for data in (b"", b"\xff\xfe", b"{", b"[" * 100_000, b"null", b'{"a":1,"a":1}'):
        with pytest.raises(ReportFormatError):
            SignedReport.from_bytes(data)


def test_errors_never_show_a_resident_id() -> None:
    document = json.loads(signed(minimal_report()).to_bytes())
    document["report"][PERSON_ID] = "x"
    with pytest.raises(ReportFormatError) as caught:
        SignedReport.from_bytes(json.dumps(document).encode())
    assert PERSON_ID not in str(caught.value)
    assert "[hidden]" in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_from_bytes_on_random_bytes_raises_only_credit_net_errors(data: bytes) -> None:
    with contextlib.suppress(CreditNetError):
        SignedReport.from_bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
BASE = json.loads(signed().to_bytes())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


PATHS = _paths(BASE)[1:]


@settings(max_examples=250, deadline=None)
@given(st.sampled_from(PATHS), JSON_VALUES)
def test_any_field_replaced_by_any_json_value_gives_a_clear_error_or_a_report(
    path: tuple[Any, ...], value: Any
) -> None:
    document = json.loads(json.dumps(BASE))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    try:
        parsed = SignedReport.from_bytes(json.dumps(document, ensure_ascii=False).encode())
    except CreditNetError:
        return
    # Whatever parses is an ordinary report; if it changed, the signature no longer holds.
    if parsed.to_bytes() != signed().to_bytes():
        assert verify(parsed).state == "invalid"


def test_a_file_with_other_fields_says_which_in_words() -> None:
    document = json.loads(signed().to_bytes())
    document.pop("keyid")
    document["hello"] = 1
    with pytest.raises(ReportFormatError) as refused:
        SignedReport.from_bytes(json.dumps(document).encode())
    assert refused.value.message == (
        "report file: fields do not match (missing keyid; unknown 'hello')"
    )


# --- verification code ---------------------------------------------------------------------


def test_verification_code() -> None:
    document = signed()
    code = document.verification_code
    assert CODE.fullmatch(code)
    assert document.matches_code(code)
    assert document.matches_code(code.replace("-", "").lower())
    assert document.matches_code(" " + code.replace("-", " ") + " ")
    assert not document.matches_code(code[:-1] + ("A" if code[-1] != "A" else "B"))
    assert not document.matches_code("")
    assert signed(full_report(status_index=18)).verification_code != code
    assert document.verification_payload == f"creditnet:report:370200-20260601-000017:{code}"


# --- offline verification --------------------------------------------------------------------


def test_a_good_report_verifies_with_a_reason_per_step() -> None:
    verdict = verify(signed())
    assert (verdict.state, verdict.signature_ok) == ("valid", True)
    assert verdict.report == full_report()
    assert len(verdict.reasons) == 7
    assert all(reason.endswith(": ok") for reason in verdict.reasons)


def _failing_cases() -> list[tuple[str, SignedReport, dict[str, Any], str, bool]]:
    stranger = make_city("999999")
    return [
        (
            "unknown manifest version",
            signed(full_report(manifest_version=4)),
            {"chain": (ManifestEpoch(V1), ManifestEpoch(V2))},
            "unknown manifest version v4; this node trusts v1..v2",
            False,
        ),
        ("no manifest at all", signed(), {"chain": ()}, "trusts no manifest at all", False),
        (
            "issuer not a member",
            signed(full_report(manifest_version=3)),
            {"chain": (ManifestEpoch(V1), ManifestEpoch(V2), ManifestEpoch(V3))},
            "issuer 370200 is not a member of manifest v3",
            False,
        ),
        (
            "another member's key",
            signed(key=CITIES[YANTAI].key),
            {},
            "(the key of 370600), not with 370200's signing key",
            False,
        ),
        ("a stranger's key", signed(key=stranger.key), {}, "(not a member's key)", False),
        (
            "key rotated out before issue",
            signed(),
            {"chain": (ManifestEpoch(V1), ManifestEpoch(V2, ISSUED - SECOND))},
            "issued after the issuer's key was replaced in v2 (trusted since 2026-06-01T06:29:59Z)",
            True,
        ),
        (
            "issuer removed before issue",
            signed(),
            {"chain": (ManifestEpoch(V1), ManifestEpoch(V2), ManifestEpoch(V3, ISSUED))},
            "issued after the issuer's membership ended in v3",
            True,
        ),
        (
            "dated in the future",
            signed(),
            {"now": ISSUED - dt.timedelta(minutes=5) - SECOND},
            "dated in the future",
            True,
        ),
    ]


@pytest.mark.parametrize(
    ("document", "kwargs", "reason", "signature_ok"),
    [case[1:] for case in _failing_cases()],
    ids=[case[0] for case in _failing_cases()],
)
def test_each_step_fails_on_its_own(
    document: SignedReport, kwargs: dict[str, Any], reason: str, signature_ok: bool
) -> None:
    verdict = verify(document, **kwargs)
    assert verdict.state == "invalid"
    assert verdict.signature_ok is signature_ok
    assert verdict.report is None
    assert reason in verdict.reasons[-1]
    assert all(earlier.endswith(": ok") for earlier in verdict.reasons[:-1])


def test_a_bad_signature_is_invalid() -> None:
    document = signed()
    forged = dataclasses.replace(document, signature=bytes(64))
    verdict = verify(forged)
    assert (verdict.state, verdict.signature_ok) == ("invalid", False)
    assert "does not verify" in verdict.reasons[-1]


TAMPERED = [
    {"issuer_name": "青岛市公共信用信息中心（伪）"},
    {"subject": Subject(SubjectKind.USCC, "91350200MA2YJ1XR9G", COMPANY.name)},
    {"valid_until": VALID_UNTIL + dt.timedelta(days=365)},
    {"status_index": 18},
    {"registration": (("名称", "青岛海润贸易有限公司"),)},
    {"list_entries": ()},
    {"list_entries": (list_entry(active=False, why="publicity ended"),)},
    {"penalties": ()},
    {"ratings": ()},
    {"commitments": ()},
    {"supersedes": "370200-20260501-000003"},
]


@pytest.mark.parametrize("changes", TAMPERED)
def test_changing_any_field_after_signing_makes_the_report_invalid(
    changes: dict[str, Any],
) -> None:
    document = signed()
    tampered = SignedReport(
        dataclasses.replace(document.report, **changes), document.keyid, document.signature
    )
    parsed = SignedReport.from_bytes(tampered.to_bytes())
    verdict = verify(parsed)
    assert (verdict.state, verdict.signature_ok) == ("invalid", False)


SIGNED_BYTES = signed().to_bytes()
REPORT_SPAN = (SIGNED_BYTES.index(b'"report":') + 9, SIGNED_BYTES.index(b',"signature":'))


@settings(max_examples=300, deadline=None)
@given(st.integers(*REPORT_SPAN).filter(lambda i: i < REPORT_SPAN[1]), st.integers(1, 255))
def test_a_changed_byte_anywhere_in_the_signed_part_is_refused_or_invalid(
    position: int, delta: int
) -> None:
    data = bytearray(SIGNED_BYTES)
    data[position] = (data[position] + delta) % 256
    try:
        parsed = SignedReport.from_bytes(bytes(data))
    except CreditNetError:
        return
    assert verify(parsed).state == "invalid"


def test_key_rotation_only_invalidates_reports_issued_after_it() -> None:
    replaced_at = ISSUED + SECOND
    chain = (ManifestEpoch(V1), ManifestEpoch(V2, replaced_at))
    # Issued one second before this node trusted v2: still the issuer's key then.
    assert verify(signed(), chain=chain).state == "valid"
    # The new key, claiming v2, is fine.
    new = signed(full_report(manifest_version=2), key=ROTATED.key)
    assert verify(new, chain=chain).state == "valid"
    # The old key cannot sign under v2.
    assert verify(signed(full_report(manifest_version=2)), chain=chain).state == "invalid"
    # Unknown adoption time: never held against the report.
    assert verify(signed(), chain=(ManifestEpoch(V1), ManifestEpoch(V2))).state == "valid"


def test_a_node_that_joined_later_checks_older_reports_against_its_oldest_version() -> None:
    joined_at_v2 = (ManifestEpoch(V2), ManifestEpoch(V3, ISSUED + SECOND))
    # Issued under v1 by a key the issuer still holds in v2 (Yantai's is unchanged).
    yantai_report = full_report(
        issuer=YANTAI, report_no=report_number(YANTAI, ISSUED, 17), manifest_version=1
    )
    yantai = signed(yantai_report, key=CITIES[YANTAI].key)
    verdict = verify(yantai, chain=joined_at_v2)
    assert verdict.state == "valid"
    assert verdict.reasons[0] == (
        "manifest: v1 is before this node's history (it trusts v2..v3); checked against v2, "
        "the oldest"
    )
    assert verdict.reasons[2].endswith("is 370600's signing key in v2: ok")
    # Qingdao replaced its key in v2: its v1 reports cannot be checked by this node.
    qingdao = verify(signed(), chain=joined_at_v2)
    assert qingdao.state == "invalid"
    assert qingdao.reasons[-1].endswith(
        f"not with 370200's signing key {ROTATED.member.signing_key.keyid[:16]} in v2"
    )
    # Qingdao left in v3: a node that joined at v3 has no key of Qingdao's to check with.
    joined_at_v3 = (ManifestEpoch(V3),)
    removed = verify(signed(full_report(manifest_version=2), key=ROTATED.key), chain=joined_at_v3)
    assert removed.reasons[-1] == "issuer 370200 is not a member of manifest v3"


def test_future_and_expiry_boundaries() -> None:
    skew = dt.timedelta(minutes=5)
    assert verify(signed(), now=ISSUED - skew).state == "valid"
    assert verify(signed(), now=ISSUED - skew - SECOND).state == "invalid"
    assert verify(signed(), now=ISSUED, max_skew=dt.timedelta(0)).state == "valid"
    assert verify(signed(), now=VALID_UNTIL).state == "valid"
    expired = verify(signed(), now=VALID_UNTIL + SECOND)
    assert (expired.state, expired.signature_ok) == ("expired", True)
    assert expired.report == full_report()
    assert expired.reasons[-1].startswith("expired: valid until 2026-08-30T06:30:00Z")


def test_verify_offline_refuses_a_bad_call() -> None:
    with pytest.raises(CreditNetError, match="timezone-aware"):
        verify_offline(signed(), chain=CHAIN, now=dt.datetime(2026, 6, 1))
    with pytest.raises(CreditNetError, match="increasing"):
        verify(signed(), chain=(ManifestEpoch(V2), ManifestEpoch(V1)))


def test_epochs_from_a_trusted_chain() -> None:
    first = SignedManifest(V1)
    for city in CITIES.values():
        first = first.sign(city.key)
    chain = TrustedChain.bootstrap(first, now=ISSUED)
    found = epochs(chain, {1: ISSUED})
    assert found == (ManifestEpoch(V1, ISSUED),)
    assert epochs(chain) == (ManifestEpoch(V1, None),)


# --- status lists ----------------------------------------------------------------------------


def new_list(size: int = 64) -> StatusList:
    return StatusList.new(issuer=QINGDAO, at=ISSUED, size=size)


def test_status_list_revoke_supersede_and_status_of() -> None:
    v1 = new_list()
    assert v1.version == 1 and v1.status_of(17) == "valid"
    v2 = v1.revoke(17, "报告内容有误", ISSUED + SECOND)
    v3 = v2.supersede(3, "370200-20260601-000018", ISSUED + 2 * SECOND)
    assert (v2.version, v3.version) == (2, 3)
    assert v1.status_of(17) == "valid"  # versions are values: the old one is unchanged
    assert [v3.status_of(i) for i in (0, 3, 17, 63)] == ["valid", "superseded", "revoked", "valid"]
    assert v3.revoked[2] == 0b0100_0000  # index 17 is the second bit from the left of byte 2
    report = full_report()
    assert v3.status_for(report) == ReportStatus(
        report.report_no, "revoked", "报告内容有误", None, ISSUED + 2 * SECOND
    )
    superseded = v3.status_for(full_report(status_index=3))
    assert (superseded.state, superseded.superseded_by) == ("superseded", "370200-20260601-000018")
    assert superseded.reason == "superseded by 370200-20260601-000018"
    assert v3.status_for(full_report(status_index=4)).state == "valid"
    # A superseded report may still be revoked; the revocation wins.
    v4 = v3.revoke(3, "伪造", ISSUED + 3 * SECOND)
    assert v4.status_of(3) == "revoked"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.revoke(17, "again", ISSUED + SECOND), "already revoked"),
        (lambda s: s.supersede(17, "370200-20260601-000018", ISSUED + SECOND), "is revoked"),
        (lambda s: s.revoke(64, "x", ISSUED + SECOND), "outside"),
        (lambda s: s.revoke(0, "x", ISSUED - SECOND), "before its version"),
        (lambda s: s.grow(64, ISSUED + SECOND), "grows"),
        (lambda s: s.status_for(full_report(status_index=100)), "outside"),
    ],
)
def test_status_changes_that_cannot_be_made(change: Any, message: str) -> None:
    revoked = new_list().revoke(17, "x", ISSUED)
    with pytest.raises(ReportStatusError, match=message):
        change(revoked)


def test_status_list_checks_its_fields() -> None:
    with pytest.raises(ReportFormatError, match="report of the issuer"):
        new_list().supersede(1, "370600-20260601-000001", ISSUED)
    with pytest.raises(ReportFormatError, match="reasons"):
        new_list().revoke(1, "", ISSUED)
    with pytest.raises(ReportFormatError, match="only a revoked index has a reason"):
        dataclasses.replace(new_list().revoke(1, "x", ISSUED), revoked=bytes(8))
    with pytest.raises(ReportFormatError, match="size"):
        StatusList.new(issuer=QINGDAO, at=ISSUED, size=12)
    with pytest.raises(ReportStatusError, match="370600"):
        new_list().status_for(full_report(issuer=YANTAI, report_no="370600-20260601-000017"))


def test_the_reasons_of_expired_reports_can_be_forgotten_and_their_revocations_stay() -> None:
    held = new_list().revoke(3, "出具有误", ISSUED).revoke(17, "申请人提供虚假材料", ISSUED)
    later = ISSUED + YEAR
    pruned = held.forget([3, 17], later).revoke(40, "重复出具", later)
    assert pruned.version == held.version + 2
    assert pruned.reasons == ((40, "重复出具"),)
    assert [pruned.status_of(i) for i in (3, 17, 40)] == ["revoked"] * 3
    third = full_report(report_no=report_number(QINGDAO, ISSUED, 3), status_index=3)
    status = pruned.status_for(third)
    assert (status.state, status.reason) == ("revoked", FORGOTTEN_REASON)
    # A peer holding the longer list takes the pruned one: nothing was un-revoked.
    assert accept_status_list(held, pruned) is pruned
    # And the pruned list is a signed document like any other.
    signed = sign_status_list(pruned, CITIES[QINGDAO].key).to_bytes()
    assert SignedStatusList.from_bytes(signed).status_list == pruned
    # Only a reason the list holds can be forgotten, and not before the list's time.
    with pytest.raises(ReportStatusError, match=r"no reason to forget at status indices \[5\]"):
        held.forget([3, 5], later)
    with pytest.raises(ReportStatusError, match="before its version"):
        held.forget([3], ISSUED - dt.timedelta(days=1))


def test_status_list_grows() -> None:
    grown = new_list().revoke(5, "x", ISSUED).grow(128, ISSUED)
    assert grown.size == 128 and grown.status_of(5) == "revoked" and grown.status_of(127) == "valid"


def test_status_list_round_trip_through_gzip_and_base64url() -> None:
    status_list = (
        StatusList.new(issuer=QINGDAO, at=ISSUED)
        .revoke(0, "a", ISSUED)
        .revoke(131071, "b", ISSUED)
        .supersede(9, "370200-20260601-000099", ISSUED)
    )
    document = status_list.to_json()
    assert document["revoked"].startswith("u") and "=" not in document["revoked"]
    packed = base64.urlsafe_b64decode(document["revoked"][1:] + "==")
    bits = gzip.decompress(packed)
    assert len(bits) == 16384 and bits[0] == 0x80 and bits[-1] == 0x01
    assert len(document["revoked"]) < 200  # a mostly-empty list compresses to almost nothing
    again = StatusList.from_json(json.loads(json.dumps(document)))
    assert again == status_list
    assert again.signed_bytes() == status_list.signed_bytes()


def test_a_list_compressed_by_another_implementation_keeps_its_bytes() -> None:
    status_list = new_list().revoke(2, "x", ISSUED)
    document = status_list.to_json()
    other = gzip.compress(status_list.revoked, compresslevel=1, mtime=123)
    document["revoked"] = "u" + base64.urlsafe_b64encode(other).decode().rstrip("=")
    parsed = StatusList.from_json(document)
    assert parsed == status_list
    assert parsed.signed_bytes() == canonical_bytes(document)
    signed_list = sign_status_list(parsed, KEY)
    again = SignedStatusList.from_bytes(signed_list.to_bytes())
    assert verify_status_list(again, V1, now=NOW) == status_list


def _encoded(data: bytes) -> str:
    return "u" + base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    ("revoked", "message"),
    [
        (_encoded(gzip.compress(bytes(9))), "holds 9 bytes, 8 for 64 bits"),
        # A bomb: inflating stops at size + 1 bytes and the rest is refused unread.
        (_encoded(gzip.compress(bytes(10**6))), "one complete gzip"),
        (_encoded(gzip.compress(bytes(8)) * 2), "one complete gzip"),
        (_encoded(gzip.compress(bytes(8))[:-3]), "one complete gzip"),
        (_encoded(b"not gzip at all"), "not valid gzip"),
        (_encoded(gzip.compress(bytes(8))) + "=", "base64url"),
        (base64.b64encode(gzip.compress(bytes(8))).decode(), "base64url"),
        (7, "base64url"),
    ],
)
def test_malformed_bitstrings_are_refused(revoked: Any, message: str) -> None:
    document = new_list().to_json()
    document["revoked"] = revoked
    with pytest.raises(ReportFormatError, match=message):
        StatusList.from_json(document)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 0}, "version"),
        ({"size": 7}, "size"),
        ({"superseded": [{"index": 1, "report_no": "370200-20260601-000002"}] * 2}, "distinct"),
        ({"reasons": [{"index": 1, "reason": "x"}]}, "reasons"),
        ({"superseded": [{"index": 64, "report_no": "370200-20260601-000002"}]}, "outside"),
        ({"superseded": [{"index": True, "report_no": "370200-20260601-000002"}]}, "pairs"),
        ({"updated_at": "2026-06-01T06:30:00.1Z"}, "canonical"),
        ({"extra": 1}, "unknown"),
    ],
)
def test_malformed_status_lists_are_refused(changes: dict[str, Any], message: str) -> None:
    document = new_list().to_json()
    document.update(changes)
    with pytest.raises(ReportFormatError, match=message):
        StatusList.from_json(document)


def test_status_list_signature_is_checked_against_the_manifest() -> None:
    status_list = new_list().revoke(17, "x", ISSUED)
    good = sign_status_list(status_list, KEY)
    assert verify_status_list(SignedStatusList.from_bytes(good.to_bytes()), V1, now=NOW) == (
        status_list
    )
    cases = [
        (sign_status_list(status_list, CITIES[YANTAI].key), V1, "not with 370200's"),
        (dataclasses.replace(good, signature=bytes(64)), V1, "does not verify"),
        (good, V3, "not a member"),
        (
            SignedStatusList(
                dataclasses.replace(status_list, reasons=((17, "y"),)), good.keyid, good.signature
            ),
            V1,
            "does not verify",
        ),
        (
            sign_status_list(dataclasses.replace(status_list, updated_at=NOW + YEAR), KEY),
            V1,
            "future",
        ),
    ]
    for document, manifest, message in cases:
        with pytest.raises(StatusListError, match=message):
            verify_status_list(document, manifest, now=NOW)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_status_list_parsing_raises_only_credit_net_errors(data: bytes) -> None:
    with contextlib.suppress(CreditNetError):
        SignedStatusList.from_bytes(data)


def test_a_held_status_list_is_only_replaced_by_a_newer_one() -> None:
    v1 = new_list()
    v2 = v1.revoke(17, "x", ISSUED + SECOND)
    v3 = v2.supersede(1, "370200-20260601-000002", ISSUED + 2 * SECOND)
    assert accept_status_list(None, v1) is v1
    assert accept_status_list(v1, v3) is v3
    assert v3.newer_than(v1) and not v1.newer_than(v3)
    with pytest.raises(StaleStatusListError, match="rollback refused"):
        accept_status_list(v3, v2)
    assert accept_status_list(v2, dataclasses.replace(v2)) is v2
    with pytest.raises(StatusListError, match="two different"):
        accept_status_list(v2, v1.revoke(18, "x", ISSUED + SECOND))
    unrevoked = dataclasses.replace(v3, version=4, revoked=bytes(8), reasons=())
    with pytest.raises(StatusListError, match="un-revokes"):
        accept_status_list(v3, unrevoked)
    with pytest.raises(StatusListError, match="undoes"):
        accept_status_list(v3, dataclasses.replace(v3, version=4, superseded=()))
    with pytest.raises(StatusListError, match="cannot be compared"):
        accept_status_list(v1, StatusList.new(issuer=YANTAI, at=ISSUED, size=64))


# --- the final verdict ---------------------------------------------------------------------


VALID = verify(signed())
EXPIRED = verify(signed(), now=VALID_UNTIL + SECOND)
INVALID = verify(signed(key=CITIES[YANTAI].key))
REPORT_NO = "370200-20260601-000017"
AS_OF = ISSUED + dt.timedelta(minutes=30)
OK = ReportStatus(REPORT_NO, "valid", "not revoked or superseded", None, AS_OF)
REVOKED = ReportStatus(REPORT_NO, "revoked", "报告内容有误", None, AS_OF)
SUPERSEDED = ReportStatus(
    REPORT_NO, "superseded", "superseded by 370200-20260601-000018", "370200-20260601-000018", AS_OF
)
OTHER = ReportStatus("370200-20260601-000001", "valid", "fine", None, AS_OF)


@pytest.mark.parametrize(
    ("offline", "status", "source", "as_of", "state", "summary"),
    [
        (INVALID, OK, "issuer", AS_OF, "invalid", "invalid: signed with key"),
        (INVALID, None, None, None, "invalid", "invalid: "),
        (EXPIRED, OK, "issuer", AS_OF, "expired", "expired on 2026-08-30T06:30:00Z"),
        (EXPIRED, REVOKED, "issuer", AS_OF, "expired", "expired on"),
        (
            VALID,
            None,
            None,
            None,
            "status-unknown",
            "signature valid, status unknown since never checked",
        ),
        (
            VALID,
            None,
            "replica",
            AS_OF,
            "status-unknown",
            "signature valid, status unknown since 2026-06-01T07:00:00Z",
        ),
        (VALID, OTHER, "issuer", AS_OF, "status-unknown", "status unknown"),
        (VALID, REVOKED, "issuer", AS_OF, "revoked", "revoked: 报告内容有误"),
        (
            VALID,
            SUPERSEDED,
            "replica",
            AS_OF,
            "superseded",
            "superseded by report 370200-20260601-000018",
        ),
        (VALID, OK, "issuer", AS_OF, "valid", "valid: signature verified"),
        (VALID, OK, "replica", None, "valid", "as of 2026-06-01T07:00:00Z (replica)"),
    ],
)
def test_final_verdict(
    offline: OfflineVerdict,
    status: ReportStatus | None,
    source: Any,
    as_of: dt.datetime | None,
    state: str,
    summary: str,
) -> None:
    verdict = final_verdict(offline, status, status_source=source, status_as_of=as_of)
    assert verdict.state == state
    assert verdict.summary.startswith(summary) or summary in verdict.summary
    assert verdict.reasons[: len(offline.reasons)] == offline.reasons


def test_without_a_status_a_report_is_never_valid() -> None:
    for as_of in (None, AS_OF):
        verdict = final_verdict(VALID, None, status_source=None, status_as_of=as_of)
        assert verdict.state != "valid" and not verdict.summary.startswith("valid")


def test_report_status_checks_its_fields() -> None:
    with pytest.raises(ReportFormatError, match="superseded_by"):
        ReportStatus(REPORT_NO, "superseded", "x", None, AS_OF)
    with pytest.raises(ReportFormatError, match="superseded_by"):
        ReportStatus(REPORT_NO, "valid", "x", "370200-20260601-000018", AS_OF)
    with pytest.raises(ReportFormatError, match="state"):
        ReportStatus(REPORT_NO, "gone", "x", None, AS_OF)  # type: ignore[arg-type]


def test_manifest_epoch_checks_its_fields() -> None:
    with pytest.raises(CreditNetError):
        ManifestEpoch("v1")  # type: ignore[arg-type]
    assert isinstance(ManifestEpoch(V1, ISSUED).manifest, Manifest)


def test_a_report_signed_with_the_sm2_suite_verifies() -> None:
    sm2 = SigningKey.generate("sm2-sm3")
    city = dataclasses.replace(
        CITIES[QINGDAO],
        member=dataclasses.replace(CITIES[QINGDAO].member, signing_key=sm2.public_key),
        key=sm2,
    )
    # A federation signs with one suite: its other member has an SM2 key too.
    yantai = dataclasses.replace(
        CITIES[YANTAI].member, signing_key=SigningKey.generate("sm2-sm3").public_key
    )
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[city.member, yantai],
        threshold=1,
        expires=ISSUED + YEAR,
    )
    document = SignedReport.from_bytes(sign_report(full_report(), sm2).to_bytes())
    assert verify(document, chain=(ManifestEpoch(manifest),)).state == "valid"
    forged = dataclasses.replace(document, report=full_report(status_index=18))
    assert verify(forged, chain=(ManifestEpoch(manifest),)).state == "invalid"
