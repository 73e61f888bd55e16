"""Subject identifiers: who a credit record is about.

Two kinds of identifier name a subject:

* 统一社会信用代码 (USCC), GB 32100-2015, for legal persons and other organisations;
  its positions 9-17 are an organisation code with its own GB 11714 check character.
* 居民身份证号码 (resident ID number), GB 11643-1999, for natural persons; its check
  character is ISO 7064 MOD 11-2.

This module normalises what a user typed (whitespace, full-width forms, case), decides
which kind it is and validates it. A resident ID number is personal information: it is
never shown in clear by ``repr``/``str`` or in an error message (at most masked as
``110105********002X``).

Kind detection: an 18-character string of digits (last one possibly ``X``) is shaped like
a resident ID number, but about a third of the USCCs with an all-digit organisation code
have that shape too. Such a string is a resident ID number when it passes the resident ID
checks; otherwise it is a USCC only if it passes the USCC check *and* the organisation
code check (stricter than for other USCCs, so that a mistyped resident ID number is
seldom taken for an organisation), and even then it is only ever shown masked.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import unicodedata
from dataclasses import dataclass, field

from federation.clock import Clock, SystemClock, china_date
from federation.errors import InvalidIdentifierError

IDENTIFIER_LENGTH = 18
#: Longer input is refused before normalisation (NFKC can expand text many times).
MAX_INPUT_CHARS = 256

# --- GB 32100-2015 (USCC) ------------------------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {ch: i for i, ch in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
#: Position 1: 登记管理部门代码 (1 机构编制 ... 9 市场监管, A 军队, N 农业, Y 其他).
USCC_AUTHORITIES = frozenset("123456789ANY")
# Position 2 (机构类别代码): every type GB 32100 defines is numbered 1-9. Anything else
# is only a warning, since the standard's type tables can be extended.
_USCC_ORG_TYPES = frozenset("123456789")

# --- GB 11714 (organisation code, USCC positions 9-17) -------------------------------

_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_code_value(ch: str) -> int:
    if "0" <= ch <= "9":
        return ord(ch) - ord("0")
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    raise InvalidIdentifierError(f"{_describe(ch)} cannot occur in an organisation code")


# --- GB 11643-1999 (resident ID number) ----------------------------------------------

_RESIDENT_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_RESIDENT_CHECK = "10X98765432"
_FIRST_BIRTH_YEAR = 1900
#: Birth dates are calendar dates in China, so "today" is taken in China Standard Time.


class SubjectKind(enum.Enum):
    """Which standard an identifier follows; the value is the name the CLI prints."""

    USCC = "uscc"
    RESIDENT_ID = "resident-id"


# --- check characters ------------------------------------------------------------------


def uscc_check_char(first17: str) -> str:
    """The check character (position 18) for the first 17 characters of a USCC."""
    if len(first17) != 17:
        raise InvalidIdentifierError(f"need 17 characters, got {len(first17)}")
    total = 0
    for pos, (ch, weight) in enumerate(zip(first17, _USCC_WEIGHTS, strict=True), start=1):
        value = _USCC_VALUE.get(ch)
        if value is None:
            raise InvalidIdentifierError(
                f"{_describe(ch)} at position {pos} is not in the USCC alphabet"
            )
        total += value * weight
    return USCC_ALPHABET[(31 - total % 31) % 31]


def organisation_code_check_char(first8: str) -> str:
    """The GB 11714 check character (USCC position 17) for the 8 characters before it."""
    if len(first8) != 8:
        raise InvalidIdentifierError(f"need 8 characters, got {len(first8)}")
    total = sum(_org_code_value(ch) * w for ch, w in zip(first8, _ORG_CODE_WEIGHTS, strict=True))
    remainder = 11 - total % 11
    return {10: "X", 11: "0"}.get(remainder, str(remainder))


def resident_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits of a resident ID."""
    if len(first17) != 17:
        raise InvalidIdentifierError(f"need 17 digits, got {len(first17)}")
    if not (first17.isascii() and first17.isdigit()):
        raise InvalidIdentifierError("the first 17 characters of a resident ID must be digits")
    total = sum(int(ch) * w for ch, w in zip(first17, _RESIDENT_WEIGHTS, strict=True))
    return _RESIDENT_CHECK[total % 11]


# --- normalisation and masking -----------------------------------------------------------


def normalize_identifier(text: str) -> str:
    """What the user meant: no whitespace anywhere, half-width, ASCII upper case.

    NFKC turns full-width forms (``９１Ａ``) and the ideographic space into ASCII; format
    characters (zero-width space, BOM, soft hyphen) that come with copy-and-paste are
    dropped like whitespace. Only ASCII letters are upper-cased, so no exotic letter can
    turn into a valid one. The steps repeat until nothing changes (removing a character
    can let NFKC compose its neighbours), which makes the function idempotent.

    Fast path, same result: ASCII letters and digits are their own NFKC form, neither
    whitespace nor format characters, so such text only needs upper-casing (what a stored
    or signed identifier always is).
    """
    if text.isascii() and text.isalnum():
        return text.upper()
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


