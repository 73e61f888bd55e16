"""Sanction and reward lists (信用奖惩名单): entries, their log events and their rules.

A city lists subjects on lists such as 严重失信主体名单 (serious dishonesty) or the red list
(守信激励对象名单). Each listing is a :class:`SanctionEntry` decided by an authority in a
decision document (决定书); the pair (authority, decision document number) identifies the
entry (:func:`entry_id`), so that a resubmitted decision is recognised, not listed twice.

Everything that happens to an entry is an event in the city's append-only log (issue 3):
an :class:`Envelope` (the Merkle leaf, seen by every member) and an :class:`EventBody`
(salted, hashed into the envelope, replicated only where the list kind's policy allows).
:func:`apply_event` is the one state machine, run by the owner and by every replica; the
``plan_*`` functions are the owner's rules that turn a request into an event or a no-op.
:meth:`EntryState.effective` says what is served at a given time: publicity ends on its
planned date even when the owner never logs the removal (owner offline).

Publicity periods follow 发改办财金〔2019〕527号 and NDRC Order 58 (2023): see
``DEFAULT_POLICIES``. Dates are calendar dates in China (UTC+8). A resident ID number is
never shown in clear by ``repr`` or in an error message.
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as dt
import enum
import functools
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from federation.canonical import MAX_STORED_INTEGER, canonical_bytes, parse_document
from federation.clock import china_date, format_utc, parse_utc
from federation.errors import (
    ConflictError,
    FailedPreconditionError,
    InvalidIdentifierError,
    InvalidInputError,
    ListEntryError,
    NotFoundError,
)
from federation.member import CITY_CODE
from federation.signing import b64decode, b64encode
from federation.subjects import (
    SubjectId,
    SubjectKind,
    normalize_identifier,
    parse_subject,
    shown,
)

EVENT_TYPE = "creditnet.list-event/v1"
SALT_BYTES = 16
ENTRY_ID_HEX = 32
#: An envelope is a few hundred bytes; a bound keeps hostile input cheap to refuse.
MAX_ENVELOPE_BYTES = 4096
MAX_BODY_BYTES = 256 * 1024
MAX_INDEX = MAX_STORED_INTEGER
MAX_PUBLICITY_DAYS = 100 * 365
MAX_MEASURES = 50

# Length limits per text field (characters); short fields are single-line.
_SHORT_TEXT = {"subject.name": 200, "authority": 200, "decision_no": 100}
_LONG_TEXT = 4000
_MEASURE_TEXT = 500

_E = TypeVar("_E", bound=enum.Enum)

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# --- list kinds and policies -------------------------------------------------------------


class ListKind(enum.StrEnum):
    """A kind of list; the value is its slug in JSON, node.toml and the CLI."""

    SERIOUS_DISHONESTY = "serious-dishonesty"
    JOINT_PUNISHMENT = "joint-punishment"
    ABNORMAL_OPERATION = "abnormal-operation"
    ADMINISTRATIVE_PENALTY = "administrative-penalty"
    WATCH_LIST = "watch-list"
    RED_LIST = "red-list"

    @property
    def name_zh(self) -> str:
        """The list's name in national practice."""
        return _NAMES_ZH[self]

    @classmethod
    def parse(cls, text: str) -> ListKind:
        """A slug (case, spaces and ``_`` forgiven) or the Chinese name of a list kind."""
        if isinstance(text, str):
            slug = text.strip().lower().replace("_", "-")
            for kind in cls:
                if slug == kind.value or text.strip() == kind.name_zh:
                    return kind
        known = ", ".join(kind.value for kind in cls)
        raise InvalidInputError(f"unknown list kind {shown(text)}; known kinds: {known}")


_NAMES_ZH: Mapping[ListKind, str] = MappingProxyType(
    {
        ListKind.SERIOUS_DISHONESTY: "严重失信主体名单",
        ListKind.JOINT_PUNISHMENT: "失信联合惩戒对象名单",
        ListKind.ABNORMAL_OPERATION: "经营异常名录",
        ListKind.ADMINISTRATIVE_PENALTY: "行政处罚信息",
        ListKind.WATCH_LIST: "重点关注名单",
        ListKind.RED_LIST: "守信激励对象名单 (红名单)",
    }
)


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `true` is not a number of days.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class ListPolicy:
    """How a city handles one list kind: replication and the publicity period (公示期限).

    ``replicate_to`` is ``("*",)`` (every member) or the city codes to replicate bodies to.
    A kind that is not ``public`` is never replicated, whatever ``replicate_to`` says.
    """

    kind: ListKind
    public: bool
    replicate_to: tuple[str, ...] = ("*",)
    min_publicity_days: int
    max_publicity_days: int

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ListKind):
            raise InvalidInputError("list policy: kind must be a ListKind")
        where = f"list policy {self.kind.value}"
        if not isinstance(self.public, bool):
            raise InvalidInputError(f"{where}: public must be true or false")
        if isinstance(self.replicate_to, list):
            object.__setattr__(self, "replicate_to", tuple(self.replicate_to))
        targets = self.replicate_to
        if not isinstance(targets, tuple) or not all(isinstance(t, str) for t in targets):
            raise InvalidInputError(f"{where}: replicate_to must be a list of city codes or '*'")
        if "*" in targets and targets != ("*",):
            raise InvalidInputError(f"{where}: replicate_to '*' cannot be combined with codes")
        for target in targets:
            if target != "*" and not CITY_CODE.fullmatch(target):
                raise InvalidInputError(
                    f"{where}: replicate_to entry {shown(target)} is not a six-digit city code"
                )
        if len(set(targets)) != len(targets):
            raise InvalidInputError(f"{where}: replicate_to lists a city twice")
        low, high = self.min_publicity_days, self.max_publicity_days
        if not _is_int(low) or not 0 <= low <= MAX_PUBLICITY_DAYS:
            raise InvalidInputError(
                f"{where}: min_publicity_days must be a whole number 0-{MAX_PUBLICITY_DAYS}"
            )
        if not _is_int(high) or not 1 <= high <= MAX_PUBLICITY_DAYS:
            raise InvalidInputError(
                f"{where}: max_publicity_days must be a whole number 1-{MAX_PUBLICITY_DAYS}"
            )
        if low > high:
            raise InvalidInputError(
                f"{where}: min_publicity_days ({low}) is more than max_publicity_days ({high})"
            )

    def replicates_to(self, city_code: str) -> bool:
        """Whether the bodies of this kind go to ``city_code`` (never for non-public kinds)."""
        if not self.public:
            return False
        return self.replicate_to == ("*",) or city_code in self.replicate_to


#: Defaults (node.toml ``[lists.<slug>]`` overrides them); months as days: 3 = 90, 6 = 182,
#: 1 year = 365, 3 years = 1095.
DEFAULT_POLICIES: Mapping[ListKind, ListPolicy] = MappingProxyType(
    {
        policy.kind: policy
        for policy in (
            ListPolicy(
                kind=ListKind.SERIOUS_DISHONESTY,
                public=True,
                min_publicity_days=182,
                max_publicity_days=1095,
            ),
            ListPolicy(
                kind=ListKind.JOINT_PUNISHMENT,
                public=True,
                min_publicity_days=90,
                max_publicity_days=365,
            ),
            ListPolicy(
                kind=ListKind.ABNORMAL_OPERATION,
                public=True,
                min_publicity_days=90,
                max_publicity_days=1095,
            ),
            ListPolicy(
                kind=ListKind.ADMINISTRATIVE_PENALTY,
                public=True,
                min_publicity_days=90,
                max_publicity_days=1095,
            ),
            # Watch lists are often not public: matched privately, never replicated in clear.
            ListPolicy(
                kind=ListKind.WATCH_LIST,
                public=False,
                min_publicity_days=90,
                max_publicity_days=365,
            ),
            ListPolicy(
                kind=ListKind.RED_LIST,
                public=True,
                min_publicity_days=0,
                max_publicity_days=1095,
            ),
        )
    }
)

