"""Subject identifiers: USCC (GB 32100-2015) and resident ID numbers (GB 11643-1999)."""

from __future__ import annotations

import datetime as dt
import itertools
import string
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation import subjects
from federation.errors import ErrorCode, InvalidIdentifierError
from federation.subjects import (
    MAX_INPUT_CHARS,
    USCC_ALPHABET,
    SubjectCheck,
    SubjectId,
    SubjectKind,
    check_subject,
    normalize_identifier,
    organisation_code_check_char,
    parse_resident_id,
    parse_subject,
    parse_uscc,
    resident_id_check_char,
    uscc_check_char,
)

TODAY = dt.date(2025, 6, 1)
USCC_EXAMPLE = "91110000600037341L"
USCC_EXAMPLE_MA = "91350200MA2YJ1XR9G"
RESIDENT_EXAMPLE = "11010519491231002X"
RESIDENT_EXAMPLE_MASKED = "110105********002X"


def make_uscc(prefix8: str, org8: str, *, org_check: str | None = None) -> str:
    """A USCC from authority+type+division and the first 8 organisation code characters."""
    check = organisation_code_check_char(org8) if org_check is None else org_check
    first17 = prefix8 + org8 + check
    return first17 + uscc_check_char(first17)


def make_resident_id(address: str, birth: dt.date, sequence: str) -> str:
    first17 = address + birth.strftime("%Y%m%d") + sequence
    return first17 + resident_id_check_char(first17)


def all_digit_uscc(*, org_check_ok: bool) -> str:
    """A USCC shaped like a resident ID (all digits), found by a deterministic search."""
    for n in itertools.count():
        org8 = f"{n:08d}"
        good = organisation_code_check_char(org8)
        check = good if org_check_ok else str((int(good) + 1) % 10 if good.isdigit() else 5)
        if not check.isdigit():
            continue
        # Division 370200: positions 7-10 read "0012..." - never a plausible birth year.
        value = make_uscc("91370200", org8, org_check=check)
        if value.isdigit():
            return value
    raise AssertionError("unreachable")


# --- check characters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helper", "first", "expected"),
    [
        (uscc_check_char, USCC_EXAMPLE[:17], "L"),
        (uscc_check_char, USCC_EXAMPLE_MA[:17], "G"),
        (resident_id_check_char, RESIDENT_EXAMPLE[:17], "X"),
        (organisation_code_check_char, "60003734", "1"),
        (organisation_code_check_char, "MA2YJ1XR", "9"),
    ],
)
def test_check_characters_of_known_codes(
    helper: Callable[[str], str], first: str, expected: str
) -> None:
    assert helper(first) == expected


@pytest.mark.parametrize(
    ("helper", "argument", "message"),
    [
        (uscc_check_char, "9111", "need 17 characters, got 4"),
        (uscc_check_char, "9111000060003734I", "position 17"),
        (resident_id_check_char, "1101051949123100", "need 17 digits, got 16"),
        (resident_id_check_char, "1101051949123100A", "must be digits"),
        (organisation_code_check_char, "6000373", "need 8 characters, got 7"),
    ],
)
def test_check_character_helpers_reject_bad_input(
    helper: Callable[[str], str], argument: str, message: str
) -> None:
    with pytest.raises(InvalidIdentifierError, match=message):
        helper(argument)


@pytest.mark.parametrize(
    ("org8", "expected"),
    [
        ("00000000", "0"),  # sum 0: r = 11 -> 0
        ("00000003", "5"),  # sum 6: r = 5
        ("00000005", "1"),  # sum 10: r = 1
        ("40000000", "X"),  # sum 12, 12 mod 11 = 1: r = 10 -> X
    ],
)
def test_organisation_code_check_values(org8: str, expected: str) -> None:
    assert organisation_code_check_char(org8) == expected


# --- valid identifiers -------------------------------------------------------------------

