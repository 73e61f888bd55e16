"""Private matching against another city's non-public lists: the protocol's mathematics.

The design, its leakage and its security model are in ``docs/private-matching.md``; this
module is the plain-Python core both sides run, free of gRPC, SQL and processes.

In one paragraph: the *holder* places each subject of its non-public lists into a cuckoo
table (three hash functions, about 1.27 bins per subject), encrypts every bin under its own
Paillier key and publishes the encrypted table, signed, to the federation. Bin ``b`` holds
``T_b = v(y) + kinds(y) << (VALUE_BITS + 1)`` shifted into slot ``b mod k`` of the plaintext,
where ``v`` is a 96-bit oblivious PRF of the subject under the holder's secret key (only
the holder can compute it; a querier obtains it for its own subjects in one blinded round,
:func:`blind`, :func:`evaluate`, :func:`finalize`) and ``kinds`` says which lists it is on;
an empty bin holds a random value with no kinds. A *querier* probes each candidate bin of each
of its subjects: it packs up to ``k`` candidate bins, one per slot, into one ciphertext by
multiplying the published ciphertexts, subtracts ``v(x)``, adds a fresh uniform mask of
``STATISTICAL_BITS`` more bits than the slot's content to *every* slot, and re-randomises
with a precomputed ``r^n``. The holder decrypts (one decryption per ``k`` probes) and
answers a hash of every slot. The querier knows the mask, so it can tell whether a probed
slot decrypted to "equal, with these kinds" (a hit) and nothing else: for any other slot the
hash hides a value with 96 bits it does not know and cannot compute for a guessed subject.
The holder sees only uniform slots.

Costs per probed subject (three candidate bins): querier offline ``3/k`` full-size
exponentiations (``r^n mod n^2``), online a few modular multiplications; holder online
``3/k`` CRT decryptions (each about a quarter of a full exponentiation); holder offline one
quarter exponentiation per bin when it encrypts or changes its table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import random
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import gmpy2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from federation.canonical import canonical_bytes, parse_document
from federation.clock import format_utc, parse_utc
from federation.errors import InvalidInputError, SignatureError
from federation.manifest import Manifest
from federation.member import check_city_code
from federation.signing import SigningKey

VALUE_BITS = 96
"""Bits of the subject hash ``v``: what a querier would have to guess to learn a bin's content."""

STATISTICAL_BITS = 40
"""Extra mask bits per slot: the holder's view of a slot is within 2^-40 of uniform."""

HASH_FUNCTIONS = 3
BINS_PER_SUBJECT = 1.27
CAPACITY_STEP = 1024
"""The table is sized for the list rounded up to this step: its size reveals no more."""

MAX_KINDS = 8
ANSWER_BYTES = 16
MAX_EVICTIONS = 2000
PROTOCOL_LABEL = b"creditnet/private-match/v1"


class MatchingError(InvalidInputError):
    """A table, request or answer that does not follow the protocol."""


class TableFullError(MatchingError):
    """The cuckoo table cannot take another subject: rebuild it larger or with a new seed."""


