"""Mutually recognised ratings (信用评价结果异地互认): scales, signed statements, mappings, policy.

No public table maps one city's rating scale onto another's, so recognition across a
federation rests on three things, each owned by somebody else:

* a :class:`RatingStatement` (信用评价结果), signed by the issuing city: "subject S has grade
  G (and P points) on our scale X, issued on D, valid until V, see evaluation document E";
* a :class:`ScaleMapping`, signed by the same city: the full definition of its scale and how
  each local grade maps onto the federation's common scale (the manifest's
  ``common_scale``); a mapping covers every local grade and is monotone;
* the receiving city's own :class:`RecognitionPolicy`: which issuers and scales it trusts
  and how fresh a rating must be. Recognition is about trust, not about the grade: whether
  a common grade B is good enough for a licence or a subsidy is the clerk's rule, not this one.

:func:`recognise` puts the three together and says why, in sentences a clerk can read.

Scales in use (see ``PRESET_SCALES``): 纳税信用等级 A/B/M/C/D; 公共信用综合评价 A/B/C/D
(GB/T 45255-2025); 海关企业信用等级; Weihai's personal 海贝分 (points, base 1000). A city
defines others in node.toml (:func:`scales_from_config`). Signed documents are canonical JSON
(:mod:`federation.canonical`) with a ``type``, signed like checkpoints
(:mod:`federation.checkpoint`), with whatever suite the issuer's key in the manifest has.
Dates are calendar dates in China (UTC+8); ``valid_until`` is the last valid day.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from federation.canonical import MAX_STORED_INTEGER, canonical_bytes, parse_document
from federation.clock import china_date
from federation.errors import (
    CommonScaleMismatchError,
    InvalidInputError,
    RatingError,
    RatingVerificationError,
    ScaleMappingConflictError,
    SignatureError,
)
from federation.manifest import Manifest
from federation.member import CITY_CODE
from federation.presets import PRESETS
from federation.sanctions import Subject
from federation.signing import SigningKey, b64decode, b64encode
from federation.subjects import shown

RATING_STATEMENT_TYPE = "creditnet.rating-statement/v1"
SCALE_MAPPING_TYPE = "creditnet.scale-mapping/v1"
#: "any issuer" or "any scale" in a recognition policy.
ANY = "*"
SCALE_ID = re.compile(r"[a-z][a-z0-9-]{0,62}")
KEYID = re.compile(r"[0-9a-f]{64}")
MAX_SIGNATURE_BYTES = 1024
#: A signed statement or mapping is a few kilobytes; a bound keeps hostile input cheap.
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_GRADES = 50
MAX_GRADE_CHARS = 16
MAX_NAME_CHARS = 100
MAX_EVIDENCE_CHARS = 200
#: Points stay well inside the integers every JSON reader handles exactly.
MAX_POINTS = 10**9
MAX_AGE_DAYS = 100 * 365
DEFAULT_MAX_AGE_DAYS = 365
MAX_VERSION = MAX_STORED_INTEGER

ScaleKind = Literal["grades", "points"]
SCALE_KINDS: tuple[ScaleKind, ...] = ("grades", "points")

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# --- small checks -----------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    # bool is an int subclass, but `true` is not a number of points.
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object, name: str, *, limit: int) -> str:
    """A single-line text field: a non-empty string, trimmed, within ``limit`` characters."""
    if not isinstance(value, str):
        raise RatingError(f"{name} must be a string")
    if not value.strip():
        raise RatingError(f"{name} must not be empty")
    if value != value.strip():
        raise RatingError(f"{name} must not start or end with whitespace")
    if len(value) > limit:
        raise RatingError(f"{name} is {len(value)} characters long, at most {limit} allowed")
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cs":
            raise RatingError(f"{name} contains a lone surrogate (not valid Unicode text)")
        if category in ("Cc", "Zl", "Zp"):
            raise RatingError(f"{name} contains the control character U+{ord(ch):04X}")
    return value


def _grade(value: object, name: str) -> str:
    return _text(value, name, limit=MAX_GRADE_CHARS)


def _scale_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not SCALE_ID.fullmatch(value):
        raise RatingError(
            f"{name} {shown(value)} is not a scale id (1 to 63 lower-case letters, digits "
            "or '-', starting with a letter)"
        )
    return value


def _city_code(value: object, name: str) -> str:
    if not isinstance(value, str) or not CITY_CODE.fullmatch(value):
        raise RatingError(f"{name} {shown(value)} is not a six-digit division code")
    return value


def _date(value: object, name: str) -> dt.date:
    # datetime is a date subclass; a timestamp where a calendar day is meant is a bug.
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise RatingError(f"{name} must be a date")
    return value


def _parse_date(value: object, name: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise RatingError(f"{name} must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise RatingError(f"{name}: {value} is not a calendar date") from None


def _fields(value: object, expected: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RatingError(f"{where} must be a JSON object")
    keys, wanted = set(value), set(expected)
    if keys != wanted:
        missing = sorted(wanted - keys)
        unknown = sorted(shown(k) for k in keys - wanted)
        raise RatingError(f"{where}: fields do not match (missing {missing}, unknown {unknown})")
    return value


def _listed(items: Iterable[str]) -> str:
    return ", ".join(items) or "none"


def _city(code: str) -> str:
    """A city as a clerk knows it: its English name if a preset knows it, else its code."""
    for known in PRESETS.values():
        city = known.city(code)
        if city is not None:
            return city.name_en
    return f"city {code}"


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"


# --- scales -----------------------------------------------------------------------------------


class Band(NamedTuple):
    """One band of a points scale: ``grade`` from ``min_points`` to ``max_points`` inclusive.

    ``None`` is an open end (only the best band may be open upwards, only the worst downwards).
    """

    grade: str
    min_points: int | None
    max_points: int | None

    def contains(self, points: int) -> bool:
        return (self.min_points is None or points >= self.min_points) and (
            self.max_points is None or points <= self.max_points
        )

    def describe(self) -> str:
        low, high = self.min_points, self.max_points
        if low is None and high is None:
            span = "any points"
        elif low is None:
            span = f"<= {high}"
        elif high is None:
            span = f">= {low}"
        else:
            span = f"{low}-{high}"
        return f"{self.grade} ({span})"


def _band(value: object, name: str) -> Band:
    if not isinstance(value, tuple | list) or len(value) != 3:
        raise RatingError(f"{name} must be (grade, min_points, max_points)")
    label, low, high = value
    _grade(label, f"{name}: grade")
    for bound, what in ((low, "min_points"), (high, "max_points")):
        if bound is not None and (not _is_int(bound) or not -MAX_POINTS <= bound <= MAX_POINTS):
            raise RatingError(
                f"{name}: {what} must be a whole number between -{MAX_POINTS} and "
                f"{MAX_POINTS}, or open"
            )
    band = Band(label, low, high)
    if low is not None and high is not None and low > high:
        raise RatingError(f"{name}: {band.grade} has min_points {low} above max_points {high}")
    return band


@dataclass(frozen=True, kw_only=True)
class RatingScale:
    """A local rating scale (评价等级): grades ordered best first, or points in bands.

    For a ``"points"`` scale the bands are listed best first, from the highest points down,
    with no gap and no overlap; ``grades`` is then the band labels, in the same order.
    """

    scale_id: str
    name: str
    kind: ScaleKind
    grades: tuple[str, ...] = ()
    bands: tuple[Band, ...] = ()

    def __post_init__(self) -> None:
        _scale_id(self.scale_id, "rating scale id")
        where = f"rating scale {self.scale_id}"
        _text(self.name, f"{where}: name", limit=MAX_NAME_CHARS)
        if self.kind not in SCALE_KINDS:
            raise RatingError(f"{where}: kind {shown(self.kind)} is not 'grades' or 'points'")
        if not isinstance(self.grades, tuple | list) or not isinstance(self.bands, tuple | list):
            raise RatingError(f"{where}: grades and bands must be lists")
        if self.kind == "grades":
            if self.bands:
                raise RatingError(f"{where}: a 'grades' scale has no bands")
            grades = tuple(self.grades)
        else:
            bands = self._check_bands(where)
            object.__setattr__(self, "bands", bands)
            grades = tuple(band.grade for band in bands)
            if self.grades and tuple(self.grades) != grades:
                raise RatingError(
                    f"{where}: the grades of a 'points' scale are its band labels "
                    f"({_listed(grades)}); leave grades out"
                )
        if not 0 < len(grades) <= MAX_GRADES:
            raise RatingError(f"{where}: needs 1 to {MAX_GRADES} grades, not {len(grades)}")
        for index, grade in enumerate(grades):
            _grade(grade, f"{where}: grade {index + 1}")
        repeated = sorted({g for g in grades if grades.count(g) > 1})
        if repeated:
            raise RatingError(f"{where}: grade {_listed(repeated)} appears more than once")
        object.__setattr__(self, "grades", grades)

    def _check_bands(self, where: str) -> tuple[Band, ...]:
        raw = tuple(self.bands)
        if not 0 < len(raw) <= MAX_GRADES:
            raise RatingError(f"{where}: a 'points' scale needs 1 to {MAX_GRADES} bands")
        bands = tuple(_band(value, f"{where}: band {i + 1}") for i, value in enumerate(raw))
        last = len(bands) - 1
        for index, band in enumerate(bands):
            if band.max_points is None and index != 0:
                raise RatingError(
                    f"{where}: band {band.grade} is open upwards, but only the best (first) "
                    "band may be"
                )
            if band.min_points is None and index != last:
                raise RatingError(
                    f"{where}: band {band.grade} is open downwards, but only the worst (last) "
                    "band may be"
                )
        for better, worse in itertools.pairwise(bands):
            # Both bounds exist here: only the first band lacks a max, only the last a min.
            assert better.min_points is not None and worse.max_points is not None
            if worse.max_points >= better.min_points:
                raise RatingError(
                    f"{where}: bands {better.describe()} and {worse.describe()} overlap or are "
                    "out of order (list bands best first, from the highest points down)"
                )
            if worse.max_points < better.min_points - 1:
                raise RatingError(
                    f"{where}: points {worse.max_points + 1} to {better.min_points - 1} fall "
                    f"in no band (between {better.describe()} and {worse.describe()})"
                )
        return bands

    def describe(self) -> str:
        return f"{self.scale_id} ({self.name})"

    def has_grade(self, grade: str) -> bool:
        return grade in self.grades

    def rank(self, grade: str) -> int:
        """The position of ``grade``: 0 is the best."""
        if grade not in self.grades:
            raise RatingError(
                f"{shown(grade)} is not a grade of scale {self.scale_id} "
                f"(grades: {_listed(self.grades)})"
            )
        return self.grades.index(grade)

    def grade_of(self, points: int) -> str:
        """The grade of ``points`` on a points scale."""
        if self.kind != "points":
            raise RatingError(f"scale {self.scale_id} has grades, not points")
        if not _is_int(points):
            raise RatingError("points must be a whole number")
        for band in self.bands:
            if band.contains(points):
                return band.grade
        span = ", ".join(band.describe() for band in self.bands)
        raise RatingError(f"{points} points fall in no band of scale {self.scale_id} ({span})")

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"scale_id": self.scale_id, "name": self.name, "kind": self.kind}
        if self.kind == "grades":
            value["grades"] = list(self.grades)
        else:
            value["bands"] = [
                {"grade": b.grade, "min_points": b.min_points, "max_points": b.max_points}
                for b in self.bands
            ]
        return value

    @classmethod
    def from_json(cls, value: object) -> RatingScale:
        """Parse strictly: a ``grades`` scale has ``grades``, a ``points`` scale ``bands``."""
        if not isinstance(value, dict):
            raise RatingError("scale must be a JSON object")
        kind = value.get("kind")
        if kind == "grades":
            document = _fields(value, ("scale_id", "name", "kind", "grades"), "scale")
            grades = document["grades"]
            if not isinstance(grades, list):
                raise RatingError("scale: grades must be a list")
            return cls(
                scale_id=document["scale_id"],
                name=document["name"],
                kind=kind,
                grades=tuple(grades),
            )
        if kind == "points":
            document = _fields(value, ("scale_id", "name", "kind", "bands"), "scale")
            raw = document["bands"]
            if not isinstance(raw, list):
                raise RatingError("scale: bands must be a list")
            bands = []
            for index, item in enumerate(raw):
                band = _fields(item, ("grade", "min_points", "max_points"), f"scale: band {index}")
                bands.append((band["grade"], band["min_points"], band["max_points"]))
            return cls(
                scale_id=document["scale_id"],
                name=document["name"],
                kind=kind,
                bands=tuple(_band(b, f"scale: band {i + 1}") for i, b in enumerate(bands)),
            )
        raise RatingError(f"scale: kind {shown(kind)} is not 'grades' or 'points'")


#: Scales in national or local use. A city can redefine one in node.toml.
PRESET_SCALES: Mapping[str, RatingScale] = MappingProxyType(
    {
        scale.scale_id: scale
        for scale in (
            RatingScale(
                scale_id="tax-credit",
                name="纳税信用等级",
                kind="grades",
                grades=("A", "B", "M", "C", "D"),
            ),
            RatingScale(
                scale_id="public-credit-gbt45255",
                name="公共信用综合评价 (GB/T 45255-2025)",
                kind="grades",
                grades=("A", "B", "C", "D"),
            ),
            RatingScale(
                scale_id="customs",
                name="海关企业信用等级",
                kind="grades",
                grades=("高级认证", "认证", "常规", "失信", "严重失信"),
            ),
            RatingScale(
                scale_id="weihai-haibei",
                name="威海海贝分",
                kind="points",
                bands=(
                    Band("AAA", 1150, None),
                    Band("AA", 1050, 1149),
                    Band("A", 1000, 1049),
                    Band("B", 950, 999),
                    Band("C", 801, 949),
                    Band("D", None, 800),
                ),
            ),
        )
    }
)

_SCALE_KEYS = ("name", "kind", "grades", "bands")


def _config_bound(value: object, name: str) -> int | None:
    # TOML has no null: "" marks an open end.
    if value == "":
        return None
    if not _is_int(value):
        raise RatingError(f'{name} must be a whole number, or "" for an open end')
    assert isinstance(value, int)
    return value


def scales_from_config(table: Mapping[str, Any]) -> dict[str, RatingScale]:
    """The preset scales plus node.toml's ``[ratings.scales.<id>]`` tables (``table`` is
    ``[ratings.scales]``). A table with a preset's id replaces that preset entirely.

    Forms::

        [ratings.scales.tax-credit]
        name = "纳税信用等级"
        kind = "grades"
        grades = ["A", "B", "M", "C", "D"]      # best first

        [ratings.scales.weihai-haibei]
        name = "威海海贝分"
        kind = "points"
        bands = [                                # [grade, min, max], best first; "" = open
          ["AAA", 1150, ""],
          ["AA", 1050, 1149],
          ["D", "", 800],
        ]

    A band may also leave out its max (``["AAA", 1150]``). Every error names the scale and
    the key.
    """
    if not isinstance(table, Mapping):
        raise RatingError("[ratings.scales] must be a table of [ratings.scales.<id>] tables")
    scales = dict(PRESET_SCALES)
    for scale_id, options in table.items():
        where = f"[ratings.scales.{scale_id}]"
        _scale_id(scale_id, "[ratings.scales]: scale id")
        if not isinstance(options, Mapping):
            raise RatingError(f"{where} must be a table")
        unknown = sorted(str(key) for key in options if key not in _SCALE_KEYS)
        if unknown:
            raise RatingError(
                f"{where}: unknown key {shown(unknown[0])}; known keys: {', '.join(_SCALE_KEYS)}"
            )
        for key in ("name", "kind"):
            if key not in options:
                raise RatingError(f"{where}: missing key '{key}'")
        kind = options["kind"]
        if kind not in SCALE_KINDS:
            raise RatingError(f'{where}: kind must be "grades" or "points", not {shown(kind)}')
        wanted, unwanted = ("grades", "bands") if kind == "grades" else ("bands", "grades")
        if wanted not in options:
            raise RatingError(f"{where}: missing key '{wanted}' (a {kind} scale needs it)")
        if unwanted in options:
            raise RatingError(f"{where}: key '{unwanted}' does not belong to a {kind} scale")
        listed = options[wanted]
        if not isinstance(listed, list | tuple):
            raise RatingError(f"{where}: {wanted} must be a list")
        bands: list[Band] = []
        if kind == "points":
            for index, raw in enumerate(listed):
                name = f"{where}: bands[{index}]"
                if not isinstance(raw, list | tuple) or len(raw) not in (2, 3):
                    raise RatingError(f'{name} must be [grade, min, max] ("" for an open end)')
                padded = (*raw, "") if len(raw) == 2 else tuple(raw)
                low = _config_bound(padded[1], f"{name}: min")
                high = _config_bound(padded[2], f"{name}: max")
                bands.append(_band((padded[0], low, high), name))
        prefix = f"rating scale {scale_id}: "
        try:
            scales[scale_id] = RatingScale(
                scale_id=scale_id,
                name=options["name"],
                kind=kind,
                grades=tuple(listed) if kind == "grades" else (),
                bands=tuple(bands),
            )
        except RatingError as exc:
            raise RatingError(f"{where}: {exc.message.removeprefix(prefix)}") from None
    return scales


# --- signed documents: shared steps -----------------------------------------------------------


def _check_envelope(keyid: object, signature: object, what: str) -> None:
    if not isinstance(keyid, str) or not KEYID.fullmatch(keyid):
        raise RatingError(f"{what}: keyid must be 64 lower-case hex digits")
    if not isinstance(signature, bytes) or not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
        raise RatingError(f"{what}: signature must be 1 to {MAX_SIGNATURE_BYTES} bytes")


def _parse_envelope(data: object, inner: str, what: str) -> tuple[dict[str, Any], str, bytes]:
    """The inner document, key id and signature of ``{inner: {...}, keyid, signature}``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RatingError(f"{what} must be bytes")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise RatingError(f"{what} is {len(data)} bytes, more than {MAX_DOCUMENT_BYTES}")
    try:
        document = parse_document(bytes(data), what=what)
    except InvalidInputError as exc:
        raise RatingError(exc.message) from None
    _fields(document, (inner, "keyid", "signature"), what)
    keyid, encoded = document["keyid"], document["signature"]
    if not isinstance(keyid, str) or not isinstance(encoded, str):
        raise RatingError(f"{what}: keyid and signature must be strings")
    try:
        signature = b64decode(encoded, what=f"{what}: signature")
    except InvalidInputError as exc:
        raise RatingError(exc.message) from None
    if b64encode(signature) != encoded:
        raise RatingError(f"{what}: signature is not in canonical base64")
    return document[inner], keyid, signature