VALID = [
    # (input, kind, normalised value)
    (USCC_EXAMPLE, SubjectKind.USCC, USCC_EXAMPLE),
    (USCC_EXAMPLE_MA, SubjectKind.USCC, USCC_EXAMPLE_MA),
    (RESIDENT_EXAMPLE, SubjectKind.RESIDENT_ID, RESIDENT_EXAMPLE),
    # Letters in the first two positions (A/N/Y authorities): a known pitfall elsewhere.
    (make_uscc("A1110000", "MA2YJ1XR"), SubjectKind.USCC, None),
    (make_uscc("N2370200", "MA3C4D5E"), SubjectKind.USCC, None),
    (make_uscc("Y1371000", "60003734"), SubjectKind.USCC, None),
    (make_uscc("53100000", "50000717"), SubjectKind.USCC, None),
    # Leap day, and a person born today.
    (make_resident_id("370202", dt.date(2000, 2, 29), "123"), SubjectKind.RESIDENT_ID, None),
    (make_resident_id("371002", TODAY, "001"), SubjectKind.RESIDENT_ID, None),
    (make_resident_id("110105", dt.date(1900, 1, 1), "002"), SubjectKind.RESIDENT_ID, None),
]


@pytest.mark.parametrize(("text", "kind", "value"), VALID)
def test_valid_identifiers_parse(text: str, kind: SubjectKind, value: str | None) -> None:
    subject = parse_subject(text, today=TODAY)
    assert subject.kind is kind
    assert subject.value == (value or text)
    result = check_subject(text, today=TODAY)
    assert result.valid and result.kind is kind and result.reason is None
    assert result.normalized == subject.value
    assert result.masked == subject.masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("９１１１００００６０００３７３４１Ｌ", USCC_EXAMPLE),  # full width
        ("91350200ma2yj1xr9g", USCC_EXAMPLE_MA),  # lower case
        ("ｍａ", "MA"),  # full-width lower case
        ("  9111 0000 6000 3734 1L\n", USCC_EXAMPLE),  # spaces, newline
        ("911100\t00600037341L", USCC_EXAMPLE),  # tab
        ("110105\u300019491231\u3000002x", RESIDENT_EXAMPLE),  # ideographic space
        ("\ufeff11010519491231\u200b002X", RESIDENT_EXAMPLE),  # BOM, zero-width space
        ("\u00a0110105 19491231 002X\u2003", RESIDENT_EXAMPLE),  # no-break, em space
    ],
)
def test_normalisation(text: str, expected: str) -> None:
    assert normalize_identifier(text) == expected
    if len(expected) == 18:
        assert parse_subject(text, today=TODAY).value == expected


def test_normalisation_does_not_upper_case_exotic_letters() -> None:
    # Dotless i upper-cases to I in Unicode; it must not sneak into an identifier.
    assert normalize_identifier("ı") == "ı"


# --- invalid identifiers -----------------------------------------------------------------

_DIGIT_USCC_BAD_ORG = all_digit_uscc(org_check_ok=False)

INVALID = [
    # (input, substring of the reason)
    ("", "identifier is empty"),
    (" \u3000\t", "identifier is empty"),
    ("9111000060003734", "must be 18 characters long, got 16"),
    ("91110000600037341LL", "must be 18 characters long, got 19"),
    ("110105491231002", "15-digit first-generation ID numbers are not accepted"),
    ("x" * (MAX_INPUT_CHARS + 1), f"input is {MAX_INPUT_CHARS + 1} characters long"),
    ("91110000600037341I", "character 'I' at position 18 is not in the USCC alphabet"),
    ("O1110000600037341L", "character 'O' at position 1 is not in the USCC alphabet"),
    ("911100006000Z7341L", "character 'Z' at position 13"),
    ("9111000060003734张L", "character '张' (U+5F20) at position 17"),
    ("9111000060003734\x1bL", "character U+001B at position 17"),
    ("B1110000600037341L", "position 1 (registration authority) is 'B'"),
    ("0" + USCC_EXAMPLE[1:], "position 1 (registration authority) is '0'"),
    ("9111A000600037341L", "position 5 is 'A'; positions 3-8"),
    ("91110000600037341M", "USCC check character (position 18) is 'M', expected 'L'"),
    ("A1110000600037341L", "USCC check character (position 18) is 'L', expected 'K'"),
    ("110105194912310021", "resident ID check character (position 18) is '1', expected 'X'"),
    ("110105194902310020", "birth date (positions 7-14) is not a real calendar date"),
    ("110105190002290020", "birth date (positions 7-14) is not a real calendar date"),
    ("110105194913010020", "birth date (positions 7-14) is not a real calendar date"),
    ("110105189912310020", "birth year (positions 7-10) is before 1900"),
    (
        make_resident_id("110105", TODAY + dt.timedelta(days=1), "002"),
        "birth date (positions 7-14) is in the future (today is 2025-06-01)",
    ),
    # All digits, USCC check right, organisation code check wrong: not taken as a USCC.
    (_DIGIT_USCC_BAD_ORG, "birth year (positions 7-10) is before 1900"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_identifiers_are_rejected_with_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifierError) as caught:
        parse_subject(text, today=TODAY)
    assert reason in caught.value.message
    assert caught.value.code is ErrorCode.INVALID_INPUT
    result = check_subject(text, today=TODAY)
    assert not result.valid
    assert result.reason == caught.value.message
    assert result.normalized is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1101051949A231002X", "character 'A' at position 11: a resident ID number has digits"),
        ("11010519491231002Y", "character 'Y' at position 18: a resident ID number ends"),
        (USCC_EXAMPLE, "character 'L' at position 18"),
    ],
)
def test_parse_resident_id_names_the_bad_position(text: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=reason):
        parse_resident_id(text, today=TODAY)


