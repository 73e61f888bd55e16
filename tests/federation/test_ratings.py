"""Ratings: scales, signed statements and mappings, recognition policy and its reasons."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.canonical import canonical_bytes
from federation.errors import (
    CommonScaleMismatchError,
    CreditNetError,
    ErrorCode,
    InvalidInputError,
    RatingError,
    RatingVerificationError,
    ScaleMappingConflictError,
)
from federation.manifest import build_manifest, next_version
from federation.ratings import (
    PRESET_SCALES,
    RATING_STATEMENT_TYPE,
    SCALE_MAPPING_TYPE,
    Band,
    MappingBook,
    RatingScale,
    RatingStatement,
    RecognitionPolicy,
    ScaleMapping,
    SignedRatingStatement,
    SignedScaleMapping,
    newer_mapping,
    policy_from_config,
    recognise,
    scales_from_config,
)
from federation.sanctions import Subject
from federation.subjects import SubjectKind
from tests.federation.conftest import NOW, YEAR, make_city

QINGDAO, YANTAI, WEIHAI = "370200", "370600", "371000"
CITIES = {code: make_city(code) for code in (QINGDAO, YANTAI, WEIHAI)}
STRANGER = make_city("999999")
COMMON = ("A", "B", "C", "D")
MANIFEST = build_manifest(
    federation_id="jiaodong",
    federation_name="胶东经济圈",
    members=[c.member for c in CITIES.values()],
    threshold=2,
    expires=NOW + YEAR,
)
TAX = PRESET_SCALES["tax-credit"]
HAIBEI = PRESET_SCALES["weihai-haibei"]
COMPANY = Subject(SubjectKind.USCC, "91110000600037341L", "某某贸易有限公司")
PERSON_ID = "11010519491231002X"
PERSON = Subject(SubjectKind.RESIDENT_ID, PERSON_ID, "张三")
TODAY = dt.date(2026, 6, 1)  # NOW in China

STATEMENT = RatingStatement(
    issuer=YANTAI,
    subject=COMPANY,
    scale_id="tax-credit",
    grade="B",
    issued_on=TODAY - dt.timedelta(days=40),
    valid_until=TODAY + dt.timedelta(days=200),
    evidence_ref="烟税评〔2026〕12号",
)
TAX_MAPPING = ScaleMapping(
    issuer=YANTAI,
    scale=TAX,
    common_scale=COMMON,
    mapping={"A": "A", "B": "B", "M": "B", "C": "C", "D": "D"},
    version=1,
)
HAIBEI_MAPPING = ScaleMapping(
    issuer=WEIHAI,
    scale=HAIBEI,
    common_scale=COMMON,
    mapping={"AAA": "A", "AA": "A", "A": "B", "B": "B", "C": "C", "D": "D"},
    version=1,
)
PERSON_STATEMENT = RatingStatement(
    issuer=WEIHAI,
    subject=PERSON,
    scale_id="weihai-haibei",
    grade="AA",
    points=1080,
    issued_on=TODAY - dt.timedelta(days=10),
    valid_until=TODAY + dt.timedelta(days=355),
    evidence_ref="威信评〔2026〕0042号",
)


# --- scales -------------------------------------------------------------------------------


def test_preset_scales() -> None:
    assert set(PRESET_SCALES) == {
        "tax-credit",
        "public-credit-gbt45255",
        "customs",
        "weihai-haibei",
    }
    assert TAX.grades == ("A", "B", "M", "C", "D")
    assert PRESET_SCALES["public-credit-gbt45255"].grades == ("A", "B", "C", "D")
    assert PRESET_SCALES["customs"].grades[0] == "高级认证"
    assert HAIBEI.kind == "points"
    assert HAIBEI.grades == ("AAA", "AA", "A", "B", "C", "D")
    for scale_id, scale in PRESET_SCALES.items():
        assert scale.scale_id == scale_id
        assert RatingScale.from_json(json.loads(canonical_bytes(scale.to_json()))) == scale


@pytest.mark.parametrize(
    ("points", "grade"),
    [
        (10**6, "AAA"),
        (1150, "AAA"),
        (1149, "AA"),
        (1050, "AA"),
        (1049, "A"),
        (1000, "A"),
        (999, "B"),
        (950, "B"),
        (949, "C"),
        (801, "C"),
        (800, "D"),
        (0, "D"),
        (-(10**6), "D"),
    ],
)
def test_haibei_points_at_every_band_boundary(points: int, grade: str) -> None:
    assert HAIBEI.grade_of(points) == grade


def test_grade_of_outside_a_closed_scale_or_on_a_grades_scale() -> None:
    closed = RatingScale(
        scale_id="closed",
        name="封闭分",
        kind="points",
        bands=(Band("good", 500, 1000), Band("bad", 0, 499)),
    )
    assert closed.grade_of(0) == "bad"
    assert closed.grade_of(1000) == "good"
    with pytest.raises(RatingError, match="1001 points fall in no band"):
        closed.grade_of(1001)
    with pytest.raises(RatingError, match="-1 points fall in no band"):
        closed.grade_of(-1)
    with pytest.raises(RatingError, match="has grades, not points"):
        TAX.grade_of(5)


def test_rank_is_best_first() -> None:
    assert [TAX.rank(g) for g in TAX.grades] == [0, 1, 2, 3, 4]
    with pytest.raises(RatingError, match="not a grade of scale tax-credit"):
        TAX.rank("E")


def _points(*bands: tuple[Any, ...]) -> dict[str, Any]:
    return {"scale_id": "x-points", "name": "积分", "kind": "points", "bands": bands}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scale_id": "Tax", "name": "n", "kind": "grades", "grades": ("A",)}, "not a scale id"),
        ({"scale_id": "t", "name": "", "kind": "grades", "grades": ("A",)}, "name must not be"),
        ({"scale_id": "t", "name": "n", "kind": "stars", "grades": ("A",)}, "kind 'stars'"),
        ({"scale_id": "t", "name": "n", "kind": "grades", "grades": ()}, "1 to 50 grades"),
        ({"scale_id": "t", "name": "n", "kind": "grades", "grades": ("A", "A")}, "grade A appears"),
        ({"scale_id": "t", "name": "n", "kind": "grades", "grades": (" A",)}, "whitespace"),
        ({"scale_id": "t", "name": "n", "kind": "grades", "grades": ("A" * 17,)}, "at most 16"),
        (
            {
                "scale_id": "t",
                "name": "n",
                "kind": "grades",
                "grades": ("A",),
                "bands": (("A", 1, 2),),
            },
            "has no bands",
        ),
        (_points(("A", 10, None), ("B", 0, 8)), "points 9 to 9 fall in no band"),
        (_points(("A", 10, None), ("B", 0, 10)), "overlap or are out of order"),
        (_points(("A", 0, 9), ("B", 10, 20)), "overlap or are out of order"),
        (_points(("A", 10, None), ("B", None, 9), ("C", None, 5)), "open downwards"),
        (_points(("A", 10, 20), ("B", 5, None)), "open upwards"),
        (_points(("A", 20, 10)), "min_points 20 above max_points 10"),
        (_points(("A", 1.5, None)), "min_points must be a whole number"),
        (_points(("A", True, None)), "min_points must be a whole number"),
        (_points(("A", 10**10, None)), "min_points must be a whole number"),
        (_points(("A", 1)), r"\(grade, min_points, max_points\)"),
        (_points(("A", 10, None), ("A", None, 9)), "grade A appears more than once"),
        ({**_points(("A", 10, None), ("B", None, 9)), "grades": ("B", "A")}, "band labels"),
        (_points(), "1 to 50 bands"),
    ],
)
def test_invalid_scales(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(RatingError, match=message):
        RatingScale(**fields)


def test_single_open_band_covers_every_integer() -> None:
    # Plain (grade, min, max) tuples are accepted too: a band is a NamedTuple.
    plain: Any = (("ok", None, None),)
    scale = RatingScale(scale_id="all", name="全部", kind="points", bands=plain)
    assert scale.bands == (Band("ok", None, None),)
    assert isinstance(scale.bands[0], Band)
    assert scale.grade_of(-(10**9)) == scale.grade_of(10**9) == "ok"


# --- statements ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer": "37060"}, "issuer '37060' is not a six-digit"),
        ({"subject": "91110000600037341L"}, "subject must be a Subject"),
        ({"scale_id": "Tax Credit"}, "scale_id 'Tax Credit' is not a scale id"),
        ({"grade": ""}, "grade must not be empty"),
        ({"points": True}, "points must be a whole number"),
        ({"points": 10**10}, "points must be a whole number"),
        ({"issued_on": NOW}, "issued_on must be a date"),
        ({"valid_until": TODAY - dt.timedelta(days=41)}, "must not be before issued_on"),
        ({"evidence_ref": "a\nb"}, "control character U\\+000A"),
        ({"evidence_ref": "x" * 201}, "at most 200"),
    ],
)
def test_invalid_statements(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RatingError, match=message):
        dataclasses.replace(STATEMENT, **changes)


@pytest.mark.parametrize(
    ("statement", "scale", "problem"),
    [
        (STATEMENT, TAX, None),
        (PERSON_STATEMENT, HAIBEI, None),
        (STATEMENT, HAIBEI, "on scale tax-credit, not on weihai-haibei"),
        (dataclasses.replace(STATEMENT, grade="E"), TAX, "E is not a grade of scale tax-credit"),
        (dataclasses.replace(STATEMENT, points=5), TAX, "grades only, but the rating states"),
        (dataclasses.replace(PERSON_STATEMENT, points=None), HAIBEI, "states no points"),
        (dataclasses.replace(PERSON_STATEMENT, points=1150), HAIBEI, "1150 points are grade AAA"),
    ],
)
def test_statement_against_its_scale(
    statement: RatingStatement, scale: RatingScale, problem: str | None
) -> None:
    found = statement.problem_with(scale)
    if problem is None:
        assert found is None
        statement.check_against(scale)
    else:
        assert found is not None and problem in found
        with pytest.raises(RatingError, match="rating statement: "):
            statement.check_against(scale)


def test_a_personal_identifier_is_never_shown() -> None:
    signed = SignedRatingStatement.sign(PERSON_STATEMENT, CITIES[WEIHAI].key, scale=HAIBEI)
    result = recognise(
        PERSON_STATEMENT, HAIBEI_MAPPING, RecognitionPolicy(), now=NOW, manifest=MANIFEST
    )
    assert result.recognised
    shown = [repr(PERSON_STATEMENT), repr(signed), PERSON_STATEMENT.describe(), *result.reasons]
    assert all(PERSON_ID not in text for text in shown)
    # ...but the signed document itself carries the subject, so the receiver can match it.
    assert PERSON_ID in signed.to_bytes().decode()


# --- mappings -----------------------------------------------------------------------------


def test_mapping_is_kept_in_scale_order_and_read_only() -> None:
    mapping = dataclasses.replace(
        TAX_MAPPING, mapping={"D": "D", "C": "C", "M": "B", "B": "B", "A": "A"}
    )
    assert list(mapping.mapping) == ["A", "B", "M", "C", "D"]
    assert mapping == TAX_MAPPING and hash(mapping) == hash(TAX_MAPPING)
    assert mapping.common_grade("M") == "B"
    with pytest.raises(TypeError):
        mapping.mapping["A"] = "D"  # type: ignore[index]


def test_a_flat_mapping_is_monotone() -> None:
    everything_c = {grade: "C" for grade in TAX.grades}
    assert dataclasses.replace(TAX_MAPPING, mapping=everything_c).common_grade("A") == "C"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"mapping": {"A": "A", "B": "B", "C": "C"}},
            "does not cover its scale: no common grade for M, D",
        ),
        (
            {"mapping": {**TAX_MAPPING.mapping, "E": "D"}},
            "maps 'E', which is not a grade of the scale",
        ),
        (
            {"mapping": {**TAX_MAPPING.mapping, "D": "E"}},
            "D maps to 'E', which is not a grade of the common",
        ),
        (
            {"mapping": {**TAX_MAPPING.mapping, "M": "C", "C": "B"}},
            "not monotone: M is better than C but maps to common grade C, worse than B",
        ),
        ({"mapping": {**TAX_MAPPING.mapping, "A": "D"}}, "not monotone: A is better than B"),
        ({"common_scale": ()}, "common_scale must be a non-empty list"),
        ({"common_scale": ("A", "A")}, "lists a grade twice"),
        ({"version": 0}, "version must be a whole number >= 1"),
        ({"version": True}, "version must be a whole number >= 1"),
        ({"issuer": "0"}, "issuer '0' is not a six-digit"),
        ({"scale": "tax-credit"}, "scale must be a RatingScale"),
    ],
)
def test_invalid_mappings(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RatingError, match=message):
        dataclasses.replace(TAX_MAPPING, **changes)


def test_newer_version_replaces_older() -> None:
    v2 = dataclasses.replace(TAX_MAPPING, mapping={**TAX_MAPPING.mapping, "M": "C"}, version=2)
    assert newer_mapping(None, TAX_MAPPING) is TAX_MAPPING
    assert newer_mapping(TAX_MAPPING, v2) is v2
    assert newer_mapping(v2, TAX_MAPPING) is v2  # a late old version is ignored
    assert newer_mapping(TAX_MAPPING, dataclasses.replace(TAX_MAPPING)) is TAX_MAPPING
    with pytest.raises(
        ScaleMappingConflictError, match="signed two mappings with one version number"
    ) as caught:
        newer_mapping(TAX_MAPPING, dataclasses.replace(v2, version=1))
    assert caught.value.code is ErrorCode.ALREADY_EXISTS
    with pytest.raises(InvalidInputError, match="not of the same issuer and scale"):
        newer_mapping(TAX_MAPPING, HAIBEI_MAPPING)

    book = MappingBook([TAX_MAPPING, HAIBEI_MAPPING])
    assert len(book) == 2
    assert book.offer(v2) is True
    assert book.offer(TAX_MAPPING) is False
    assert book.lookup(YANTAI, "tax-credit") is v2
    assert book.lookup(QINGDAO, "tax-credit") is None
    assert set(book) == {v2, HAIBEI_MAPPING}


# --- signatures ---------------------------------------------------------------------------


def test_statement_sign_and_verify() -> None:
    signed = SignedRatingStatement.sign(STATEMENT, CITIES[YANTAI].key, scale=TAX)
    assert signed.keyid == CITIES[YANTAI].key.public_key.keyid
    again = SignedRatingStatement.from_bytes(signed.to_bytes())
    assert again == signed
    assert again.verify(MANIFEST) == STATEMENT
    document = json.loads(signed.to_bytes())
    assert document["statement"]["type"] == RATING_STATEMENT_TYPE
    assert document["statement"]["points"] is None
    assert canonical_bytes(document) == signed.to_bytes()


def test_points_statement_round_trip() -> None:
    signed = SignedRatingStatement.sign(PERSON_STATEMENT, CITIES[WEIHAI].key, scale=HAIBEI)
    assert SignedRatingStatement.from_bytes(signed.to_bytes()).verify(MANIFEST) == PERSON_STATEMENT


def test_an_inconsistent_statement_is_not_signed() -> None:
    wrong = dataclasses.replace(PERSON_STATEMENT, points=900)
    with pytest.raises(RatingError, match="900 points are grade C"):
        SignedRatingStatement.sign(wrong, CITIES[WEIHAI].key, scale=HAIBEI)


def _tampered(data: bytes, inner: str, field: str, value: Any) -> bytes:
    document = json.loads(data)
    document[inner][field] = value
    return canonical_bytes(document)


@pytest.mark.parametrize(
    ("signer", "statement", "message"),
    [
        (YANTAI, dataclasses.replace(STATEMENT, issuer="999999"), "issuer 999999 is not a member"),
        (QINGDAO, STATEMENT, r"signed with key \w+ \(the key of 370200\), not with 370600's"),
        ("stranger", STATEMENT, r"\(not a member's key\)"),
    ],
)
def test_statement_signed_by_the_wrong_key(
    signer: str, statement: RatingStatement, message: str
) -> None:
    key = STRANGER.key if signer == "stranger" else CITIES[signer].key
    signed = SignedRatingStatement.sign(statement, key, scale=TAX)
    with pytest.raises(RatingVerificationError, match=message) as caught:
        signed.verify(MANIFEST)
    assert caught.value.code is ErrorCode.PERMISSION_DENIED


def test_tampered_statement_does_not_verify() -> None:
    data = SignedRatingStatement.sign(STATEMENT, CITIES[YANTAI].key, scale=TAX).to_bytes()
    forged = SignedRatingStatement.from_bytes(_tampered(data, "statement", "grade", "A"))
    assert forged.statement.grade == "A"
    with pytest.raises(RatingVerificationError, match="does not verify"):
        forged.verify(MANIFEST)


def test_a_statement_signed_again_after_a_key_rotation_verifies() -> None:
    rotated = CITIES[YANTAI].with_new_key()
    after = next_version(MANIFEST, expires=NOW + YEAR, replace=[rotated.member])
    before = SignedRatingStatement.sign(STATEMENT, CITIES[YANTAI].key, scale=TAX)
    with pytest.raises(RatingVerificationError, match="not a member's key"):
        before.verify(after)
    again = before.signed_again(rotated.key)
    assert again.verify(after) == STATEMENT
    assert again.signed_again(rotated.key) is again


def test_mapping_sign_and_verify() -> None:
    signed = SignedScaleMapping.sign(HAIBEI_MAPPING, CITIES[WEIHAI].key)
    again = SignedScaleMapping.from_bytes(signed.to_bytes())
    assert again == signed
    assert again.verify(MANIFEST) == HAIBEI_MAPPING
    assert json.loads(signed.to_bytes())["mapping"]["type"] == SCALE_MAPPING_TYPE


def test_mapping_verification_failures() -> None:
    data = SignedScaleMapping.sign(TAX_MAPPING, CITIES[YANTAI].key).to_bytes()
    forged = _tampered(data, "mapping", "mapping", {**TAX_MAPPING.mapping, "M": "C"})
    with pytest.raises(RatingVerificationError, match="does not verify"):
        SignedScaleMapping.from_bytes(forged).verify(MANIFEST)
    with pytest.raises(RatingVerificationError, match="the key of 370200"):
        SignedScaleMapping.sign(TAX_MAPPING, CITIES[QINGDAO].key).verify(MANIFEST)
    outsider = dataclasses.replace(TAX_MAPPING, issuer="999999")
    with pytest.raises(RatingVerificationError, match="not a member"):
        SignedScaleMapping.sign(outsider, STRANGER.key).verify(MANIFEST)
    five = dataclasses.replace(
        TAX_MAPPING,
        common_scale=("A", "B", "C", "D", "E"),
        mapping={"A": "A", "B": "B", "M": "C", "C": "D", "D": "E"},
    )
    with pytest.raises(
        CommonScaleMismatchError, match=r"A, B, C, D, E, but .* has A, B, C, D"
    ) as caught:
        SignedScaleMapping.sign(five, CITIES[YANTAI].key).verify(MANIFEST)
    assert caught.value.code is ErrorCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("keyid"), "fields do not match"),
        (lambda d: d.update(signature="!!"), "not valid base64"),
        (lambda d: d.update(signature=""), "signature must be 1 to 1024 bytes"),
        (lambda d: d.update(signature="AB=="), "not in canonical base64"),
        (lambda d: d.update(keyid="AB" * 32), "64 lower-case hex"),
        (lambda d: d["statement"].update(type="creditnet.checkpoint/v1"), "not a rating statement"),
        (lambda d: d["statement"].update(issued_on="2026-02-30"), "not a calendar date"),
        (lambda d: d["statement"].update(issued_on="2026-6-1"), "date YYYY-MM-DD"),
        (lambda d: d["statement"].update(extra=1), "unknown \\[\"'extra'\"\\]"),
        (lambda d: d["statement"]["subject"].update(kind="person"), "subject.kind"),
        (lambda d: d["statement"]["subject"].update(id="91110000600037341X"), "subject.id"),
    ],
)
def test_malformed_signed_statements(mutate: Any, message: str) -> None:
    document = SignedRatingStatement.sign(STATEMENT, CITIES[YANTAI].key, scale=TAX).to_json()
    mutate(document)
    with pytest.raises(RatingError, match=message):
        SignedRatingStatement.from_bytes(canonical_bytes(document))


def test_non_canonical_bytes_are_refused() -> None:
    data = SignedRatingStatement.sign(STATEMENT, CITIES[YANTAI].key, scale=TAX).to_bytes()
    spaced = json.dumps(json.loads(data), indent=1).encode()
    assert SignedRatingStatement.from_bytes(spaced).to_bytes() == data  # same document
    with pytest.raises(RatingError, match="more than 65536"):
        SignedRatingStatement.from_bytes(b" " * 70000)
    with pytest.raises(RatingError, match="not valid JSON"):
        SignedRatingStatement.from_bytes(b"{")


def test_malformed_mapping_scale() -> None:
    document = SignedScaleMapping.sign(HAIBEI_MAPPING, CITIES[WEIHAI].key).to_json()
    document["mapping"]["scale"]["bands"][1]["max_points"] = 1100
    with pytest.raises(
        RatingError,
        match=r"^scale mapping: rating scale weihai-haibei: points 1101 to 1149 fall in no band",
    ):
        SignedScaleMapping.from_bytes(canonical_bytes(document))


# --- recognition --------------------------------------------------------------------------

POLICY = RecognitionPolicy(
    issuers=(YANTAI, WEIHAI),
    scales={YANTAI: ("tax-credit",), WEIHAI: ("*",)},
    max_age_days=365,
)
OTHER_MAPPING = dataclasses.replace(TAX_MAPPING, issuer=QINGDAO)


@pytest.mark.parametrize(
    ("case", "statement", "mapping", "policy", "days_later", "grade", "recognised", "reasons"),
    [
        (
            "all good",
            STATEMENT,
            TAX_MAPPING,
            POLICY,
            0,
            "B",
            True,
            [
                "Yantai's tax-credit rating B maps to common grade B; recognised: issuer and "
                "scale accepted, issued 40 days ago (limit 365 days), valid until 2026-12-18"
            ],
        ),
        (
            "points scale, any of Weihai's scales",
            PERSON_STATEMENT,
            HAIBEI_MAPPING,
            POLICY,
            0,
            "A",
            True,
            ["Weihai's weihai-haibei rating AA (1080 points) maps to common grade A; recognised"],
        ),
        (
            "issued today",
            dataclasses.replace(STATEMENT, issued_on=TODAY),
            TAX_MAPPING,
            POLICY,
            0,
            "B",
            True,
            ["issued today"],
        ),
        (
            "issuer not recognised",
            dataclasses.replace(STATEMENT, issuer=QINGDAO),
            OTHER_MAPPING,
            POLICY,
            0,
            "B",
            False,
            [
                "Qingdao's tax-credit rating B maps to common grade B; not recognised",
                "not recognised: this city does not recognise ratings by Qingdao (370200); "
                "it recognises Yantai, Weihai",
            ],
        ),
        (
            "scale not recognised",
            dataclasses.replace(STATEMENT, scale_id="customs", grade="认证"),
            dataclasses.replace(
                TAX_MAPPING,
                scale=PRESET_SCALES["customs"],
                mapping={"高级认证": "A", "认证": "A", "常规": "B", "失信": "C", "严重失信": "D"},
            ),
            POLICY,
            0,
            "A",
            False,
            [
                "not recognised: this city does not recognise Yantai's scale customs; "
                "from Yantai it recognises tax-credit"
            ],
        ),
        (
            "too old",
            dataclasses.replace(STATEMENT, valid_until=TODAY + dt.timedelta(days=1000)),
            TAX_MAPPING,
            POLICY,
            326,
            "B",
            False,
            [
                "not recognised: the rating was issued on 2026-04-22, 366 days ago; this city "
                "recognises ratings issued at most 365 days ago"
            ],
        ),
        (
            "expired",
            dataclasses.replace(STATEMENT, valid_until=TODAY - dt.timedelta(days=1)),
            TAX_MAPPING,
            POLICY,
            0,
            "B",
            False,
            [
                "not recognised: the rating expired: it was valid until 2026-05-31 "
                "(today is 2026-06-01)"
            ],
        ),
        (
            "expired but the policy accepts it",
            dataclasses.replace(STATEMENT, valid_until=TODAY - dt.timedelta(days=1)),
            TAX_MAPPING,
            dataclasses.replace(POLICY, require_unexpired=False),
            0,
            "B",
            True,
            ["expired on 2026-05-31, which this city's policy accepts"],
        ),
        (
            "valid until today is still valid",
            dataclasses.replace(STATEMENT, valid_until=TODAY),
            TAX_MAPPING,
            POLICY,
            0,
            "B",
            True,
            ["valid until 2026-06-01"],
        ),
        (
            "a rating for one day holds on that day",
            dataclasses.replace(STATEMENT, issued_on=TODAY, valid_until=TODAY),
            TAX_MAPPING,
            POLICY,
            0,
            "B",
            True,
            ["valid until 2026-06-01"],
        ),
        (
            "a rating for one day has expired the next",
            dataclasses.replace(STATEMENT, issued_on=TODAY, valid_until=TODAY),
            TAX_MAPPING,
            POLICY,
            1,
            "B",
            False,
            ["the rating expired: it was valid until 2026-06-01 (today is 2026-06-02)"],
        ),
        (
            "dated in the future",
            dataclasses.replace(STATEMENT, issued_on=TODAY + dt.timedelta(days=1)),
            TAX_MAPPING,
            POLICY,
            0,
            "B",
            False,
            ["not recognised: the rating is dated 2026-06-02, after today (2026-06-01)"],
        ),
        (
            "no mapping",
            STATEMENT,
            None,
            POLICY,
            0,
            None,
            False,
            [
                "Yantai's tax-credit rating B has no common grade: Yantai has published no "
                "mapping of scale tax-credit; not recognised"
            ],
        ),
        (
            "mapping of another scale",
            STATEMENT,
            dataclasses.replace(HAIBEI_MAPPING, issuer=YANTAI),
            POLICY,
            0,
            None,
            False,
            ["no common grade: the mapping at hand is of scale weihai-haibei, not tax-credit"],
        ),
        (
            "mapping of another issuer",
            STATEMENT,
            OTHER_MAPPING,
            POLICY,
            0,
            None,
            False,
            ["no common grade: the mapping at hand is Qingdao's, not Yantai's"],
        ),
        (
            "mapping onto another common scale",
            STATEMENT,
            dataclasses.replace(TAX_MAPPING, common_scale=("A", "B", "C", "D", "E")),
            POLICY,
            0,
            None,
            False,
            ["no common grade: Yantai's mapping (v1) is onto the common scale A, B, C, D, E"],
        ),
        (
            "grade not in scale",
            dataclasses.replace(STATEMENT, grade="AA"),
            TAX_MAPPING,
            POLICY,
            0,
            None,
            False,
            ["no common grade: AA is not a grade of scale tax-credit (grades: A, B, M, C, D)"],
        ),
        (
            "points do not give the grade",
            dataclasses.replace(PERSON_STATEMENT, points=1200),
            HAIBEI_MAPPING,
            POLICY,
            0,
            None,
            False,
            ["no common grade: 1200 points are grade AAA on scale weihai-haibei, not AA"],
        ),
        (
            "several reasons at once",
            dataclasses.replace(STATEMENT, issuer="410100"),
            None,
            dataclasses.replace(POLICY, max_age_days=30),
            0,
            None,
            False,
            [
                "Zhengzhou's tax-credit rating B has no common grade",
                "ratings by Zhengzhou (410100)",
                "at most 30 days ago",
            ],
        ),
    ],
)
def test_recognise(
    case: str,
    statement: RatingStatement,
    mapping: ScaleMapping | None,
    policy: RecognitionPolicy,
    days_later: int,
    grade: str | None,
    recognised: bool,
    reasons: list[str],
) -> None:
    now = NOW + dt.timedelta(days=days_later)
    result = recognise(statement, mapping, policy, now=now, manifest=MANIFEST)
    assert (result.common_grade, result.recognised) == (grade, recognised), case
    text = "\n".join(result.reasons)
    for reason in reasons:
        assert reason in text, (case, result.reasons)
    if recognised:
        assert len(result.reasons) == 1
    else:
        assert result.reasons[0].endswith("; not recognised")


def test_recognise_counts_days_in_china() -> None:
    # 2026-06-01 17:00 UTC is already 2026-06-02 in China: one day more.
    late = NOW.replace(hour=17)
    result = recognise(STATEMENT, TAX_MAPPING, POLICY, now=late, manifest=MANIFEST)
    assert "issued 41 days ago" in result.reasons[0]
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        recognise(STATEMENT, TAX_MAPPING, POLICY, now=NOW.replace(tzinfo=None), manifest=MANIFEST)


def test_a_city_removed_from_the_federation_is_no_longer_recognised() -> None:
    without_yantai = next_version(MANIFEST, expires=NOW + YEAR, remove=[YANTAI])
    result = recognise(STATEMENT, TAX_MAPPING, POLICY, now=NOW, manifest=without_yantai)
    assert (result.common_grade, result.recognised) == (None, False)
    assert result.reasons == (
        "Yantai's tax-credit rating B has no common grade: Yantai (370600) is no longer a "
        "member of the federation (manifest v2 of jiaodong); not recognised",
    )
    # The other members' ratings are recognised as before.
    assert recognise(
        PERSON_STATEMENT, HAIBEI_MAPPING, POLICY, now=NOW, manifest=without_yantai
    ).recognised


def test_issuer_named_only_under_star() -> None:
    policy = RecognitionPolicy(scales={"*": ("public-credit-gbt45255",), YANTAI: ("tax-credit",)})
    assert policy.recognises_scale(YANTAI, "tax-credit")
    assert not policy.recognises_scale(YANTAI, "public-credit-gbt45255")
    assert policy.recognises_scale(QINGDAO, "public-credit-gbt45255")
    assert not policy.recognises_scale(QINGDAO, "tax-credit")
    nothing = RecognitionPolicy(scales={YANTAI: ("tax-credit",)})
    assert not nothing.recognises_scale(QINGDAO, "tax-credit")
    assert nothing.scales_of(QINGDAO) == ()


# --- configuration ------------------------------------------------------------------------

SCALES_TOML = """
[ratings.scales.qingdao-personal]
name = "青岛个人信用分"
kind = "points"
bands = [
  ["优秀", 900, ""],
  ["良好", 700, 899],
  ["一般", 500, 699],
  ["较差", "", 499],
]