def _require_canonical(parsed: object, value: dict[str, Any], what: str) -> None:
    # One meaning, one byte form: what the issuer signed is exactly what everyone reads.
    if parsed != value:
        raise RatingError(f"{what} is not in canonical form (re-serialising it changes it)")


def _verify_issuer_signature(
    *,
    issuer: str,
    keyid: str,
    signature: bytes,
    message: bytes,
    manifest: Manifest,
    what: str,
) -> None:
    """The steps every signed rating document passes: member, its key, a valid signature."""
    member = manifest.member(issuer)
    if member is None:
        raise RatingVerificationError(
            f"{what}: the issuer {issuer} is not a member of {manifest.describe()}"
        )
    expected = member.signing_key.keyid
    if keyid != expected:
        holder = manifest.member_by_keyid(keyid)
        whose = f"the key of {holder.city_code}" if holder else "not a member's key"
        raise RatingVerificationError(
            f"{what} is signed with key {keyid[:16]} ({whose}), not with {issuer}'s signing "
            f"key {expected[:16]} in {manifest.describe()}"
        )
    try:
        member.signing_key.verify(signature, message)
    except SignatureError:
        raise RatingVerificationError(
            f"{what}: the signature by {issuer}'s key does not verify (the document was "
            "altered or signed by another key)"
        ) from None


