"""The signed federation manifest (联盟成员清单): who is in a federation, and how that changes.

Modelled on the root metadata of The Update Framework (TUF specification 1.0, §4.3 "root.json"
and §5.3 "Update the root role", https://theupdateframework.github.io/specification/latest/).
The manifest lists the member cities with their signing keys, pinned TLS certificates and
Paillier public keys, a version, an expiry, a signature threshold and the federation's
signature suite (:data:`federation.signing.SUITES`: Ed25519 by default, or the SM2/SM3 国密
suite): every member's signing key is of that suite, so the whole federation signs one way.

Trust rules, each checked by its own step and failing with its own error:

* bootstrap (:func:`verify_initial`): the operator's first manifest is trusted out of band;
  it must still carry a threshold of signatures by its own members and not be expired;
* update (:func:`verify_update`): the next manifest must belong to the same federation, have
  version exactly one more than the trusted one (rollback, replay and gaps refused), be signed
  by a threshold of the *trusted* version's members with the keys listed there, by a threshold
  of its own members, and by every key it introduces (a new member, or a rotated key: proof
  of possession); it must not be expired, except for intermediate versions of a chain;
* a :class:`TrustedChain` keeps every version a node accepted.

Changing the suite (e.g. a federation moving from Ed25519 to SM2/SM3) needs no rule of its
own: because every member's key must be of the manifest's suite, the version that changes it
rotates *every* member's key at once, and the update rules above then make it signed by a
threshold of the old keys (the trusted version's members) and by all the new keys (each new
key proves possession). A version that switches only some members is malformed.

A signature counts for a member only when it names that member's city code and key id and
verifies over :meth:`Manifest.signed_bytes`. Signatures by unknown keys are ignored, several
signatures by one key count once, and an invalid signature never counts.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from federation.canonical import MAX_STORED_INTEGER, canonical_bytes, parse_document
from federation.clock import format_utc, parse_utc
from federation.errors import (
    BadVersionNumberError,
    CreditNetError,
    ExpiredManifestError,
    InvalidInputError,
    ManifestFormatError,
    SignatureError,
    UnsignedManifestError,
    WrongFederationError,
)
from federation.member import Member, check_city_code
from federation.signing import ED25519, SUITES, SigningKey, b64decode, b64encode

MANIFEST_TYPE = "creditnet.federation-manifest/v1"
DEFAULT_COMMON_SCALE = ("A", "B", "C", "D")
FEDERATION_ID = re.compile(r"[a-z][a-z0-9-]{0,62}")
KEYID = re.compile(r"[0-9a-f]{64}")
MAX_SIGNATURE_BYTES = 1024

_FIELDS = frozenset(
    {
        "type",
        "federation_id",
        "federation_name",
        "version",
        "expires",
        "threshold",
        "members",
        "common_scale",
        "signature_suite",
    }
)

#: Called with one line per verification step that passed (the CLI prints them).
OnCheck = Callable[[str], None]


def _fields_match(value: dict[str, Any], expected: Iterable[str], where: str) -> None:
    expected = set(expected)
    if set(value) != expected:
        missing, extra = sorted(expected - set(value)), sorted(set(value) - expected)
        raise ManifestFormatError(
            f"{where}: fields do not match (missing {missing}, unknown {extra})"
        )


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python, but `true` is not a version number.
    return isinstance(value, int) and not isinstance(value, bool)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _codes(codes: Iterable[str]) -> str:
    listed = ", ".join(codes)
    return listed or "none"


def members_suite(members: Iterable[Member]) -> str:
    """The one signature suite of ``members``' signing keys; refused if they mix suites."""
    by_suite: dict[str, list[str]] = {}
    for member in members:
        by_suite.setdefault(member.signing_key.suite, []).append(member.city_code)
    if not by_suite:
        raise ManifestFormatError("a manifest needs at least one member")
    if len(by_suite) > 1:
        listed = "; ".join(
            f"{suite}: {', '.join(sorted(codes))}" for suite, codes in sorted(by_suite.items())
        )
        raise ManifestFormatError(
            f"the members' signing keys mix signature suites ({listed}); "
            "a federation signs with one suite",
            hint="choose the suite, and have the other members rotate to a key of it",
        )
    (suite,) = by_suite
    return suite


