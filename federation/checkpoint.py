"""Signed checkpoints of a city's sanction-list log, and evidence of a split view.

A checkpoint (日志检查点) states "the log of ``origin`` has ``size`` leaves and this RFC 9162
Merkle root (:mod:`federation.merkle`) at ``timestamp``". The origin's node signs the
canonical JSON of the checkpoint with its Ed25519 signing key, the key the federation
manifest lists for it, in the manner of the signed tree heads of RFC 9162 §4.10 and of
transparency-log checkpoints. Because the signed bytes carry a ``type``, a checkpoint
signature can never be mistaken for a signature on another document.

Two validly signed checkpoints of one origin that cannot both be true (same size, different
roots, or no valid consistency proof between them) prove that the origin showed different
histories to different members: a :class:`SplitViewEvidence` carries both to the others.

Every check fails with a :class:`CheckpointError` that says which check failed.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any

from federation.canonical import canonical_bytes, parse_document
from federation.clock import format_utc, parse_utc
from federation.errors import CheckpointError, InvalidInputError, SignatureError
from federation.manifest import Manifest
from federation.member import check_city_code
from federation.merkle import EMPTY_ROOT, HASH_SIZE
from federation.sanctions import MAX_INDEX
from federation.signing import SigningKey, b64decode, b64encode

CHECKPOINT_TYPE = "creditnet.checkpoint/v1"
SPLIT_VIEW_TYPE = "creditnet.split-view/v1"
KEYID = re.compile(r"[0-9a-f]{64}")
HEX_HASH = re.compile(r"[0-9a-f]{64}")
MAX_SIGNATURE_BYTES = 1024
MAX_REASON_CHARS = 1000
#: Sizes, like leaf indices, are stored in signed 64-bit columns: a larger one, however
#: validly signed, could be neither stored nor ever reached.
MAX_SIZE = MAX_INDEX

_CHECKPOINT_FIELDS = frozenset({"type", "origin", "size", "root", "timestamp"})
_SIGNED_FIELDS = frozenset({"checkpoint", "keyid", "signature"})
_EVIDENCE_FIELDS = frozenset({"type", "first", "second", "reason"})


def _fields_match(value: dict[str, Any], expected: frozenset[str], where: str) -> None:
    if set(value) != expected:
        missing, extra = sorted(expected - set(value)), sorted(set(value) - expected)
        raise CheckpointError(f"{where}: fields do not match (missing {missing}, unknown {extra})")


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python, but `true` is not a tree size.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Checkpoint:
    """The state of one city's log: ``size`` leaves with Merkle root ``root``.

    ``timestamp`` is kept in UTC to the second, so that a checkpoint equals itself after a
    round trip through its JSON form.
    """

    origin: str
    size: int
    root: bytes
    timestamp: dt.datetime

    def __post_init__(self) -> None:
        try:
            check_city_code(self.origin)
        except InvalidInputError as exc:
            raise CheckpointError(f"checkpoint origin: {exc.message}") from None
        if not _is_int(self.size) or self.size < 0:
            raise CheckpointError(f"checkpoint size must be an integer >= 0, not {self.size!r}")
        if self.size > MAX_SIZE:
            raise CheckpointError(
                f"checkpoint size {self.size} is larger than any log can be (at most {MAX_SIZE})"
            )
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root must be a {HASH_SIZE}-byte SHA-256 hash")
        if self.size == 0 and self.root != EMPTY_ROOT:
            raise CheckpointError(
                "checkpoint of an empty log must have the empty root (SHA-256 of nothing)"
            )
        if not isinstance(self.timestamp, dt.datetime) or self.timestamp.tzinfo is None:
            raise CheckpointError("checkpoint timestamp must be a timezone-aware datetime")
        object.__setattr__(
            self, "timestamp", self.timestamp.astimezone(dt.UTC).replace(microsecond=0)
        )

    def describe(self) -> str:
        return f"checkpoint of {self.origin} at size {self.size}"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": CHECKPOINT_TYPE,
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "timestamp": format_utc(self.timestamp),
        }

    @classmethod
    def from_json(cls, value: object) -> Checkpoint:
        """Parse strictly: exact fields, exact types, canonical form."""
        if not isinstance(value, dict):
            raise CheckpointError("checkpoint must be a JSON object")
        if value.get("type") != CHECKPOINT_TYPE:
            raise CheckpointError(
                f"not a checkpoint: type is {value.get('type')!r}, expected {CHECKPOINT_TYPE!r}"
            )
        _fields_match(value, _CHECKPOINT_FIELDS, "checkpoint")
        origin, size, root, timestamp = (
            value["origin"],
            value["size"],
            value["root"],
            value["timestamp"],
        )
        if not isinstance(origin, str):
            raise CheckpointError("checkpoint: origin must be a string")
        if not _is_int(size):
            raise CheckpointError("checkpoint: size must be an integer")
        if not isinstance(root, str) or not HEX_HASH.fullmatch(root):
            raise CheckpointError("checkpoint: root must be 64 lower-case hex digits")
        if not isinstance(timestamp, str):
            raise CheckpointError("checkpoint: timestamp must be a string")
        try:
            at = parse_utc(timestamp)
        except ValueError as exc:
            raise CheckpointError(
                f"checkpoint: timestamp is not an RFC 3339 UTC time: {exc}"
            ) from None
        checkpoint = cls(origin, size, bytes.fromhex(root), at)
        # One meaning, one byte form: what the origin signed is exactly what everyone reads.
        if checkpoint.to_json() != value:
            raise CheckpointError(
                "checkpoint is not in canonical form (re-serialising it changes it: check the "
                "time format)"
            )
        return checkpoint

    def signed_bytes(self) -> bytes:
        """The bytes the origin signs: the canonical JSON of :meth:`to_json`."""
        return self._signed_bytes

    @functools.cached_property
    def _signed_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with its origin's signature by the key ``keyid``."""

    checkpoint: Checkpoint
    keyid: str
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint, Checkpoint):
            raise CheckpointError("signed checkpoint needs a Checkpoint")
        if not isinstance(self.keyid, str) or not KEYID.fullmatch(self.keyid):
            raise CheckpointError("checkpoint keyid must be 64 lower-case hex digits")
        if not isinstance(self.signature, bytes) or not (
            0 < len(self.signature) <= MAX_SIGNATURE_BYTES
        ):
            raise CheckpointError(f"checkpoint signature must be 1 to {MAX_SIGNATURE_BYTES} bytes")

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.to_json(),
            "keyid": self.keyid,
            "signature": b64encode(self.signature),
        }

    @classmethod
    def from_json(cls, value: object, *, what: str = "signed checkpoint") -> SignedCheckpoint:
        if not isinstance(value, dict):
            raise CheckpointError(f"{what} must be a JSON object")
        _fields_match(value, _SIGNED_FIELDS, what)
        keyid, encoded = value["keyid"], value["signature"]
        if not isinstance(keyid, str) or not isinstance(encoded, str):
            raise CheckpointError(f"{what}: keyid and signature must be strings")
        try:
            signature = b64decode(encoded, what=f"{what}: signature")
        except InvalidInputError as exc:
            raise CheckpointError(exc.message) from None
        if b64encode(signature) != encoded:
            raise CheckpointError(f"{what}: signature is not in canonical base64")
        try:
            return cls(Checkpoint.from_json(value["checkpoint"]), keyid, signature)
        except CheckpointError as exc:
            raise CheckpointError(f"{what}: {exc.message}") from None

    def to_bytes(self) -> bytes:
        """Canonical JSON ``{"checkpoint": {...}, "keyid": ..., "signature": <base64>}``."""
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedCheckpoint:
        """Parse a signed checkpoint; every malformation is a :class:`CheckpointError`.

        Parsing does not verify the signature: :func:`verify_checkpoint` does, against the
        manifest.
        """
        try:
            document = parse_document(data, what="signed checkpoint")
        except InvalidInputError as exc:
            raise CheckpointError(exc.message) from None
        return cls.from_json(document)


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey) -> SignedCheckpoint:
    """Sign ``checkpoint`` with the origin node's signing key."""
    return SignedCheckpoint(checkpoint, key.public_key.keyid, key.sign(checkpoint.signed_bytes()))