# --- rating statements ------------------------------------------------------------------------

_STATEMENT_FIELDS = (
    "type",
    "issuer",
    "subject",
    "scale_id",
    "grade",
    "points",
    "issued_on",
    "valid_until",
    "evidence_ref",
)


@dataclass(frozen=True, kw_only=True)
class RatingStatement:
    """A city's rating of one subject on its local scale (信用评价结果), valid for a period.

    ``points`` is given for a points scale (and the grade must be the grade of those points)
    and left ``None`` for a grades scale; :meth:`check_against` checks that against the scale.
    ``evidence_ref`` names the evaluation behind the rating (e.g. its document number).
    """

    issuer: str
    subject: Subject
    scale_id: str
    grade: str
    points: int | None = None
    issued_on: dt.date
    valid_until: dt.date
    evidence_ref: str

    def __post_init__(self) -> None:
        where = "rating statement"
        _city_code(self.issuer, f"{where}: issuer")
        if not isinstance(self.subject, Subject):
            raise RatingError(f"{where}: subject must be a Subject")
        _scale_id(self.scale_id, f"{where}: scale_id")
        _grade(self.grade, f"{where}: grade")
        if self.points is not None and (
            not _is_int(self.points) or not -MAX_POINTS <= self.points <= MAX_POINTS
        ):
            raise RatingError(
                f"{where}: points must be a whole number between -{MAX_POINTS} and {MAX_POINTS}"
            )
        issued_on = _date(self.issued_on, f"{where}: issued_on")
        valid_until = _date(self.valid_until, f"{where}: valid_until")
        if valid_until < issued_on:  # the last valid day: a rating may hold for one day
            raise RatingError(
                f"{where}: valid_until {valid_until} must not be before issued_on {issued_on}"
            )
        _text(self.evidence_ref, f"{where}: evidence_ref", limit=MAX_EVIDENCE_CHARS)

    def describe(self) -> str:
        """E.g. ``Yantai's tax-credit rating B`` (the subject is not named: it may be a person)."""
        points = "" if self.points is None else f" ({self.points} points)"
        return f"{_city(self.issuer)}'s {self.scale_id} rating {self.grade}{points}"

    def problem_with(self, scale: RatingScale) -> str | None:
        """Why this statement does not fit ``scale``, or ``None`` if it does."""
        if scale.scale_id != self.scale_id:
            return f"the rating is on scale {self.scale_id}, not on {scale.scale_id}"
        if not scale.has_grade(self.grade):
            return (
                f"{self.grade} is not a grade of scale {scale.scale_id} "
                f"(grades: {_listed(scale.grades)})"
            )
        if scale.kind == "grades":
            if self.points is not None:
                return f"scale {scale.scale_id} has grades only, but the rating states points"
            return None
        if self.points is None:
            return f"scale {scale.scale_id} is a points scale, but the rating states no points"
        try:
            expected = scale.grade_of(self.points)
        except RatingError as exc:
            return exc.message
        if expected != self.grade:
            return (
                f"{self.points} points are grade {expected} on scale {scale.scale_id}, "
                f"not {self.grade}"
            )
        return None

    def check_against(self, scale: RatingScale) -> None:
        problem = self.problem_with(scale)
        if problem is not None:
            raise RatingError(f"rating statement: {problem}")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": RATING_STATEMENT_TYPE,
            "issuer": self.issuer,
            "subject": self.subject.to_json(),
            "scale_id": self.scale_id,
            "grade": self.grade,
            "points": self.points,
            "issued_on": self.issued_on.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "evidence_ref": self.evidence_ref,
        }

    @classmethod
    def from_json(cls, value: object) -> RatingStatement:
        if isinstance(value, dict) and value.get("type") != RATING_STATEMENT_TYPE:
            raise RatingError(
                f"not a rating statement: type is {shown(value.get('type'))}, "
                f"expected {RATING_STATEMENT_TYPE!r}"
            )
        document = _fields(value, _STATEMENT_FIELDS, "rating statement")
        try:
            subject = Subject.from_json(document["subject"])
        except InvalidInputError as exc:
            raise RatingError(f"rating statement: {exc.message}") from None
        statement = cls(
            issuer=document["issuer"],
            subject=subject,
            scale_id=document["scale_id"],
            grade=document["grade"],
            points=document["points"],
            issued_on=_parse_date(document["issued_on"], "rating statement: issued_on"),
            valid_until=_parse_date(document["valid_until"], "rating statement: valid_until"),
            evidence_ref=document["evidence_ref"],
        )
        _require_canonical(statement.to_json(), document, "rating statement")
        return statement

    def signed_bytes(self) -> bytes:
        """The bytes the issuer signs: the canonical JSON of :meth:`to_json`."""
        return canonical_bytes(self.to_json())