_POLICY_KEYS = ("public", "replicate_to", "min_publicity_days", "max_publicity_days")


def policies_from_config(table: Mapping[str, Any]) -> dict[ListKind, ListPolicy]:
    """The policy of every list kind: node.toml ``[lists.<slug>]`` tables over the defaults.

    ``table`` is the ``[lists]`` table. Slugs must be exact; an unknown slug or key is an
    error naming it (a typo must not silently leave a default in force).
    """
    if not isinstance(table, Mapping):
        raise InvalidInputError("[lists] must be a table of [lists.<slug>] tables")
    policies = dict(DEFAULT_POLICIES)
    known = ", ".join(kind.value for kind in ListKind)
    for slug, overrides in table.items():
        if slug not in {kind.value for kind in ListKind}:
            raise InvalidInputError(
                f"[lists]: unknown list kind {shown(slug)}; known kinds: {known}"
            )
        kind = ListKind(slug)
        if not isinstance(overrides, Mapping):
            raise InvalidInputError(f"[lists.{slug}] must be a table")
        unknown = sorted(str(key) for key in overrides if key not in _POLICY_KEYS)
        if unknown:
            raise InvalidInputError(
                f"[lists.{slug}]: unknown key {shown(unknown[0])}; "
                f"known keys: {', '.join(_POLICY_KEYS)}"
            )
        values: dict[str, Any] = {
            "kind": kind,
            "public": DEFAULT_POLICIES[kind].public,
            "replicate_to": DEFAULT_POLICIES[kind].replicate_to,
            "min_publicity_days": DEFAULT_POLICIES[kind].min_publicity_days,
            "max_publicity_days": DEFAULT_POLICIES[kind].max_publicity_days,
        }
        values.update(overrides)
        replicate_to = values["replicate_to"]
        if replicate_to == "*":
            values["replicate_to"] = ("*",)
        elif isinstance(replicate_to, list | tuple):
            values["replicate_to"] = tuple(replicate_to)
        else:
            raise InvalidInputError(
                f'[lists.{slug}]: replicate_to must be "*" or a list of city codes'
            )
        try:
            policies[kind] = ListPolicy(**values)
        except InvalidInputError as exc:
            raise InvalidInputError(f"[lists.{slug}]: {exc.message}") from None
    return policies


# --- field validation ---------------------------------------------------------------------


def _check_text(value: object, name: str, *, limit: int, optional: bool = False) -> str:
    """A text field: a string, trimmed, within ``limit``, printable (newlines only if long)."""
    if not isinstance(value, str):
        raise ListEntryError(f"{name}: must be a string")
    if not value and optional:
        return value
    if not value.strip() and not optional:
        raise ListEntryError(f"{name}: must not be empty")
    if value != value.strip():
        raise ListEntryError(f"{name}: must not start or end with whitespace")
    if len(value) > limit:
        raise ListEntryError(f"{name}: is {len(value)} characters long, at most {limit} allowed")
    if _SURROGATE.search(value):
        raise ListEntryError(f"{name}: contains a lone surrogate (not valid Unicode text)")
    found = (_CONTROL_MULTILINE if limit > 200 else _CONTROL).search(value)
    if found:
        raise ListEntryError(f"{name}: contains the control character U+{ord(found[0]):04X}")
    return value


# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; long texts may hold
# newlines and tabs. Regular expressions, because this runs for every field of every event.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _trim(value: str) -> str:
    # Typed input may come from anywhere; a non-string is left for the field check to name.
    return value.strip() if isinstance(value, str) else value


def _check_date(value: object, name: str) -> dt.date:
    # datetime is a date subclass; a timestamp where a calendar day is meant is a bug.
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ListEntryError(f"{name}: must be a date")
    return value