def verify_checkpoint(
    signed: SignedCheckpoint,
    manifest: Manifest,
    *,
    now: dt.datetime,
    max_skew: dt.timedelta = dt.timedelta(minutes=5),
) -> Checkpoint:
    """The checkpoint, if its origin signed it with the key ``manifest`` lists for it.

    Steps, each with its own message: the origin is a member; the key id is that member's
    signing key (not another member's, not a stranger's); the signature verifies over the
    checkpoint's signed bytes; the timestamp is at most ``max_skew`` after ``now``. Size and
    root were checked when the checkpoint was built.
    """
    if now.tzinfo is None:
        raise InvalidInputError("verify_checkpoint needs a timezone-aware 'now'")
    checkpoint = signed.checkpoint
    member = manifest.member(checkpoint.origin)
    if member is None:
        raise CheckpointError(
            f"{checkpoint.describe()}: {checkpoint.origin} is not a member of {manifest.describe()}"
        )
    expected = member.signing_key.keyid
    if signed.keyid != expected:
        holder = manifest.member_by_keyid(signed.keyid)
        whose = f"the key of {holder.city_code}" if holder else "not a member's key"
        raise CheckpointError(
            f"{checkpoint.describe()} is signed with key {signed.keyid[:16]} ({whose}), "
            f"not with {checkpoint.origin}'s signing key {expected[:16]} in "
            f"{manifest.describe()}"
        )
    try:
        member.signing_key.verify(signed.signature, checkpoint.signed_bytes())
    except SignatureError:
        raise CheckpointError(
            f"{checkpoint.describe()}: the signature by {checkpoint.origin}'s key does not "
            "verify (the checkpoint was altered or signed by another key)"
        ) from None
    if checkpoint.timestamp > now + max_skew:
        raise CheckpointError(
            f"{checkpoint.describe()} is from the future: timestamp "
            f"{format_utc(checkpoint.timestamp)}, now {format_utc(now)} "
            f"(allowed clock skew {max_skew})",
            hint="check the clocks of both nodes (NTP)",
        )
    return checkpoint