@dataclass(frozen=True)
class SignedRatingStatement:
    """A rating statement with its issuer's signature by the key ``keyid``."""

    statement: RatingStatement
    keyid: str
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.statement, RatingStatement):
            raise RatingError("signed rating statement needs a RatingStatement")
        _check_envelope(self.keyid, self.signature, "signed rating statement")

    @classmethod
    def sign(
        cls, statement: RatingStatement, key: SigningKey, *, scale: RatingScale
    ) -> SignedRatingStatement:
        """Sign with the issuer's key, after checking the statement against its own scale."""
        statement.check_against(scale)
        return cls(statement, key.public_key.keyid, key.sign(statement.signed_bytes()))

    def signed_again(self, key: SigningKey) -> SignedRatingStatement:
        """The same statement signed with ``key``, the issuer's key after a rotation.

        Receivers verify against the current manifest only, so an issuer vouches again
        with its current key for what it signed with the previous one. The statement was
        checked against its scale when first signed; that scale may have changed since.
        """
        if key.public_key.keyid == self.keyid:
            return self
        return SignedRatingStatement(
            self.statement, key.public_key.keyid, key.sign(self.statement.signed_bytes())
        )

    def verify(self, manifest: Manifest) -> RatingStatement:
        """The statement, if its issuer signed it with the key ``manifest`` lists for it.

        Steps, each with its own message: the issuer is a member; the key id is the issuer's
        signing key; the signature verifies. Freshness is the receiver's policy
        (:func:`recognise`), not a condition of validity.
        """
        statement = self.statement
        _verify_issuer_signature(
            issuer=statement.issuer,
            keyid=self.keyid,
            signature=self.signature,
            message=statement.signed_bytes(),
            manifest=manifest,
            what=f"rating statement {shown(statement.evidence_ref)} of {statement.issuer}",
        )
        return statement

    def to_json(self) -> dict[str, Any]:
        return {
            "statement": self.statement.to_json(),
            "keyid": self.keyid,
            "signature": b64encode(self.signature),
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedRatingStatement:
        """Parse strictly (no signature check: :meth:`verify` does that against the manifest).
        Every malformation is a :class:`RatingError`."""
        what = "signed rating statement"
        inner, keyid, signature = _parse_envelope(data, "statement", what)
        return cls(RatingStatement.from_json(inner), keyid, signature)


# --- scale mappings ---------------------------------------------------------------------------

_MAPPING_FIELDS = ("type", "issuer", "scale", "common_scale", "mapping", "version")


def _check_common_scale(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, tuple | list) or not value:
        raise RatingError(f"{where}: common_scale must be a non-empty list of grades")
    scale = tuple(value)
    for index, grade in enumerate(scale):
        _grade(grade, f"{where}: common_scale grade {index + 1}")
    if len(set(scale)) != len(scale):
        raise RatingError(f"{where}: common_scale lists a grade twice")
    return scale


@dataclass(frozen=True, kw_only=True)
class ScaleMapping:
    """How an issuer's local scale maps onto the federation's common scale (版本 ``version``).

    Carries the full scale, so receivers know what they map. The mapping covers every local
    grade, maps only onto common grades, and is monotone: a better local grade never maps to
    a worse common grade.
    """

    issuer: str
    scale: RatingScale
    common_scale: tuple[str, ...]
    mapping: Mapping[str, str]
    version: int

    def __post_init__(self) -> None:
        _city_code(self.issuer, "scale mapping: issuer")
        if not isinstance(self.scale, RatingScale):
            raise RatingError("scale mapping: scale must be a RatingScale")
        where = f"mapping of scale {self.scale.scale_id} by {self.issuer}"
        common = _check_common_scale(self.common_scale, where)
        object.__setattr__(self, "common_scale", common)
        if not _is_int(self.version) or not 1 <= self.version <= MAX_VERSION:
            raise RatingError(f"{where}: version must be a whole number >= 1")
        if not isinstance(self.mapping, Mapping):
            raise RatingError(f"{where}: mapping must be a table of local grade -> common grade")
        grades = self.scale.grades
        unknown = [str(g) for g in self.mapping if g not in grades]
        if unknown:
            raise RatingError(
                f"{where}: maps {_listed(shown(g) for g in sorted(unknown))}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not a grade of the scale "
                f"(grades: {_listed(grades)})"
            )
        missing = [g for g in grades if g not in self.mapping]
        if missing:
            raise RatingError(
                f"{where} does not cover its scale: no common grade for {_listed(missing)}"
            )
        for grade in grades:
            target = self.mapping[grade]
            if not isinstance(target, str) or target not in common:
                raise RatingError(
                    f"{where}: {grade} maps to {shown(target)}, which is not a grade of the "
                    f"common scale ({_listed(common)})"
                )
        for better, worse in itertools.pairwise(grades):
            high, low = self.mapping[better], self.mapping[worse]
            if common.index(high) > common.index(low):
                raise RatingError(
                    f"{where} is not monotone: {better} is better than {worse} but maps to "
                    f"common grade {high}, worse than {low}"
                )
        # Kept in the scale's order, read-only: the mapping is part of a signed document.
        ordered = {grade: self.mapping[grade] for grade in grades}
        object.__setattr__(self, "mapping", MappingProxyType(ordered))

    def __hash__(self) -> int:
        return hash(
            (self.issuer, self.scale, self.common_scale, tuple(self.mapping.items()), self.version)
        )

    @property
    def scale_id(self) -> str:
        return self.scale.scale_id

    def describe(self) -> str:
        return f"{_city(self.issuer)}'s mapping of scale {self.scale_id} (v{self.version})"

    def common_grade(self, grade: str) -> str:
        self.scale.rank(grade)
        return self.mapping[grade]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": SCALE_MAPPING_TYPE,
            "issuer": self.issuer,
            "scale": self.scale.to_json(),
            "common_scale": list(self.common_scale),
            "mapping": dict(self.mapping),
            "version": self.version,
        }

    @classmethod
    def from_json(cls, value: object) -> ScaleMapping:
        if isinstance(value, dict) and value.get("type") != SCALE_MAPPING_TYPE:
            raise RatingError(
                f"not a scale mapping: type is {shown(value.get('type'))}, "
                f"expected {SCALE_MAPPING_TYPE!r}"
            )
        document = _fields(value, _MAPPING_FIELDS, "scale mapping")
        common, mapping = document["common_scale"], document["mapping"]
        if not isinstance(common, list):
            raise RatingError("scale mapping: common_scale must be a list")
        if not isinstance(mapping, dict):
            raise RatingError("scale mapping: mapping must be an object")
        try:
            scale = RatingScale.from_json(document["scale"])
        except RatingError as exc:
            raise RatingError(f"scale mapping: {exc.message}") from None
        parsed = cls(
            issuer=document["issuer"],
            scale=scale,
            common_scale=tuple(common),
            mapping=mapping,
            version=document["version"],
        )
        _require_canonical(parsed.to_json(), document, "scale mapping")
        return parsed

    def signed_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())