def mask_resident_id(value: str) -> str:
    """Keep the address code (first 6) and the last 4 characters: ``110105********002X``."""
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


# Runs that could be (part of) a personal identifier: never echoed into a message.
_ID_LIKE = re.compile(r"[\dA-Za-zＡ-Ｚａ-ｚ]{15,}")


def hide_identifiers(text: str) -> str:
    """``text`` with every run that could be (part of) an identifier replaced by
    ``[hidden]``: text typed into the wrong field may be a resident ID number."""
    return _ID_LIKE.sub("[hidden]", text)


def shown(value: object, *, limit: int = 60) -> str:
    """``value`` quoted for a message: identifiers hidden (:func:`hide_identifiers`), then
    cut to ``limit`` characters (hiding first, so that a cut never leaves part of one)."""
    text = hide_identifiers(value if isinstance(value, str) else repr(value))
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _mask_unknown(value: str) -> str:
    """A display form of input that failed validation and may be a mistyped personal ID."""
    if len(value) <= 10:
        return "*" * len(value)
    shown = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in value)
    return mask_resident_id(shown)


def _describe(ch: str) -> str:
    """A character for an error message, safe to print on a terminal."""
    if ch.isascii() and ch.isprintable():
        return f"character {ch!r}"
    if ch.isprintable():
        return f"character {ch!r} (U+{ord(ch):04X})"
    return f"character U+{ord(ch):04X}"


def _resident_shaped(value: str) -> bool:
    """Digits only, except possibly a final X: the shape of a resident ID number."""
    body = value[:-1] if value.endswith("X") else value
    return body.isascii() and body.isdigit()


# --- the identifier ------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectId:
    """A valid, normalised subject identifier.

    ``str`` and ``repr`` show :attr:`masked`, never a resident ID number in clear; use
    :attr:`value` explicitly where the clear form is needed (storage, matching).
    """

    kind: SubjectKind
    value: str

    def __post_init__(self) -> None:
        # The invariant that does not depend on the date: a SubjectId is always valid.
        _check_valid(self.kind, self.value)

    @property
    def masked(self) -> str:
        """The display form: a resident ID (or a USCC shaped like one) keeps 6 + 4 chars."""
        if self.kind is SubjectKind.RESIDENT_ID or _resident_shaped(self.value):
            return mask_resident_id(self.value)
        return self.value

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"SubjectId({self.kind.value}, {self.masked})"


@dataclass(frozen=True)
class SubjectCheck:
    """The outcome of :func:`check_subject`; ``normalized`` is clear, so kept out of repr."""

    valid: bool
    kind: SubjectKind | None
    normalized: str | None = field(repr=False)
    masked: str | None
    reason: str | None
    warnings: tuple[str, ...] = ()


# --- validation ------------------------------------------------------------------------------


def _check_length(value: str) -> None:
    if not value:
        raise InvalidIdentifierError("identifier is empty")
    if len(value) == 15 and value.isascii() and value.isdigit():
        raise InvalidIdentifierError(
            "15-digit first-generation ID numbers are not accepted; use the 18-digit form"
        )
    if len(value) != IDENTIFIER_LENGTH:
        raise InvalidIdentifierError(
            f"identifier must be {IDENTIFIER_LENGTH} characters long, got {len(value)}"
        )


def _validate_uscc(value: str) -> list[str]:
    """Raise for a malformed USCC; return warnings for what is suspicious only."""
    _check_length(value)
    for pos, ch in enumerate(value, start=1):
        if ch not in _USCC_VALUE:
            raise InvalidIdentifierError(
                f"{_describe(ch)} at position {pos} is not in the USCC alphabet "
                f"({USCC_ALPHABET}; I, O, S, V and Z never occur)"
            )
    if value[0] not in USCC_AUTHORITIES:
        raise InvalidIdentifierError(
            f"position 1 (registration authority) is {value[0]!r}; it must be one of 1-9, A, N or Y"
        )
    for pos in range(3, 9):
        if not value[pos - 1].isdigit():
            raise InvalidIdentifierError(
                f"position {pos} is {value[pos - 1]!r}; positions 3-8 are an "
                "administrative division code and must be digits"
            )
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        raise InvalidIdentifierError(
            f"USCC check character (position 18) is {value[17]!r}, expected {expected!r}"
        )
    warnings = []
    if value[1] not in _USCC_ORG_TYPES:
        warnings.append(f"position 2 (organisation type) {value[1]!r} is not a type 1-9")
    if not _org_code_ok(value):
        org_expected = organisation_code_check_char(value[8:16])
        warnings.append(
            f"organisation code check character (position 17) is {value[16]!r}, "
            f"GB 11714 expects {org_expected!r}"
        )
    return warnings


def _org_code_ok(value: str) -> bool:
    """Whether USCC positions 9-17 satisfy their own GB 11714 check."""
    return value[16] == organisation_code_check_char(value[8:16])