def _parse_date(value: object, name: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ListEntryError(f"{name}: must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ListEntryError(f"{name}: {value} is not a calendar date") from None


def _fields(value: object, expected: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ListEntryError(f"{where}: must be a JSON object")
    keys, wanted = set(value), set(expected)
    if keys != wanted:
        missing = sorted(wanted - keys)
        unknown = sorted(shown(k) for k in keys - wanted)
        raise ListEntryError(f"{where}: fields do not match (missing {missing}, unknown {unknown})")
    return value


def _enum(cls: type[_E], value: object, name: str) -> _E:
    try:
        return cls(value)
    except (ValueError, TypeError):
        known = ", ".join(str(member.value) for member in cls)
        raise ListEntryError(f"{name}: {shown(value)} is not one of {known}") from None


# --- entries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """Who is listed: an identifier in normalised form, its kind, and the subject's name.

    ``repr`` and ``str`` show :attr:`masked`: a resident ID number is never shown in clear.
    """

    kind: SubjectKind
    id: str
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SubjectKind):
            raise ListEntryError("subject.kind: must be uscc or resident-id")
        if not isinstance(self.id, str):
            raise ListEntryError("subject.id: must be a string")
        if len(self.id) > 64 or normalize_identifier(self.id) != self.id:
            raise ListEntryError("subject.id: is not in normalised form (trimmed, upper case)")
        try:
            SubjectId(self.kind, self.id)
        except InvalidIdentifierError as exc:
            raise ListEntryError(f"subject.id: {exc.message}") from None
        _check_text(self.name, "subject.name", limit=_SHORT_TEXT["subject.name"])

    @property
    def masked(self) -> str:
        """The display form (a resident ID keeps its first 6 and last 4 characters)."""
        return SubjectId(self.kind, self.id).masked

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    def __repr__(self) -> str:
        return f"Subject({self.kind.value}, {self.masked}, {self.name!r})"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "id": self.id, "name": self.name}

    @classmethod
    def from_json(cls, value: object) -> Subject:
        document = _fields(value, ("kind", "id", "name"), "subject")
        return cls(
            kind=_enum(SubjectKind, document["kind"], "subject.kind"),
            id=document["id"],
            name=document["name"],
        )


_ENTRY_FIELDS = (
    "list_kind",
    "subject",
    "reason",
    "legal_basis",
    "authority",
    "decision_no",
    "listed_on",
    "publicity_end",
    "measures",
    "appeal",
)


@dataclass(frozen=True)
class SanctionEntry:
    """One listing (列入) of a subject, as decided by an authority.

    Fields as in national practice: 列入事由 ``reason``, 认定依据 ``legal_basis``,
    作出决定机关 ``authority``, 决定书文号 ``decision_no``, 列入日期 ``listed_on``, planned
    end of publicity ``publicity_end`` (the last day it is served), 惩戒措施 ``measures``
    and 权利救济 ``appeal``. Valid by construction; the checks that need a policy or the
    date of today are made when an entry is planned (:func:`plan_add`).
    """

    list_kind: ListKind
    subject: Subject
    reason: str
    legal_basis: str
    authority: str
    decision_no: str
    listed_on: dt.date
    publicity_end: dt.date
    measures: tuple[str, ...] = ()
    appeal: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.list_kind, ListKind):
            raise ListEntryError("list_kind: must be a ListKind")
        if not isinstance(self.subject, Subject):
            raise ListEntryError("subject: must be a Subject")
        _check_text(self.reason, "reason", limit=_LONG_TEXT)
        _check_text(self.legal_basis, "legal_basis", limit=_LONG_TEXT)
        _check_text(self.authority, "authority", limit=_SHORT_TEXT["authority"])
        _check_text(self.decision_no, "decision_no", limit=_SHORT_TEXT["decision_no"])
        listed_on = _check_date(self.listed_on, "listed_on")
        publicity_end = _check_date(self.publicity_end, "publicity_end")
        if publicity_end <= listed_on:
            raise ListEntryError(
                f"publicity_end: {publicity_end} must be after listed_on {listed_on}"
            )
        if isinstance(self.measures, list):
            object.__setattr__(self, "measures", tuple(self.measures))
        if not isinstance(self.measures, tuple):
            raise ListEntryError("measures: must be a list of strings")
        if len(self.measures) > MAX_MEASURES:
            raise ListEntryError(f"measures: {len(self.measures)} given, at most {MAX_MEASURES}")
        for position, measure in enumerate(self.measures):
            _check_text(measure, f"measures[{position}]", limit=_MEASURE_TEXT)
        if len(set(self.measures)) != len(self.measures):
            raise ListEntryError("measures: the same measure is listed twice")
        _check_text(self.appeal, "appeal", limit=_LONG_TEXT, optional=True)
        # The declared kind must be what the identifier is (parse_subject's detection),
        # judged on the listing date so that every node decides alike.
        try:
            detected = parse_subject(self.subject.id, today=listed_on)
        except InvalidIdentifierError as exc:
            raise ListEntryError(f"subject.id: {exc.message}") from None
        if detected.kind is not self.subject.kind:
            raise ListEntryError(
                f"subject.kind: the identifier is a {detected.kind.value}, "
                f"not a {self.subject.kind.value}"
            )

    def entry_id(self, origin: str) -> str:
        """The id of this entry in ``origin``'s log (see :func:`entry_id`)."""
        return entry_id(origin, self.authority, self.decision_no)

    @functools.cached_property
    def canonical_json(self) -> str:
        """The canonical JSON text of :meth:`to_json` (what a signed body holds), made once;
        a replica stores it with the entry's state."""
        return canonical_bytes(self.to_json()).decode("utf-8")

    def to_json(self) -> dict[str, Any]:
        return {
            "list_kind": self.list_kind.value,
            "subject": self.subject.to_json(),
            "reason": self.reason,
            "legal_basis": self.legal_basis,
            "authority": self.authority,
            "decision_no": self.decision_no,
            "listed_on": self.listed_on.isoformat(),
            "publicity_end": self.publicity_end.isoformat(),
            "measures": list(self.measures),
            "appeal": self.appeal,
        }

    @classmethod
    def from_json(cls, value: object) -> SanctionEntry:
        """Parse the JSON form strictly: exact fields, exact types, valid values."""
        document = _fields(value, _ENTRY_FIELDS, "entry")
        list_kind = document["list_kind"]
        if not isinstance(list_kind, str) or list_kind not in {k.value for k in ListKind}:
            known = ", ".join(kind.value for kind in ListKind)
            raise ListEntryError(
                f"list_kind: unknown list kind {shown(list_kind)}; known kinds: {known}"
            )
        measures = document["measures"]
        if not isinstance(measures, list):
            raise ListEntryError("measures: must be a list of strings")
        return cls(
            list_kind=ListKind(list_kind),
            subject=Subject.from_json(document["subject"]),
            reason=document["reason"],
            legal_basis=document["legal_basis"],
            authority=document["authority"],
            decision_no=document["decision_no"],
            listed_on=_parse_date(document["listed_on"], "listed_on"),
            publicity_end=_parse_date(document["publicity_end"], "publicity_end"),
            measures=tuple(measures),
            appeal=document["appeal"],
        )

    @classmethod
    def create(
        cls,
        *,
        list_kind: ListKind | str,
        subject_id: str,
        subject_name: str,
        reason: str,
        legal_basis: str,
        authority: str,
        decision_no: str,
        listed_on: dt.date,
        publicity_end: dt.date | None = None,
        measures: Iterable[str] = (),
        appeal: str = "",
        policy: ListPolicy,
    ) -> SanctionEntry:
        """An entry from what an operator typed: trimmed, identifier normalised and detected.

        ``publicity_end`` defaults to ``listed_on`` + the policy's maximum publicity period,
        and may not be later than that.
        """
        try:
            kind = list_kind if isinstance(list_kind, ListKind) else ListKind.parse(list_kind)
        except InvalidInputError as exc:
            raise ListEntryError(f"list_kind: {exc.message}") from None
        if policy.kind is not kind:
            raise InvalidInputError(
                f"the policy given is for {policy.kind.value}, the entry is for {kind.value}"
            )
        listed = _check_date(listed_on, "listed_on")
        if not isinstance(subject_id, str):
            raise ListEntryError("subject.id: must be a string")
        try:
            subject_value = parse_subject(subject_id, today=listed)
        except InvalidIdentifierError as exc:
            raise ListEntryError(f"subject.id: {exc.message}") from None

        if isinstance(measures, str):
            raise ListEntryError("measures: must be a list of strings, not one string")
        entry = cls(
            list_kind=kind,
            subject=Subject(subject_value.kind, subject_value.value, _trim(subject_name)),
            reason=_trim(reason),
            legal_basis=_trim(legal_basis),
            authority=_trim(authority),
            decision_no=_trim(decision_no),
            listed_on=listed,
            publicity_end=(
                publicity_end
                if publicity_end is not None
                else listed + dt.timedelta(days=policy.max_publicity_days)
            ),
            measures=tuple(_trim(measure) for measure in measures),
            appeal=_trim(appeal),
        )
        _check_publicity(entry, policy)
        return entry


def check_entry_id(value: object, name: str = "entry_id") -> str:
    """An entry id: the first 32 hex digits (lower case) of the SHA-256 of its decision key."""
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise InvalidInputError(f"{name} must be {ENTRY_ID_HEX} lower-case hex digits")
    return value


@functools.lru_cache(maxsize=16384)
def entry_id(origin: str, authority: str, decision_no: str) -> str:
    """First 32 hex characters of SHA-256 over the canonical JSON of the decision's key.

    The same decision (authority, decision document number) in the same city is the same
    entry, which makes a resubmission recognisable (the idempotency key).
    """
    return hashlib.sha256(_decision_key(origin, authority, decision_no)).hexdigest()[:ENTRY_ID_HEX]


_json_string = json.encoder.encode_basestring  # what canonical JSON writes for a text


def _decision_key(origin: str, authority: str, decision_no: str) -> bytes:
    """``canonical_bytes({"origin": ..., "authority": ..., "decision_no": ...})``.

    Three texts (the usual case) are written directly, keys in sorted order, each string
    as the canonical encoder writes it; anything else (or a lone surrogate, which has no
    UTF-8 form) goes to ``canonical_bytes``, which encodes or explains.
    """
    if type(origin) is str and type(authority) is str and type(decision_no) is str:
        with contextlib.suppress(UnicodeEncodeError):
            return (
                f'{{"authority":{_json_string(authority)},'
                f'"decision_no":{_json_string(decision_no)},"origin":{_json_string(origin)}}}'
            ).encode()
    key = {"origin": origin, "authority": authority, "decision_no": decision_no}
    return canonical_bytes(key)


def _check_publicity(entry: SanctionEntry, policy: ListPolicy) -> None:
    latest = entry.listed_on + dt.timedelta(days=policy.max_publicity_days)
    if entry.publicity_end > latest:
        raise ListEntryError(
            f"publicity_end: {entry.publicity_end} is after {latest}, the end of the "
            f"maximum publicity period of {entry.list_kind.value} "
            f"({policy.max_publicity_days} days from listed_on)"
        )


# --- removals and objections -----------------------------------------------------------------


class RemovalReason(enum.StrEnum):
    """Why an entry is removed (移出)."""

    REPAIR = "repair"  # 信用修复: early end, only after the minimum publicity period
    EXPIRY = "expiry"  # the publicity period ended
    OBJECTION_UPHELD = "objection-upheld"  # 异议 found to be right
    DECISION_REVOKED = "decision-revoked"  # the decision was withdrawn


@dataclass(frozen=True)
class Removal:
    """A removal record: kept with the entry as history; the entry stops being served."""

    removed_on: dt.date
    reason: RemovalReason
    authority: str
    note: str = ""

    def __post_init__(self) -> None:
        _check_date(self.removed_on, "removed_on")
        if not isinstance(self.reason, RemovalReason):
            raise ListEntryError("reason: must be a RemovalReason")
        _check_text(self.authority, "authority", limit=_SHORT_TEXT["authority"])
        _check_text(self.note, "note", limit=_LONG_TEXT, optional=True)

    def to_json(self) -> dict[str, str]:
        return {
            "removed_on": self.removed_on.isoformat(),
            "reason": self.reason.value,
            "authority": self.authority,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, value: object) -> Removal:
        document = _fields(value, ("removed_on", "reason", "authority", "note"), "removal")
        return cls(
            removed_on=_parse_date(document["removed_on"], "removed_on"),
            reason=_enum(RemovalReason, document["reason"], "reason"),
            authority=document["authority"],
            note=document["note"],
        )


@dataclass(frozen=True)
class Objection:
    """An objection (异议) opened (``open=True``) or closed on a day; while open, the entry
    is still served, flagged "objection pending (异议处理中)"."""

    open: bool
    on: dt.date
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.open, bool):
            raise ListEntryError("open: must be true or false")
        _check_date(self.on, "on")
        _check_text(self.note, "note", limit=_LONG_TEXT, optional=True)

    def to_json(self) -> dict[str, Any]:
        return {"open": self.open, "on": self.on.isoformat(), "note": self.note}

    @classmethod
    def from_json(cls, value: object) -> Objection:
        document = _fields(value, ("open", "on", "note"), "objection")
        return cls(
            open=document["open"],
            on=_parse_date(document["on"], "on"),
            note=document["note"],
        )


# --- log events ------------------------------------------------------------------------------


class EventType(enum.StrEnum):
    """What a log event does to an entry."""

    ADD = "add"
    AMEND = "amend"
    REMOVE = "remove"
    OBJECTION = "objection"


# Which body field carries each event's payload.
_PAYLOAD = MappingProxyType(
    {
        EventType.ADD: "entry",
        EventType.AMEND: "entry",
        EventType.REMOVE: "removal",
        EventType.OBJECTION: "objection",
    }
)

_ENVELOPE_FIELDS = (
    "type",
    "origin",
    "index",
    "at",
    "event",
    "list_kind",
    "entry_id",
    "body_sha256",
)


def _parse_bounded(data: object, limit: int, what: str) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError(f"{what} must be bytes")
    if len(data) > limit:
        raise InvalidInputError(f"{what} is {len(data)} bytes, more than {limit}")
    try:
        return parse_document(bytes(data), what=what)
    except RecursionError:
        raise InvalidInputError(f"{what} is nested too deeply") from None


def _require_canonical(parsed: bytes, data: bytes, what: str) -> None:
    # A leaf is hashed as bytes: one event must have exactly one byte form.
    if parsed != bytes(data):
        raise InvalidInputError(f"{what} is not in canonical JSON form")


@dataclass(frozen=True)
class Envelope:
    """A log leaf: what every member of the federation sees of an event.

    ``at`` is kept in UTC to the second (the precision of its JSON form), so that an
    envelope equals itself after a round trip through :meth:`to_bytes`.
    """

    origin: str
    index: int
    at: dt.datetime
    event: EventType
    list_kind: ListKind
    entry_id: str
    body_sha256: str

    def __post_init__(self) -> None:
        where = "list event envelope"
        if not isinstance(self.origin, str) or not CITY_CODE.fullmatch(self.origin):
            raise InvalidInputError(f"{where}: origin is not a six-digit division code")
        if not _is_int(self.index) or not 0 <= self.index <= MAX_INDEX:
            raise InvalidInputError(f"{where}: index must be a whole number 0-{MAX_INDEX}")
        if not isinstance(self.at, dt.datetime) or self.at.tzinfo is None:
            raise InvalidInputError(f"{where}: at must be a timezone-aware time")
        object.__setattr__(self, "at", self.at.astimezone(dt.UTC).replace(microsecond=0))
        if not isinstance(self.event, EventType):
            raise InvalidInputError(f"{where}: event must be an EventType")
        if not isinstance(self.list_kind, ListKind):
            raise InvalidInputError(f"{where}: list_kind must be a ListKind")
        check_entry_id(self.entry_id, f"{where}: entry_id")
        if not isinstance(self.body_sha256, str) or not _HEX64.fullmatch(self.body_sha256):
            raise InvalidInputError(f"{where}: body_sha256 must be 64 lower-case hex digits")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": EVENT_TYPE,
            "origin": self.origin,
            "index": self.index,
            "at": format_utc(self.at),
            "event": self.event.value,
            "list_kind": self.list_kind.value,
            "entry_id": self.entry_id,
            "body_sha256": self.body_sha256,
        }

    def to_bytes(self) -> bytes:
        """The leaf bytes: canonical JSON."""
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Parse leaf bytes strictly; anything but the canonical form of a valid envelope
        is an :class:`InvalidInputError`."""
        return _read_canonical_envelope(data) or cls._read_strict(data)

    @classmethod
    def _read_strict(cls, data: bytes) -> Envelope:
        """The general reader: every rule checked on its own, each failure explained."""
        where = "list event envelope"
        document = _parse_bounded(data, MAX_ENVELOPE_BYTES, where)
        if set(document) != set(_ENVELOPE_FIELDS):
            missing = sorted(set(_ENVELOPE_FIELDS) - set(document))
            unknown = sorted(shown(key) for key in set(document) - set(_ENVELOPE_FIELDS))
            raise InvalidInputError(
                f"{where}: fields do not match (missing {missing}, unknown {unknown})"
            )
        if document["type"] != EVENT_TYPE:
            raise InvalidInputError(f"{where}: type must be {EVENT_TYPE!r}")
        at = document["at"]
        try:
            if not isinstance(at, str):
                raise ValueError(at)
            parsed_at = parse_utc(at)
            if format_utc(parsed_at) != at:
                raise ValueError(at)
        except ValueError:
            raise InvalidInputError(
                f"{where}: at must be a UTC time YYYY-MM-DDTHH:MM:SSZ"
            ) from None
        try:
            event = EventType(document["event"])
        except ValueError:
            known = ", ".join(e.value for e in EventType)
            raise InvalidInputError(f"{where}: event must be one of {known}") from None
        list_kind = document["list_kind"]
        if not isinstance(list_kind, str) or list_kind not in {k.value for k in ListKind}:
            known = ", ".join(kind.value for kind in ListKind)
            raise InvalidInputError(f"{where}: list_kind must be one of {known}")
        envelope = cls(
            origin=document["origin"],
            index=document["index"],
            at=parsed_at,
            event=event,
            list_kind=ListKind(list_kind),
            entry_id=document["entry_id"],
            body_sha256=document["body_sha256"],
        )
        _require_canonical(envelope.to_bytes(), data, where)
        return envelope


@dataclass(frozen=True)
class EventBody:
    """The salted payload of an event: exactly one of ``entry`` (add, amend), ``removal``
    (remove) or ``objection``. The random salt keeps a hidden body (with a resident ID in
    it) from being guessed from its hash in the envelope."""

    salt: bytes = field(repr=False)
    entry: SanctionEntry | None = None
    removal: Removal | None = None
    objection: Objection | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_BYTES:
            raise InvalidInputError(f"list event body: salt must be {SALT_BYTES} bytes")
        present = [
            name for name in ("entry", "removal", "objection") if getattr(self, name) is not None
        ]
        if len(present) != 1:
            raise InvalidInputError(
                "list event body: needs exactly one of entry, removal or objection "
                f"(has {', '.join(present) or 'none'})"
            )
        for name, cls in (("entry", SanctionEntry), ("removal", Removal), ("objection", Objection)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise InvalidInputError(f"list event body: {name} must be a {cls.__name__}")

    @property
    def payload_field(self) -> str:
        """The name of the field that is set: ``entry``, ``removal`` or ``objection``."""
        if self.entry is not None:
            return "entry"
        return "removal" if self.removal is not None else "objection"

    def fits(self, event: EventType) -> bool:
        """Whether this body carries what ``event`` needs."""
        return _PAYLOAD[event] == self.payload_field

    def to_json(self) -> dict[str, Any]:
        payload = self.entry or self.removal or self.objection
        assert payload is not None  # __post_init__ ensures exactly one
        return {"salt": b64encode(self.salt), self.payload_field: payload.to_json()}

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes, event: EventType) -> EventBody:
        """Parse body bytes strictly, for an envelope whose event is ``event``."""
        if event in (EventType.ADD, EventType.AMEND):
            body = _read_canonical_entry_body(data)
            if body is not None:
                return body
        return cls._read_strict(data, event)

    @classmethod
    def _read_strict(cls, data: bytes, event: EventType) -> EventBody:
        """The general reader: every rule checked on its own, each failure explained."""
        where = "list event body"
        document = _parse_bounded(data, MAX_BODY_BYTES, where)
        payload = _PAYLOAD[EventType(event)]
        if set(document) != {"salt", payload}:
            missing = sorted({"salt", payload} - set(document))
            unknown = sorted(shown(key) for key in set(document) - {"salt", payload})
            raise InvalidInputError(
                f"{where} of a {event} event: fields do not match "
                f"(missing {missing}, unknown {unknown})"
            )
        salt_text = document["salt"]
        if not isinstance(salt_text, str):
            raise InvalidInputError(f"{where}: salt must be a base64 string")
        salt = b64decode(salt_text, what=f"{where} salt")
        if len(salt) != SALT_BYTES or b64encode(salt) != salt_text:
            raise InvalidInputError(f"{where}: salt must be {SALT_BYTES} bytes in base64")
        if payload == "entry":
            body = cls(salt=salt, entry=SanctionEntry.from_json(document["entry"]))
        elif payload == "removal":
            body = cls(salt=salt, removal=Removal.from_json(document["removal"]))
        else:
            body = cls(salt=salt, objection=Objection.from_json(document["objection"]))
        _require_canonical(body.to_bytes(), data, where)
        return body


def new_salt() -> bytes:
    """Fresh random salt for an event body."""
    return secrets.token_bytes(SALT_BYTES)


def _body_sha256(body_bytes: bytes) -> str:
    return hashlib.sha256(body_bytes).hexdigest()


def _check_consistent(envelope: Envelope, body: EventBody) -> None:
    """The body belongs to the envelope: the right payload, list kind and entry id."""
    if not body.fits(envelope.event):
        raise InvalidInputError(
            f"a {envelope.event} event needs a body with {_PAYLOAD[envelope.event]}, "
            f"this one has {body.payload_field}"
        )
    if body.entry is None:
        return
    if body.entry.list_kind is not envelope.list_kind:
        raise ListEntryError(
            f"list_kind: the entry is on {body.entry.list_kind.value} "
            f"but its envelope says {envelope.list_kind.value}"
        )
    expected = body.entry.entry_id(envelope.origin)
    if not hmac.compare_digest(expected, envelope.entry_id):
        raise InvalidInputError(
            f"entry_id: the envelope says {envelope.entry_id} but the entry's authority and "
            f"decision_no in {envelope.origin} give {expected}"
        )


def seal(
    *,
    origin: str,
    index: int,
    at: dt.datetime,
    event: EventType,
    list_kind: ListKind,
    entry_id: str,
    body: EventBody,
) -> tuple[Envelope, bytes]:
    """The envelope for ``body`` at position ``index`` of ``origin``'s log, and the body bytes."""
    body_bytes = body.to_bytes()
    envelope = Envelope(
        origin=origin,
        index=index,
        at=at,
        event=event,
        list_kind=list_kind,
        entry_id=entry_id,
        body_sha256=_body_sha256(body_bytes),
    )
    _check_consistent(envelope, body)
    return envelope, body_bytes


def open_body(envelope: Envelope, body_bytes: bytes) -> EventBody:
    """The body of ``envelope``, checked: its hash, its form, and that it fits the envelope."""
    if not isinstance(body_bytes, bytes):
        raise InvalidInputError("list event body must be bytes")
    if not hmac.compare_digest(_body_sha256(body_bytes), envelope.body_sha256):
        raise InvalidInputError(
            f"list event body for {envelope.origin} index {envelope.index} does not match "
            "the body_sha256 in its envelope"
        )
    body = EventBody.from_bytes(body_bytes, envelope.event)
    _check_consistent(envelope, body)
    return body


# --- reading canonical envelopes and bodies in one pass -------------------------------------
#
# A replica checks every event it receives, a million for a large list: strict parsing, every
# field, the canonical form. Nearly every envelope and body is in canonical form (seal()
# writes them so), and for such bytes the general readers' work has cheaper equivalents:
# one regular expression gives both the structure and the canonical form, and the field
# checks run once on the values, not again in ``__post_init__``. Whatever the one-pass
# readers are not sure of (``None``) goes to the general readers, which decide and explain:
# both accept the same bytes and give equal objects
# (tests/federation/test_sanctions_canonical_reader.py).

# A JSON string that canonical JSON writes as is, holding no control character: JSON escapes
# quotes, backslashes and U+0000-U+001F; U+007F-U+009F (category Cc as well) are left out so
# that no text needs a look for control characters afterwards.
_CHARS = r'[^"\\\x00-\x1f\x7f-\x9f]*'
_STRING = f'"({_CHARS})"'
_DAY = r'"([0-9]{4}-[0-9]{2}-[0-9]{2})"'


def _one_of(values: Iterable[str]) -> str:
    """A JSON string that is one of ``values`` (as a group)."""
    return '"(' + "|".join(re.escape(value) for value in values) + ')"'


# The canonical JSON of an envelope: keys sorted, no space, each value as to_json writes it.
_CANONICAL_ENVELOPE = re.compile(
    r'\{"at":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})Z",'
    r'"body_sha256":"([0-9a-f]{64})","entry_id":"([0-9a-f]{32})",'
    rf'"event":{_one_of(e.value for e in EventType)},'
    r'"index":(0|[1-9][0-9]{0,18}),'
    rf'"list_kind":{_one_of(k.value for k in ListKind)},'
    r'"origin":"([0-9]{6})",'
    rf'"type":"{re.escape(EVENT_TYPE)}"\}}'
)
# The canonical JSON of an add or amend body; ``measures`` is a list of strings.
_CANONICAL_ENTRY_BODY = re.compile(
    rf'\{{"entry":\{{"appeal":{_STRING},"authority":{_STRING},"decision_no":{_STRING},'
    rf'"legal_basis":{_STRING},"list_kind":{_one_of(k.value for k in ListKind)},'
    rf'"listed_on":{_DAY},"measures":\[((?:"{_CHARS}"(?:,"{_CHARS}")*)?)\],'
    rf'"publicity_end":{_DAY},"reason":{_STRING},'
    rf'"subject":\{{"id":{_STRING},"kind":{_one_of(k.value for k in SubjectKind)},'
    rf'"name":{_STRING}\}}\}},"salt":"([A-Za-z0-9+/]{{22}}==)"\}}'
)
# Where the entry object lies in the text of a canonical entry body.
_ENTRY_START, _ENTRY_END = len('{"entry":'), -len(',"salt":"' + "A" * 24 + '"}')
# What parse_subject would check as a resident ID first (digits, the last one maybe X).
_RESIDENT_SHAPE = re.compile("[0-9]{17}[0-9X]")
_LIST_KINDS: Mapping[str, ListKind] = MappingProxyType({k.value: k for k in ListKind})
_EVENT_TYPES: Mapping[str, EventType] = MappingProxyType({e.value: e for e in EventType})
_SUBJECT_KINDS: Mapping[str, SubjectKind] = MappingProxyType({k.value: k for k in SubjectKind})
_strip = str.strip

_T = TypeVar("_T")


def _checked(cls: type[_T], values: dict[str, Any]) -> _T:
    """An instance of the frozen dataclass ``cls`` holding ``values`` (all its fields),
    without ``__post_init__``: for values that passed the same checks already."""
    instance = object.__new__(cls)
    object.__setattr__(instance, "__dict__", values)
    return instance


def _read_canonical_envelope(data: object) -> Envelope | None:
    """:meth:`Envelope.from_bytes` for an envelope in canonical form; ``None`` otherwise.

    The expression admits only the canonical JSON of an object with exactly the envelope's
    fields, each of the right type and form (hex digests, a non-negative integer written
    without leading zeros, known event and list kind, the type). Left to check: the origin,
    the index bound, and that the time is a real one that ``format_utc`` writes as given
    (years before 1000 it writes with fewer digits: the general reader decides those).
    """
    if type(data) is not bytes or len(data) > MAX_ENVELOPE_BYTES or not data.isascii():
        return None
    match = _CANONICAL_ENVELOPE.fullmatch(data.decode("ascii"))
    if match is None:
        return None
    at_text, body_sha256, key, event, index_text, list_kind, origin = match.groups()
    index = int(index_text)
    if index > MAX_INDEX or not CITY_CODE.fullmatch(origin):
        return None
    try:
        at = parse_utc(at_text + "Z")
    except ValueError:
        return None
    if at.year < 1000:
        return None
    return _checked(
        Envelope,
        {
            "origin": origin,
            "index": index,
            "at": at,
            "event": _EVENT_TYPES[event],
            "list_kind": _LIST_KINDS[list_kind],
            "entry_id": key,
            "body_sha256": body_sha256,
        },
    )


def _read_canonical_entry_body(data: object) -> EventBody | None:
    """:meth:`EventBody.from_bytes` for an add or amend body in canonical form; ``None``
    otherwise.

    The expression admits only the canonical JSON of a body with exactly the fields of an
    entry body, every string free of control characters and of what JSON escapes, the
    dates and the salt in the form ``to_json`` writes. Valid UTF-8 holds no lone surrogate.
    What is left of ``_check_text`` (not empty, trimmed, within the limit), the dates, the
    measures, the identifier and the salt is checked here, as :class:`SanctionEntry` and
    :class:`Subject` check it.
    """
    if type(data) is not bytes or len(data) > MAX_BODY_BYTES:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    match = _CANONICAL_ENTRY_BODY.fullmatch(text)
    if match is None:
        return None
    (
        appeal,
        authority,
        decision_no,
        legal_basis,
        list_kind,
        listed_text,
        measures_text,
        end_text,
        reason,
        subject_id,
        subject_kind,
        name,
        salt_text,
    ) = match.groups()
    measures = tuple(measures_text[1:-1].split('","')) if measures_text else ()
    texts = [name, reason, legal_basis, authority, decision_no, *measures]
    if (
        not all(texts)
        or list(map(_strip, texts)) != texts
        or (appeal and _strip(appeal) != appeal)
        or len(name) > _SHORT_TEXT["subject.name"]
        or len(authority) > _SHORT_TEXT["authority"]
        or len(decision_no) > _SHORT_TEXT["decision_no"]
        or max(len(reason), len(legal_basis), len(appeal)) > _LONG_TEXT
        or len(measures) > MAX_MEASURES
        or (measures and max(map(len, measures)) > _MEASURE_TEXT)
        or len(set(measures)) != len(measures)
    ):
        return None
    try:
        listed_on = dt.date.fromisoformat(listed_text)
        publicity_end = dt.date.fromisoformat(end_text)
    except ValueError:
        return None
    salt = binascii.a2b_base64(salt_text)
    kind = _SUBJECT_KINDS[subject_kind]
    if (
        publicity_end <= listed_on
        or len(salt) != SALT_BYTES
        or b64encode(salt) != salt_text
        or not _identifier_fits(kind, subject_id, listed_on)
    ):
        return None
    subject = _checked(Subject, {"kind": kind, "id": subject_id, "name": name})
    entry = _checked(
        SanctionEntry,
        {
            "list_kind": _LIST_KINDS[list_kind],
            "subject": subject,
            "reason": reason,
            "legal_basis": legal_basis,
            "authority": authority,
            "decision_no": decision_no,
            "listed_on": listed_on,
            "publicity_end": publicity_end,
            "measures": measures,
            "appeal": appeal,
            # The body is canonical, so its "entry" value is the entry's canonical JSON:
            # between '{"entry":' and ',"salt":"<24 characters>"}'.
            "canonical_json": text[_ENTRY_START:_ENTRY_END],
        },
    )
    return _checked(EventBody, {"salt": salt, "entry": entry, "removal": None, "objection": None})


def _identifier_fits(kind: SubjectKind, value: str, listed_on: dt.date) -> bool:
    """The identifier checks of :class:`Subject` and :class:`SanctionEntry`.

    A valid USCC that is not shaped like a resident ID is what ``parse_subject`` detects
    it to be: the detection needs no second validation then.
    """
    if len(value) > 64 or normalize_identifier(value) != value:
        return False
    try:
        SubjectId(kind, value)
        if kind is SubjectKind.USCC and not _RESIDENT_SHAPE.fullmatch(value):
            return True
        return parse_subject(value, today=listed_on).kind is kind
    except InvalidIdentifierError:
        return False


# --- entry state: the one state machine ----------------------------------------------------


@dataclass(frozen=True)
class EffectiveStatus:
    """What is served for an entry at a given time, and why."""

    active: bool
    why: str
    objection_pending: bool


OBJECTION_PENDING = "objection pending (异议处理中)"


@dataclass(frozen=True)
class EntryState:
    """An entry as the events of its origin's log have left it (owner and replicas alike)."""

    origin: str
    entry_id: str
    entry: SanctionEntry
    removal: Removal | None
    objection: Objection | None
    last_index: int
    updated_at: dt.datetime

    @property
    def removed(self) -> bool:
        return self.removal is not None

    @property
    def objection_open(self) -> bool:
        return self.objection is not None and self.objection.open

    def effective(self, now: dt.datetime) -> EffectiveStatus:
        """Whether the entry is served at ``now``.

        Publicity ends after ``publicity_end`` (that day itself is still served) even if
        the owner never logged the removal. An open objection leaves the entry served,
        flagged; ``objection_pending`` is only ever set on an active entry.
        """
        today = china_date(now)
        entry = self.entry
        if self.removal is not None:
            return EffectiveStatus(
                False, f"removed on {self.removal.removed_on}: {self.removal.reason}", False
            )
        if today > entry.publicity_end:
            return EffectiveStatus(False, f"publicity ended on {entry.publicity_end}", False)
        if entry.listed_on > today:
            return EffectiveStatus(False, f"listed from {entry.listed_on}", False)
        why = f"listed on {entry.listed_on}, public until {entry.publicity_end}"
        if self.objection_open:
            return EffectiveStatus(True, f"{why}; {OBJECTION_PENDING}", True)
        return EffectiveStatus(True, why, False)


def apply_event(state: EntryState | None, envelope: Envelope, body: EventBody) -> EntryState:
    """The state after ``envelope`` (with its opened ``body``) is applied to ``state``.

    The one state machine, run by the owner after sealing and by every replica: add
    creates; amend replaces the entry (same identifier, authority, decision and list
    kind; not removed); remove sets the removal (once); objection opens or closes an
    objection. Events of one entry apply in log order. A violation is a
    :class:`FailedPreconditionError` saying what is wrong.
    """
    _check_consistent(envelope, body)
    if envelope.event is EventType.ADD:
        if state is not None:
            raise FailedPreconditionError(
                f"{_where(envelope)}: the entry already exists (added at index "
                f"{state.last_index} or before); an add cannot replace it"
            )
        assert body.entry is not None  # _check_consistent: an add carries an entry
        return EntryState(
            origin=envelope.origin,
            entry_id=envelope.entry_id,
            entry=body.entry,
            removal=None,
            objection=None,
            last_index=envelope.index,
            updated_at=envelope.at,
        )
    if state is None:
        raise FailedPreconditionError(f"{_where(envelope)}: no such entry (it was never added)")
    if (state.origin, state.entry_id) != (envelope.origin, envelope.entry_id):
        raise FailedPreconditionError(
            f"{_where(envelope)}: the state given is of entry {state.entry_id} of {state.origin}"
        )
    if envelope.index <= state.last_index:
        raise FailedPreconditionError(
            f"{_where(envelope)}: the entry is already at index {state.last_index}; "
            "events apply in order"
        )
    if envelope.list_kind is not state.entry.list_kind:
        raise FailedPreconditionError(
            f"{_where(envelope)}: the entry is on {state.entry.list_kind.value}, "
            f"the event says {envelope.list_kind.value}"
        )
    moved = {"last_index": envelope.index, "updated_at": envelope.at}
    if envelope.event is EventType.AMEND:
        assert body.entry is not None
        problem = _amend_problem(state, body.entry)
        if problem:
            raise FailedPreconditionError(f"{_where(envelope)}: {problem}")
        return _replace(state, entry=body.entry, **moved)
    if envelope.event is EventType.REMOVE:
        if state.removal is not None:
            raise FailedPreconditionError(
                f"{_where(envelope)}: the entry was already removed on {state.removal.removed_on}"
            )
        return _replace(state, removal=body.removal, **moved)
    return _replace(state, objection=body.objection, **moved)


def _where(envelope: Envelope) -> str:
    """An event, for a message (only built when there is something to say)."""
    return f"event {envelope.index} of {envelope.origin} ({envelope.event}, {envelope.entry_id})"


def _replace(state: EntryState, **changes: Any) -> EntryState:
    values = {name: getattr(state, name) for name in state.__dataclass_fields__}
    values.update(changes)
    return EntryState(**values)


def _amend_problem(state: EntryState, entry: SanctionEntry) -> str | None:
    """Why ``entry`` cannot replace the entry of ``state`` (None if it can)."""
    old = state.entry
    if state.removal is not None:
        return f"the entry was removed on {state.removal.removed_on}; it cannot be amended"
    if (entry.subject.kind, entry.subject.id) != (old.subject.kind, old.subject.id):
        return "subject: the subject of an entry cannot change (list the other subject anew)"
    if (entry.authority, entry.decision_no) != (old.authority, old.decision_no):
        return "authority/decision_no: an amendment must name the same decision"
    if entry.list_kind is not old.list_kind:
        return f"list_kind: the entry is on {old.list_kind.value}; that cannot change"
    return None


# --- planning: the owner's rules ----------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """An event to log, ready for :func:`seal`."""

    event: EventType
    entry_id: str
    list_kind: ListKind
    body: EventBody


@dataclass(frozen=True)
class Duplicate:
    """The request repeats what is already logged: nothing to do (idempotency)."""

    entry_id: str


def _check_today(today: dt.date) -> dt.date:
    if not isinstance(today, dt.date) or isinstance(today, dt.datetime):
        raise ValueError("today must be a date (the date in China)")
    return today


def _check_existing(origin: str, existing: EntryState | None, wanted: str | None) -> None:
    # Programming errors of the caller (wrong row loaded), not of the request.
    if existing is None:
        return
    if existing.origin != origin:
        raise InvalidInputError(f"entry {existing.entry_id} belongs to {existing.origin}")
    if wanted is not None and existing.entry_id != wanted:
        raise InvalidInputError(f"the state given is of entry {existing.entry_id}, not {wanted}")


def _check_policy(policy: ListPolicy, kind: ListKind) -> None:
    if policy.kind is not kind:
        raise InvalidInputError(
            f"the policy given is for {policy.kind.value}, the entry is on {kind.value}"
        )


def _validate_entry(entry: SanctionEntry, policy: ListPolicy, today: dt.date) -> None:
    _check_policy(policy, entry.list_kind)
    if entry.listed_on > today:
        raise ListEntryError(f"listed_on: {entry.listed_on} is in the future (today is {today})")
    _check_publicity(entry, policy)


def _salted(salt: bytes | None) -> bytes:
    return new_salt() if salt is None else salt


def _decision(entry: SanctionEntry) -> str:
    return f"decision {shown(entry.decision_no)} of {shown(entry.authority)}"


def plan_add(
    origin: str,
    existing: EntryState | None,
    entry: SanctionEntry,
    policy: ListPolicy,
    today: dt.date,
    *,
    salt: bytes | None = None,
) -> Planned | Duplicate:
    """List ``entry`` (列入). ``existing`` is the state of the same decision, if any.

    The same decision with the same content is a :class:`Duplicate` (a retry); with other
    content it is a :class:`ConflictError`: changing a listing is an amendment.
    """
    _check_today(today)
    key = entry.entry_id(origin)
    _check_existing(origin, existing, key)
    if existing is not None:
        if existing.entry == entry:
            return Duplicate(key)
        state = (
            f"removed on {existing.removal.removed_on}"
            if existing.removal is not None
            else "listed"
        )
        raise ConflictError(
            f"{_decision(entry)} is already {state} with other content; "
            "use amend to change a listing",
            hint="an amendment names the same authority and decision_no",
        )
    _validate_entry(entry, policy, today)
    return Planned(EventType.ADD, key, entry.list_kind, EventBody(_salted(salt), entry=entry))


def plan_amend(
    origin: str,
    existing: EntryState | None,
    entry: SanctionEntry,
    policy: ListPolicy,
    today: dt.date,
    *,
    salt: bytes | None = None,
) -> Planned | Duplicate:
    """Replace a listing with ``entry`` (the full new entry, same decision and subject)."""
    _check_today(today)
    key = entry.entry_id(origin)
    _check_existing(origin, existing, key)
    if existing is None:
        raise NotFoundError(f"{_decision(entry)} is not listed; add it first")
    if existing.entry == entry:
        return Duplicate(key)
    problem = _amend_problem(existing, entry)
    if problem is not None:
        error = FailedPreconditionError if existing.removal is not None else ListEntryError
        raise error(problem)
    _validate_entry(entry, policy, today)
    return Planned(EventType.AMEND, key, entry.list_kind, EventBody(_salted(salt), entry=entry))


def plan_remove(
    origin: str,
    existing: EntryState | None,
    removal: Removal,
    policy: ListPolicy,
    today: dt.date,
    *,
    salt: bytes | None = None,
) -> Planned | Duplicate:
    """Remove a listing (移出).

    ``removed_on`` lies between ``listed_on`` and today. Credit repair (信用修复) is an
    early end, possible only once the minimum publicity period has passed; an expiry only
    after ``publicity_end``; an upheld objection or a revoked decision at any time.
    """
    _check_today(today)
    _check_existing(origin, existing, None)
    if existing is None:
        raise NotFoundError("no such entry to remove")
    key = existing.entry_id
    if existing.removal == removal:
        return Duplicate(key)
    if existing.removal is not None:
        raise FailedPreconditionError(
            f"entry {key} was already removed on {existing.removal.removed_on} "
            f"({existing.removal.reason})"
        )
    entry = existing.entry
    _check_policy(policy, entry.list_kind)
    if removal.removed_on < entry.listed_on:
        raise ListEntryError(
            f"removed_on: {removal.removed_on} is before listed_on {entry.listed_on}"
        )
    if removal.removed_on > today:
        raise ListEntryError(
            f"removed_on: {removal.removed_on} is in the future (today is {today})"
        )
    if removal.reason is RemovalReason.REPAIR:
        earliest = entry.listed_on + dt.timedelta(days=policy.min_publicity_days)
        if removal.removed_on < earliest:
            raise ListEntryError(
                f"removed_on: credit repair ends publicity early only after the minimum "
                f"publicity period of {policy.min_publicity_days} days; the earliest "
                f"allowed date is {earliest}"
            )
    if removal.reason is RemovalReason.EXPIRY and removal.removed_on <= entry.publicity_end:
        raise ListEntryError(
            f"reason: expiry is only possible after publicity_end {entry.publicity_end}; "
            "an earlier end is a repair or a revoked decision"
        )
    return Planned(
        EventType.REMOVE, key, entry.list_kind, EventBody(_salted(salt), removal=removal)
    )


def plan_objection(
    origin: str,
    existing: EntryState | None,
    objection: Objection,
    today: dt.date,
    *,
    salt: bytes | None = None,
) -> Planned | Duplicate:
    """Open (``open=True``) or close an objection (异议) against a listing.

    An objection is opened on a listed, not removed entry, and only one at a time; closing
    needs an open objection. Dates lie between ``listed_on`` (or the opening) and today.
    """
    _check_today(today)
    _check_existing(origin, existing, None)
    if existing is None:
        raise NotFoundError("no such entry to object to")
    key = existing.entry_id
    if existing.objection == objection:
        return Duplicate(key)
    if objection.on > today:
        raise ListEntryError(f"on: {objection.on} is in the future (today is {today})")
    if objection.on < existing.entry.listed_on:
        raise ListEntryError(f"on: {objection.on} is before listed_on {existing.entry.listed_on}")
    current = existing.objection if existing.objection_open else None
    if objection.open:
        if existing.removal is not None:
            raise FailedPreconditionError(
                f"entry {key} was removed on {existing.removal.removed_on}; "
                "there is nothing to object to"
            )
        if current is not None:
            raise FailedPreconditionError(
                f"an objection to entry {key} is already open since {current.on}; close it first"
            )
    else:
        if current is None:
            raise FailedPreconditionError(f"no objection to entry {key} is open")
        if objection.on < current.on:
            raise ListEntryError(
                f"on: {objection.on} is before the objection was opened on {current.on}"
            )
    return Planned(
        EventType.OBJECTION,
        key,
        existing.entry.list_kind,
        EventBody(_salted(salt), objection=objection),
    )


EXPIRY_AUTHORITY = "publicity period ended (automatic)"


def due_expiries(states: Iterable[EntryState], now: dt.datetime) -> list[tuple[str, Removal]]:
    """The removals the owner must log now: entries whose publicity has ended and that
    are not removed. Pass the node's own entries only (a replica never removes)."""
    today = china_date(now)
    due = []
    for state in states:
        if state.removal is None and today > state.entry.publicity_end:
            removal = Removal(
                removed_on=state.entry.publicity_end + dt.timedelta(days=1),
                reason=RemovalReason.EXPIRY,
                authority=EXPIRY_AUTHORITY,
            )
            due.append((state.entry_id, removal))
    return due


__all__ = [
    "DEFAULT_POLICIES",
    "EVENT_TYPE",
    "Duplicate",
    "EffectiveStatus",
    "EntryState",
    "Envelope",
    "EventBody",
    "EventType",
    "ListKind",
    "ListPolicy",
    "Objection",
    "Planned",
    "Removal",
    "RemovalReason",
    "SanctionEntry",
    "Subject",
    "apply_event",
    "check_entry_id",
    "china_date",
    "due_expiries",
    "entry_id",
    "new_salt",
    "open_body",
    "plan_add",
    "plan_amend",
    "plan_objection",
    "plan_remove",
    "policies_from_config",
    "seal",
]