@dataclass(frozen=True)
class SignedScaleMapping:
    """A scale mapping with its issuer's signature by the key ``keyid``."""

    mapping: ScaleMapping
    keyid: str
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.mapping, ScaleMapping):
            raise RatingError("signed scale mapping needs a ScaleMapping")
        _check_envelope(self.keyid, self.signature, "signed scale mapping")

    @classmethod
    def sign(cls, mapping: ScaleMapping, key: SigningKey) -> SignedScaleMapping:
        return cls(mapping, key.public_key.keyid, key.sign(mapping.signed_bytes()))

    def verify(self, manifest: Manifest) -> ScaleMapping:
        """The mapping, if its issuer signed it and it maps onto the manifest's common scale.

        Steps: the issuer is a member; the key id is its signing key; the signature
        verifies; the common scale is the manifest's (a mapping made for another common
        scale says nothing about this one: :class:`CommonScaleMismatchError`).
        """
        mapping = self.mapping
        _verify_issuer_signature(
            issuer=mapping.issuer,
            keyid=self.keyid,
            signature=self.signature,
            message=mapping.signed_bytes(),
            manifest=manifest,
            what=mapping.describe(),
        )
        if mapping.common_scale != manifest.common_scale:
            raise CommonScaleMismatchError(
                f"{mapping.describe()} maps onto the common scale "
                f"{_listed(mapping.common_scale)}, but {manifest.describe()} has "
                f"{_listed(manifest.common_scale)}",
                hint=f"{mapping.issuer} must sign a new version of its mapping",
            )
        return mapping

    def to_json(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping.to_json(),
            "keyid": self.keyid,
            "signature": b64encode(self.signature),
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedScaleMapping:
        """Parse strictly (no signature check); every malformation is a :class:`RatingError`."""
        inner, keyid, signature = _parse_envelope(data, "mapping", "signed scale mapping")
        return cls(ScaleMapping.from_json(inner), keyid, signature)


def newer_mapping(current: ScaleMapping | None, candidate: ScaleMapping) -> ScaleMapping:
    """The mapping to keep for (issuer, scale): the higher version wins.

    An older version arriving late is ignored; one version signed with two different
    contents is a :class:`ScaleMappingConflictError` (the issuer must bump the version).
    """
    if current is None:
        return candidate
    if (current.issuer, current.scale_id) != (candidate.issuer, candidate.scale_id):
        raise InvalidInputError(
            f"cannot compare {current.describe()} with {candidate.describe()}: "
            "they are not of the same issuer and scale"
        )
    if candidate.version > current.version:
        return candidate
    if candidate.version == current.version and candidate != current:
        raise ScaleMappingConflictError(
            f"{candidate.describe()} differs from the version {current.version} already held: "
            f"{_city(candidate.issuer)} signed two mappings with one version number",
            hint="a changed mapping needs a new version number",
        )
    return current


class MappingBook:
    """The newest mapping of each (issuer, scale) a node holds (verify before offering)."""

    def __init__(self, mappings: Iterable[ScaleMapping] = ()) -> None:
        self._mappings: dict[tuple[str, str], ScaleMapping] = {}
        for mapping in mappings:
            self.offer(mapping)

    def offer(self, mapping: ScaleMapping) -> bool:
        """Keep ``mapping`` if it is newer than the one held; True if it was kept."""
        key = (mapping.issuer, mapping.scale_id)
        kept = newer_mapping(self._mappings.get(key), mapping)
        self._mappings[key] = kept
        return kept is mapping

    def lookup(self, issuer: str, scale_id: str) -> ScaleMapping | None:
        return self._mappings.get((issuer, scale_id))

    def __iter__(self) -> Iterator[ScaleMapping]:
        return iter(self._mappings.values())

    def __len__(self) -> int:
        return len(self._mappings)


# --- recognition policy -----------------------------------------------------------------------


def _any_or_list(value: object, name: str, check: Callable[[object, str], str]) -> tuple[str, ...]:
    if value == ANY or value == (ANY,) or value == [ANY]:
        return (ANY,)
    if not isinstance(value, tuple | list):
        raise RatingError(f'{name} must be "*" or a list')
    items = tuple(value)
    for item in items:
        if item == ANY:
            raise RatingError(f'{name}: "*" cannot be combined with other entries')
        check(item, f"{name}: entry")
    if len(set(items)) != len(items):
        raise RatingError(f"{name} lists an entry twice")
    return items


@dataclass(frozen=True, kw_only=True)
class RecognitionPolicy:
    """Which ratings this city recognises (互认): whose, on which scales, how fresh.

    ``issuers`` is ``("*",)`` (every member: statements are verified against the manifest
    first) or city codes. ``scales`` maps an issuer's city code, or ``"*"`` for issuers not
    named, to its recognised scale ids or ``("*",)``; an issuer with neither is recognised
    on no scale. A rating issued more than ``max_age_days`` ago is not recognised, nor,
    unless ``require_unexpired`` is off, one past its ``valid_until``.
    """

    issuers: tuple[str, ...] = (ANY,)
    scales: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({ANY: (ANY,)})
    )
    max_age_days: int = DEFAULT_MAX_AGE_DAYS
    require_unexpired: bool = True

    def __post_init__(self) -> None:
        issuers = _any_or_list(self.issuers, "issuers", _city_code)
        if not issuers:
            raise RatingError('issuers must not be empty (use "*" for every member)')
        object.__setattr__(self, "issuers", issuers)
        if not isinstance(self.scales, Mapping):
            raise RatingError("scales must be a table of issuer -> scale ids")
        scales: dict[str, tuple[str, ...]] = {}
        for issuer, listed in self.scales.items():
            if issuer != ANY:
                _city_code(issuer, "scales: issuer")
                if issuers != (ANY,) and issuer not in issuers:
                    raise RatingError(
                        f"scales: names issuer {issuer}, which is not in issuers "
                        f"({_listed(issuers)})"
                    )
            scales[issuer] = _any_or_list(listed, f"scales: {issuer}", _scale_id)
        object.__setattr__(self, "scales", MappingProxyType(scales))
        if not _is_int(self.max_age_days) or not 1 <= self.max_age_days <= MAX_AGE_DAYS:
            raise RatingError(f"max_age_days must be a whole number 1-{MAX_AGE_DAYS}")
        if not isinstance(self.require_unexpired, bool):
            raise RatingError("require_unexpired must be true or false")

    def __hash__(self) -> int:
        return hash(
            (self.issuers, tuple(self.scales.items()), self.max_age_days, self.require_unexpired)
        )

    def recognises_issuer(self, issuer: str) -> bool:
        return self.issuers == (ANY,) or issuer in self.issuers

    def scales_of(self, issuer: str) -> tuple[str, ...]:
        """The scale ids recognised from ``issuer`` (``("*",)`` for all)."""
        return self.scales.get(issuer, self.scales.get(ANY, ()))

    def recognises_scale(self, issuer: str, scale_id: str) -> bool:
        listed = self.scales_of(issuer)
        return listed == (ANY,) or scale_id in listed


