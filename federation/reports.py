"""Signed public credit reports (公共信用信息报告) and their status lists.

A city's credit centre issues a report on one subject at a point in time, in the spirit of
《公共信用信息报告标准(2022年版)》: registration data (登记基础信息), list entries (名单信息),
administrative penalties (行政处罚), licences (行政许可), ratings (信用评价) and commitments
(信用承诺). The report has a number, a validity period, and the issuing city's signature over
its canonical JSON (:mod:`federation.canonical`), so that a clerk in another city can verify
it offline against the federation manifest (信用报告异地互认).

Verification has two halves:

* offline (:func:`verify_offline`): ordered steps, each with its own reason, against the
  versions of the manifest this node trusts (:class:`ManifestEpoch`);
* online: the issuer publishes a signed :class:`StatusList` in the spirit of the W3C
  Bitstring Status List (https://www.w3.org/TR/vc-bitstring-status-list/): bit ``i`` of a
  gzip-compressed, base64url-encoded bitstring says whether the report with
  ``status_index`` ``i`` is revoked; superseded reports are listed with their successor.

:func:`final_verdict` combines both; a report whose status is unknown is never called valid.

Every malformation is a :class:`ReportFormatError` naming the field; a resident ID number
never appears in an error message. A file in canonical form, as :meth:`SignedReport.to_bytes`
writes it, is checked in one pass (:func:`_read_canonical_file`), its sections made when
first read; any other layout is read by the general strict reader, which accepts the same
reports.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import functools
import gzip
import hashlib
import hmac
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal, TypeVar

from federation.canonical import MAX_DOCUMENT_BYTES, canonical_bytes, parse_document
from federation.clock import china_date, format_utc, parse_utc
from federation.errors import (
    InvalidIdentifierError,
    InvalidInputError,
    ReportFormatError,
    ReportStatusError,
    SignatureError,
    StaleStatusListError,
    StatusListError,
)
from federation.manifest import Manifest, TrustedChain
from federation.member import CITY_CODE, check_city_code
from federation.sanctions import EntryState, ListKind, Subject
from federation.signing import SigningKey, b64decode, b64encode
from federation.subjects import SubjectKind, parse_subject, shown

REPORT_TYPE = "creditnet.credit-report/v1"
STATUS_LIST_TYPE = "creditnet.report-status-list/v1"
#: The largest report file a clerk may hand in (the canonical parser's bound too).
MAX_REPORT_BYTES = MAX_DOCUMENT_BYTES
MAX_SIGNATURE_BYTES = 1024
#: W3C Bitstring Status List: at least 16 KiB of bits, so that one index tells little.
DEFAULT_STATUS_BITS = 131072
MAX_STATUS_BITS = 2**23
DEFAULT_MAX_SKEW = dt.timedelta(minutes=5)

#: 370200-20261202-000017: issuing city, issue date (in China), sequence of that day.
REPORT_NO = re.compile(r"[1-9][0-9]{5}-[0-9]{8}-[0-9]{6}")
KEYID = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_BASE64URL = re.compile(r"u[A-Za-z0-9_-]+")

# Length limits (characters); fields up to _SHORT are single-line.
_SHORT = 200
_LONG = 4000
_LABEL = 50
_REGISTRATION_VALUE = 500
MAX_REVOCATION_REASON = 200
#: The reason a status gives for a revocation whose reason the issuer no longer keeps.
FORGOTTEN_REASON = "reason no longer kept: the report has expired"
MAX_REGISTRATION = 50
MAX_SECTION_ITEMS = 1000
_FIRST_YEAR, _LAST_YEAR = 1970, 9000

ReportState = Literal["valid", "revoked", "superseded"]
OfflineState = Literal["valid", "invalid", "expired"]
VerdictState = Literal["valid", "revoked", "superseded", "expired", "invalid", "status-unknown"]
StatusSource = Literal["issuer", "replica"]
_T = TypeVar("_T")


# --- field checks ------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `true` is not a number.
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object, name: str, *, limit: int = _SHORT) -> str:
    """A non-empty trimmed string within ``limit``; newlines and tabs only in long texts."""
    if not isinstance(value, str):
        raise ReportFormatError(f"{name}: must be a string")
    if not value.strip():
        raise ReportFormatError(f"{name}: must not be empty")
    if value != value.strip():
        raise ReportFormatError(f"{name}: must not start or end with whitespace")
    if len(value) > limit:
        raise ReportFormatError(f"{name}: is {len(value)} characters long, at most {limit}")
    if _SURROGATE.search(value):
        raise ReportFormatError(f"{name}: contains a lone surrogate (not valid Unicode)")
    found = (_CONTROL_MULTILINE if limit > _SHORT else _CONTROL).search(value)
    if found:
        raise ReportFormatError(f"{name}: contains the control character U+{ord(found[0]):04X}")
    return value


# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; long texts may hold
# newlines and tabs. Regular expressions: this runs for every text of every report checked.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _optional_text(value: object, name: str, *, limit: int = _SHORT) -> str | None:
    return None if value is None else _text(value, name, limit=limit)


def _city(value: object, name: str) -> str:
    try:
        return check_city_code(value)
    except InvalidInputError:
        raise ReportFormatError(f"{name}: is not a six-digit division code") from None


def _date(value: object, name: str) -> dt.date:
    # datetime is a date subclass; a timestamp where a calendar day is meant is a bug.
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ReportFormatError(f"{name}: must be a date")
    return value


def _time(value: object, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ReportFormatError(f"{name}: must be a timezone-aware datetime")
    # Far-off years would overflow when shifted to China time (and mean a typo anyway).
    if not _FIRST_YEAR <= value.year <= _LAST_YEAR:
        raise ReportFormatError(f"{name}: must be in the years {_FIRST_YEAR} to {_LAST_YEAR}")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _parse_date(value: object, name: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ReportFormatError(f"{name}: must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ReportFormatError(f"{name}: {value} is not a calendar date") from None


def _parse_optional_date(value: object, name: str) -> dt.date | None:
    return None if value is None else _parse_date(value, name)


def _parse_time(value: object, name: str) -> dt.datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise ReportFormatError(f"{name}: must be an RFC 3339 UTC time")
    try:
        return parse_utc(value)
    except ValueError:
        raise ReportFormatError(
            f"{name}: must be an RFC 3339 UTC time such as 2026-12-02T06:00:00Z"
        ) from None


def _fields(value: object, expected: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportFormatError(f"{where}: must be a JSON object")
    keys, wanted = set(value), set(expected)
    if keys != wanted:
        # A stray key could be anything, even an identifier: never echoed in clear.
        said = []
        if missing := sorted(wanted - keys):
            said.append("missing " + ", ".join(missing))
        if unknown := sorted(shown(k, limit=40) for k in keys - wanted):
            said.append("unknown " + ", ".join(unknown))
        raise ReportFormatError(f"{where}: fields do not match ({'; '.join(said)})")
    return value


def _list(value: object, name: str, *, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ReportFormatError(f"{name}: must be a list")
    if len(value) > limit:
        raise ReportFormatError(f"{name}: has {len(value)} items, at most {limit}")
    return value


def _tuple_of(value: object, cls: type[Any], name: str, *, limit: int) -> tuple[Any, ...]:
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not all(isinstance(item, cls) for item in value):
        raise ReportFormatError(f"{name}: must be a tuple of {cls.__name__}")
    if len(value) > limit:
        raise ReportFormatError(f"{name}: has {len(value)} items, at most {limit}")
    return value


def _keyid(value: object, name: str) -> str:
    if not isinstance(value, str) or not KEYID.fullmatch(value):
        raise ReportFormatError(f"{name}: must be 64 lower-case hex digits")
    return value


def _signature(value: object, name: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * MAX_SIGNATURE_BYTES:
        raise ReportFormatError(f"{name}: must be a base64 string")
    try:
        raw = b64decode(value, what=name)
    except InvalidInputError as exc:
        raise ReportFormatError(exc.message) from None
    if b64encode(raw) != value or not 0 < len(raw) <= MAX_SIGNATURE_BYTES:
        raise ReportFormatError(f"{name}: must be 1 to {MAX_SIGNATURE_BYTES} bytes in base64")
    return raw


def _check_signature_bytes(value: object, name: str) -> None:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_SIGNATURE_BYTES:
        raise ReportFormatError(f"{name}: must be 1 to {MAX_SIGNATURE_BYTES} bytes")


def _item(where: str, parse: Any, value: object) -> Any:
    """``parse(value)``, with ``where`` put before the message of any error it raises."""
    try:
        return parse(value)
    except InvalidInputError as exc:
        raise ReportFormatError(f"{where}: {exc.message}") from None


# --- report numbers ----------------------------------------------------------------------


def check_report_no(value: object, name: str = "report_no") -> str:
    """A report number ``CCCCCC-YYYYMMDD-NNNNNN``: city, issue date, sequence from 1."""
    if not isinstance(value, str) or not REPORT_NO.fullmatch(value):
        raise ReportFormatError(
            f"{name}: must be CITY-YYYYMMDD-NNNNNN, such as 370200-20261202-000017"
        )
    _city_part, day, sequence = value.split("-")
    try:
        dt.date.fromisoformat(day)  # YYYYMMDD, ISO 8601's basic form
    except ValueError:
        raise ReportFormatError(f"{name}: {day} is not a calendar date") from None
    if int(sequence) == 0:
        raise ReportFormatError(f"{name}: the sequence number starts at 000001")
    return value


def report_number(issuer: str, issued_at: dt.datetime, sequence: int) -> str:
    """The number of the ``sequence``-th report ``issuer`` issues on that day (in China)."""
    _city(issuer, "issuer")
    if not _is_int(sequence) or not 1 <= sequence <= 999_999:
        raise ReportFormatError("sequence: must be a whole number from 1 to 999999")
    day = china_date(_time(issued_at, "issued_at"))
    return f"{issuer}-{day:%Y%m%d}-{sequence:06d}"


# --- report sections ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReportListEntry:
    """One listing of the subject (名单信息), as the issuer's node saw it when issuing.

    ``active`` and ``why`` are what was served at issue time (see
    :meth:`federation.sanctions.EntryState.effective`); a removed entry (移出) keeps its
    removal date and reason as history.
    """

    origin: str
    origin_name: str
    list_kind: ListKind
    decision_no: str
    authority: str
    reason: str
    listed_on: dt.date
    publicity_end: dt.date
    active: bool
    why: str
    removed_on: dt.date | None = None
    removal_reason: str | None = None

    def __post_init__(self) -> None:
        _city(self.origin, "origin")
        _text(self.origin_name, "origin_name")
        if not isinstance(self.list_kind, ListKind):
            raise ReportFormatError("list_kind: must be a ListKind")
        _text(self.decision_no, "decision_no", limit=100)
        _text(self.authority, "authority")
        _text(self.reason, "reason", limit=_LONG)
        listed_on = _date(self.listed_on, "listed_on")
        if _date(self.publicity_end, "publicity_end") <= listed_on:
            raise ReportFormatError(
                f"publicity_end: {self.publicity_end} must be after listed_on {listed_on}"
            )
        if not isinstance(self.active, bool):
            raise ReportFormatError("active: must be true or false")
        _text(self.why, "why", limit=_LONG)
        if (self.removed_on is None) != (self.removal_reason is None):
            raise ReportFormatError("removed_on and removal_reason: give both or neither")
        if self.removed_on is not None:
            if _date(self.removed_on, "removed_on") < listed_on:
                raise ReportFormatError(
                    f"removed_on: {self.removed_on} is before listed_on {listed_on}"
                )
            _text(self.removal_reason, "removal_reason", limit=_LONG + 100)
            if self.active:
                raise ReportFormatError("active: a removed entry cannot be active")

    @property
    def latest_date(self) -> dt.date:
        return self.removed_on or self.listed_on

    @classmethod
    def from_state(cls, state: EntryState, *, origin_name: str, at: dt.datetime) -> ReportListEntry:
        """The entry as ``state`` (a list entry of the owner or a replica) shows it at ``at``."""
        effective = state.effective(at)
        entry, removal = state.entry, state.removal
        removal_reason = None
        if removal is not None:
            removal_reason = removal.reason.value + (f": {removal.note}" if removal.note else "")
        return cls(
            origin=state.origin,
            origin_name=origin_name,
            list_kind=entry.list_kind,
            decision_no=entry.decision_no,
            authority=entry.authority,
            reason=entry.reason,
            listed_on=entry.listed_on,
            publicity_end=entry.publicity_end,
            active=effective.active,
            why=effective.why,
            removed_on=removal.removed_on if removal else None,
            removal_reason=removal_reason,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "origin_name": self.origin_name,
            "list_kind": self.list_kind.value,
            "decision_no": self.decision_no,
            "authority": self.authority,
            "reason": self.reason,
            "listed_on": self.listed_on.isoformat(),
            "publicity_end": self.publicity_end.isoformat(),
            "active": self.active,
            "why": self.why,
            "removed_on": self.removed_on.isoformat() if self.removed_on else None,
            "removal_reason": self.removal_reason,
        }

    @classmethod
    def from_json(cls, value: object) -> ReportListEntry:
        doc = _fields(value, _LIST_ENTRY_FIELDS, "list entry")
        kind = doc["list_kind"]
        if not isinstance(kind, str) or kind not in {k.value for k in ListKind}:
            known = ", ".join(k.value for k in ListKind)
            raise ReportFormatError(f"list_kind: must be one of {known}")
        return cls(
            origin=doc["origin"],
            origin_name=doc["origin_name"],
            list_kind=ListKind(kind),
            decision_no=doc["decision_no"],
            authority=doc["authority"],
            reason=doc["reason"],
            listed_on=_parse_date(doc["listed_on"], "listed_on"),
            publicity_end=_parse_date(doc["publicity_end"], "publicity_end"),
            active=doc["active"],
            why=doc["why"],
            removed_on=_parse_optional_date(doc["removed_on"], "removed_on"),
            removal_reason=doc["removal_reason"],
        )


_LIST_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(ReportListEntry))


@dataclass(frozen=True, kw_only=True)
class ReportPenalty:
    """An administrative penalty (行政处罚) decided on the subject."""

    authority: str
    decision_no: str
    decided_on: dt.date
    summary: str

    def __post_init__(self) -> None:
        _text(self.authority, "authority")
        _text(self.decision_no, "decision_no", limit=100)
        _date(self.decided_on, "decided_on")
        _text(self.summary, "summary", limit=_LONG)

    @property
    def latest_date(self) -> dt.date:
        return self.decided_on

    def to_json(self) -> dict[str, Any]:
        return {
            "authority": self.authority,
            "decision_no": self.decision_no,
            "decided_on": self.decided_on.isoformat(),
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, value: object) -> ReportPenalty:
        doc = _fields(value, ("authority", "decision_no", "decided_on", "summary"), "penalty")
        return cls(
            authority=doc["authority"],
            decision_no=doc["decision_no"],
            decided_on=_parse_date(doc["decided_on"], "decided_on"),
            summary=doc["summary"],
        )


@dataclass(frozen=True, kw_only=True)
class ReportLicence:
    """An administrative licence (行政许可) granted to the subject."""

    authority: str
    licence_no: str
    issued_on: dt.date
    summary: str

    def __post_init__(self) -> None:
        _text(self.authority, "authority")
        _text(self.licence_no, "licence_no", limit=100)
        _date(self.issued_on, "issued_on")
        _text(self.summary, "summary", limit=_LONG)

    @property
    def latest_date(self) -> dt.date:
        return self.issued_on

    def to_json(self) -> dict[str, Any]:
        return {
            "authority": self.authority,
            "licence_no": self.licence_no,
            "issued_on": self.issued_on.isoformat(),
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, value: object) -> ReportLicence:
        doc = _fields(value, ("authority", "licence_no", "issued_on", "summary"), "licence")
        return cls(
            authority=doc["authority"],
            licence_no=doc["licence_no"],
            issued_on=_parse_date(doc["issued_on"], "issued_on"),
            summary=doc["summary"],
        )


@dataclass(frozen=True, kw_only=True)
class ReportRating:
    """A rating (信用评价) in its issuer's scale, and the federation's common grade if mapped."""

    issuer: str
    scale: str
    grade: str
    common_grade: str | None
    issued_on: dt.date
    valid_until: dt.date

    def __post_init__(self) -> None:
        _text(self.issuer, "issuer")
        _text(self.scale, "scale", limit=100)
        _text(self.grade, "grade", limit=32)
        _optional_text(self.common_grade, "common_grade", limit=16)
        if _date(self.valid_until, "valid_until") < _date(self.issued_on, "issued_on"):
            raise ReportFormatError(
                f"valid_until: {self.valid_until} is before issued_on {self.issued_on}"
            )

    @property
    def latest_date(self) -> dt.date:
        return self.issued_on

    def to_json(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "scale": self.scale,
            "grade": self.grade,
            "common_grade": self.common_grade,
            "issued_on": self.issued_on.isoformat(),
            "valid_until": self.valid_until.isoformat(),
        }

    @classmethod
    def from_json(cls, value: object) -> ReportRating:
        doc = _fields(
            value,
            ("issuer", "scale", "grade", "common_grade", "issued_on", "valid_until"),
            "rating",
        )
        return cls(
            issuer=doc["issuer"],
            scale=doc["scale"],
            grade=doc["grade"],
            common_grade=doc["common_grade"],
            issued_on=_parse_date(doc["issued_on"], "issued_on"),
            valid_until=_parse_date(doc["valid_until"], "valid_until"),
        )


@dataclass(frozen=True, kw_only=True)
class ReportCommitment:
    """A credit commitment (信用承诺) the subject made."""

    made_on: dt.date
    content: str

    def __post_init__(self) -> None:
        _date(self.made_on, "made_on")
        _text(self.content, "content", limit=_LONG)

    @property
    def latest_date(self) -> dt.date:
        return self.made_on

    def to_json(self) -> dict[str, Any]:
        return {"made_on": self.made_on.isoformat(), "content": self.content}

    @classmethod
    def from_json(cls, value: object) -> ReportCommitment:
        doc = _fields(value, ("made_on", "content"), "commitment")
        return cls(made_on=_parse_date(doc["made_on"], "made_on"), content=doc["content"])


_SECTIONS: tuple[tuple[str, type[Any]], ...] = (
    ("list_entries", ReportListEntry),
    ("penalties", ReportPenalty),
    ("licences", ReportLicence),
    ("ratings", ReportRating),
    ("commitments", ReportCommitment),
)

_REPORT_FIELDS = (
    "type",
    "report_no",
    "issuer",
    "issuer_name",
    "subject",
    "issued_at",
    "valid_until",
    "manifest_version",
    "status_index",
    "supersedes",
    "registration",
    *(name for name, _cls in _SECTIONS),
)


# --- the report --------------------------------------------------------------------------


def _check_subject_kind(subject: object, issue_day: dt.date) -> None:
    if not isinstance(subject, Subject):
        raise ReportFormatError("subject: must be a Subject")
    # The declared kind must be what the identifier is, judged on the issue date so
    # that every verifier decides alike (a USCC may be shaped like a resident ID).
    try:
        detected = parse_subject(subject.id, today=issue_day)
    except InvalidIdentifierError as exc:
        raise ReportFormatError(f"subject.id: {exc.message}") from None
    if detected.kind is not subject.kind:
        raise ReportFormatError(
            f"subject.kind: the identifier is a {detected.kind.value}, not a {subject.kind.value}"
        )


@dataclass(frozen=True, kw_only=True)
class CreditReport:
    """The signed content of a public credit report (公共信用信息报告).

    Times are kept in UTC to the second, so that a report equals itself after a round trip
    through its canonical JSON. Every date inside the report is on or before the issue date
    (in China); the report number carries the issuer and that date.

    A report read from a canonical file (:meth:`SignedReport.from_bytes`) is checked
    whole, but makes its sections (registration to commitments) only when one is first
    read: see :class:`_SectionMadeWhenRead`.
    """

    report_no: str
    issuer: str
    issuer_name: str
    subject: Subject
    issued_at: dt.datetime
    valid_until: dt.datetime
    manifest_version: int
    status_index: int
    supersedes: str | None = None
    registration: tuple[tuple[str, str], ...] = ()
    list_entries: tuple[ReportListEntry, ...] = ()
    penalties: tuple[ReportPenalty, ...] = ()
    licences: tuple[ReportLicence, ...] = ()
    ratings: tuple[ReportRating, ...] = ()
    commitments: tuple[ReportCommitment, ...] = ()

    def __post_init__(self) -> None:
        issuer = _city(self.issuer, "issuer")
        _text(self.issuer_name, "issuer_name")
        issued_at = _time(self.issued_at, "issued_at")
        valid_until = _time(self.valid_until, "valid_until")
        object.__setattr__(self, "issued_at", issued_at)
        object.__setattr__(self, "valid_until", valid_until)
        if valid_until <= issued_at:
            raise ReportFormatError(
                f"valid_until: {format_utc(valid_until)} must be after issued_at "
                f"{format_utc(issued_at)}"
            )
        issue_day = china_date(issued_at)
        check_report_no(self.report_no)
        if not self.report_no.startswith(f"{issuer}-{issue_day:%Y%m%d}-"):
            raise ReportFormatError(
                f"report_no: {self.report_no} must start with the issuer and the issue date "
                f"in China: {issuer}-{issue_day:%Y%m%d}-"
            )
        self._check_subject(issue_day)
        if not _is_int(self.manifest_version) or self.manifest_version < 1:
            raise ReportFormatError("manifest_version: must be a whole number >= 1")
        if not _is_int(self.status_index) or not 0 <= self.status_index < MAX_STATUS_BITS:
            raise ReportFormatError(
                f"status_index: must be a whole number from 0 to {MAX_STATUS_BITS - 1}"
            )
        if self.supersedes is not None:
            check_report_no(self.supersedes, "supersedes")
            if self.supersedes == self.report_no:
                raise ReportFormatError("supersedes: a report cannot supersede itself")
            if not self.supersedes.startswith(f"{issuer}-"):
                raise ReportFormatError("supersedes: must be a report of the same issuer")
        self._check_registration()
        for name, cls in _SECTIONS:
            items = _tuple_of(getattr(self, name), cls, name, limit=MAX_SECTION_ITEMS)
            object.__setattr__(self, name, items)
            for index, item in enumerate(items):
                if item.latest_date > issue_day:
                    raise ReportFormatError(
                        f"{name}[{index}]: date {item.latest_date} is after the issue date "
                        f"{issue_day}"
                    )

    def _check_subject(self, issue_day: dt.date) -> None:
        _check_subject_kind(self.subject, issue_day)

    def _check_registration(self) -> None:
        pairs = self.registration
        if isinstance(pairs, list):
            pairs = tuple(pairs)
        if not isinstance(pairs, tuple):
            raise ReportFormatError("registration: must be a tuple of (label, value) pairs")
        if len(pairs) > MAX_REGISTRATION:
            raise ReportFormatError(
                f"registration: has {len(pairs)} items, at most {MAX_REGISTRATION}"
            )
        normalised = []
        for index, pair in enumerate(pairs):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ReportFormatError(f"registration[{index}]: must be a (label, value) pair")
            label = _text(pair[0], f"registration[{index}].label", limit=_LABEL)
            value = _text(pair[1], f"registration[{index}].value", limit=_REGISTRATION_VALUE)
            normalised.append((label, value))
        labels = [label for label, _value in normalised]
        if len(set(labels)) != len(labels):
            raise ReportFormatError("registration: a label is given twice")
        object.__setattr__(self, "registration", tuple(normalised))

    @property
    def issue_date(self) -> dt.date:
        """The issue date in China (the one in the report number)."""
        return china_date(self.issued_at)

    def describe(self) -> str:
        return f"report {self.report_no}"

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "type": REPORT_TYPE,
            "report_no": self.report_no,
            "issuer": self.issuer,
            "issuer_name": self.issuer_name,
            "subject": self.subject.to_json(),
            "issued_at": format_utc(self.issued_at),
            "valid_until": format_utc(self.valid_until),
            "manifest_version": self.manifest_version,
            "status_index": self.status_index,
            "supersedes": self.supersedes,
            "registration": [
                {"label": label, "value": value} for label, value in self.registration
            ],
        }
        for name, _cls in _SECTIONS:
            document[name] = [item.to_json() for item in getattr(self, name)]
        return document

    @classmethod
    def from_json(cls, value: object) -> CreditReport:
        """Parse strictly: exact fields, exact types, valid values, canonical form."""
        if not isinstance(value, dict):
            raise ReportFormatError("report: must be a JSON object")
        if value.get("type") != REPORT_TYPE:
            raise ReportFormatError(f"not a credit report: type must be {REPORT_TYPE!r}")
        doc = _fields(value, _REPORT_FIELDS, "report")
        registration = []
        for index, raw in enumerate(
            _list(doc["registration"], "registration", limit=MAX_REGISTRATION)
        ):
            pair = _fields(raw, ("label", "value"), f"registration[{index}]")
            registration.append((pair["label"], pair["value"]))
        sections: dict[str, tuple[Any, ...]] = {}
        for name, item_cls in _SECTIONS:
            raw_items = _list(doc[name], name, limit=MAX_SECTION_ITEMS)
            sections[name] = tuple(
                _item(f"{name}[{index}]", item_cls.from_json, raw)
                for index, raw in enumerate(raw_items)
            )
        report = cls(
            report_no=doc["report_no"],
            issuer=doc["issuer"],
            issuer_name=doc["issuer_name"],
            subject=_item("subject", Subject.from_json, doc["subject"]),
            issued_at=_parse_time(doc["issued_at"], "issued_at"),
            valid_until=_parse_time(doc["valid_until"], "valid_until"),
            manifest_version=doc["manifest_version"],
            status_index=doc["status_index"],
            supersedes=doc["supersedes"],
            registration=tuple(registration),
            **sections,
        )
        # One meaning, one byte form: what the issuer signed is exactly what a clerk reads.
        # (Equal JSON values have equal canonical bytes: comparing values is enough.)
        if report.to_json() != value:
            raise ReportFormatError(
                "report is not in canonical form (re-serialising it changes it: check the "
                "time and date formats)"
            )
        return report

    def signed_bytes(self) -> bytes:
        """The bytes the issuer signs: the canonical JSON of :meth:`to_json`."""
        return self._signed_bytes

    @functools.cached_property
    def _signed_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    # The two times as the report shows them (the verdict's reasons quote them).
    @functools.cached_property
    def _issued_at_text(self) -> str:
        return format_utc(self.issued_at)

    @functools.cached_property
    def _valid_until_text(self) -> str:
        return format_utc(self.valid_until)


# --- the signed report -------------------------------------------------------------------


@dataclass(frozen=True)
class SignedReport:
    """A report with its issuer's signature: the file a clerk receives (:meth:`to_bytes`)."""

    report: CreditReport
    keyid: str
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.report, CreditReport):
            raise ReportFormatError("signed report: needs a CreditReport")
        _keyid(self.keyid, "keyid")
        _check_signature_bytes(self.signature, "signature")

    def to_json(self) -> dict[str, Any]:
        return {
            "report": self.report.to_json(),
            "keyid": self.keyid,
            "signature": b64encode(self.signature),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON ``{"keyid": ..., "report": {...}, "signature": <base64>}``."""
        return self._bytes

    @functools.cached_property
    def _bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedReport:
        """Parse a report file; anything malformed is a :class:`ReportFormatError`.

        Parsing does not verify the signature: :func:`verify_offline` does.

        A file in canonical form (what :meth:`to_bytes` writes, so nearly every file) is
        read by :func:`_read_canonical_file`, in one pass; anything else, and anything that
        reader is not sure about, by the general strict reader, which says what is wrong.
        Both accept exactly the same files and give the same report.
        """
        if not isinstance(data, bytes | bytearray):
            raise ReportFormatError("a report file is bytes")
        if len(data) > MAX_REPORT_BYTES:
            raise ReportFormatError(
                f"report file is {len(data)} bytes, more than the {MAX_REPORT_BYTES} allowed"
            )
        data = bytes(data)
        return _read_canonical_file(data) or cls._read_strict(data)

    @classmethod
    def _read_strict(cls, data: bytes) -> SignedReport:
        """The general reader: any JSON layout, every rule checked with its own message."""
        try:
            document = parse_document(data, what="report file")
        except InvalidInputError as exc:
            raise ReportFormatError(exc.message) from None
        doc = _fields(document, ("report", "keyid", "signature"), "report file")
        return cls(
            CreditReport.from_json(doc["report"]),
            _keyid(doc["keyid"], "keyid"),
            _signature(doc["signature"], "signature"),
        )

    @functools.cached_property
    def verification_code(self) -> str:
        """``ABCD-EFGH-IJKL-MNOP``: 16 base32 characters (80 bits) of SHA-256 of the file.

        Printed on paper, it ties the paper to one exact file: a clerk who types it can be
        told whether the file they hold is the one printed.
        """
        digest = hashlib.sha256(self.to_bytes()).digest()
        code = base64.b32encode(digest).decode("ascii")[:16]
        return "-".join(code[i : i + 4] for i in range(0, 16, 4))

    def matches_code(self, typed: str) -> bool:
        """Whether ``typed`` (case, spaces and dashes forgiven) is this file's code."""
        return same_verification_code(typed, self.verification_code)

    @property
    def verification_payload(self) -> str:
        """What the printed QR code carries: ``creditnet:report:<report_no>:<code>``."""
        return f"creditnet:report:{self.report.report_no}:{self.verification_code}"


def same_verification_code(typed: str, code: str) -> bool:
    """Whether a code typed from paper (case, spaces and dashes forgiven) is ``code``."""
    if not isinstance(typed, str) or len(typed) > 64:
        return False
    cleaned = "".join(ch for ch in typed.upper() if ch not in " -\t")
    return hmac.compare_digest(cleaned.encode("utf-8"), code.replace("-", "").encode("ascii"))


# --- reading a canonical report file in one pass -----------------------------------------
#
# Verifying a report offline is one signature check plus reading the file. The general
# reader (parse_document with its hooks, the from_json methods, the dataclass checks run
# on the parsed values, re-serialising to compare, canonical_bytes for the signed part)
# costs several signatures. Nearly every file is canonical JSON, as to_bytes() writes it,
# and such a file is read by _read_canonical_file against the grammar of a canonical
# report file, written as regular expressions.


class _Declined(Exception):
    """The one-pass reader is not sure: the general strict reader decides."""


# Values as canonical JSON writes them, each captured by one group. The reader declines a
# file with a backslash or a control character (category Cc) first, so no string holds an
# escape: a string is '"', characters other than '"', '"', and the value is what is
# between the quotes.

#: The white space that is not a control character (``str.isspace``, less category Cc: a
#: test checks every code point). A text neither starts nor ends with one (``_text``).
_SPACES = " \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: The bytes no canonical report file holds: backslash (an escape), the controls.
_REFUSED_BYTES = bytes(range(0x20)) + b"\\\x7f"
#: U+0080-U+009F, the other controls, in UTF-8.
_C1_CONTROL = re.compile(rb"\xc2[\x80-\x9f]")


def _text_value(limit: int) -> str:
    """A string that :func:`_text` accepts (with no control character, checked first): 1
    to ``limit`` characters, not starting or ending with white space."""
    return f'"(?![{_SPACES}])([^"]{{1,{limit}}})(?<![{_SPACES}])"'


def _optional(value: str) -> str:
    return f"(?:null|{value})"


def _one_of(values: Iterable[str]) -> str:
    return '"(' + "|".join(re.escape(value) for value in values) + ')"'


def _object(values: Mapping[str, str]) -> str:
    """An object with exactly the fields of ``values``, in their order, each value as given."""
    return "\\{" + ",".join(f'"{key}":{value}' for key, value in values.items()) + "\\}"


_DAY_VALUE = '"([0-9]{4}-[0-9]{2}-[0-9]{2})"'  # _DATE; date.fromisoformat checks the day
_TIME_VALUE = '"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)"'  # format_utc
_CITY_VALUE = f'"({CITY_CODE.pattern})"'
_REPORT_NO_VALUE = f'"({REPORT_NO.pattern})"'
_WHOLE_NUMBER = "(0|[1-9][0-9]*)"  # no sign, no leading zero, no fraction, no exponent
_POSITIVE_NUMBER = "([1-9][0-9]*)"
_BOOLEAN = "(true|false)"

# The grammar of each object: its fields, with their values, in sorted order (canonical
# JSON's order, and the order of the groups the reader unpacks: a test checks the keys).
_LIST_ENTRY_VALUES = {
    "active": _BOOLEAN,
    "authority": _text_value(_SHORT),
    "decision_no": _text_value(100),
    "list_kind": _one_of(kind.value for kind in ListKind),
    "listed_on": _DAY_VALUE,
    "origin": _CITY_VALUE,
    "origin_name": _text_value(_SHORT),
    "publicity_end": _DAY_VALUE,
    "reason": _text_value(_LONG),
    "removal_reason": _optional(_text_value(_LONG + 100)),
    "removed_on": _optional(_DAY_VALUE),
    "why": _text_value(_LONG),
}
_PENALTY_VALUES = {
    "authority": _text_value(_SHORT),
    "decided_on": _DAY_VALUE,
    "decision_no": _text_value(100),
    "summary": _text_value(_LONG),
}
_LICENCE_VALUES = {
    "authority": _text_value(_SHORT),
    "issued_on": _DAY_VALUE,
    "licence_no": _text_value(100),
    "summary": _text_value(_LONG),
}
_RATING_VALUES = {
    "common_grade": _optional(_text_value(16)),
    "grade": _text_value(32),
    "issued_on": _DAY_VALUE,
    "issuer": _text_value(_SHORT),
    "scale": _text_value(100),
    "valid_until": _DAY_VALUE,
}
_COMMITMENT_VALUES = {"content": _text_value(_LONG), "made_on": _DAY_VALUE}
_REGISTRATION_VALUES = {"label": _text_value(_LABEL), "value": _text_value(_REGISTRATION_VALUE)}
# The subject's identifier is checked by _canonical_subject; the pattern only keeps out
# what it would refuse anyway (a normalised identifier is ASCII letters and digits).
_SUBJECT_VALUES = {
    "id": '"([0-9A-Z]{1,64})"',
    "kind": _one_of(kind.value for kind in SubjectKind),
    "name": _text_value(200),
}
_ITEMS = "<items>"  # where a section's items go in the file's grammar (no regex holds it)
_SECTION = f"\\[{_ITEMS}\\]"
_REPORT_VALUES = {
    "commitments": _SECTION,
    "issued_at": _TIME_VALUE,
    "issuer": _CITY_VALUE,
    "issuer_name": _text_value(_SHORT),
    "licences": _SECTION,
    "list_entries": _SECTION,
    "manifest_version": _POSITIVE_NUMBER,
    "penalties": _SECTION,
    "ratings": _SECTION,
    "registration": _SECTION,
    "report_no": _REPORT_NO_VALUE,
    "status_index": _WHOLE_NUMBER,
    "subject": _object(_SUBJECT_VALUES),
    "supersedes": _optional(_REPORT_NO_VALUE),
    "type": f'"{re.escape(REPORT_TYPE)}"',
    "valid_until": _TIME_VALUE,
}
_FILE_VALUES = {
    "keyid": f'"({KEYID.pattern})"',
    "report": _object(_REPORT_VALUES),
    "signature": '"([A-Za-z0-9+/=]{1,2048})"',  # as _signature: 2048 characters at most
}
# The grammar of a whole file, cut where each section's items go: seven pieces before,
# between and after the six sections (in the order of the report's fields, which is the
# order of _SECTION_READERS), and their groups:
#   keyid | issued_at, issuer, issuer_name | - | manifest_version | - | - |
#   report_no, status_index, subject id, kind, name, supersedes, valid_until, signature
_FILE_PIECES = tuple(re.compile(piece) for piece in _object(_FILE_VALUES).split(_ITEMS))
_LIST_KINDS = {kind.value: kind for kind in ListKind}
_SUBJECT_KINDS = {kind.value: kind for kind in SubjectKind}
_day = dt.date.fromisoformat


def _uncaptured(pattern: str) -> str:
    """``pattern`` with its groups made non-capturing: the same grammar, with no value kept.

    (No pattern of the grammar has an escaped parenthesis or one in a character class.)
    """
    return re.sub(r"\((?!\?)", "(?:", pattern)


class _SectionReader:
    """How the one-pass reader reads one section of a report.

    The first pass matches each item against ``checking``: the item's grammar, capturing
    only the fields named in ``checked`` (in the grammar's order); ``check`` is then given
    those fields of every item, and the issue day, and refuses by raising
    :class:`_Declined`. The items are made later, when the report's sections are first
    read (:meth:`items`): ``make`` is given every field of an item by name, and only
    makes the object.
    """

    def __init__(
        self,
        values: Mapping[str, str],
        checked: tuple[str, ...],
        check: Callable[[list[tuple[Any, ...]], dt.date], None],
        make: Callable[[dict[str, Any]], Any],
    ) -> None:
        self._values = values
        self.checking = re.compile(
            _object({k: v if k in checked else _uncaptured(v) for k, v in values.items()})
        )
        if checked != tuple(k for k in values if k in checked) or self.checking.groups != len(
            checked
        ):
            raise ValueError(f"the grammar does not capture exactly {checked}, in its order")
        self.check = check
        self._make = make

    @functools.cached_property
    def reading(self) -> re.Pattern[str]:
        """The item's grammar capturing every field: compiled when first needed, as only
        a report that is shown needs it."""
        return re.compile(_object(self._values))

    def items(self, text: str, start: int, end: int) -> tuple[Any, ...]:
        """The items checked by the first pass between ``start`` and ``end`` of ``text``.

        They follow one another separated by commas (as the first pass found), so
        finditer finds exactly them.
        """
        names = tuple(self._values)
        return tuple(
            [
                self._make(dict(zip(names, found.groups(), strict=True)))
                for found in self.reading.finditer(text, start, end)
            ]
        )


def _check_list_entries(rows: list[tuple[Any, ...]], issue_day: dt.date) -> None:
    for active, listed_text, end_text, removal_reason, removed_text in rows:
        listed_on, publicity_end = _day(listed_text), _day(end_text)
        removed_on = None if removed_text is None else _day(removed_text)
        if (
            publicity_end <= listed_on
            or (removed_on is None) != (removal_reason is None)
            or (removed_on is not None and (removed_on < listed_on or active == "true"))
            or (removed_on or listed_on) > issue_day
        ):
            raise _Declined


def _check_dates(rows: list[tuple[Any, ...]], issue_day: dt.date) -> None:
    """Items with one date each: calendar dates, on or before the issue day."""
    for (text,) in rows:
        if _day(text) > issue_day:
            raise _Declined


def _check_ratings(rows: list[tuple[Any, ...]], issue_day: dt.date) -> None:
    for issued_text, valid_text in rows:
        issued_on = _day(issued_text)
        if _day(valid_text) < issued_on or issued_on > issue_day:
            raise _Declined


def _check_registration(rows: list[tuple[Any, ...]], issue_day: dt.date) -> None:
    """At most MAX_REGISTRATION items, each label given once (the rows are the labels)."""
    if len(rows) > MAX_REGISTRATION or len(set(rows)) != len(rows):
        raise _Declined


def _maker(cls: type[_T], **convert: Callable[[str], Any]) -> Callable[[dict[str, Any]], _T]:
    """How to make a ``cls`` from its fields by name, as the grammar captured them,
    converting those named in ``convert`` from their text unless null."""

    def make(fields: dict[str, Any]) -> _T:
        for name, read in convert.items():
            if fields[name] is not None:
                fields[name] = read(fields[name])
        return _from_dict(cls, fields)

    return make


#: The sections of a report, in the order of its fields (and of the file's pieces).
_SECTION_READERS = {
    "commitments": _SectionReader(
        _COMMITMENT_VALUES,
        ("made_on",),
        _check_dates,
        _maker(ReportCommitment, made_on=_day),
    ),
    "licences": _SectionReader(
        _LICENCE_VALUES,
        ("issued_on",),
        _check_dates,
        _maker(ReportLicence, issued_on=_day),
    ),
    "list_entries": _SectionReader(
        _LIST_ENTRY_VALUES,
        ("active", "listed_on", "publicity_end", "removal_reason", "removed_on"),
        _check_list_entries,
        _maker(
            ReportListEntry,
            active="true".__eq__,
            list_kind=_LIST_KINDS.__getitem__,
            listed_on=_day,
            publicity_end=_day,
            removed_on=_day,
        ),
    ),
    "penalties": _SectionReader(
        _PENALTY_VALUES,
        ("decided_on",),
        _check_dates,
        _maker(ReportPenalty, decided_on=_day),
    ),
    "ratings": _SectionReader(
        _RATING_VALUES,
        ("issued_on", "valid_until"),
        _check_ratings,
        _maker(ReportRating, issued_on=_day, valid_until=_day),
    ),
    "registration": _SectionReader(
        _REGISTRATION_VALUES, ("label",), _check_registration, itemgetter("label", "value")
    ),
}


class _UnreadSections:
    """The sections of a report from a canonical file: checked, not yet made.

    The one-pass reader checks every item of every section, and leaves them in the file's
    text; they are made when one of the report's sections is first read
    (:class:`_SectionMadeWhenRead`). Verifying a report reads its header and its signed
    bytes only, so a verifying node makes no section object unless it shows the report.
    """

    __slots__ = ("spans", "text")

    def __init__(self, text: str, spans: Sequence[tuple[int, int]]) -> None:
        self.text = text
        self.spans = spans  # where each section's items are in the text

    def read(self) -> dict[str, tuple[Any, ...]]:
        return {
            name: reader.items(self.text, *span)
            for (name, reader), span in zip(_SECTION_READERS.items(), self.spans, strict=True)
        }


class _SectionMadeWhenRead:
    """A section of :class:`CreditReport`, for reports from the one-pass reader.

    A report made by its constructor holds its sections, which hide this (a non-data
    descriptor). A report from :func:`_read_canonical` holds an :class:`_UnreadSections`
    instead: the first time one of its sections is read, all of them are made and kept
    (two threads doing so at once keep equal sections).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, report: CreditReport | None, owner: type[Any] | None = None) -> Any:
        if report is None:
            return ()  # the field's default, as the class gives it
        made = report.__dict__["_unread"].read()
        report.__dict__.update(made)
        return made[self.name]


for _section in _SECTION_READERS:
    setattr(CreditReport, _section, _SectionMadeWhenRead(_section))
del _section


def _read_canonical_file(data: bytes) -> SignedReport | None:
    """The report in ``data`` if it is a canonical report file that the general reader
    accepts; ``None`` when it is not canonical or not valid (the general reader then
    decides, and explains).

    It accepts the same files as the general reader and gives the same report, with the
    same rules, checked in two steps:

    * The grammar (:data:`_FILE_PIECES` and the items of :data:`_SECTION_READERS`):
      canonical JSON of a report file, with no backslash (so no escape), each object with
      exactly its fields in sorted order, no space outside strings, numbers as canonical
      JSON writes them, and the rules about one value: the texts of :func:`_text` (their
      length limits, trimmed, no control character), the forms of dates, times, city
      codes, report numbers, key ids and base64, the names of list and subject kinds,
      booleans where booleans go and ``null`` only where a field is optional. Matching it,
      the file is exactly its canonical JSON, and the report's signed bytes are the bytes
      between ``"report":`` and ``,"signature":``: nothing is re-serialised.
    * Python, on the captured strings: what the grammar cannot say (calendar dates, the
      order of dates, dates not after the issue day, the report number's date, the
      subject's identifier and kind, registration labels given once, section sizes).

    Every check is made before the report is returned, so a verdict, and what a clerk is
    shown, come from checked data; nothing is kept from one call to the next. The objects
    are made without running ``__post_init__`` (every check it makes on values from a file
    is made here), and the sections' items only when first read (:class:`_UnreadSections`).
    ``tests/federation/test_reports_canonical_reader.py`` checks that both readers agree,
    on canonical files with every field altered among others.
    """
    try:
        return _read_canonical(data)
    except (_Declined, ValueError, TypeError, IndexError, InvalidInputError):
        # ValueError: not UTF-8, not a calendar date, a number too long to read; TypeError:
        # a null where a value is needed; IndexError: the file ends inside a section;
        # InvalidInputError: the subject's identifier.
        return None


def _read_canonical(data: bytes) -> SignedReport:
    if len(data.translate(None, _REFUSED_BYTES)) != len(data) or (
        b"\xc2" in data and _C1_CONTROL.search(data) is not None
    ):
        raise _Declined
    text = data.decode("utf-8")
    values: list[Any] = []
    sections: list[list[tuple[Any, ...]]] = []
    spans: list[tuple[int, int]] = []
    at = 0
    for piece, reader in zip(_FILE_PIECES, _SECTION_READERS.values(), strict=False):
        found = piece.match(text, at)
        if found is None:
            raise _Declined
        values += found.groups()
        at = start = found.end()
        rows: list[tuple[Any, ...]] = []
        if text[at] != "]":  # the items, one by one, separated by commas
            while (found := reader.checking.match(text, at)) is not None:
                rows.append(found.groups())
                at = found.end()
                if text[at] != ",":
                    break
                at += 1
            else:
                raise _Declined
        if len(rows) > MAX_SECTION_ITEMS:
            raise _Declined
        sections.append(rows)
        spans.append((start, at))
    found = _FILE_PIECES[-1].fullmatch(text, at)
    if found is None:
        raise _Declined
    values += found.groups()
    (
        keyid,
        issued_text,
        issuer,
        issuer_name,
        manifest_text,
        report_no,
        status_text,
        subject_id,
        subject_kind,
        subject_name,
        supersedes,
        valid_text,
        encoded,
    ) = values
    issued_at, valid_until = _canonical_time(issued_text), _canonical_time(valid_text)
    if valid_until <= issued_at:
        raise _Declined
    issue_day = china_date(issued_at)
    day = issue_day.isoformat()
    # The number carries the issuer and the issue date; the sequence starts at 000001.
    if not report_no.startswith(f"{issuer}-{day[:4]}{day[5:7]}{day[8:]}-") or report_no.endswith(
        "-000000"
    ):
        raise _Declined
    status_index = int(status_text)
    if status_index >= MAX_STATUS_BITS:
        raise _Declined
    if supersedes is not None:
        check_report_no(supersedes, "supersedes")
        if supersedes == report_no or not supersedes.startswith(f"{issuer}-"):
            raise _Declined
    for reader, rows in zip(_SECTION_READERS.values(), sections, strict=True):
        reader.check(rows, issue_day)
    report = _from_dict(
        CreditReport,
        {
            "report_no": report_no,
            "issuer": issuer,
            "issuer_name": issuer_name,
            "subject": _canonical_subject(subject_kind, subject_id, subject_name, issue_day),
            "issued_at": issued_at,
            "valid_until": valid_until,
            "manifest_version": int(manifest_text),
            "status_index": status_index,
            "supersedes": supersedes,
            "_unread": _UnreadSections(text, spans),
            "_issued_at_text": issued_text,
            "_valid_until_text": valid_text,
            # The file less what is around the report (ASCII: as many bytes as characters).
            "_signed_bytes": data[
                _REPORT_STARTS : len(data) - len(encoded) - _AFTER_SIGNATURE_CHARACTERS
            ],
        },
    )
    return _from_dict(
        SignedReport,
        {
            "report": report,
            "keyid": keyid,
            "signature": _canonical_signature(encoded),
            "_bytes": data,
        },
    )


#: Where the report starts in the file: after '{"keyid":"<64 hex digits>","report":'.
_REPORT_STARTS = len('{"keyid":"') + 64 + len('","report":')
#: What follows the report, less the signature's base64: ',"signature":""}'.
_AFTER_SIGNATURE_CHARACTERS = len(',"signature":""}')


def _canonical_subject(kind: str, subject_id: str, name: str, issue_day: dt.date) -> Subject:
    """:meth:`Subject.from_json` and :func:`_check_subject_kind`, for the subject's fields
    as the grammar has them (the name a text of at most 200 characters: Subject's rule)."""
    detected = parse_subject(subject_id, today=issue_day)
    # The identifier is valid, normalised, and of the kind the report says it is.
    if detected.kind is not _SUBJECT_KINDS[kind] or detected.value != subject_id:
        raise _Declined
    return _from_dict(Subject, {"kind": detected.kind, "id": subject_id, "name": name})


def _from_dict(cls: type[_T], values: dict[str, Any]) -> _T:
    """An instance of the frozen dataclass ``cls`` holding ``values`` (its fields, cached
    properties, and for a report its unread sections), without ``__post_init__``: for
    values checked already."""
    instance = object.__new__(cls)
    object.__setattr__(instance, "__dict__", values)
    return instance


def _canonical_signature(encoded: str) -> bytes:
    """:func:`_signature`: the text must be what ``b64encode`` writes for the bytes."""
    raw = binascii.a2b_base64(encoded)
    if not 0 < len(raw) <= MAX_SIGNATURE_BYTES or b64encode(raw) != encoded:
        raise _Declined
    return raw


def _canonical_time(text: str) -> dt.datetime:
    """:func:`_parse_time` and :func:`_time`, for a time in the form ``format_utc`` writes."""
    time = dt.datetime.fromisoformat(text[:19] + "+00:00")
    if not _FIRST_YEAR <= time.year <= _LAST_YEAR:
        raise _Declined
    return time


REPORT_DIGEST_BYTES = 32


def report_digest(report: CreditReport) -> bytes:
    """SHA-256 of the report's signed bytes: which report a number stands for, when a
    verifier asks the issuer for its status (a number may be given again after the issuer
    restored an old backup)."""
    return hashlib.sha256(report.signed_bytes()).digest()


def sign_report(report: CreditReport, key: SigningKey) -> SignedReport:
    """Sign ``report`` with the issuing node's signing key."""
    return SignedReport(report, key.public_key.keyid, key.sign(report.signed_bytes()))


# --- offline verification ----------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEpoch:
    """One version of this node's trusted manifest chain, and when this node adopted it.

    ``trusted_from`` is ``None`` when unknown (the bootstrap manifest, an imported chain).
    """

    manifest: Manifest
    trusted_from: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.manifest, Manifest):
            raise InvalidInputError("a manifest epoch needs a Manifest")
        if self.trusted_from is not None:
            object.__setattr__(self, "trusted_from", _time(self.trusted_from, "trusted_from"))


def epochs(
    chain: TrustedChain, trusted_from: Mapping[int, dt.datetime] | None = None
) -> tuple[ManifestEpoch, ...]:
    """The epochs of ``chain``, with adoption times by version where known."""
    adopted = trusted_from or {}
    return tuple(
        ManifestEpoch(doc.manifest, adopted.get(doc.manifest.version)) for doc in chain.documents()
    )


@dataclass(frozen=True)
class OfflineVerdict:
    """What offline verification found: one reason per step taken, in order.

    ``report`` is given only when the report is authentic (state valid or expired).
    """

    signature_ok: bool
    state: OfflineState
    reasons: tuple[str, ...]
    report: CreditReport | None


def verify_offline(
    signed: SignedReport,
    *,
    chain: Sequence[ManifestEpoch],
    now: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
) -> OfflineVerdict:
    """Verify a report against this node's trusted manifest versions, without the network.

    Steps, in order; the first that fails decides: (1) the report's manifest version is one
    this node trusts (a version before the oldest it trusts, from before it joined the
    federation, is checked against that oldest one); (2) the issuer is a member of that
    version; (3) the key id is the
    issuer's signing key there; (4) the signature verifies; (5) the key had not been
    replaced (or the issuer removed) in a version this node trusted before the issue time;
    (6) the report is not dated in the future (beyond ``max_skew``); (7) it has not expired.
    """
    if not isinstance(now, dt.datetime) or now.tzinfo is None:
        raise InvalidInputError("verify_offline needs a timezone-aware 'now'")
    versions = [epoch.manifest.version for epoch in chain]
    if versions != sorted(set(versions)):
        raise InvalidInputError("the manifest chain must be in strictly increasing versions")
    report = signed.report
    issued_text = report._issued_at_text
    reasons: list[str] = []

    def invalid(reason: str, *, signature_ok: bool = False) -> OfflineVerdict:
        return OfflineVerdict(signature_ok, "invalid", (*reasons, reason), None)

    # (1) manifest version
    wanted = report.manifest_version
    epoch = next((e for e in chain if e.manifest.version == wanted), None)
    if epoch is None and versions and wanted < versions[0]:
        # Issued before this node's history starts (it joined the federation later): the
        # oldest version it trusts stands in, so the issuer must hold the same key there.
        epoch = chain[0]
        reasons.append(
            f"manifest: v{wanted} is before this node's history (it trusts "
            f"v{versions[0]}..v{versions[-1]}); checked against v{versions[0]}, the oldest"
        )
    elif epoch is None:
        trusted = f"v{versions[0]}..v{versions[-1]}" if versions else "no manifest at all"
        return invalid(f"unknown manifest version v{wanted}; this node trusts {trusted}")
    else:
        reasons.append(
            f"manifest: v{wanted} of {epoch.manifest.federation_id} is trusted by this node: ok"
        )
    manifest = epoch.manifest
    checked = manifest.version
    # (2) issuer
    member = manifest.member(report.issuer)
    if member is None:
        return invalid(f"issuer {report.issuer} is not a member of manifest v{checked}")
    reasons.append(f"issuer: {report.issuer} ({member.name}) is a member of v{checked}: ok")
    # (3) key id
    expected = member.signing_key.keyid
    if signed.keyid != expected:
        holder = manifest.member_by_keyid(signed.keyid)
        whose = f"the key of {holder.city_code}" if holder else "not a member's key"
        return invalid(
            f"signed with key {signed.keyid[:16]} ({whose}), not with {report.issuer}'s "
            f"signing key {expected[:16]} in v{checked}"
        )
    reasons.append(f"key: {expected[:16]} is {report.issuer}'s signing key in v{checked}: ok")
    # (4) signature
    try:
        member.signing_key.verify(signed.signature, report.signed_bytes())
    except SignatureError:
        return invalid(
            f"the signature by {report.issuer}'s key does not verify: the report was altered "
            "or signed by another key"
        )
    reasons.append("signature: verifies over the report: ok")
    # (5) key not replaced before the issue time
    for later in chain:
        if later.manifest.version <= checked or later.trusted_from is None:
            continue
        if later.trusted_from > report.issued_at:
            continue
        now_member = later.manifest.member(report.issuer)
        if now_member is None or now_member.signing_key.keyid != expected:
            what = "key was replaced" if now_member else "membership ended"
            return invalid(
                f"issued after the issuer's {what} in v{later.manifest.version} (trusted "
                f"since {format_utc(later.trusted_from)}); issued at {issued_text}",
                signature_ok=True,
            )
    reasons.append(
        f"key history: {report.issuer}'s key was still current at the issue time {issued_text}: ok"
    )
    # (6) not from the future
    if report.issued_at > now + max_skew:
        return invalid(
            f"dated in the future: issued at {issued_text}, now "
            f"{format_utc(now)} (allowed clock skew {max_skew})",
            signature_ok=True,
        )
    reasons.append(f"issue time: {issued_text} is not in the future: ok")
    # (7) validity period
    if now > report.valid_until:
        reasons.append(f"expired: valid until {report._valid_until_text}, now {format_utc(now)}")
        return OfflineVerdict(True, "expired", tuple(reasons), report)
    reasons.append(f"validity: valid until {report._valid_until_text}: ok")
    return OfflineVerdict(True, "valid", tuple(reasons), report)


# --- status ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportStatus:
    """A report's status as its issuer's status list states it at ``at``."""

    report_no: str
    state: ReportState
    reason: str
    superseded_by: str | None
    at: dt.datetime

    def __post_init__(self) -> None:
        check_report_no(self.report_no)
        if self.state not in ("valid", "revoked", "superseded"):
            raise ReportFormatError("status: state must be valid, revoked or superseded")
        _text(self.reason, "status.reason", limit=_LONG)
        if (self.state == "superseded") != (self.superseded_by is not None):
            raise ReportFormatError("status: superseded_by is given exactly for superseded")
        if self.superseded_by is not None:
            check_report_no(self.superseded_by, "superseded_by")
            # Numbers of one issuer sort in the order of issue (CITY-YYYYMMDD-NNNNNN, fixed
            # widths), and a successor is issued after the report, by its issuer.
            issuer = self.report_no[: len("370200-")]
            if not self.superseded_by.startswith(issuer) or self.superseded_by <= self.report_no:
                raise ReportFormatError(
                    f"status: {self.report_no} cannot be superseded by {self.superseded_by}: "
                    "a successor is a later report of the same issuer"
                )
        object.__setattr__(self, "at", _time(self.at, "status.at"))


def _encode_bits(bits: bytes) -> str:
    # mtime=0: the same bits compress to the same text on one implementation of zlib.
    packed = gzip.compress(bits, compresslevel=9, mtime=0)
    return "u" + base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def _decode_bits(text: object, size: int) -> bytes:
    """The bitstring of a multibase (``u``: base64url, no padding) gzip text, exactly sized."""
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text) or len(text) > 4 * 2**20:
        raise ReportFormatError("revoked: must be 'u' followed by base64url (no padding)")
    body = text[1:]
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise ReportFormatError("revoked: is not valid base64url") from None
    if base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=") != body:
        raise ReportFormatError("revoked: is not in canonical base64url")
    expected = (size + 7) // 8
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        # Bounded output: a small hostile text must not inflate to gigabytes.
        bits = inflater.decompress(packed, expected + 1)
    except zlib.error:
        raise ReportFormatError("revoked: is not valid gzip data") from None
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise ReportFormatError("revoked: must be exactly one complete gzip member")
    if len(bits) != expected:
        raise ReportFormatError(f"revoked: holds {len(bits)} bytes, {expected} for {size} bits")
    return bits


def _bit(bits: bytes, index: int) -> bool:
    # W3C Bitstring Status List: index 0 is the left-most (most significant) bit of byte 0.
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def _set_bit(bits: bytes, index: int) -> bytes:
    changed = bytearray(bits)
    changed[index // 8] |= 0x80 >> (index % 8)
    return bytes(changed)


def _set_bits(bits: bytes) -> list[int]:
    found: list[int] = []
    for byte_index, byte in enumerate(bits):
        if byte:
            found.extend(byte_index * 8 + i for i in range(8) if byte & (0x80 >> i))
    return found


@dataclass(frozen=True, kw_only=True)
class StatusList:
    """An issuer's report status list (报告状态列表), version by version.

    ``revoked`` is the bitstring (bit ``i`` set: the report with status index ``i`` is
    revoked); ``superseded`` pairs an index with the number of the report that replaced it;
    ``reasons`` gives a revoked index its reason: every revocation has one, until the issuer
    forgets it once the report has expired (:meth:`forget`), so that the list does not grow
    without end. Pairs are kept sorted by index.
    ``encoded`` is the compressed form that is signed: computed here, or kept as received
    by :meth:`from_json`, so that a list compressed by another zlib still verifies.
    """

    issuer: str
    version: int
    updated_at: dt.datetime
    size: int
    revoked: bytes
    superseded: tuple[tuple[int, str], ...] = ()
    reasons: tuple[tuple[int, str], ...] = ()
    encoded: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _city(self.issuer, "issuer")
        if not _is_int(self.version) or self.version < 1:
            raise ReportFormatError("status list version: must be a whole number >= 1")
        object.__setattr__(self, "updated_at", _time(self.updated_at, "updated_at"))
        if not _is_int(self.size) or not 8 <= self.size <= MAX_STATUS_BITS or self.size % 8:
            raise ReportFormatError(
                f"size: must be a multiple of 8 from 8 to {MAX_STATUS_BITS} bits"
            )
        if not isinstance(self.revoked, bytes) or len(self.revoked) != self.size // 8:
            raise ReportFormatError(f"revoked: must be {self.size // 8} bytes ({self.size} bits)")
        superseded = self._pairs(self.superseded, "superseded")
        for index, number in superseded:
            check_report_no(number, f"superseded[{index}]")
            if not number.startswith(f"{self.issuer}-"):
                raise ReportFormatError(f"superseded[{index}]: must be a report of the issuer")
        reasons = self._pairs(self.reasons, "reasons")
        for index, reason in reasons:
            _text(reason, f"reasons[{index}]", limit=MAX_REVOCATION_REASON)
        revoked_indices = set(_set_bits(self.revoked))
        if any(index not in revoked_indices for index, _reason in reasons):
            raise ReportFormatError("reasons: only a revoked index has a reason")
        object.__setattr__(self, "superseded", superseded)
        object.__setattr__(self, "reasons", reasons)
        object.__setattr__(self, "encoded", _encode_bits(self.revoked))

    def _pairs(self, pairs: object, name: str) -> tuple[tuple[int, str], ...]:
        if isinstance(pairs, list):
            pairs = tuple(pairs)
        if not isinstance(pairs, tuple) or len(pairs) > self.size:
            raise ReportFormatError(f"{name}: must be a tuple of (index, text) pairs")
        result = []
        for pair in pairs:
            if (
                not isinstance(pair, tuple | list)
                or len(pair) != 2
                or not _is_int(pair[0])
                or not isinstance(pair[1], str)
            ):
                raise ReportFormatError(f"{name}: must be a tuple of (index, text) pairs")
            if not 0 <= pair[0] < self.size:
                raise ReportFormatError(f"{name}: index {pair[0]} is outside 0..{self.size - 1}")
            result.append((pair[0], pair[1]))
        indices = [index for index, _value in result]
        if indices != sorted(set(indices)):
            raise ReportFormatError(f"{name}: indices must be distinct and in increasing order")
        return tuple(result)

    # --- building -----------------------------------------------------------------------

    @classmethod
    def new(cls, *, issuer: str, at: dt.datetime, size: int = DEFAULT_STATUS_BITS) -> StatusList:
        """Version 1: ``size`` reports, none revoked or superseded."""
        if not _is_int(size) or size < 8:
            raise ReportFormatError("size: must be a whole number of at least 8 bits")
        return cls(issuer=issuer, version=1, updated_at=at, size=size, revoked=bytes(size // 8))

    def _next(self, at: dt.datetime, **changes: Any) -> StatusList:
        at = _time(at, "at")
        if at < self.updated_at:
            raise ReportStatusError(
                f"cannot change the status list at {format_utc(at)}, before its version "
                f"{self.version} of {format_utc(self.updated_at)}"
            )
        return dataclasses.replace(self, version=self.version + 1, updated_at=at, **changes)

    def _check_index(self, index: int) -> None:
        if not _is_int(index) or not 0 <= index < self.size:
            raise ReportStatusError(
                f"status index {index!r} is outside this list (0..{self.size - 1})",
                hint="grow the status list first",
            )

    def revoke(self, index: int, reason: str, at: dt.datetime) -> StatusList:
        """The next version, with the report at ``index`` revoked (吊销) for ``reason``."""
        self._check_index(index)
        if _bit(self.revoked, index):
            raise ReportStatusError(f"the report with status index {index} is already revoked")
        reasons = tuple(sorted((*self.reasons, (index, reason))))
        return self._next(at, revoked=_set_bit(self.revoked, index), reasons=reasons)

    def forget(self, indices: Iterable[int], at: dt.datetime) -> StatusList:
        """The next version, without the reasons of the revoked reports at ``indices``; their
        revocations stay. The issuer forgets the reasons of expired reports (a verifier
        finds an expired report expired before it looks at its status), so that the list
        does not grow with every revocation for good."""
        dropped = set(indices)
        held = dict(self.reasons)
        if not dropped <= held.keys():
            unknown = sorted(dropped - held.keys())[:5]
            raise ReportStatusError(f"no reason to forget at status indices {unknown}")
        kept = tuple(pair for pair in self.reasons if pair[0] not in dropped)
        return self._next(at, reasons=kept)

    def supersede(self, index: int, new_report_no: str, at: dt.datetime) -> StatusList:
        """The next version, with the report at ``index`` replaced by ``new_report_no``."""
        self._check_index(index)
        state = self.status_of(index)
        if state != "valid":
            raise ReportStatusError(
                f"the report with status index {index} is {state}; only a valid report "
                "can be superseded"
            )
        superseded = tuple(sorted((*self.superseded, (index, new_report_no))))
        return self._next(at, superseded=superseded)

    def grow(self, size: int, at: dt.datetime) -> StatusList:
        """The next version, with room for ``size`` reports (a list never shrinks)."""
        if not _is_int(size) or size <= self.size:
            raise ReportStatusError(f"a status list grows: {size!r} is not more than {self.size}")
        if size > MAX_STATUS_BITS or size % 8:
            raise ReportStatusError(f"size must be a multiple of 8, at most {MAX_STATUS_BITS}")
        return self._next(at, size=size, revoked=self.revoked + bytes((size - self.size) // 8))

    # --- reading ------------------------------------------------------------------------

    def status_of(self, index: int) -> ReportState:
        """The state of the report at ``index``; a revocation wins over a supersession."""
        self._check_index(index)
        if _bit(self.revoked, index):
            return "revoked"
        if any(i == index for i, _number in self.superseded):
            return "superseded"
        return "valid"

    def status_for(self, report: CreditReport) -> ReportStatus:
        """The status of ``report``, with the reason or the number of its successor."""
        if report.issuer != self.issuer:
            raise ReportStatusError(
                f"{report.describe()} was issued by {report.issuer}, this status list is "
                f"{self.issuer}'s"
            )
        index = report.status_index
        state = self.status_of(index)
        if state == "revoked":
            reason = dict(self.reasons).get(index, FORGOTTEN_REASON)
            return ReportStatus(report.report_no, state, reason, None, self.updated_at)
        if state == "superseded":
            by = dict(self.superseded)[index]
            return ReportStatus(report.report_no, state, f"superseded by {by}", by, self.updated_at)
        return ReportStatus(
            report.report_no, "valid", "not revoked or superseded", None, self.updated_at
        )

    def newer_than(self, other: StatusList) -> bool:
        """Whether this is a later version of ``other`` (the same issuer's list)."""
        if other.issuer != self.issuer:
            raise StatusListError(
                f"status lists of {self.issuer} and {other.issuer} cannot be compared"
            )
        return self.version > other.version

    def describe(self) -> str:
        return f"status list v{self.version} of {self.issuer}"

    # --- serialisation ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "type": STATUS_LIST_TYPE,
            "issuer": self.issuer,
            "version": self.version,
            "updated_at": format_utc(self.updated_at),
            "size": self.size,
            "revoked": self.encoded,
            "superseded": [{"index": i, "report_no": n} for i, n in self.superseded],
            "reasons": [{"index": i, "reason": r} for i, r in self.reasons],
        }

    @classmethod
    def from_json(cls, value: object) -> StatusList:
        if not isinstance(value, dict):
            raise ReportFormatError("status list: must be a JSON object")
        if value.get("type") != STATUS_LIST_TYPE:
            raise ReportFormatError(f"not a status list: type must be {STATUS_LIST_TYPE!r}")
        doc = _fields(
            value,
            ("type", "issuer", "version", "updated_at", "size", "revoked", "superseded", "reasons"),
            "status list",
        )
        size = doc["size"]
        if not _is_int(size) or not 8 <= size <= MAX_STATUS_BITS or size % 8:
            raise ReportFormatError(f"size: must be a multiple of 8 from 8 to {MAX_STATUS_BITS}")
        superseded = [
            _fields(raw, ("index", "report_no"), "superseded")
            for raw in _list(doc["superseded"], "superseded", limit=size)
        ]
        reasons = [
            _fields(raw, ("index", "reason"), "reasons")
            for raw in _list(doc["reasons"], "reasons", limit=size)
        ]
        status_list = cls(
            issuer=doc["issuer"],
            version=doc["version"],
            updated_at=_parse_time(doc["updated_at"], "updated_at"),
            size=size,
            revoked=_decode_bits(doc["revoked"], size),
            superseded=tuple((raw["index"], raw["report_no"]) for raw in superseded),
            reasons=tuple((raw["index"], raw["reason"]) for raw in reasons),
        )
        # Keep the compression as signed: another zlib may compress the same bits otherwise.
        object.__setattr__(status_list, "encoded", doc["revoked"])
        if canonical_bytes(value) != status_list.signed_bytes():
            raise ReportFormatError("status list is not in canonical form")
        return status_list

    def signed_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())


@dataclass(frozen=True)
class SignedStatusList:
    """A status list with its issuer's signature."""

    status_list: StatusList
    keyid: str
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.status_list, StatusList):
            raise ReportFormatError("signed status list: needs a StatusList")
        _keyid(self.keyid, "keyid")
        _check_signature_bytes(self.signature, "signature")

    def to_json(self) -> dict[str, Any]:
        return {
            "status_list": self.status_list.to_json(),
            "keyid": self.keyid,
            "signature": b64encode(self.signature),
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedStatusList:
        """Parse; anything malformed is a :class:`ReportFormatError`. Does not verify."""
        if not isinstance(data, bytes | bytearray):
            raise ReportFormatError("a status list document is bytes")
        try:
            document = parse_document(bytes(data), what="status list")
        except InvalidInputError as exc:
            raise ReportFormatError(exc.message) from None
        doc = _fields(document, ("status_list", "keyid", "signature"), "status list document")
        return cls(
            StatusList.from_json(doc["status_list"]),
            _keyid(doc["keyid"], "keyid"),
            _signature(doc["signature"], "signature"),
        )


def sign_status_list(status_list: StatusList, key: SigningKey) -> SignedStatusList:
    """Sign ``status_list`` with the issuer's signing key.

    A signed list larger than every reader accepts (:data:`MAX_DOCUMENT_BYTES`) is refused
    with :class:`ReportStatusError`: a list only grows, and one that no reader could parse
    would stop every status answer of its issuer.
    """
    signed = SignedStatusList(
        status_list, key.public_key.keyid, key.sign(status_list.signed_bytes())
    )
    size = len(signed.to_bytes())
    if size > MAX_DOCUMENT_BYTES:
        raise ReportStatusError(
            f"{status_list.describe()} would be {size} bytes signed, more than the "
            f"{MAX_DOCUMENT_BYTES} a reader accepts: the status list has no room for this change",
            hint="a shorter revocation reason may still fit; see the status list limits in "
            "docs/reports-and-ratings.md",
        )
    return signed


def verify_status_list(
    signed: SignedStatusList,
    manifest: Manifest,
    *,
    now: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
) -> StatusList:
    """The status list, if its issuer signed it with the key ``manifest`` lists for it.

    Steps, each failing with its own :class:`StatusListError`: the issuer is a member; the
    key id is its signing key; the signature verifies; the list is not from the future.
    """
    if not isinstance(now, dt.datetime) or now.tzinfo is None:
        raise InvalidInputError("verify_status_list needs a timezone-aware 'now'")
    status_list = signed.status_list
    member = manifest.member(status_list.issuer)
    if member is None:
        raise StatusListError(
            f"{status_list.describe()}: {status_list.issuer} is not a member of "
            f"{manifest.describe()}"
        )
    expected = member.signing_key.keyid
    if signed.keyid != expected:
        raise StatusListError(
            f"{status_list.describe()} is signed with key {signed.keyid[:16]}, not with "
            f"{status_list.issuer}'s signing key {expected[:16]} in {manifest.describe()}"
        )
    try:
        member.signing_key.verify(signed.signature, status_list.signed_bytes())
    except SignatureError:
        raise StatusListError(
            f"{status_list.describe()}: the signature does not verify (altered, or signed "
            "by another key)"
        ) from None
    if status_list.updated_at > now + max_skew:
        raise StatusListError(
            f"{status_list.describe()} is from the future: updated at "
            f"{format_utc(status_list.updated_at)}, now {format_utc(now)}",
            hint="check the clocks of both nodes (NTP)",
        )
    return status_list


def accept_status_list(held: StatusList | None, candidate: StatusList) -> StatusList:
    """The copy to keep after receiving ``candidate`` (verified) while holding ``held``.

    An older version is refused (rollback); the same version must be the same list; a
    newer version may only add: a revocation or a supersession is never undone, and the
    list never shrinks. A contradiction is a :class:`StatusListError`.
    """
    if held is None:
        return candidate
    if candidate.newer_than(held):
        problem = None
        if candidate.size < held.size:
            problem = f"shrinks from {held.size} to {candidate.size} bits"
        elif candidate.updated_at < held.updated_at:
            problem = "is dated before the version held"
        elif not set(_set_bits(held.revoked)) <= set(_set_bits(candidate.revoked)):
            problem = "un-revokes a report"
        elif not set(held.superseded) <= set(candidate.superseded):
            problem = "undoes a supersession"
        if problem:
            raise StatusListError(f"{candidate.describe()} {problem} of {held.describe()}; refused")
        return candidate
    if candidate.version < held.version:
        raise StaleStatusListError(
            f"{candidate.describe()} is older than the {held.describe()} held: rollback refused"
        )
    if candidate != held:
        raise StatusListError(
            f"{held.issuer} published two different status lists with version {held.version}"
        )
    return held


# --- the final verdict -------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a clerk is told about a report: a state, the reasons, and one summary line."""

    state: VerdictState
    reasons: tuple[str, ...]
    summary: str


def final_verdict(
    offline: OfflineVerdict,
    status: ReportStatus | None,
    *,
    status_source: StatusSource | None,
    status_as_of: dt.datetime | None,
    unknown_because: str | None = None,
) -> Verdict:
    """Combine offline verification with the report's status (from the issuer or a replica).

    An invalid or expired report is that, whatever its status. Without a status the report
    is never called valid: its state is ``status-unknown``, with ``unknown_because`` among
    the reasons when it is known why.
    """
    reasons = list(offline.reasons)
    report = offline.report
    if offline.state == "invalid" or report is None:
        last = offline.reasons[-1] if offline.reasons else "not verified"
        return Verdict("invalid", tuple(reasons), f"invalid: {last}")
    if offline.state == "expired":
        return Verdict("expired", tuple(reasons), f"expired on {format_utc(report.valid_until)}")
    if status is not None and status.report_no != report.report_no:
        reasons.append(f"status given is for {status.report_no}, not {report.report_no}: ignored")
        status = None
    if status is None:
        since = format_utc(status_as_of) if status_as_of is not None else "never checked"
        why = f"{unknown_because}; " if unknown_because else ""
        reasons.append(f"status: unknown ({why}last checked: {since})")
        return Verdict(
            "status-unknown", tuple(reasons), f"signature valid, status unknown since {since}"
        )
    as_of = format_utc(status_as_of if status_as_of is not None else status.at)
    source = status_source or "unknown source"
    reasons.append(f"status: {status.state} ({status.reason}), as of {as_of} from {source}")
    if status.state == "revoked":
        return Verdict("revoked", tuple(reasons), f"revoked: {status.reason}")
    if status.state == "superseded":
        return Verdict("superseded", tuple(reasons), f"superseded by report {status.superseded_by}")
    return Verdict(
        "valid",
        tuple(reasons),
        f"valid: signature verified, not revoked or superseded as of {as_of} ({source})",
    )