def conflicting(a: Checkpoint, b: Checkpoint) -> str | None:
    """Why ``a`` and ``b`` cannot both be true, if they are of one origin and one size."""
    if a.origin != b.origin or a.size != b.size or a.root == b.root:
        return None
    first, second = sorted((a.root.hex(), b.root.hex()))
    return (
        f"{a.origin} signed two different roots for log size {a.size}: "
        f"{first[:16]} and {second[:16]}"
    )


@dataclass(frozen=True)
class SplitViewEvidence:
    """Two signed checkpoints of one origin that cannot both be true, and why.

    Anyone holding the manifest can check both signatures: the evidence does not depend on
    trusting whoever relays it.
    """

    first: SignedCheckpoint
    second: SignedCheckpoint
    reason: str

    def __post_init__(self) -> None:
        if not isinstance(self.first, SignedCheckpoint) or not isinstance(
            self.second, SignedCheckpoint
        ):
            raise CheckpointError("split-view evidence needs two signed checkpoints")
        if self.first.checkpoint.origin != self.second.checkpoint.origin:
            raise CheckpointError(
                "split-view evidence needs two checkpoints of one origin, not of "
                f"{self.first.checkpoint.origin} and {self.second.checkpoint.origin}"
            )
        if self.first == self.second:
            raise CheckpointError("split-view evidence needs two different checkpoints")
        if not isinstance(self.reason, str) or not 0 < len(self.reason) <= MAX_REASON_CHARS:
            raise CheckpointError(
                f"split-view evidence needs a reason of 1 to {MAX_REASON_CHARS} characters"
            )

    @property
    def origin(self) -> str:
        return self.first.checkpoint.origin

    def to_json(self) -> dict[str, Any]:
        return {
            "type": SPLIT_VIEW_TYPE,
            "first": self.first.to_json(),
            "second": self.second.to_json(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, value: object) -> SplitViewEvidence:
        if not isinstance(value, dict):
            raise CheckpointError("split-view evidence must be a JSON object")
        if value.get("type") != SPLIT_VIEW_TYPE:
            raise CheckpointError(
                f"not split-view evidence: type is {value.get('type')!r}, "
                f"expected {SPLIT_VIEW_TYPE!r}"
            )
        _fields_match(value, _EVIDENCE_FIELDS, "split-view evidence")
        first = SignedCheckpoint.from_json(value["first"], what="split-view evidence: first")
        second = SignedCheckpoint.from_json(value["second"], what="split-view evidence: second")
        return cls(first, second, value["reason"])