_POLICY_KEYS = ("issuers", "scales", "max_age_days", "require_unexpired")


def policy_from_config(table: Mapping[str, Any]) -> RecognitionPolicy:
    """The policy in node.toml's ``[ratings.recognition]``.

    Keys left out keep their defaults; an unknown key is an error naming it::

        [ratings.recognition]
        issuers = ["370200", "370600"]      # or "*" for every member (the default)
        max_age_days = 365
        require_unexpired = true

        [ratings.recognition.scales]
        "*" = ["tax-credit", "public-credit-gbt45255"]
        371000 = "*"                        # every scale of Weihai
    """
    where = "[ratings.recognition]"
    if not isinstance(table, Mapping):
        raise RatingError(f"{where} must be a table")
    unknown = sorted(str(key) for key in table if key not in _POLICY_KEYS)
    if unknown:
        raise RatingError(
            f"{where}: unknown key {shown(unknown[0])}; known keys: {', '.join(_POLICY_KEYS)}"
        )
    values = dict(table)
    if "scales" in values and not isinstance(values["scales"], Mapping):
        raise RatingError(f'{where}: scales must be a table of issuer = "*" or [scale ids]')
    try:
        return RecognitionPolicy(**values)
    except RatingError as exc:
        raise RatingError(f"{where}: {exc.message}") from None