def test_parse_uscc_accepts_an_all_digit_code_with_a_warning_free_organisation_code() -> None:
    assert parse_uscc(_DIGIT_USCC_BAD_ORG).kind is SubjectKind.USCC  # lenient: warning only
    with pytest.raises(InvalidIdentifierError, match="position 1"):
        parse_uscc("01010519491231002X")


def test_future_birth_date_uses_the_injected_today() -> None:
    tomorrow = make_resident_id("110105", TODAY + dt.timedelta(days=1), "002")
    assert parse_subject(tomorrow, today=TODAY + dt.timedelta(days=1)).kind is (
        SubjectKind.RESIDENT_ID
    )
    # Without a `today`, the real date is used: a birth date in 2200 is in the future.
    with pytest.raises(InvalidIdentifierError, match="future"):
        parse_subject(make_resident_id("110105", dt.date(2200, 1, 1), "002"))


# --- warnings and the all-digit USCC ----------------------------------------------------


def test_organisation_code_mismatch_is_a_warning_not_a_rejection() -> None:
    code = make_uscc("91110000", "60003734", org_check="2")
    result = check_subject(code, today=TODAY)
    assert result.valid and result.kind is SubjectKind.USCC
    assert result.warnings == (
        "organisation code check character (position 17) is '2', GB 11714 expects '1'",
    )
    assert check_subject(USCC_EXAMPLE, today=TODAY).warnings == ()


def test_unusual_organisation_type_is_a_warning() -> None:
    code = make_uscc("9A110000", "60003734")
    result = check_subject(code, today=TODAY)
    assert result.valid
    assert result.warnings == ("position 2 (organisation type) 'A' is not a type 1-9",)


def test_all_digit_uscc_is_accepted_and_shown_masked() -> None:
    code = all_digit_uscc(org_check_ok=True)
    subject = parse_subject(code, today=TODAY)
    assert subject.kind is SubjectKind.USCC and subject.value == code
    assert subject.masked == code[:6] + "********" + code[-4:]
    assert code not in repr(subject) and code not in str(subject)
    result = check_subject(code, today=TODAY)
    assert any("shaped like a resident ID number" in w for w in result.warnings)


def test_code_valid_as_both_kinds_is_treated_as_a_resident_id() -> None:
    # Privacy first: when both readings are valid the identifier is masked as personal.
    for seq, address in itertools.product(range(1000), ("110105", "370202", "371002")):
        value = make_resident_id(address, dt.date(1980, 5, 17), f"{seq:03d}")
        if uscc_check_char(value[:17]) == value[17] and (
            organisation_code_check_char(value[8:16]) == value[16]
        ):
            break
    else:
        raise AssertionError("no identifier valid as both kinds found")
    assert parse_uscc(value).kind is SubjectKind.USCC
    assert parse_subject(value, today=TODAY).kind is SubjectKind.RESIDENT_ID


# --- SubjectId, masking, no leaks ---------------------------------------------------------


