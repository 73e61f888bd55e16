"""Baseline: FNP private set intersection (Freedman, Nissim and Pinkas, "Efficient Private
Matching and Set Intersection", Eurocrypt 2004) on Paillier encryption (``phe``, gmpy2).

The querier holds a set X and learns X ∩ Y; the holder holds Y and learns nothing but the
sizes. Written from the paper's description:

1. Items are strings; each is mapped to a 64-bit integer (the first 8 bytes of its
   SHA-256, :func:`item_value`). The querier hashes its values into B bins (simple
   hashing with a fresh random salt, :func:`bin_of`). B and the bin capacity M are
   public functions of the two set sizes and the key size (:func:`plan_bins`): M is large
   enough that some bin overflows with probability at most 2^-20 (then the querier
   draws a new salt), and B minimises the protocol's exponentiations. Each bin's
   polynomial ``P_b(z) = ∏ (z - x)`` over its values is padded with dummy roots
   (at least 2^64, so no holder value is one) to degree exactly M, so that the loads of the
   bins do not leak.
2. The querier encrypts all B·(M+1) coefficients (mod n) under its own Paillier key and
   sends them with the public key and the salt.
3. For each y in Y the holder evaluates ``Enc(P_b(y))`` for y's bin with Horner's rule
   on ``phe`` ``EncryptedNumber`` operations (M multiplications by the 64-bit y, M
   additions), multiplies by a fresh random r in [1, n), adds the payload y' = y and
   re-randomises the ciphertext: ``Enc(r·P_b(y) + y')``. The answers go back in random
   order.
4. The querier decrypts each answer; a value equal to one of its own items' values means
   that item is in Y (P_b(y) = 0 exactly when y is a root; otherwise r·P_b(y) + y' is
   uniform mod n). Distinct items colliding on 64 bits are ignored (probability about
   |X|·|Y| / 2^64).

Accounting (:class:`FnpResult`): a *full exponentiation* is one modulo n² with an
exponent of about |n| bits, the cost of a Paillier encryption's ``r^n mod n²``. The
querier does B·(M+1) of them (one per encrypted coefficient); the holder does 2 per
item (the multiplication by r and the re-randomisation). Not counted as full: the
holder's M Horner multiplications per item (exponent y of 64 bits, about 64/|n| of a
full one; ``holder_short_exponentiations``) and the querier's decryptions (``phe``
decrypts with the CRT: two exponentiations modulo p² and q² with |n|/2-bit exponents,
about a quarter of a full one; ``querier_decryptions``).

Both parties run in this one process, one after the other, on one core; every message
crosses between them as bytes (fixed-width big-endian ciphertexts) and the bytes counted
are those. Key generation is timed apart (``key_generation_seconds``), not in ``total``.
The benchmark runs this on scaled-down sets and extrapolates per item.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import secrets
import statistics
import struct
import time
from collections.abc import Iterable, Sequence
from typing import Any

import gmpy2
from phe import paillier
from phe.encoding import EncodedNumber

ITEM_BITS = 64
#: Dummy roots are drawn from [2^64, 2^65): never equal to an item's 64-bit value.
DUMMY_ROOT_BASE = 1 << ITEM_BITS
#: Union bound on the probability that some bin overflows with one salt.
OVERFLOW_BOUND = 2.0**-20
HASHING_ATTEMPTS = 20
SALT_BYTES = 16
MIN_KEY_BITS = 512
_HEADER = struct.Struct(">HII")  # length of n in bytes, bins, capacity

__all__ = [
    "FnpResult",
    "bin_of",
    "item_value",
    "measure_powmod_seconds",
    "plan_bins",
    "run_fnp",
]


@dataclasses.dataclass(frozen=True, slots=True)
class FnpResult:
    """One FNP run: what the querier learned and what it cost (see the module's
    docstring for what counts as a full exponentiation)."""

    intersection: frozenset[str]
    querier_items: int  # distinct items of each party, as the protocol saw them
    holder_items: int
    bins: int
    bin_capacity: int  # M: the degree of every bin's polynomial
    key_bits: int
    key_generation_seconds: float  # the querier's Paillier key; not in total_seconds
    querier_encrypt_seconds: float  # hashing, polynomials, encryption, the query's bytes
    holder_evaluate_seconds: float  # parsing, Horner, blinding, re-randomising, the answer
    querier_decrypt_seconds: float  # parsing, decrypting, matching
    total_seconds: float  # the three phases above
    full_exponentiations: int  # querier_encryptions + holder_full_exponentiations
    querier_encryptions: int  # B·(M+1)
    holder_full_exponentiations: int  # 2 per holder item
    holder_short_exponentiations: int  # M per holder item, 64-bit exponents
    querier_decryptions: int  # 1 per holder item
    bytes_querier_to_holder: int
    bytes_holder_to_querier: int


def item_value(item: str) -> int:
    """An item's 64-bit value: the first 8 bytes of SHA-256 of its UTF-8 form."""
    return int.from_bytes(hashlib.sha256(item.encode("utf-8")).digest()[:8], "big")