# --- recognition ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recognition:
    """The outcome of :func:`recognise`: the common grade (if any), the verdict, and why."""

    common_grade: str | None
    recognised: bool
    reasons: tuple[str, ...]


def _mapping_problem(
    statement: RatingStatement, mapping: ScaleMapping | None, manifest: Manifest
) -> str | None:
    issuer = _city(statement.issuer)
    if manifest.member(statement.issuer) is None:
        # Checked first: a city that left the federation no longer vouches for its ratings
        # nor for its mapping, however they were verified when they arrived.
        return (
            f"{issuer} ({statement.issuer}) is no longer a member of the federation "
            f"({manifest.describe()})"
        )
    common_scale = manifest.common_scale
    if mapping is None:
        return f"{issuer} has published no mapping of scale {statement.scale_id}"
    if mapping.issuer != statement.issuer:
        return f"the mapping at hand is {_city(mapping.issuer)}'s, not {issuer}'s"
    if mapping.scale_id != statement.scale_id:
        return f"the mapping at hand is of scale {mapping.scale_id}, not {statement.scale_id}"
    if mapping.common_scale != common_scale:
        return (
            f"{issuer}'s mapping (v{mapping.version}) is onto the common scale "
            f"{_listed(mapping.common_scale)}, not the federation's {_listed(common_scale)}"
        )
    return statement.problem_with(mapping.scale)