def test_resident_id_is_masked_everywhere() -> None:
    subject = parse_subject(RESIDENT_EXAMPLE, today=TODAY)
    assert subject.masked == RESIDENT_EXAMPLE_MASKED
    assert str(subject) == RESIDENT_EXAMPLE_MASKED
    assert f"{subject}" == RESIDENT_EXAMPLE_MASKED
    for shown in (repr(subject), repr([subject]), repr(check_subject(RESIDENT_EXAMPLE))):
        assert RESIDENT_EXAMPLE not in shown
        assert RESIDENT_EXAMPLE_MASKED in shown
    assert subject.value == RESIDENT_EXAMPLE


def test_uscc_is_not_masked() -> None:
    subject = parse_subject(USCC_EXAMPLE_MA)
    assert subject.masked == str(subject) == USCC_EXAMPLE_MA
    assert repr(subject) == f"SubjectId(uscc, {USCC_EXAMPLE_MA})"


def test_subject_ids_compare_by_value() -> None:
    assert parse_subject(" 91110000600037341l") == parse_subject(USCC_EXAMPLE)
    assert len({parse_subject(RESIDENT_EXAMPLE), parse_subject(RESIDENT_EXAMPLE.lower())}) == 1


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (SubjectKind.RESIDENT_ID, "110105194912310021"),
        (SubjectKind.RESIDENT_ID, USCC_EXAMPLE),
        (SubjectKind.USCC, "91110000600037341M"),
        (SubjectKind.USCC, "91110000600037341l"),  # not normalised
    ],
)
def test_subject_id_cannot_hold_an_invalid_value(kind: SubjectKind, value: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        SubjectId(kind, value)


def test_invalid_input_is_masked_in_check_result() -> None:
    result = check_subject("110105194912310021", today=TODAY)
    assert result.kind is SubjectKind.RESIDENT_ID
    assert result.masked == "110105********0021"
    short = check_subject("12345", today=TODAY)
    assert short.masked == "*****"
    assert check_subject("张三", today=TODAY).kind is None
    assert check_subject("x" * 1000).masked is None


# --- properties ---------------------------------------------------------------------------

_digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
_uscc_chars = st.sampled_from(USCC_ALPHABET)


@st.composite
def uscc_first17(draw: st.DrawFn, *, org_check_ok: bool = False) -> str:
    authority = draw(st.sampled_from("123456789ANY"))
    org_type = draw(_uscc_chars)
    division = "".join(draw(st.lists(_digits, min_size=6, max_size=6)))
    org = "".join(draw(st.lists(_uscc_chars, min_size=9, max_size=9)))
    if org_check_ok:
        org = org[:8] + organisation_code_check_char(org[:8])
    return authority + org_type + division + org


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    address = "".join(draw(st.lists(_digits, min_size=6, max_size=6)))
    birth = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY))
    sequence = "".join(draw(st.lists(_digits, min_size=3, max_size=3)))
    return make_resident_id(address, birth, sequence)


@given(uscc_first17())
def test_any_uscc_body_with_its_check_char_is_valid(first17: str) -> None:
    code = first17 + uscc_check_char(first17)
    assert parse_uscc(code).value == code
    if not code[:17].isdigit():  # all-digit codes also need the organisation code check
        assert check_subject(code, today=TODAY).valid


@given(uscc_first17(org_check_ok=True))
def test_any_uscc_with_both_checks_parses_as_a_subject(first17: str) -> None:
    code = first17 + uscc_check_char(first17)
    subject = parse_subject(code, today=TODAY)
    assert subject.value == code
    resident_shaped = code[:17].isdigit() and (code[17].isdigit() or code[17] == "X")
    assert subject.kind is SubjectKind.USCC or resident_shaped


@given(resident_ids())
def test_any_resident_body_with_its_check_char_is_valid(value: str) -> None:
    subject = parse_subject(value, today=TODAY)
    assert subject.kind is SubjectKind.RESIDENT_ID
    assert subject.masked == value[:6] + "********" + value[-4:]
    assert value not in repr(subject)


@given(uscc_first17(), st.integers(0, 17), _uscc_chars)
def test_any_single_uscc_substitution_is_detected(first17: str, pos: int, new: str) -> None:
    code = first17 + uscc_check_char(first17)
    if code[pos] == new:
        return
    changed = code[:pos] + new + code[pos + 1 :]
    with pytest.raises(InvalidIdentifierError):
        parse_uscc(changed)
    result = check_subject(changed, today=TODAY)
    assert not (result.valid and result.kind is SubjectKind.USCC)