def bin_of(value: int, salt: bytes, bins: int) -> int:
    """The bin of a 64-bit value under the querier's salt (both parties compute it)."""
    digest = hashlib.sha256(salt + value.to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:8], "big") % bins


def _overflow_probability(items: int, bins: int, capacity: int) -> float:
    """Union bound on P(some bin holds more than ``capacity`` of ``items`` values)."""
    if capacity >= items:
        return 0.0
    p = 1.0 / bins
    log_p, log_q = math.log(p), math.log1p(-p)
    log_items = math.lgamma(items + 1)
    tail = 0.0
    for j in range(capacity + 1, items + 1):
        log_pmf = (
            log_items
            - math.lgamma(j + 1)
            - math.lgamma(items - j + 1)
            + j * log_p
            + (items - j) * log_q
        )
        term = math.exp(log_pmf)
        tail += term
        if j > items * p and term <= tail * 1e-12:  # past the mean the terms only shrink
            break
    return bins * tail


def bin_capacity(items: int, bins: int) -> int:
    """The smallest capacity M ≥ 1 that ``items`` values in ``bins`` bins exceed in some
    bin with probability at most :data:`OVERFLOW_BOUND`."""
    if bins == 1 or items <= 1:
        return max(items, 1)
    low, high = max(1, items // bins), items
    while low < high:  # the overflow probability falls as the capacity grows
        middle = (low + high) // 2
        if _overflow_probability(items, bins, middle) <= OVERFLOW_BOUND:
            high = middle
        else:
            low = middle + 1
    return low


def _cost(bins: int, capacity: int, holder_size: int, key_bits: int) -> float:
    """Full exponentiations, counting a Horner step as ITEM_BITS / key_bits of one."""
    horner = capacity * ITEM_BITS / key_bits
    return bins * (capacity + 1) + holder_size * (2 + horner)


def plan_bins(querier_size: int, holder_size: int, key_bits: int) -> tuple[int, int]:
    """``(bins, capacity)`` for these set sizes: among mean loads 1, 1.25, 1.25², … up to
    the whole set in one bin, the number of bins that costs the fewest exponentiations,
    each with the capacity of :func:`bin_capacity`."""
    if querier_size <= 1:
        return 1, 1
    candidates = {1}
    load = 1.0
    while load < querier_size:
        candidates.add(math.ceil(querier_size / load))
        load *= 1.25
    plans = [(bins, bin_capacity(querier_size, bins)) for bins in sorted(candidates)]
    return min(plans, key=lambda plan: _cost(plan[0], plan[1], holder_size, key_bits))


def _polynomial(roots: Iterable[int], modulus: int) -> list[int]:
    """Coefficients (constant first) of ∏ (z - root), modulo ``modulus``."""
    coefficients = [1]
    for root in roots:
        shifted = [0, *coefficients]  # z · P(z)
        for index, coefficient in enumerate(coefficients):
            shifted[index] = (shifted[index] - root * coefficient) % modulus
        coefficients = shifted
    return coefficients


def _assign(values: Iterable[int], salt: bytes, bins: int) -> list[list[int]]:
    table: list[list[int]] = [[] for _ in range(bins)]
    for value in values:
        table[bin_of(value, salt, bins)].append(value)
    return table


def _width(n: int) -> int:
    """Bytes of one ciphertext (an integer below n²) on the wire."""
    return ((n * n).bit_length() + 7) // 8


def _pack(numbers: Iterable[int], width: int) -> bytes:
    return b"".join(int(number).to_bytes(width, "big") for number in numbers)


def _unpack(data: bytes, width: int) -> list[int]:
    if len(data) % width:
        raise ValueError(f"{len(data)} bytes are not a whole number of {width}-byte numbers")
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


@dataclasses.dataclass(frozen=True, slots=True)
class _Query:
    n: int
    salt: bytes
    bins: int
    capacity: int
    coefficients: list[int]  # ciphertexts, bin by bin, constant term first

    def to_bytes(self) -> bytes:
        n_bytes = self.n.to_bytes((self.n.bit_length() + 7) // 8, "big")
        header = _HEADER.pack(len(n_bytes), self.bins, self.capacity)
        return header + n_bytes + self.salt + _pack(self.coefficients, _width(self.n))

    @classmethod
    def from_bytes(cls, data: bytes) -> _Query:
        n_length, bins, capacity = _HEADER.unpack_from(data)
        offset = _HEADER.size + n_length
        n = int.from_bytes(data[_HEADER.size : offset], "big")
        salt = data[offset : offset + SALT_BYTES]
        coefficients = _unpack(data[offset + SALT_BYTES :], _width(n))
        if len(coefficients) != bins * (capacity + 1):
            raise ValueError(f"the query holds {len(coefficients)} coefficients")
        return cls(n, salt, bins, capacity, coefficients)


def _hash_into_bins(
    values: set[int], bins: int, capacity: int, rng: random.Random
) -> tuple[bytes, list[list[int]]]:
    for _ in range(HASHING_ATTEMPTS):
        salt = rng.randbytes(SALT_BYTES)
        table = _assign(sorted(values), salt, bins)
        if max(len(roots) for roots in table) <= capacity:
            return salt, table
    raise RuntimeError(f"bins overflowed with {HASHING_ATTEMPTS} salts in a row")


def _querier_query(
    values: set[int],
    public_key: Any,
    bins: int,
    capacity: int,
    rng: random.Random,
) -> bytes:
    salt, table = _hash_into_bins(values, bins, capacity, rng)
    n = int(public_key.n)
    ciphertexts: list[int] = []
    for roots in table:
        padding = range(capacity - len(roots))
        dummies = [DUMMY_ROOT_BASE + rng.getrandbits(ITEM_BITS) for _ in padding]
        for coefficient in _polynomial([*roots, *dummies], n):
            ciphertexts.append(int(public_key.raw_encrypt(coefficient)))
    return _Query(n, salt, bins, capacity, ciphertexts).to_bytes()


def _holder_answer(query_bytes: bytes, values: Sequence[int]) -> bytes:
    query = _Query.from_bytes(query_bytes)
    public_key = paillier.PaillierPublicKey(query.n)
    degree = query.capacity
    table = [
        [
            paillier.EncryptedNumber(public_key, ciphertext)
            for ciphertext in query.coefficients[start : start + degree + 1]
        ]
        for start in range(0, len(query.coefficients), degree + 1)
    ]
    answers: list[int] = []
    for value in values:
        coefficients = table[bin_of(value, query.salt, query.bins)]
        point = EncodedNumber(public_key, value, 0)
        result = coefficients[degree]
        for power in range(degree - 1, -1, -1):  # Horner: result·y + a_power
            result = result * point + coefficients[power]
        blind = EncodedNumber(public_key, secrets.randbelow(query.n - 1) + 1, 0)
        result = result * blind + EncodedNumber(public_key, value, 0)
        result.obfuscate()
        answers.append(int(result.ciphertext(be_secure=True)))
    random.SystemRandom().shuffle(answers)
    return _pack(answers, _width(query.n))


def _querier_match(answer_bytes: bytes, private_key: Any, values: set[int]) -> set[int]:
    width = _width(int(private_key.public_key.n))
    found: set[int] = set()
    for ciphertext in _unpack(answer_bytes, width):
        plaintext = int(private_key.raw_decrypt(ciphertext))
        if plaintext in values:
            found.add(plaintext)
    return found


def run_fnp(
    holder_items: Sequence[str],
    querier_items: Sequence[str],
    *,
    key_bits: int = 2048,
    seed: int = 0,
) -> FnpResult:
    """One FNP run in this process: the querier learns which of its items the holder has.

    ``seed`` fixes the querier's structural choices (the hashing salt and the dummy
    roots); keys, blinding factors and the answers' order come from the system's CSPRNG.
    Duplicate items count once."""
    if key_bits < MIN_KEY_BITS:
        raise ValueError(f"key_bits must be at least {MIN_KEY_BITS}, not {key_bits}")
    rng = random.Random(seed)
    clock = time.perf_counter

    start = clock()
    public_key, private_key = paillier.generate_paillier_keypair(n_length=key_bits)
    key_generation = clock() - start

    start = clock()
    by_value: dict[int, list[str]] = {}
    for item in sorted(set(querier_items)):
        by_value.setdefault(item_value(item), []).append(item)
    wanted = set(by_value)
    holder_values = sorted({item_value(item) for item in holder_items})
    bins, capacity = plan_bins(len(wanted), len(holder_values), key_bits)
    query = _querier_query(wanted, public_key, bins, capacity, rng)
    querier_encrypt = clock() - start

    start = clock()
    answer = _holder_answer(query, holder_values)
    holder_evaluate = clock() - start

    start = clock()
    found = _querier_match(answer, private_key, wanted)
    querier_decrypt = clock() - start

    encryptions = bins * (capacity + 1)
    holder_full = 2 * len(holder_values)
    return FnpResult(
        intersection=frozenset(item for value in found for item in by_value[value]),
        querier_items=len(wanted),
        holder_items=len(holder_values),
        bins=bins,
        bin_capacity=capacity,
        key_bits=key_bits,
        key_generation_seconds=key_generation,
        querier_encrypt_seconds=querier_encrypt,
        holder_evaluate_seconds=holder_evaluate,
        querier_decrypt_seconds=querier_decrypt,
        total_seconds=querier_encrypt + holder_evaluate + querier_decrypt,
        full_exponentiations=encryptions + holder_full,
        querier_encryptions=encryptions,
        holder_full_exponentiations=holder_full,
        holder_short_exponentiations=capacity * len(holder_values),
        querier_decryptions=len(holder_values),
        bytes_querier_to_holder=len(query),
        bytes_holder_to_querier=len(answer),
    )


def measure_powmod_seconds(bits: int = 2048, repeats: int = 20) -> float:
    """Median seconds of one full exponentiation ``r^n mod n²`` (``gmpy2.powmod``, one
    core) for a real Paillier modulus n of ``bits`` bits generated with ``phe``."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    public_key, _ = paillier.generate_paillier_keypair(n_length=bits)
    n = gmpy2.mpz(public_key.n)
    nsquare = n * n
    system = random.SystemRandom()
    durations: list[float] = []
    for _ in range(repeats):
        r = gmpy2.mpz(system.randrange(1, int(n)))
        start = time.perf_counter()
        gmpy2.powmod(r, n, nsquare)
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)