def recognise(
    statement: RatingStatement,
    mapping: ScaleMapping | None,
    policy: RecognitionPolicy,
    *,
    now: dt.datetime,
    manifest: Manifest,
) -> Recognition:
    """Whether this city recognises ``statement`` (already verified), and its common grade.

    ``mapping`` is the issuer's newest verified mapping of the statement's scale, if any;
    ``manifest`` is the current one. The common grade comes from the mapping alone, and
    only while the issuer is a member of ``manifest`` and the mapping is onto its common
    scale; the verdict needs a common grade, an accepted issuer and scale, a rating not
    older than ``max_age_days`` (and not dated in the future), and unless the policy allows
    it, one not past ``valid_until``. The first reason always states the grade and the
    verdict; each further reason is one cause for not recognising.
    """
    if not isinstance(now, dt.datetime) or now.tzinfo is None:
        raise InvalidInputError("recognise needs a timezone-aware 'now'")
    today = china_date(now)
    issuer = _city(statement.issuer)
    problem = _mapping_problem(statement, mapping, manifest)
    common_grade = None
    if problem is None and mapping is not None:
        common_grade = mapping.mapping[statement.grade]

    failures: list[str] = []
    if not policy.recognises_issuer(statement.issuer):
        failures.append(
            f"this city does not recognise ratings by {issuer} ({statement.issuer}); "
            f"it recognises {_listed(_city(code) for code in policy.issuers)}"
        )
    elif not policy.recognises_scale(statement.issuer, statement.scale_id):
        accepted = policy.scales_of(statement.issuer)
        failures.append(
            f"this city does not recognise {issuer}'s scale {statement.scale_id}; from "
            f"{issuer} it recognises {_listed(accepted)}"
        )
    age = (today - statement.issued_on).days
    if age < 0:
        failures.append(
            f"the rating is dated {statement.issued_on}, after today ({today}) in China; "
            "check the issuer's clock"
        )
    elif age > policy.max_age_days:
        failures.append(
            f"the rating was issued on {statement.issued_on}, {_days(age)} ago; this city "
            f"recognises ratings issued at most {_days(policy.max_age_days)} ago"
        )
    expired = today > statement.valid_until
    if expired and policy.require_unexpired:
        failures.append(
            f"the rating expired: it was valid until {statement.valid_until} (today is {today})"
        )

    if common_grade is not None:
        head = f"{statement.describe()} maps to common grade {common_grade}"
    else:
        head = f"{statement.describe()} has no common grade: {problem}"
    if common_grade is not None and not failures:
        issued = "today" if age == 0 else f"{_days(age)} ago"
        validity = (
            f"expired on {statement.valid_until}, which this city's policy accepts"
            if expired
            else f"valid until {statement.valid_until}"
        )
        return Recognition(
            common_grade,
            True,
            (
                f"{head}; recognised: issuer and scale accepted, issued {issued} "
                f"(limit {_days(policy.max_age_days)}), {validity}",
            ),
        )
    return Recognition(
        common_grade,
        False,
        (f"{head}; not recognised", *(f"not recognised: {failure}" for failure in failures)),
    )


__all__ = [
    "ANY",
    "PRESET_SCALES",
    "RATING_STATEMENT_TYPE",
    "SCALE_MAPPING_TYPE",
    "Band",
    "MappingBook",
    "RatingScale",
    "RatingStatement",
    "Recognition",
    "RecognitionPolicy",
    "ScaleKind",
    "ScaleMapping",
    "SignedRatingStatement",
    "SignedScaleMapping",
    "newer_mapping",
    "policy_from_config",
    "recognise",
    "scales_from_config",
]