def _validate_resident_id(value: str, *, today: dt.date | None) -> None:
    """Raise for a malformed resident ID; ``today=None`` skips the future-date check.

    Messages name positions, never the digits: even a birth date is personal.
    """
    _check_length(value)
    for pos, ch in enumerate(value[:17], start=1):
        if not ("0" <= ch <= "9"):
            raise InvalidIdentifierError(
                f"{_describe(ch)} at position {pos}: a resident ID number has digits "
                "in positions 1-17"
            )
    if not ("0" <= value[17] <= "9" or value[17] == "X"):
        raise InvalidIdentifierError(
            f"{_describe(value[17])} at position 18: a resident ID number ends in a digit or X"
        )
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if year < _FIRST_BIRTH_YEAR:
        raise InvalidIdentifierError(f"birth year (positions 7-10) is before {_FIRST_BIRTH_YEAR}")
    try:
        birth = dt.date(year, month, day)
    except ValueError:
        raise InvalidIdentifierError(
            "birth date (positions 7-14) is not a real calendar date"
        ) from None
    if today is not None and birth > today:
        raise InvalidIdentifierError(
            f"birth date (positions 7-14) is in the future (today is {today.isoformat()})"
        )
    expected = resident_id_check_char(value[:17])
    if value[17] != expected:
        raise InvalidIdentifierError(
            f"resident ID check character (position 18) is {value[17]!r}, expected {expected!r}"
        )


def _today_in_china(clock: Clock | None = None) -> dt.date:
    return china_date((clock or SystemClock()).now())


def _normalize_input(text: str) -> str:
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidIdentifierError(
            f"input is {len(text)} characters long; an identifier has {IDENTIFIER_LENGTH}"
        )
    return normalize_identifier(text)


def _parse(text: str, today: dt.date | None) -> tuple[SubjectId, tuple[str, ...]]:
    value = _normalize_input(text)
    day = today if today is not None else _today_in_china()
    if not (len(value) == IDENTIFIER_LENGTH and _resident_shaped(value)):
        warnings = _validate_uscc(value)
        return SubjectId(SubjectKind.USCC, value), tuple(warnings)
    try:
        _validate_resident_id(value, today=day)
    except InvalidIdentifierError as resident_error:
        # All-digit USCCs exist; accept one only if the organisation code checks too.
        try:
            warnings = _validate_uscc(value)
        except InvalidIdentifierError:
            raise resident_error from None
        if not _org_code_ok(value):
            raise resident_error from None
        return SubjectId(SubjectKind.USCC, value), (
            *warnings,
            "this USCC is shaped like a resident ID number, so it is only shown masked",
        )
    return SubjectId(SubjectKind.RESIDENT_ID, value), ()


def parse_subject(text: str, *, today: dt.date | None = None) -> SubjectId:
    """Normalise and validate a USCC or resident ID number, detecting which it is.

    ``today`` (default: the current date in China) bounds resident ID birth dates.
    Raises :class:`InvalidIdentifierError` saying precisely what is wrong. Warnings (a
    USCC whose organisation code check fails) are dropped; :func:`check_subject` has them.
    """
    if today is None:
        return _parse(text, today)[0]
    return _parse_on(text, today)[0]


@functools.lru_cache(maxsize=16384)
def _check_valid(kind: SubjectKind, value: str) -> None:
    # Cached: a SubjectId is built several times for one identifier on the sync path.
    if kind is SubjectKind.RESIDENT_ID:
        _validate_resident_id(value, today=None)
    else:
        _validate_uscc(value)


# The same identifier is validated several times when a list event is checked (subject,
# entry, body); validation is a pure function of the text and the date, so cache it.
_parse_on = functools.lru_cache(maxsize=16384)(lambda text, today: _parse(text, today))


def parse_uscc(text: str) -> SubjectId:
    """Normalise and validate text that must be a USCC."""
    value = _normalize_input(text)
    _validate_uscc(value)
    return SubjectId(SubjectKind.USCC, value)


def parse_resident_id(text: str, *, today: dt.date | None = None) -> SubjectId:
    """Normalise and validate text that must be a resident ID number."""
    value = _normalize_input(text)
    _validate_resident_id(value, today=today if today is not None else _today_in_china())
    return SubjectId(SubjectKind.RESIDENT_ID, value)


def _guess_kind(value: str) -> SubjectKind | None:
    if value and _resident_shaped(value):
        return SubjectKind.RESIDENT_ID
    if value and all(ch in _USCC_VALUE for ch in value):
        return SubjectKind.USCC
    return None


def check_subject(text: str, *, today: dt.date | None = None) -> SubjectCheck:
    """Like :func:`parse_subject`, but reports instead of raising, with warnings.

    For invalid input ``normalized`` is ``None`` (it may be a mistyped personal ID) and
    ``masked`` is a masked form of it; ``kind`` is a guess from the shape, or ``None``.
    """
    try:
        subject, warnings = _parse(text, today)
    except InvalidIdentifierError as exc:
        if len(text) > MAX_INPUT_CHARS:
            return SubjectCheck(False, None, None, None, exc.message)
        value = normalize_identifier(text)
        return SubjectCheck(False, _guess_kind(value), None, _mask_unknown(value), exc.message)
    return SubjectCheck(True, subject.kind, subject.value, subject.masked, None, warnings)