@given(resident_ids(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_any_single_resident_substitution_is_detected(value: str, pos: int, new: str) -> None:
    if value[pos] == new or (new == "X" and pos != 17):
        return
    changed = value[:pos] + new + value[pos + 1 :]
    with pytest.raises(InvalidIdentifierError) as caught:
        parse_resident_id(changed, today=TODAY)
    # Neither reading of the mistyped number may echo it or its birth date.
    for text in (caught.value.message, check_subject(changed, today=TODAY).reason or ""):
        assert changed not in text and value not in text
        assert value[6:14] not in text


@given(resident_ids(), st.integers(0, 17), st.sampled_from(["delete", "insert", "swap"]))
def test_mistyped_resident_id_never_leaks(value: str, pos: int, edit: str) -> None:
    if edit == "delete":
        changed = value[:pos] + value[pos + 1 :]
    elif edit == "insert":
        changed = value[:pos] + "7" + value[pos:]
    else:
        changed = value[:pos] + value[pos + 1 : pos + 2] + value[pos] + value[pos + 2 :]
    result = check_subject(changed, today=TODAY)
    shown = f"{result!r} {result.reason} {result.masked}"
    if not result.valid or result.kind is SubjectKind.RESIDENT_ID:
        assert changed not in shown and value[6:14] not in shown
    else:  # a valid all-digit USCC by coincidence: still shown masked only
        assert result.masked != changed


def _normalize_step_by_step(text: str) -> str:
    """normalize_identifier without its fast path for ASCII letters and digits."""
    current = text
    for _ in range(8):
        step = unicodedata.normalize("NFKC", current)
        step = "".join(
            ch.upper() if "a" <= ch <= "z" else ch
            for ch in step
            if not ch.isspace() and unicodedata.category(ch) != "Cf"
        )
        if step == current:
            break
        current = step
    return current


@given(
    st.text(alphabet=string.ascii_letters + string.digits, max_size=40)
    | st.text(alphabet=string.ascii_letters + string.digits + " \t\u00a0\u200bï９ａ", max_size=20)
    | st.text(max_size=20)
)
def test_normalisation_fast_path_gives_what_the_steps_give(text: str) -> None:
    assert normalize_identifier(text) == _normalize_step_by_step(text)


@given(st.text())
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalize_identifier(text)
    assert normalize_identifier(once) == once


@given(st.text(max_size=40) | st.text(alphabet=USCC_ALPHABET + "xX ", min_size=17, max_size=19))
def test_check_subject_never_raises(text: str) -> None:
    result = check_subject(text, today=TODAY)
    assert isinstance(result, SubjectCheck)
    assert result.valid == (result.reason is None)
    if not result.valid:
        assert result.normalized is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tax-credit", "'tax-credit'"),
        (RESIDENT_EXAMPLE, "'[hidden]'"),
        (f"scale-{RESIDENT_EXAMPLE.lower()}", "'scale-[hidden]'"),
        ("１１０１０５１９４９１２３１００２Ｘ", "'[hidden]'"),  # full-width forms
        ("2026-13-01", "'2026-13-01'"),
        (12, "'12'"),
        ("grade " * 11, repr(("grade " * 11)[:57] + "...")),
    ],
)
def test_shown_hides_what_could_be_an_identifier(value: object, expected: str) -> None:
    assert subjects.shown(value) == expected


def test_shown_hides_before_cutting() -> None:
    # Cut first, "scale is 110105194..." would keep the start of the number: a run too
    # short to look like an identifier, but its region and year of birth.
    value = "scale is " + RESIDENT_EXAMPLE
    for limit in range(12, 40):
        text = subjects.shown(value, limit=limit)
        assert RESIDENT_EXAMPLE[:4] not in text
        assert len(text) <= limit + 2  # the quotes
    assert subjects.shown(value, limit=20) == "'scale is [hidden]'"
    assert subjects.shown("x" * 10 + RESIDENT_EXAMPLE, limit=20) == "'[hidden]'"