[ratings.scales.tax-credit]
name = "纳税信用等级 (本地)"
kind = "grades"
grades = ["A", "B", "M", "C", "D"]

[ratings.scales.open-top]
name = "开放上限"
kind = "points"
bands = [["high", 100], ["low", "", 99]]
"""


def test_scales_from_config() -> None:
    scales = scales_from_config(tomllib.loads(SCALES_TOML)["ratings"]["scales"])
    assert set(scales) == set(PRESET_SCALES) | {"qingdao-personal", "open-top"}
    qingdao = scales["qingdao-personal"]
    assert qingdao.bands[0] == Band("优秀", 900, None)
    assert qingdao.bands[-1] == Band("较差", None, 499)
    assert [qingdao.grade_of(p) for p in (1000, 900, 899, 500, 499)] == [
        "优秀",
        "优秀",
        "良好",
        "一般",
        "较差",
    ]
    assert scales["tax-credit"].name == "纳税信用等级 (本地)"
    assert scales["open-top"].bands[0] == Band("high", 100, None)
    assert scales_from_config({}) == dict(PRESET_SCALES)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[s.Bad]\nname="n"\nkind="grades"\ngrades=["A"]', r"\[ratings.scales\]: scale id 'Bad'"),
        ("s = 1", r"\[ratings.scales.s\] must be a table"),
        (
            '[s.x]\nname="n"\nkind="grades"\ngrade=["A"]',
            r"\[ratings.scales.x\]: unknown key 'grade'",
        ),
        ('[s.x]\nkind="grades"\ngrades=["A"]', r"\[ratings.scales.x\]: missing key 'name'"),
        ('[s.x]\nname="n"\ngrades=["A"]', r"\[ratings.scales.x\]: missing key 'kind'"),
        ('[s.x]\nname="n"\nkind="stars"\ngrades=["A"]', r"\[ratings.scales.x\]: kind must be"),
        ('[s.x]\nname="n"\nkind="grades"', r"\[ratings.scales.x\]: missing key 'grades'"),
        ('[s.x]\nname="n"\nkind="points"\ngrades=["A"]', r"missing key 'bands' \(a points scale"),
        (
            '[s.x]\nname="n"\nkind="grades"\ngrades=["A"]\nbands=[]',
            r"\[ratings.scales.x\]: key 'bands' does not belong to a grades scale",
        ),
        (
            '[s.x]\nname="n"\nkind="grades"\ngrades="A"',
            r"\[ratings.scales.x\]: grades must be a list",
        ),
        (
            '[s.x]\nname="n"\nkind="grades"\ngrades=["A","A"]',
            r"^\[ratings.scales.x\]: grade A appears more than once$",
        ),
        (
            '[s.x]\nname="n"\nkind="points"\nbands=[["A"]]',
            r"\[ratings.scales.x\]: bands\[0\] must be",
        ),
        (
            '[s.x]\nname="n"\nkind="points"\nbands=[["A", "ten", ""]]',
            r'\[ratings.scales.x\]: bands\[0\]: min must be a whole number, or ""',
        ),
        (
            '[s.x]\nname="n"\nkind="points"\nbands=[["A", 10, ""], ["B", "", 8]]',
            r"^\[ratings.scales.x\]: points 9 to 9 fall in no band",
        ),
        (
            '[s.x]\nname=""\nkind="grades"\ngrades=["A"]',
            r"^\[ratings.scales.x\]: name must not be empty",
        ),
    ],
)
def test_scales_config_errors(toml: str, message: str) -> None:
    with pytest.raises(RatingError, match=message) as caught:
        scales_from_config(
            tomllib.loads(toml)["s"] if toml.startswith("[s.") else tomllib.loads(toml)
        )
    assert caught.value.code is ErrorCode.INVALID_INPUT


POLICY_TOML = """
[ratings.recognition]
issuers = ["370200", "371000"]
max_age_days = 180
require_unexpired = false