# -- layout -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TableLayout:
    """What both sides must agree on to use one encrypted table (published, signed)."""

    n: int
    seed: bytes
    bins: int
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.n.bit_length() < 1024:
            raise MatchingError("the Paillier modulus has fewer than 1024 bits")
        if len(self.seed) != 16:
            raise MatchingError("the table seed must be 16 bytes")
        if not 0 < len(self.kinds) <= MAX_KINDS or len(set(self.kinds)) != len(self.kinds):
            raise MatchingError(f"a table covers 1 to {MAX_KINDS} distinct list kinds")
        if self.bins < HASH_FUNCTIONS or self.bins > 1 << 32:
            raise MatchingError("the table has an impossible number of bins")
        if self.slots_per_ciphertext < 1:
            raise MatchingError("the Paillier modulus is too small for one slot")

    @property
    def n_square(self) -> int:
        return self.n * self.n

    @property
    def ciphertext_bytes(self) -> int:
        return (self.n_square.bit_length() + 7) // 8

    @property
    def slot_bits(self) -> int:
        # content: T_b - v(x) + 2^VALUE_BITS < 2^(VALUE_BITS + len(kinds) + 2); mask adds 40
        # bits; one bit more so that content + mask never carries into the next slot.
        return VALUE_BITS + len(self.kinds) + 2 + STATISTICAL_BITS + 1

    @property
    def slots_per_ciphertext(self) -> int:
        return (self.n.bit_length() - 1) // self.slot_bits

    @property
    def mask_limit(self) -> int:
        return 1 << (self.slot_bits - 1)

    def kind_mask(self, kinds: Iterable[str]) -> int:
        mask = 0
        for kind in kinds:
            if kind not in self.kinds:
                raise MatchingError(f"list kind {kind!r} is not covered by this table")
            mask |= 1 << self.kinds.index(kind)
        return mask

    def kinds_of(self, mask: int) -> tuple[str, ...]:
        return tuple(kind for i, kind in enumerate(self.kinds) if mask >> i & 1)

    def candidate_bins(self, subject_key: str) -> tuple[int, ...]:
        """The candidate bins of one subject (a normalised identifier), from the public seed.

        Anyone holding the table can compute them; what goes *into* a bin is the holder's
        keyed value (:meth:`OprfKey.value`), which no one else can compute.
        """
        digest = hashlib.sha512(
            PROTOCOL_LABEL + b"/locate" + self.seed + subject_key.encode()
        ).digest()
        offset = VALUE_BITS // 8
        candidates: list[int] = []
        for i in range(HASH_FUNCTIONS):
            word = int.from_bytes(digest[offset + 8 * i : offset + 8 * (i + 1)], "big")
            candidate = word % self.bins
            if candidate not in candidates:
                candidates.append(candidate)
        return tuple(candidates)

    def locate(self, subject_key: str, value: int) -> Placement:
        """The placement of a subject whose OPRF value ``v(x)`` is ``value``."""
        if not 0 <= value < 1 << VALUE_BITS:
            raise MatchingError(f"a subject value has {VALUE_BITS} bits")
        return Placement(value=value, bins=self.candidate_bins(subject_key))

    def slot_of(self, bin_index: int) -> int:
        return bin_index % self.slots_per_ciphertext

    def to_json(self) -> dict[str, Any]:
        return {
            "n": format(self.n, "x"),
            "seed": self.seed.hex(),
            "bins": self.bins,
            "kinds": list(self.kinds),
        }

    @classmethod
    def from_json(cls, value: object) -> TableLayout:
        if not isinstance(value, dict) or set(value) != {"n", "seed", "bins", "kinds"}:
            raise MatchingError("a table layout has exactly n, seed, bins and kinds")
        try:
            n = int(value["n"], 16)
            seed = bytes.fromhex(value["seed"])
        except (TypeError, ValueError):
            raise MatchingError("a table layout's n and seed must be hex") from None
        bins, kinds = value["bins"], value["kinds"]
        if not isinstance(bins, int) or isinstance(bins, bool):
            raise MatchingError("a table layout's bins must be an integer")
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise MatchingError("a table layout's kinds must be a list of strings")
        return cls(n=n, seed=seed, bins=bins, kinds=tuple(kinds))


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a subject goes: its keyed 96-bit value ``v(x)`` and its candidate bins."""

    value: int
    bins: tuple[int, ...]


def capacity_for(subjects: int) -> int:
    """The padded list size a table is built for (what its size reveals)."""
    return max(CAPACITY_STEP, -(-subjects // CAPACITY_STEP) * CAPACITY_STEP)


def bins_for(capacity: int) -> int:
    return math.ceil(capacity * BINS_PER_SUBJECT)


def new_layout(n: int, kinds: Sequence[str], subjects: int) -> TableLayout:
    return TableLayout(
        n=n, seed=secrets.token_bytes(16), bins=bins_for(capacity_for(subjects)), kinds=tuple(kinds)
    )


# -- the subject value: an oblivious PRF on P-256 -------------------------------------------
#
# v(x) = the first 96 bits of SHA-512(label/value || x(k * H(x))), with k the holder's secret
# scalar and H a hash onto P-256. The querier learns v(x) without showing x: it sends
# x(a * H(x)) for a fresh uniform scalar a, the holder returns x(k * that point), and the
# querier removes a. Without k nobody can compute v(y) for a guessed y, so a no-hit answer
# can be tested against a candidate identifier only by asking the holder (and its quota).
# Every scalar multiplication is pyca/cryptography's ECDH, which returns the x-coordinate
# only: k * (-P) has the x-coordinate of k * P, so a point is always decoded with prefix 02.

OPRF_CURVE = ec.SECP256R1()
OPRF_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""The order of P-256's group (cofactor 1): the scalars are the integers in ``[1, order)``."""

OPRF_ELEMENT_BYTES = 32
"""A blinded or evaluated value: the x-coordinate of a P-256 point, big-endian."""

_HASH_TO_CURVE_TRIES = 256


def hash_to_point(subject_key: str) -> ec.EllipticCurvePublicKey:
    """``H(x)``: a P-256 point for a subject key, by try-and-increment.

    ``t_i = SHA-256(label/point || i || x)`` for ``i = 0, 1, ...`` until ``02 || t_i`` decodes
    as a compressed point (about half of them do). The loop's length depends on ``x``; it
    runs only where ``x`` is already known (the querier on its own subjects, the holder on
    its own entries).
    """
    data = subject_key.encode()
    for i in range(_HASH_TO_CURVE_TRIES):
        t = hashlib.sha256(PROTOCOL_LABEL + b"/point" + i.to_bytes(4, "big") + data).digest()
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(OPRF_CURVE, b"\x02" + t)
        except ValueError:
            continue
    raise MatchingError("no curve point found for a subject key")  # probability 2^-256