#: The highest manifest version: what a signed 64-bit database column holds.
MAX_VERSION = MAX_STORED_INTEGER


def _is_grade(grade: object) -> bool:
    """A grade of the common scale, as a rating statement may carry it (see
    federation.ratings): printable, trimmed, 1 to 16 characters."""
    return (
        isinstance(grade, str)
        and 0 < len(grade) <= 16
        and grade.isprintable()
        and grade == grade.strip()
    )


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The signed part of a federation manifest (TUF: the ``signed`` part of root.json).

    Members are kept sorted by city code and ``expires`` in UTC to the second, so that a
    manifest equals itself after a round trip through its canonical JSON form. Every
    member's signing key is of ``signature_suite``.
    """

    federation_id: str
    federation_name: str
    version: int
    expires: dt.datetime
    threshold: int
    members: tuple[Member, ...]
    common_scale: tuple[str, ...] = DEFAULT_COMMON_SCALE
    signature_suite: str = ED25519

    def __post_init__(self) -> None:
        if not isinstance(self.federation_id, str) or not FEDERATION_ID.fullmatch(
            self.federation_id
        ):
            raise ManifestFormatError(
                f"federation id {self.federation_id!r} must be 1 to 63 lower-case letters, "
                "digits or '-', starting with a letter"
            )
        if not isinstance(self.federation_name, str) or not 0 < len(self.federation_name) <= 100:
            raise ManifestFormatError("federation name must be 1 to 100 characters")
        if not _is_int(self.version) or not 1 <= self.version <= MAX_VERSION:
            raise ManifestFormatError(
                f"version must be an integer from 1 to {MAX_VERSION}, not {self.version!r}"
            )
        if not isinstance(self.expires, dt.datetime) or self.expires.tzinfo is None:
            raise ManifestFormatError("expires must be a timezone-aware datetime")
        object.__setattr__(self, "expires", self.expires.astimezone(dt.UTC).replace(microsecond=0))
        members = tuple(self.members)
        if not members or not all(isinstance(m, Member) for m in members):
            raise ManifestFormatError("a manifest needs at least one member")
        self._check_unique(members)
        members = tuple(sorted(members, key=lambda m: m.city_code))
        self._check_suite(members)
        object.__setattr__(self, "members", members)
        if not _is_int(self.threshold) or not 1 <= self.threshold <= len(members):
            raise ManifestFormatError(
                f"threshold must be between 1 and the number of members ({len(members)}), "
                f"not {self.threshold!r}"
            )
        scale = tuple(self.common_scale)
        if (
            not scale
            or not all(_is_grade(grade) for grade in scale)
            or len(set(scale)) != len(scale)
        ):
            raise ManifestFormatError(
                "common scale must be a non-empty list of distinct grades of 1 to 16 "
                "printable characters, not starting or ending with a space"
            )
        object.__setattr__(self, "common_scale", scale)

    def _check_suite(self, members: tuple[Member, ...]) -> None:
        suite = self.signature_suite
        if not isinstance(suite, str) or suite not in SUITES:
            raise ManifestFormatError(
                f"unknown signature suite {suite!r}; choose one of {', '.join(SUITES)}"
            )
        # A key of another suite would let that member sign what the federation's policy
        # (e.g. 密评 requiring SM2) does not accept; and a partial switch of suite is refused
        # here, so a suite change always rotates every member's key (module docstring).
        strays = [m for m in members if m.signing_key.suite != suite]
        if strays:
            listed = ", ".join(f"{m.city_code} ({m.signing_key.suite})" for m in strays)
            whose = (
                f"member {listed} has a signing key"
                if len(strays) == 1
                else f"members {listed} have signing keys"
            )
            raise ManifestFormatError(
                f"{whose} not of the federation's signature suite {suite}; "
                f"every member's key must be {suite}",
                hint=f"to use {suite}, rotate these members to {suite} keys (new member cards)",
            )

    @staticmethod
    def _check_unique(members: tuple[Member, ...]) -> None:
        checks: tuple[tuple[str, Callable[[Member], str]], ...] = (
            ("city code", lambda m: m.city_code),
            ("signing key", lambda m: m.signing_key.keyid),
            ("TLS certificate", lambda m: m.tls_fingerprint),
        )
        for what, value_of in checks:
            seen: dict[str, str] = {}
            for member in members:
                value = value_of(member)
                if value in seen:
                    shown = value if what == "city code" else value[:16]
                    raise ManifestFormatError(
                        f"duplicate {what} {shown} (members {seen[value]} and "
                        f"{member.city_code}); each member needs its own"
                    )
                seen[value] = member.city_code

    # --- lookups --------------------------------------------------------------------

    def member(self, city_code: str) -> Member | None:
        return self._by_city.get(city_code)

    def member_by_fingerprint(self, sha256hex: str) -> Member | None:
        """The member whose pinned TLS certificate has this SHA-256 fingerprint."""
        return self._by_fingerprint.get(sha256hex.lower())

    def member_by_keyid(self, keyid: str) -> Member | None:
        return self._by_keyid.get(keyid)

    @functools.cached_property
    def _by_city(self) -> dict[str, Member]:
        return {m.city_code: m for m in self.members}

    @functools.cached_property
    def _by_keyid(self) -> dict[str, Member]:
        return {m.signing_key.keyid: m for m in self.members}

    @functools.cached_property
    def _by_fingerprint(self) -> dict[str, Member]:
        return {m.tls_fingerprint: m for m in self.members}

    def is_expired(self, now: dt.datetime) -> bool:
        """TUF: a manifest is expired from its expiry time on."""
        return now >= self.expires

    # --- serialisation --------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "type": MANIFEST_TYPE,
            "federation_id": self.federation_id,
            "federation_name": self.federation_name,
            "version": self.version,
            "expires": format_utc(self.expires),
            "threshold": self.threshold,
            "members": [m.to_json() for m in self.members],
            "common_scale": list(self.common_scale),
            "signature_suite": self.signature_suite,
        }

    @classmethod
    def from_json(cls, value: object) -> Manifest:
        """Parse the signed part strictly: exact fields, exact types, canonical form."""
        if not isinstance(value, dict):
            raise ManifestFormatError("manifest 'signed' part must be a JSON object")
        if value.get("type") != MANIFEST_TYPE:
            raise ManifestFormatError(
                f"not a federation manifest: type is {value.get('type')!r}, "
                f"expected {MANIFEST_TYPE!r}"
            )
        _fields_match(value, _FIELDS, "manifest")
        for name in ("federation_id", "federation_name", "expires", "signature_suite"):
            if not isinstance(value[name], str):
                raise ManifestFormatError(f"manifest: {name} must be a string")
        for name in ("version", "threshold"):
            if not _is_int(value[name]):
                raise ManifestFormatError(f"manifest: {name} must be an integer")
        try:
            expires = parse_utc(value["expires"])
        except ValueError as exc:
            raise ManifestFormatError(
                f"manifest: expires is not an RFC 3339 UTC time: {exc}"
            ) from None
        raw_members, scale = value["members"], value["common_scale"]
        if not isinstance(raw_members, list) or not raw_members:
            raise ManifestFormatError("manifest: members must be a non-empty list")
        if not isinstance(scale, list) or not all(isinstance(s, str) for s in scale):
            raise ManifestFormatError("manifest: common_scale must be a list of strings")
        members = []
        for index, raw in enumerate(raw_members):
            try:
                members.append(Member.from_json(raw))
            except CreditNetError as exc:
                raise ManifestFormatError(f"manifest: members[{index}]: {exc.message}") from None
        codes = [m.city_code for m in members]
        if len(set(codes)) == len(codes) and codes != sorted(codes):
            raise ManifestFormatError("manifest: members must be sorted by city code")
        manifest = cls(
            federation_id=value["federation_id"],
            federation_name=value["federation_name"],
            version=value["version"],
            expires=expires,
            threshold=value["threshold"],
            members=tuple(members),
            common_scale=tuple(scale),
            signature_suite=value["signature_suite"],
        )
        # Only one byte form may carry a given meaning: a document that re-serialises
        # differently (e.g. a fractional second, upper-case hex) is refused, so what the
        # signers signed is exactly what every node reads.
        if canonical_bytes(value) != manifest.signed_bytes():
            raise ManifestFormatError(
                "manifest is not in canonical form (re-serialising it changes it: check the "
                "time format, hex and base64 encodings)"
            )
        return manifest

    def signed_bytes(self) -> bytes:
        """The bytes that members sign: the canonical JSON of :meth:`to_json`."""
        return self._signed_bytes

    @functools.cached_property
    def _signed_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    def describe(self) -> str:
        return f"manifest v{self.version} of {self.federation_id}"


@dataclass(frozen=True)
class ManifestSignature:
    """One signature over a manifest's signed bytes, by the key ``keyid`` of ``city_code``."""

    city_code: str
    keyid: str
    signature: bytes

    def __post_init__(self) -> None:
        try:
            check_city_code(self.city_code)
        except InvalidInputError as exc:
            raise ManifestFormatError(f"signature: {exc.message}") from None
        if not isinstance(self.keyid, str) or not KEYID.fullmatch(self.keyid):
            raise ManifestFormatError("signature: keyid must be 64 lower-case hex digits")
        if not isinstance(self.signature, bytes) or not 0 < len(self.signature) <= (
            MAX_SIGNATURE_BYTES
        ):
            raise ManifestFormatError(
                f"signature: must be 1 to {MAX_SIGNATURE_BYTES} bytes of signature"
            )

    def to_json(self) -> dict[str, str]:
        return {"city_code": self.city_code, "keyid": self.keyid, "sig": b64encode(self.signature)}

    @classmethod
    def from_json(cls, value: object, *, index: int) -> ManifestSignature:
        where = f"signatures[{index}]"
        if not isinstance(value, dict):
            raise ManifestFormatError(f"{where} must be a JSON object")
        _fields_match(value, ("city_code", "keyid", "sig"), where)
        if not all(isinstance(value[k], str) for k in ("city_code", "keyid", "sig")):
            raise ManifestFormatError(f"{where}: city_code, keyid and sig must be strings")
        try:
            signature = b64decode(value["sig"], what=f"{where}.sig")
        except InvalidInputError as exc:
            raise ManifestFormatError(exc.message) from None
        try:
            return cls(value["city_code"], value["keyid"], signature)
        except ManifestFormatError as exc:
            raise ManifestFormatError(f"{where}: {exc.message}") from None