[ratings.recognition.scales]
"*" = ["tax-credit", "public-credit-gbt45255"]
371000 = "*"
"""


def test_policy_from_config() -> None:
    policy = policy_from_config(tomllib.loads(POLICY_TOML)["ratings"]["recognition"])
    assert policy.issuers == (QINGDAO, WEIHAI)
    assert dict(policy.scales) == {"*": ("tax-credit", "public-credit-gbt45255"), WEIHAI: ("*",)}
    assert (policy.max_age_days, policy.require_unexpired) == (180, False)
    assert policy.recognises_scale(WEIHAI, "weihai-haibei")
    assert not policy.recognises_scale(QINGDAO, "weihai-haibei")
    assert not policy.recognises_issuer(YANTAI)
    assert hash(policy) == hash(dataclasses.replace(policy))
    default = policy_from_config({})
    assert default == RecognitionPolicy()
    assert default.recognises_issuer(YANTAI) and default.recognises_scale(YANTAI, "anything")
    assert default.max_age_days == 365 and default.require_unexpired


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("issuer = '*'", "unknown key 'issuer'; known keys: issuers, scales"),
        ("issuers = '370200'", 'issuers must be "\\*" or a list'),
        ("issuers = []", "issuers must not be empty"),
        ("issuers = ['3702']", "issuers: entry '3702' is not a six-digit"),
        ("issuers = ['*', '370200']", "cannot be combined"),
        ("issuers = ['370200', '370200']", "issuers lists an entry twice"),
        ("scales = ['tax-credit']", "scales must be a table"),
        ("[scales]\n'*' = 'tax-credit'", 'scales: \\* must be "\\*" or a list'),
        ("[scales]\n'*' = ['Tax']", "scales: \\*: entry 'Tax' is not a scale id"),
        ("[scales]\nqingdao = '*'", "scales: issuer 'qingdao' is not a six-digit"),
        (
            "issuers = ['370200']\n[scales]\n370600 = '*'",
            "scales: names issuer 370600, which is not in issuers \\(370200\\)",
        ),
        ("max_age_days = 0", "max_age_days must be a whole number 1-36500"),
        ("max_age_days = '365'", "max_age_days must be a whole number"),
        ("max_age_days = 365.0", "max_age_days must be a whole number"),
        ("require_unexpired = 'yes'", "require_unexpired must be true or false"),
    ],
)
def test_policy_config_errors(toml: str, message: str) -> None:
    with pytest.raises(RatingError, match=f"^\\[ratings.recognition\\]: .*{message}"):
        policy_from_config(tomllib.loads(toml))


# --- properties ---------------------------------------------------------------------------


@st.composite
def points_scales(draw: st.DrawFn) -> RatingScale:
    count = draw(st.integers(1, 8))
    cuts = sorted(draw(st.sets(st.integers(-5000, 5000), min_size=count + 1, max_size=count + 1)))
    # cuts[0] is the lowest bound; band i (best first) spans [cuts[count-1-i], cuts[count-i] - 1].
    bands = []
    for index in range(count):
        low, high = cuts[count - 1 - index], cuts[count - index] - 1
        bands.append(Band(f"G{index}", low, high))
    if draw(st.booleans()):
        bands[0] = bands[0]._replace(max_points=None)
    if draw(st.booleans()):
        bands[-1] = bands[-1]._replace(min_points=None)
    return RatingScale(scale_id="random", name="随机", kind="points", bands=tuple(bands))


@settings(max_examples=200)
@given(st.one_of(points_scales(), st.just(HAIBEI)), st.integers(-20000, 20000))
def test_exactly_one_band_matches(scale: RatingScale, points: int) -> None:
    matching = [band.grade for band in scale.bands if band.contains(points)]
    top, bottom = scale.bands[0].max_points, scale.bands[-1].min_points
    covered = (top is None or points <= top) and (bottom is None or points >= bottom)
    if covered:
        assert len(matching) == 1
        assert scale.grade_of(points) == matching[0]
    else:
        assert matching == []
        with pytest.raises(RatingError, match="fall in no band"):
            scale.grade_of(points)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_project_errors(data: bytes) -> None:
    for parse in (SignedRatingStatement.from_bytes, SignedScaleMapping.from_bytes):
        with contextlib.suppress(CreditNetError):
            parse(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _paths(item, (*prefix, index))
    return paths


SIGNED_DOCUMENTS = (
    (
        SignedRatingStatement.from_bytes,
        SignedRatingStatement.sign(PERSON_STATEMENT, CITIES[WEIHAI].key, scale=HAIBEI).to_json(),
    ),
    (
        SignedScaleMapping.from_bytes,
        SignedScaleMapping.sign(HAIBEI_MAPPING, CITIES[WEIHAI].key).to_json(),
    ),
)


@settings(max_examples=400)
@given(st.sampled_from(range(len(SIGNED_DOCUMENTS))), st.data(), JSON_VALUES)
def test_mutated_documents_raise_only_project_errors(
    which: int, data: st.DataObject, value: Any
) -> None:
    parse, original = SIGNED_DOCUMENTS[which]
    document = json.loads(json.dumps(original))
    path = data.draw(st.sampled_from(_paths(document)))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    try:
        parsed = parse(canonical_bytes(document))
    except CreditNetError:
        return
    # Whatever parses must be exactly what it says, byte for byte.
    assert parsed.to_bytes() == canonical_bytes(document)