def _decode_element(element: bytes) -> ec.EllipticCurvePublicKey:
    if len(element) != OPRF_ELEMENT_BYTES:
        raise MatchingError(f"an OPRF value is {OPRF_ELEMENT_BYTES} bytes, not {len(element)}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(OPRF_CURVE, b"\x02" + element)
    except ValueError:
        raise MatchingError("an OPRF value is not the x-coordinate of a P-256 point") from None


def _multiply(scalar: int, point: ec.EllipticCurvePublicKey) -> bytes:
    """``x(scalar * point)`` through ECDH."""
    return ec.derive_private_key(scalar, OPRF_CURVE).exchange(ec.ECDH(), point)


def value_of_element(element: bytes) -> int:
    """``v(x)`` from ``x(k * H(x))``: the first 96 bits of SHA-512(label/value || X)."""
    digest = hashlib.sha512(PROTOCOL_LABEL + b"/value" + element).digest()
    return int.from_bytes(digest[: VALUE_BITS // 8], "big")


class OprfKey:
    """The holder's OPRF key ``k`` (a P-256 scalar): secret, long-lived, one per holder.

    It does not change with the table seed: a querier's values stay valid across tables,
    and a new key would void every value the holder's index holds.
    """

    def __init__(self, scalar: int) -> None:
        if not 0 < scalar < OPRF_ORDER:
            raise MatchingError("an OPRF key is a scalar in [1, order of P-256)")
        self._private = ec.derive_private_key(scalar, OPRF_CURVE)

    @classmethod
    def generate(cls) -> OprfKey:
        return cls(1 + secrets.randbelow(OPRF_ORDER - 1))

    @classmethod
    def from_pem(cls, data: bytes) -> OprfKey:
        """From a PKCS#8 PEM P-256 private key (the form :meth:`to_pem` writes)."""
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise MatchingError("the OPRF key is not a PEM private key") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise MatchingError("the OPRF key must be a P-256 private key")
        return cls(private.private_numbers().private_value)

    def to_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def fingerprint(self) -> str:
        """SHA-256 of the public point ``k * G``: names the key (in the index) without it."""
        public = self._private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        return hashlib.sha256(PROTOCOL_LABEL + b"/oprf-key" + public).hexdigest()

    def value(self, subject_key: str) -> int:
        """``v(x)`` computed directly (the holder, for its own entries)."""
        return value_of_element(self._times(hash_to_point(subject_key)))

    def _times(self, point: ec.EllipticCurvePublicKey) -> bytes:
        return self._private.exchange(ec.ECDH(), point)

    def __repr__(self) -> str:
        return f"OprfKey({self.fingerprint()[:16]})"


@dataclasses.dataclass(frozen=True)
class Blinded:
    """The querier's blinded subject: what it sends (``element``) and its secret ``a``."""

    element: bytes
    scalar: int = dataclasses.field(repr=False)


def blind(subject_key: str, *, scalar: int | None = None) -> Blinded:
    """``x(a * H(x))`` for a fresh uniform scalar ``a`` (``scalar`` only in tests)."""
    a = 1 + secrets.randbelow(OPRF_ORDER - 1) if scalar is None else scalar
    if not 0 < a < OPRF_ORDER:
        raise MatchingError("a blinding scalar is in [1, order of P-256)")
    return Blinded(element=_multiply(a, hash_to_point(subject_key)), scalar=a)


def evaluate(key: OprfKey, blinded: Sequence[bytes]) -> list[bytes]:
    """The holder's answer to blinded values: ``x(k * A)`` for each, in order.

    Every value is checked before any is evaluated: one that is not 32 bytes or not the
    x-coordinate of a P-256 point is refused (MatchingError). The holder learns nothing
    from ``A`` but the count: for a uniform ``a``, ``a * H(x)`` is a uniform point.
    """
    points = [_decode_element(element) for element in blinded]
    return [key._times(point) for point in points]


def check_blinded(blinded: Sequence[bytes]) -> None:
    """Refuse (MatchingError) blinded values that are not P-256 x-coordinates of 32 bytes."""
    for element in blinded:
        _decode_element(element)


def finalize(blinded: Blinded, evaluated: bytes) -> int:
    """``v(x)`` from the holder's ``x(k * a * H(x))``: multiply by ``a^-1``, then hash."""
    inverse = pow(blinded.scalar, -1, OPRF_ORDER)
    return value_of_element(_multiply(inverse, _decode_element(evaluated)))


# -- the holder's index -------------------------------------------------------------------


@dataclasses.dataclass
class Occupant:
    """One subject in a bin: its hash, its candidate bins and the lists it is on."""

    value: int
    bins: tuple[int, ...]
    kinds: int


class CuckooIndex:
    """Where the holder's subjects sit in the table (kept by the holder only).

    Every change returns the bins whose plaintext changed, so that the holder re-encrypts
    only those and publishes them as one update.
    """

    def __init__(self, layout: TableLayout, *, rng: secrets.SystemRandom | None = None) -> None:
        self.layout = layout
        self._rng = rng or secrets.SystemRandom()
        self._bins: list[Occupant | None] = [None] * layout.bins
        self._where: dict[int, int] = {}  # value -> bin
        self._dummies: dict[int, int] = {}  # bin -> random value shown while the bin is empty

    def __len__(self) -> int:
        return len(self._where)

    @property
    def capacity(self) -> int:
        return int(self.layout.bins / BINS_PER_SUBJECT)

    def occupant(self, bin_index: int) -> Occupant | None:
        return self._bins[bin_index]

    def occupants(self) -> Iterable[tuple[int, Occupant]]:
        return ((b, o) for b, o in enumerate(self._bins) if o is not None)

    def put(self, place: Placement, kinds: Iterable[str]) -> set[int]:
        """Add a subject or change the lists it is on; returns the bins that changed."""
        mask = self.layout.kind_mask(kinds)
        if not mask:
            return self.discard(place)
        current = self._where.get(place.value)
        if current is not None:
            occupant = self._bins[current]
            assert occupant is not None
            if occupant.kinds == mask:
                return set()
            occupant.kinds = mask
            return {current}
        if len(self._where) >= self.capacity:
            raise TableFullError("the table is at capacity; rebuild it for the larger list")
        return self._insert(Occupant(place.value, place.bins, mask))

    def discard(self, place: Placement) -> set[int]:
        """Remove a subject (credit repair, expiry); returns the bins that changed."""
        current = self._where.pop(place.value, None)
        if current is None:
            return set()
        self._bins[current] = None
        self._dummies.pop(current, None)
        return {current}

    def _insert(self, occupant: Occupant) -> set[int]:
        changed: set[int] = set()
        moving = occupant
        for _ in range(MAX_EVICTIONS):
            for candidate in moving.bins:
                if self._bins[candidate] is None:
                    self._place(candidate, moving)
                    changed.add(candidate)
                    return changed
            target = self._rng.choice(moving.bins)
            evicted = self._bins[target]
            assert evicted is not None
            self._place(target, moving)
            changed.add(target)
            moving = evicted
        # Undo is not worth it: the caller rebuilds the whole table with a new seed.
        raise TableFullError("cuckoo insertion did not settle; rebuild the table with a new seed")

    def _place(self, bin_index: int, occupant: Occupant) -> None:
        self._bins[bin_index] = occupant
        self._where[occupant.value] = bin_index
        self._dummies.pop(bin_index, None)

    def plaintext(self, bin_index: int) -> int:
        """``T_b`` shifted into the bin's slot: what the published ciphertext encrypts."""
        occupant = self._bins[bin_index]
        if occupant is None:
            content = self._dummies.get(bin_index)
            if content is None:
                content = self._rng.getrandbits(VALUE_BITS)
                self._dummies[bin_index] = content
        else:
            content = occupant.value + (occupant.kinds << (VALUE_BITS + 1))
        return content << (self.layout.slot_bits * self.layout.slot_of(bin_index))

    def to_json(self) -> dict[str, Any]:
        """The holder's private record of its index (no identifiers: hashes and bins)."""
        return {
            "layout": self.layout.to_json(),
            "occupants": [
                [b, format(o.value, "x"), list(o.bins), o.kinds] for b, o in self.occupants()
            ],
            "dummies": [[b, format(v, "x")] for b, v in sorted(self._dummies.items())],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CuckooIndex:
        index = cls(TableLayout.from_json(value["layout"]))
        for b, v, bins, kinds in value["occupants"]:
            index._place(int(b), Occupant(int(v, 16), tuple(int(x) for x in bins), int(kinds)))
        for b, v in value["dummies"]:
            index._dummies[int(b)] = int(v, 16)
        return index


def build_index(
    layout_for: Callable[[], TableLayout],
    subjects: Mapping[str, Iterable[str]],
    value_of: Callable[[str], int],
    *,
    tries: int = 5,
) -> CuckooIndex:
    """Place every subject (key -> list kinds) under its value ``value_of(key)`` (the
    holder's :meth:`OprfKey.value`); a fresh seed is drawn if insertion fails."""
    values = {key: value_of(key) for key in subjects}
    for _ in range(tries):
        index = CuckooIndex(layout_for())
        layout = index.layout
        try:
            for key, kinds in subjects.items():
                index.put(layout.locate(key, values[key]), kinds)
        except TableFullError:
            continue
        return index
    raise TableFullError(f"no cuckoo placement found in {tries} tries")


# -- Paillier pieces -------------------------------------------------------------------


class HolderKey:
    """The holder's Paillier key: CRT encryption of table bins and decryption of probes."""

    def __init__(self, p: int, q: int) -> None:
        if p == q or p * q < 1 << 1023:
            raise MatchingError("a Paillier key needs two distinct primes of at least 512 bits")
        self.p, self.q = (p, q) if p < q else (q, p)
        self.n = self.p * self.q
        self.n_square = self.n * self.n
        self._p2 = self.p * self.p
        self._q2 = self.q * self.q
        self._p2_inverse = int(gmpy2.invert(self._p2, self._q2))
        self._hp = int(
            gmpy2.invert(self._l(gmpy2.powmod(self.n + 1, self.p - 1, self._p2), self.p), self.p)
        )
        self._hq = int(
            gmpy2.invert(self._l(gmpy2.powmod(self.n + 1, self.q - 1, self._q2), self.q), self.q)
        )
        self._p_inverse = int(gmpy2.invert(self.p, self.q))

    @classmethod
    def from_phe(cls, private_key: Any) -> HolderKey:
        return cls(int(private_key.p), int(private_key.q))

    @staticmethod
    def _l(x: Any, d: int) -> int:
        return int((x - 1) // d)

    def random_nth_residue(self) -> int:
        """A uniform ``r^n mod n^2`` for a quarter of the price (CRT, exponents p and q).

        Raising to ``n`` maps onto the subgroup of order ``p - 1`` modulo ``p^2``; so does raising
        to ``p``, with a 1024-bit exponent on a 2048-bit modulus instead of 2048 on 4096.
        """
        a = int(gmpy2.powmod(_unit_below(self._p2, self.p), self.p, self._p2))
        b = int(gmpy2.powmod(_unit_below(self._q2, self.q), self.q, self._q2))
        return a + self._p2 * ((b - a) * self._p2_inverse % self._q2)

    def encrypt(self, plaintext: int, nth_residue: int | None = None) -> int:
        if not 0 <= plaintext < self.n:
            raise MatchingError("plaintext out of range")
        rn = self.random_nth_residue() if nth_residue is None else nth_residue
        return (1 + plaintext * self.n) * rn % self.n_square

    def decrypt(self, ciphertext: int) -> int:
        if not 0 < ciphertext < self.n_square or math.gcd(ciphertext, self.n) != 1:
            raise MatchingError("a ciphertext is out of range")
        mp = self._l(gmpy2.powmod(ciphertext, self.p - 1, self._p2), self.p) * self._hp % self.p
        mq = self._l(gmpy2.powmod(ciphertext, self.q - 1, self._q2), self.q) * self._hq % self.q
        return mp + self.p * ((mq - mp) * self._p_inverse % self.q)


def _unit_below(limit: int, prime: int) -> int:
    while True:
        y = secrets.randbelow(limit)
        if y % prime:
            return y


def querier_nth_residue(n: int) -> int:
    """A fresh ``r^n mod n^2`` with the public key only: one full exponentiation (offline)."""
    while True:
        r = secrets.randbelow(n)
        if r > 1 and math.gcd(r, n) == 1:
            return int(gmpy2.powmod(r, n, n * n))


# -- the querier's probes -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SlotProbe:
    """One candidate bin of one subject, tested in slot ``slot`` of ciphertext ``ciphertext``."""

    subject: int
    bin: int
    ciphertext: int
    slot: int


@dataclasses.dataclass(frozen=True)
class ProbePlan:
    layout: TableLayout
    subjects: int
    probes: tuple[SlotProbe, ...]
    ciphertexts: int
    values: tuple[int, ...]


def ciphertexts_for(layout: TableLayout, subjects: int) -> int:
    """How many probe ciphertexts a batch of ``subjects`` sends: a function of the count only.

    With ``c = 3 * subjects`` probes over ``k`` slot positions the busiest position holds about
    ``c / k`` probes; six standard deviations more make an overflow (which would need more
    ciphertexts, and so reveal a little about where the probes fall) vanishingly rare.
    """
    k = layout.slots_per_ciphertext
    probes = HASH_FUNCTIONS * subjects
    mean = probes / k
    padded = math.ceil(mean + 6 * math.sqrt(mean) + 2)
    return max(0, min(probes, padded))


#: The fixed fields of a probe request (id, time, table id, epoch, mode, count), with room.
_PROBE_HEADER_BYTES = 512
_POINT_BYTES = 32  # an X25519 value of the count-only mode


def _field_bytes(value_bytes: int) -> int:
    """One value of a repeated ``bytes`` field on the wire: tag, length (a varint), value."""
    return 1 + (value_bytes.bit_length() + 6) // 7 + value_bytes


def probe_message_bytes(layout: TableLayout, subjects: int, *, count_only: bool) -> int:
    """An upper bound of the larger of a probe request for ``subjects`` subjects and its
    answer, in bytes on the wire: what must fit in one gRPC message.

    Membership mode sends the probe ciphertexts and gets one digest per slot back. Count-only
    mode also sends every digest a hit could produce, ``2^kinds - 1`` per probe, blinded, and
    gets them back blinded twice with the holder's slot digests: with six kinds that is about
    6.4 KB per subject, so the batch must be cut finer than in membership mode.
    """
    ciphertexts = ciphertexts_for(layout, subjects)
    slots = layout.slots_per_ciphertext
    request = _PROBE_HEADER_BYTES + ciphertexts * _field_bytes(layout.ciphertext_bytes)
    if not count_only:
        return max(request, ciphertexts * _field_bytes(slots * ANSWER_BYTES))
    expected = HASH_FUNCTIONS * subjects * ((1 << len(layout.kinds)) - 1)
    point = _field_bytes(_POINT_BYTES)
    return max(request + expected * point, (expected + ciphertexts * slots) * point)


def subjects_per_request(
    layout: TableLayout, *, count_only: bool, most: int, max_message_bytes: int
) -> int:
    """How many subjects one probe request may carry: at most ``most``, and few enough that
    the request and its answer fit in ``max_message_bytes`` (:func:`probe_message_bytes`).

    Raises :class:`MatchingError` when not even one subject fits.
    """
    if probe_message_bytes(layout, 1, count_only=count_only) > max_message_bytes:
        raise MatchingError(
            f"a probe for one subject needs more than {max_message_bytes} bytes, the largest "
            "message allowed: raise [limits] max_message_bytes"
        )
    low, high = 1, max(1, most)  # the answer is in [low, high]; the size grows with subjects
    while low < high:
        middle = (low + high + 1) // 2
        if probe_message_bytes(layout, middle, count_only=count_only) <= max_message_bytes:
            low = middle
        else:
            high = middle - 1
    return low


def plan_probes(
    layout: TableLayout, subject_keys: Sequence[str], subject_values: Sequence[int]
) -> ProbePlan:
    """Assign every candidate bin of every subject to a (ciphertext, slot).

    ``subject_values[i]`` is ``v(subject_keys[i])``, obtained from the holder by the OPRF round
    (:func:`blind_subject`, the holder's :meth:`OprfKey.evaluate`, :meth:`Blinded.finalize`).
    """
    if len(subject_values) != len(subject_keys):
        raise MatchingError("one OPRF value per subject is needed to plan the probes")
    k = layout.slots_per_ciphertext
    used = [0] * k
    probes: list[SlotProbe] = []
    values: list[int] = []
    for i, key in enumerate(subject_keys):
        place = layout.locate(key, subject_values[i])
        values.append(place.value)
        for bin_index in place.bins:
            slot = layout.slot_of(bin_index)
            probes.append(SlotProbe(i, bin_index, used[slot], slot))
            used[slot] += 1
    count = max(ciphertexts_for(layout, len(subject_keys)), max(used, default=0))
    return ProbePlan(layout, len(subject_keys), tuple(probes), count, tuple(values))


@dataclasses.dataclass
class ProbeSecrets:
    """What the querier keeps to read the answer: every slot's mask."""

    masks: list[list[int]]


def build_probes(
    plan: ProbePlan,
    table_ciphertext: Callable[[int], int],
    nth_residues: Iterable[int],
    *,
    rng: random.Random | None = None,
) -> tuple[list[int], ProbeSecrets]:
    """The probe ciphertexts of a plan, and the secrets to read the holder's answer.

    ``rng`` draws the masks; only tests pass one (to replay a run with the same masks).
    """
    layout = plan.layout
    w, k = layout.slot_bits, layout.slots_per_ciphertext
    n, n2 = gmpy2.mpz(layout.n), gmpy2.mpz(layout.n_square)  # gmpy2: ~10x Python's mulmod
    residues = iter(nth_residues)
    offsets = [[0] * k for _ in range(plan.ciphertexts)]
    accumulators = [gmpy2.mpz(next(residues)) for _ in range(plan.ciphertexts)]
    one = 1 << VALUE_BITS
    for probe in plan.probes:
        j = probe.ciphertext
        accumulators[j] = accumulators[j] * gmpy2.mpz(table_ciphertext(probe.bin)) % n2
        offsets[j][probe.slot] = one - plan.values[probe.subject]
    draw = rng or secrets.SystemRandom()
    limit = layout.mask_limit
    masks = [[draw.randrange(limit) for _ in range(k)] for _ in range(plan.ciphertexts)]
    ciphertexts: list[int] = []
    for j in range(plan.ciphertexts):
        plaintext = 0
        for s in range(k - 1, -1, -1):
            plaintext = (plaintext << w) + offsets[j][s] + masks[j][s]
        ciphertexts.append(int(accumulators[j] * (1 + plaintext * n) % n2))
    return ciphertexts, ProbeSecrets(masks)


def slot_digest(request_id: bytes, ciphertext: int, slot: int, content: int) -> bytes:
    return hashlib.sha256(
        PROTOCOL_LABEL
        + b"/slot"
        + request_id
        + ciphertext.to_bytes(4, "big")
        + slot.to_bytes(2, "big")
        + content.to_bytes(64, "big")
    ).digest()[:ANSWER_BYTES]


def answer_probes(
    key: HolderKey,
    layout: TableLayout,
    request_id: bytes,
    ciphertexts: Sequence[int],
    *,
    first: int = 0,
) -> list[bytes]:
    """The holder's answer: for every probe ciphertext, a digest of every slot, in order.

    ``first`` is the index of ``ciphertexts[0]`` in the whole request, so that a request can
    be answered in chunks by several processes.
    """
    w, k = layout.slot_bits, layout.slots_per_ciphertext
    slot_mask = (1 << w) - 1
    answers: list[bytes] = []
    for offset, ciphertext in enumerate(ciphertexts):
        plaintext = key.decrypt(ciphertext)
        if plaintext >> (w * k):
            raise MatchingError(f"probe ciphertext {first + offset} decrypts out of range")
        answers.append(
            b"".join(
                slot_digest(request_id, first + offset, s, plaintext >> (w * s) & slot_mask)
                for s in range(k)
            )
        )
    return answers


def read_answers(
    plan: ProbePlan, secrets_: ProbeSecrets, request_id: bytes, answers: Sequence[bytes]
) -> list[tuple[str, ...]]:
    """For every subject of the plan, the list kinds the holder has it on (empty: no hit)."""
    layout = plan.layout
    k = layout.slots_per_ciphertext
    if len(answers) != plan.ciphertexts or any(len(a) != k * ANSWER_BYTES for a in answers):
        raise MatchingError("the holder's answer does not fit the request")
    hits: list[int] = [0] * plan.subjects
    one = 1 << VALUE_BITS
    kind_masks = range(1, 1 << len(layout.kinds))
    for probe in plan.probes:
        j, s = probe.ciphertext, probe.slot
        got = answers[j][s * ANSWER_BYTES : (s + 1) * ANSWER_BYTES]
        base = one + secrets_.masks[j][s]
        for mask in kind_masks:
            expected = slot_digest(request_id, j, s, base + (mask << (VALUE_BITS + 1)))
            if secrets.compare_digest(expected, got):
                hits[probe.subject] |= mask
                break
    return [layout.kinds_of(mask) for mask in hits]


def expected_digests(plan: ProbePlan, secrets_: ProbeSecrets, request_id: bytes) -> list[bytes]:
    """Every digest a hit could produce (count-only mode), in plan order, padded to a fixed size.

    The padding (random digests) makes the count a function of the batch size alone.
    """
    layout = plan.layout
    one = 1 << VALUE_BITS
    per_probe = (1 << len(layout.kinds)) - 1
    digests = [
        slot_digest(
            request_id,
            p.ciphertext,
            p.slot,
            one + secrets_.masks[p.ciphertext][p.slot] + (m << (VALUE_BITS + 1)),
        )
        for p in plan.probes
        for m in range(1, per_probe + 1)
    ]
    wanted = HASH_FUNCTIONS * plan.subjects * per_probe
    digests.extend(secrets.token_bytes(ANSWER_BYTES) for _ in range(wanted - len(digests)))
    return digests


# -- count-only mode: a shuffled Diffie-Hellman comparison of the digests ---------------------
#
# The querier blinds the digests a hit could produce with its X25519 scalar a; the holder
# raises them to its scalar b and shuffles them, and sends its own slot digests raised to b,
# shuffled too. The querier raises those to a and counts the common values: it learns how
# many probes hit and not which, since both lists arrive shuffled.


def _point(digest: bytes) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(
        hashlib.sha256(PROTOCOL_LABEL + b"/count" + digest).digest()
    )


def _raise(scalar: X25519PrivateKey, point: bytes) -> bytes:
    try:
        return scalar.exchange(X25519PublicKey.from_public_bytes(point))
    except ValueError:
        raise MatchingError("a blinded value is not a usable X25519 point") from None


def blind_expected(scalar: X25519PrivateKey, digests: Sequence[bytes]) -> list[bytes]:
    return [scalar.exchange(_point(d)) for d in digests]


def blind_for_count(
    scalar: X25519PrivateKey, blinded_expected: Sequence[bytes], answers: Sequence[bytes]
) -> tuple[list[bytes], list[bytes]]:
    """The holder's count-only answer: expected values and slot digests raised to b, shuffled."""
    if any(len(p) != 32 for p in blinded_expected):
        raise MatchingError("a blinded value must be 32 bytes")
    twice = [_raise(scalar, p) for p in blinded_expected]
    digests = [a[i : i + ANSWER_BYTES] for a in answers for i in range(0, len(a), ANSWER_BYTES)]
    own = [scalar.exchange(_point(d)) for d in digests]
    rng = secrets.SystemRandom()
    rng.shuffle(twice)
    rng.shuffle(own)
    return twice, own


def count_hits(
    scalar: X25519PrivateKey, twice_blinded: Sequence[bytes], holder_blinded: Sequence[bytes]
) -> int:
    """How many of the holder's slot digests equal a digest the querier expected for a hit."""
    expected = set(twice_blinded)
    return sum(1 for point in holder_blinded if _raise(scalar, point) in expected)


# -- the signed table header ----------------------------------------------------------------

TABLE_HEADER_TYPE = "creditnet.match-table/v1"
_HEADER_FIELDS = frozenset({"type", "holder", "table_id", "epoch", "layout", "digest", "issued_at"})


def table_digest(ciphertexts: Iterable[bytes]) -> bytes:
    """SHA-256 over every bin's fixed-width ciphertext in bin order: what the header signs."""
    digest = hashlib.sha256(PROTOCOL_LABEL + b"/table")
    for ciphertext in ciphertexts:
        digest.update(ciphertext)
    return digest.digest()


@dataclasses.dataclass(frozen=True)
class TableHeader:
    """A holder's statement "my table ``table_id`` at ``epoch`` has this layout and content"."""

    holder: str
    table_id: str
    epoch: int
    layout: TableLayout
    digest: bytes
    issued_at: dt.datetime

    def __post_init__(self) -> None:
        check_city_code(self.holder)
        if not re.fullmatch(r"[0-9a-f]{32}", self.table_id):
            raise MatchingError("a table id is 32 lower-case hex digits")
        if not isinstance(self.epoch, int) or isinstance(self.epoch, bool) or self.epoch < 1:
            raise MatchingError("a table epoch is an integer >= 1")
        if len(self.digest) != 32:
            raise MatchingError("a table digest is 32 bytes")

    def describe(self) -> str:
        return f"matching table {self.table_id[:8]} of {self.holder} at epoch {self.epoch}"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": TABLE_HEADER_TYPE,
            "holder": self.holder,
            "table_id": self.table_id,
            "epoch": self.epoch,
            "layout": self.layout.to_json(),
            "digest": self.digest.hex(),
            "issued_at": format_utc(self.issued_at),
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> TableHeader:
        try:
            value = parse_document(data, what="matching table header")
        except InvalidInputError as exc:
            raise MatchingError(exc.message) from None
        if set(value) != _HEADER_FIELDS or value["type"] != TABLE_HEADER_TYPE:
            raise MatchingError(f"a matching table header has exactly {sorted(_HEADER_FIELDS)}")
        try:
            digest = bytes.fromhex(str(value["digest"]))
            issued_at = parse_utc(str(value["issued_at"]))
        except ValueError:
            raise MatchingError("a matching table header's digest or time is malformed") from None
        epoch = value["epoch"]
        if not isinstance(epoch, int):
            raise MatchingError("a table epoch is an integer >= 1")
        return cls(
            holder=str(value["holder"]),
            table_id=str(value["table_id"]),
            epoch=epoch,
            layout=TableLayout.from_json(value["layout"]),
            digest=digest,
            issued_at=issued_at,
        )


def sign_table_header(header: TableHeader, key: SigningKey) -> tuple[bytes, bytes]:
    data = header.to_bytes()
    return data, key.sign(data)


def verify_table_header(
    data: bytes, signature: bytes, manifest: Manifest, *, now: dt.datetime
) -> TableHeader:
    """The header, if the holder signed it with its manifest key and announced its own key.

    Fails closed: not a member, a bad signature, a Paillier modulus other than the one the
    manifest lists for the holder, or a header from the future.
    """
    header = TableHeader.from_bytes(data)
    member = manifest.member(header.holder)
    if member is None:
        raise MatchingError(f"{header.describe()}: {header.holder} is not a federation member")
    try:
        member.signing_key.verify(signature, data)
    except SignatureError:
        raise MatchingError(
            f"{header.describe()}: the holder's signature does not verify"
        ) from None
    if header.layout.n != member.paillier_n:
        raise MatchingError(
            f"{header.describe()}: the table uses a Paillier key other than the manifest's"
        )
    if header.issued_at > now + dt.timedelta(minutes=5):
        raise MatchingError(f"{header.describe()} is dated in the future")
    return header