@dataclass(frozen=True)
class SignedManifest:
    """A manifest with the signatures collected so far (TUF: a whole root.json document).

    Signatures are kept sorted (by city code, key id) so that the document's bytes do not
    depend on the order in which members signed.
    """

    manifest: Manifest
    signatures: tuple[ManifestSignature, ...] = ()

    def __post_init__(self) -> None:
        ordered = sorted(self.signatures, key=lambda s: (s.city_code, s.keyid, s.signature))
        object.__setattr__(self, "signatures", tuple(ordered))

    def sign(self, key: SigningKey, *, city_code: str | None = None) -> SignedManifest:
        """A copy with ``key``'s signature added (replacing an earlier one by the same key).

        Without ``city_code`` the key must be the signing key of a member of this manifest,
        and the signature is recorded under that member's city code.

        With ``city_code``, the key may also be one that this manifest does not list: a
        member of the *trusted* (previous) version signing the update with its previous key,
        because it rotated its key or is being removed. Such a signature is checked only
        against the trusted version's keys, by :func:`verify_update`. A key that this
        manifest lists for another city is refused.
        """
        keyid = key.public_key.keyid
        holder = self.manifest.member_by_keyid(keyid)
        if city_code is None:
            if holder is None:
                raise InvalidInputError(
                    f"key {keyid[:16]} is not the signing key of any member of "
                    f"{self.manifest.describe()}",
                    hint="to sign with a member's key of the previous version, name its city",
                )
            city_code = holder.city_code
        check_city_code(city_code)
        if holder is not None and holder.city_code != city_code:
            raise InvalidInputError(
                f"key {keyid[:16]} is the signing key of {holder.city_code} in "
                f"{self.manifest.describe()}, not of {city_code}"
            )
        signature = ManifestSignature(city_code, keyid, key.sign(self.manifest.signed_bytes()))
        kept = tuple(s for s in self.signatures if s.keyid != keyid)
        return SignedManifest(self.manifest, (*kept, signature))

    def to_json(self) -> dict[str, Any]:
        return {
            "signed": self.manifest.to_json(),
            "signatures": [s.to_json() for s in self.signatures],
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedManifest:
        """Parse a manifest document; every malformation is a :class:`ManifestFormatError`."""
        try:
            document = parse_document(data, what="federation manifest")
        except InvalidInputError as exc:
            raise ManifestFormatError(exc.message) from None
        if set(document) != {"signed", "signatures"}:
            raise ManifestFormatError(
                "not a federation manifest document: expected exactly the fields "
                f"'signed' and 'signatures', found {sorted(document)}"
            )
        raw_signatures = document["signatures"]
        if not isinstance(raw_signatures, list):
            raise ManifestFormatError("manifest: signatures must be a list")
        manifest = Manifest.from_json(document["signed"])
        signatures = tuple(
            ManifestSignature.from_json(raw, index=index)
            for index, raw in enumerate(raw_signatures)
        )
        return cls(manifest, signatures)

    def signature_status(self, keys_of: Manifest) -> list[tuple[ManifestSignature, str]]:
        """Each signature with what it is with respect to ``keys_of``'s members.

        The status is ``"valid"``, ``"invalid"`` (a member's key, but the signature does not
        verify) or ``"unknown key"`` (no member of ``keys_of`` has that city and key).
        """
        message = self.manifest.signed_bytes()
        result = []
        for signature in self.signatures:
            member = keys_of.member(signature.city_code)
            if member is None or member.signing_key.keyid != signature.keyid:
                result.append((signature, "unknown key"))
            elif _verifies(member, signature.signature, message):
                result.append((signature, "valid"))
            else:
                result.append((signature, "invalid"))
        return result


def _verifies(member: Member, signature: bytes, message: bytes) -> bool:
    try:
        member.signing_key.verify(signature, message)
    except SignatureError:
        return False
    return True


def valid_signers(signed: SignedManifest, keys_of: Manifest) -> tuple[str, ...]:
    """City codes of ``keys_of``'s members with a valid signature on ``signed``.

    Each member counts once however many signatures carry its key id; a signature counts
    only if it names the member's city and key and verifies.
    """
    message = signed.manifest.signed_bytes()
    signers = []
    for member in keys_of.members:
        keyid = member.signing_key.keyid
        if any(
            s.keyid == keyid
            and s.city_code == member.city_code
            and _verifies(member, s.signature, message)
            for s in signed.signatures
        ):
            signers.append(member.city_code)
    return tuple(signers)


# --- verification: ordered steps, each with its own error ------------------------------


def _check_threshold(
    signed: SignedManifest, keys_of: Manifest, *, whose: str, on_check: OnCheck | None
) -> None:
    signers = valid_signers(signed, keys_of)
    needed = keys_of.threshold
    counted = (
        f"{signed.manifest.describe()} has {_plural(len(signers), 'valid signature')} "
        f"from {whose} ({_codes(signers)}); {needed} needed"
    )
    if len(signers) < needed:
        missing = [m.city_code for m in keys_of.members if m.city_code not in signers]
        raise UnsignedManifestError(
            counted,
            hint=f"collect signatures (credit-node federation sign) from: {', '.join(missing)}",
        )
    if on_check:
        on_check(f"signatures: {counted}: ok")


def _check_expiry(manifest: Manifest, now: dt.datetime, on_check: OnCheck | None) -> None:
    if manifest.is_expired(now):
        raise ExpiredManifestError(
            f"{manifest.describe()} expired at {format_utc(manifest.expires)} "
            f"(now {format_utc(now)})",
            hint="the members must sign a new version with a later expiry",
        )
    if on_check:
        on_check(f"expiry: valid until {format_utc(manifest.expires)}: ok")


def verify_initial(
    signed: SignedManifest,
    *,
    now: dt.datetime,
    check_expiry: bool = True,
    on_check: OnCheck | None = None,
) -> Manifest:
    """Verify the operator's first manifest (trusted out of band, TUF's bootstrap root).

    Steps: a threshold of its own members signed it; it has not expired (not checked
    with ``check_expiry=False``, used only to re-verify a stored chain).
    """
    manifest = signed.manifest
    if on_check:
        on_check(
            f"format: {manifest.describe()}, {_plural(len(manifest.members), 'member')}, "
            f"threshold {manifest.threshold}, suite {manifest.signature_suite}: ok"
        )
    _check_threshold(signed, manifest, whose="its own members", on_check=on_check)
    if check_expiry:
        _check_expiry(manifest, now, on_check)
    return manifest


def verify_update(
    trusted: Manifest,
    candidate: SignedManifest,
    *,
    now: dt.datetime,
    check_expiry: bool = True,
    on_check: OnCheck | None = None,
) -> Manifest:
    """Verify ``candidate`` as the version that follows ``trusted`` (TUF §5.3).

    Steps, in order: same federation; version is exactly ``trusted.version + 1``; a
    threshold of the trusted version's members signed with their trusted keys; a threshold
    of its own members signed; every key it introduces signed (proof of possession); not
    expired, unless ``check_expiry=False`` (intermediate versions of a chain).

    A change of signature suite is a version in which every member's key is new (the
    manifest cannot hold a key of another suite), so the steps above already require a
    threshold of the old keys and every new key; it is reported as its own step.
    """
    manifest = candidate.manifest
    if manifest.federation_id != trusted.federation_id:
        raise WrongFederationError(
            f"manifest is for federation {manifest.federation_id!r}, "
            f"not the trusted {trusted.federation_id!r}"
        )
    if on_check:
        on_check(f"federation: {manifest.federation_id}, same as the trusted manifest: ok")
    _check_version(trusted, manifest)
    if on_check:
        on_check(f"version: v{manifest.version} follows the trusted v{trusted.version}: ok")
    _check_threshold(candidate, trusted, whose=f"members of v{trusted.version}", on_check=on_check)
    _check_threshold(candidate, manifest, whose="its own members", on_check=on_check)
    _check_new_keys(trusted, candidate, on_check)
    if on_check and manifest.signature_suite != trusted.signature_suite:
        on_check(
            f"suite: {trusted.signature_suite} -> {manifest.signature_suite}, every member's "
            "key rotated and signed: ok"
        )
    if check_expiry:
        _check_expiry(manifest, now, on_check)
    return manifest


def _check_version(trusted: Manifest, manifest: Manifest) -> None:
    expected = trusted.version + 1
    if manifest.version < trusted.version:
        raise BadVersionNumberError(
            f"manifest v{manifest.version} is older than the trusted v{trusted.version}: "
            "rollback refused"
        )
    if manifest.version == trusted.version:
        raise BadVersionNumberError(
            f"manifest v{manifest.version} has the same version as the trusted one; "
            f"the next must be v{expected}"
        )
    if manifest.version > expected:
        raise BadVersionNumberError(
            f"manifest v{manifest.version} skips versions: the trusted version is "
            f"v{trusted.version}, so the next must be v{expected}",
            hint="apply the versions in between first, in order",
        )


def new_keys(trusted: Manifest, manifest: Manifest) -> tuple[Member, ...]:
    """Members of ``manifest`` whose (city, signing key) pair ``trusted`` does not list."""
    known = {(m.city_code, m.signing_key.keyid) for m in trusted.members}
    return tuple(m for m in manifest.members if (m.city_code, m.signing_key.keyid) not in known)


def _check_new_keys(trusted: Manifest, candidate: SignedManifest, on_check: OnCheck | None) -> None:
    fresh = new_keys(trusted, candidate.manifest)
    signers = set(valid_signers(candidate, candidate.manifest))
    unsigned = [m for m in fresh if m.city_code not in signers]
    if unsigned:
        listed = ", ".join(f"{m.city_code} (key {m.signing_key.keyid[:16]})" for m in unsigned)
        raise UnsignedManifestError(
            f"{candidate.manifest.describe()} introduces keys that have not signed it: "
            f"{listed}; a new key must sign the manifest that introduces it",
            hint="have each new or rotated key sign (credit-node federation sign)",
        )
    if on_check:
        on_check(f"new keys signed: {_codes(m.city_code for m in fresh)}: ok")


class TrustedChain:
    """Every manifest version a node has accepted, oldest first (TUF: the trusted roots)."""

    def __init__(self, documents: Sequence[SignedManifest]) -> None:
        # Private: use bootstrap() or restore(), which verify.
        self._documents = list(documents)

    @classmethod
    def bootstrap(cls, signed: SignedManifest, *, now: dt.datetime) -> TrustedChain:
        """Start trusting the operator's first manifest."""
        verify_initial(signed, now=now)
        return cls([signed])

    @classmethod
    def restore(cls, documents: Sequence[SignedManifest]) -> TrustedChain:
        """Re-verify a stored chain (signatures and versions; expiry is checked at use).

        The current version may have expired since it was stored: that does not make the
        stored history untrusted, and the node needs it to accept the next version.
        """
        if not documents:
            raise ManifestFormatError("a stored manifest chain cannot be empty")
        first, *rest = documents
        trusted = verify_initial(first, now=first.manifest.expires, check_expiry=False)
        for document in rest:
            trusted = verify_update(trusted, document, now=trusted.expires, check_expiry=False)
        return cls(documents)

    @property
    def current(self) -> Manifest:
        return self._documents[-1].manifest

    @property
    def current_document(self) -> SignedManifest:
        return self._documents[-1]

    def documents(self) -> tuple[SignedManifest, ...]:
        return tuple(self._documents)

    def update(self, candidate: SignedManifest, *, now: dt.datetime) -> Manifest:
        """Accept ``candidate`` as the next version, or raise and keep the chain as it was."""
        manifest = verify_update(self.current, candidate, now=now)
        self._documents.append(candidate)
        return manifest

    def update_many(self, candidates: Sequence[SignedManifest], *, now: dt.datetime) -> Manifest:
        """Walk versions in order; only the last must be unexpired (TUF §5.3.11).

        All or nothing: if any version fails, the chain is left unchanged.
        """
        trusted = self.current
        for index, candidate in enumerate(candidates):
            last = index == len(candidates) - 1
            trusted = verify_update(trusted, candidate, now=now, check_expiry=last)
        self._documents.extend(candidates)
        return trusted


# --- building manifests -------------------------------------------------------------


def build_manifest(
    *,
    federation_id: str,
    federation_name: str,
    members: Iterable[Member],
    threshold: int,
    expires: dt.datetime,
    version: int = 1,
    common_scale: Sequence[str] = DEFAULT_COMMON_SCALE,
    signature_suite: str | None = None,
) -> Manifest:
    """A new manifest (checked; not yet signed).

    ``signature_suite`` defaults to the suite of the members' keys (refused if they mix).
    """
    members = tuple(members)
    return Manifest(
        federation_id=federation_id,
        federation_name=federation_name,
        version=version,
        expires=expires,
        threshold=threshold,
        members=members,
        common_scale=tuple(common_scale),
        signature_suite=members_suite(members) if signature_suite is None else signature_suite,
    )


def next_version(
    trusted: Manifest,
    *,
    expires: dt.datetime,
    add: Iterable[Member] = (),
    remove: Iterable[str] = (),
    replace: Iterable[Member] = (),
    threshold: int | None = None,
    signature_suite: str | None = None,
) -> Manifest:
    """The version after ``trusted``: members added, removed or replaced (new card).

    The threshold stays as it was unless given; if members are removed so that it no
    longer fits, the caller must choose a new one (lowering it silently would weaken trust).
    The signature suite stays as it was unless given; a new suite needs every member
    replaced by a card with a key of that suite.
    """
    add, remove, replace = tuple(add), tuple(remove), tuple(replace)
    touched = [m.city_code for m in add] + list(remove) + [m.city_code for m in replace]
    repeated = sorted({c for c in touched if touched.count(c) > 1})
    if repeated:
        raise InvalidInputError(
            f"city {', '.join(repeated)} is named more than once in add/remove/replace"
        )
    members = {m.city_code: m for m in trusted.members}
    for member in add:
        if member.city_code in members:
            raise InvalidInputError(
                f"{member.city_code} is already a member of {trusted.describe()}",
                hint="use replace to change an existing member's card",
            )
        members[member.city_code] = member
    for code in remove:
        if code not in members:
            raise InvalidInputError(f"{code} is not a member of {trusted.describe()}")
        del members[code]
    for member in replace:
        if member.city_code not in members:
            raise InvalidInputError(
                f"{member.city_code} is not a member of {trusted.describe()}",
                hint="use add for a new member",
            )
        members[member.city_code] = member
    return Manifest(
        federation_id=trusted.federation_id,
        federation_name=trusted.federation_name,
        version=trusted.version + 1,
        expires=expires,
        threshold=trusted.threshold if threshold is None else threshold,
        members=tuple(members.values()),
        common_scale=trusted.common_scale,
        signature_suite=trusted.signature_suite if signature_suite is None else signature_suite,
    )
