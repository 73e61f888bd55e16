"""Merkle log maths against RFC 9162 §2.1, written out literally here as the reference.

The reference functions below (``mth``, ``path``, ``subproof``) transcribe the RFC's
recursive definitions over leaf *data*, with slices, as plainly as possible; the module under
test computes the same values from perfect-subtree hashes. Known answers are the RFC 6962 /
RFC 9162 test vectors used across Certificate Transparency implementations.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import CreditNetError, InvalidInputError, InvalidProofError
from federation.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    SUBTREE_LEVEL,
    CompactRange,
    LayeredTree,
    MemoryTree,
    consistency_proof,
    decompose,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_hash,
    root_from_ranges,
    root_of,
    subtree_hashes,
    verify_consistency,
    verify_inclusion,
)

# --- the RFC, literally ---------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(data: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 over leaf data."""
    n = len(data)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + data[0])
    k = split(n)
    return sha256(b"\x01" + mth(data[:k]) + mth(data[k:]))


def path(m: int, data: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    n = len(data)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*path(m, data[:k]), mth(data[k:])]
    return [*path(m - k, data[k:]), mth(data[:k])]


def subproof(m: int, data: Sequence[bytes], complete: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(data)
    if m == n:
        return [] if complete else [mth(data)]
    k = split(n)
    if m <= k:
        return [*subproof(m, data[:k], complete), mth(data[k:])]
    return [*subproof(m - k, data[k:], False), mth(data[:k])]


def rfc_ranges(lo: int, hi: int) -> list[tuple[int, int]]:
    """Every leaf range that the RFC's recursions visit inside [lo, hi)."""
    if hi - lo <= 1:
        return [(lo, hi)]
    k = split(hi - lo)
    return [(lo, hi), *rfc_ranges(lo, lo + k), *rfc_ranges(lo + k, hi)]


DATA = [f"leaf {i}".encode() for i in range(1200)]
HASHES = [leaf_hash(d) for d in DATA]
FULL = MemoryTree(HASHES)
SMALL = MemoryTree(HASHES[:300])


def tree_of(size: int) -> MemoryTree:
    return MemoryTree(HASHES[:size])


def flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


sizes = st.integers(min_value=1, max_value=300)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def old_and_new(draw: st.DrawFn, *, strict: bool = False) -> tuple[int, int]:
    new = draw(st.integers(min_value=2 if strict else 0, max_value=300))
    old = draw(st.integers(min_value=1 if strict else 0, max_value=new - 1 if strict else new))
    return old, new


# --- hashes and roots ---------------------------------------------------------------------

VECTOR_DATA = [
    bytes.fromhex(h)
    for h in (
        *("", "00", "10", "2021", "3031", "40414243", "5051525354555657"),
        "606162636465666768696a6b6c6d6e6f",
    )
]
VECTOR_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
VECTOR_TREE = MemoryTree([leaf_hash(d) for d in VECTOR_DATA])


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of([]) == EMPTY_ROOT
    assert MemoryTree().root() == EMPTY_ROOT
    assert CompactRange.empty().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    left, right = sha256(b"l"), sha256(b"r")
    assert leaf_hash(b"abc") == sha256(b"\x00abc")
    assert node_hash(left, right) == sha256(b"\x01" + left + right)
    # A leaf whose data looks like two hashes cannot pass for an interior node.
    assert leaf_hash(left + right) != node_hash(left, right)
    assert root_of([leaf_hash(b"d0")]) == sha256(b"\x00d0")


@pytest.mark.parametrize("size", range(1, 9))
def test_known_roots(size: int) -> None:
    hashes = [leaf_hash(d) for d in VECTOR_DATA[:size]]
    assert root_of(hashes).hex() == VECTOR_ROOTS[size - 1]
    assert CompactRange.empty().extend(hashes).root().hex() == VECTOR_ROOTS[size - 1]


@pytest.mark.parametrize(
    ("index", "size", "expected"),
    [
        (0, 1, []),
        (
            0,
            8,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
    ],
)
def test_known_inclusion_proofs(index: int, size: int, expected: list[str]) -> None:
    proof = inclusion_proof(index, size, VECTOR_TREE)
    assert [h.hex() for h in proof] == expected
    root = bytes.fromhex(VECTOR_ROOTS[size - 1])
    verify_inclusion(leaf_hash(VECTOR_DATA[index]), index, size, proof, root)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            1,
            8,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            [
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ],
)
def test_known_consistency_proofs(old: int, new: int, expected: list[str]) -> None:
    proof = consistency_proof(old, new, VECTOR_TREE)
    assert [h.hex() for h in proof] == expected
    verify_consistency(
        old, new, bytes.fromhex(VECTOR_ROOTS[old - 1]), bytes.fromhex(VECTOR_ROOTS[new - 1]), proof
    )


@pytest.mark.parametrize("size", range(18))
def test_root_follows_rfc_structure_for_small_sizes(size: int) -> None:
    assert root_of(HASHES[:size]) == mth(DATA[:size])
    assert tree_of(size).root() == mth(DATA[:size])


def test_root_of_spelled_out() -> None:
    h = HASHES
    assert root_of(h[:3]) == node_hash(node_hash(h[0], h[1]), h[2])
    assert root_of(h[:5]) == node_hash(
        node_hash(node_hash(h[0], h[1]), node_hash(h[2], h[3])), h[4]
    )
    assert root_of(h[:7]) == node_hash(
        node_hash(node_hash(h[0], h[1]), node_hash(h[2], h[3])),
        node_hash(node_hash(h[4], h[5]), h[6]),
    )


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_root_of_equals_rfc_definition(data: list[bytes]) -> None:
    assert root_of([leaf_hash(d) for d in data]) == mth(data)


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33])
def test_root_of_rejects_values_that_are_not_hashes(bad: bytes) -> None:
    with pytest.raises(InvalidInputError, match=r"leaf hash\[1\] is not a 32-byte hash"):
        root_of([HASHES[0], bad])


# --- decomposition and range hashes -----------------------------------------------------------


@given(st.integers(0, 5000), st.integers(0, 5000))
def test_decompose_is_the_maximal_aligned_cover(a: int, b: int) -> None:
    begin, end = min(a, b), max(a, b)
    pieces = decompose(begin, end)
    position = begin
    for level, index in pieces:
        assert index << level == position  # contiguous and aligned
        position += 1 << level
    assert position == end
    # Maximal: no two neighbours could merge into their parent.
    for (l1, i1), (l2, i2) in itertools.pairwise(pieces):
        assert not (l1 == l2 and i1 % 2 == 0 and i2 == i1 + 1)
    levels = [level for level, _ in pieces]
    peak = levels.index(max(levels)) if levels else 0
    assert levels[:peak] == sorted(set(levels[:peak]))
    # After the (first) highest piece, strictly decreasing (the peak may appear twice).
    after = levels[peak + 1 :]
    assert after == sorted(set(after), reverse=True)
    assert all(level <= levels[peak] for level in after)
    if begin == 0:
        assert sum(1 << level for level in levels) == end
        assert levels == sorted(levels, reverse=True)


def test_decompose_examples() -> None:
    assert decompose(0, 0) == []
    assert decompose(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert decompose(3, 13) == [(0, 3), (2, 1), (2, 2), (0, 12)]
    with pytest.raises(InvalidInputError, match=r"\[5, 4\) is not a range"):
        decompose(5, 4)


@given(sizes)
def test_range_hash_on_every_rfc_range_equals_the_reference(size: int) -> None:
    for lo, hi in rfc_ranges(0, size):
        assert range_hash(lo, hi, SMALL) == mth(DATA[lo:hi])


@pytest.mark.parametrize(("begin", "end"), [(1, 4), (2, 7), (2, 8), (3, 13)])
def test_range_hash_refuses_ranges_that_are_not_left_complete(begin: int, end: int) -> None:
    with pytest.raises(InvalidInputError, match="not left-complete"):
        range_hash(begin, end, SMALL)


def test_range_hash_of_an_empty_range() -> None:
    assert range_hash(7, 7, SMALL) == EMPTY_ROOT


# --- inclusion proofs ---------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 41))
def test_every_inclusion_proof_of_small_trees(size: int) -> None:
    tree, root = tree_of(size), mth(DATA[:size])
    for index in range(size):
        proof = inclusion_proof(index, size, tree)
        assert proof == path(index, DATA[:size])
        verify_inclusion(HASHES[index], index, size, proof, root)


@given(size_and_index())
def test_inclusion_proofs_verify(case: tuple[int, int]) -> None:
    size, index = case
    proof = inclusion_proof(index, size, FULL)
    assert proof == path(index, DATA[:size])
    verify_inclusion(HASHES[index], index, size, proof, root_of(HASHES[:size]))


@given(size_and_index(), st.data())
def test_tampered_inclusion_proofs_fail(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    proof = inclusion_proof(index, size, FULL)
    root = root_of(HASHES[:size])
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label="bit")
    attempts = [
        (HASHES[index], index, size, proof, flip(root, bit)),
        (flip(HASHES[index], bit), index, size, proof, root),
        (HASHES[index], index, size, [*proof, HASHES[0]], root),
        (HASHES[index], index, size, [HASHES[0], *proof], root),
    ]
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        tampered = list(proof)
        tampered[position] = flip(tampered[position], bit)
        attempts += [
            (HASHES[index], index, size, tampered, root),
            (HASHES[index], index, size, proof[:-1], root),
            (HASHES[index], index, size, proof[1:], root),
        ]
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="index")
        attempts += [
            (HASHES[index], other, size, proof, root),
            (HASHES[other], other, size, proof, root),
        ]
    other_size = data.draw(
        st.integers(index + 1, 301).filter(lambda s: s != size), label="other size"
    )
    attempts.append((HASHES[index], index, other_size, proof, root_of(HASHES[:other_size])))
    for leaf, at, in_size, with_proof, root_hash in attempts:
        with pytest.raises(InvalidProofError):
            verify_inclusion(leaf, at, in_size, with_proof, root_hash)


@pytest.mark.parametrize(
    ("index", "size", "proof", "root", "message"),
    [
        (5, 5, [], EMPTY_ROOT, r"leaf index 5 is not in a tree of size 5"),
        (-1, 5, [], EMPTY_ROOT, r"leaf index -1 is not in a tree of size 5"),
        (0, 0, [], EMPTY_ROOT, r"leaf index 0 is not in a tree of size 0"),
        (0, 1, [], b"short", r"root\[0\] is not a 32-byte hash \(got 5\)"),
        (0, 2, [b"x" * 33], EMPTY_ROOT, r"inclusion proof\[0\] is not a 32-byte hash"),
        (0, 4, [EMPTY_ROOT], EMPTY_ROOT, r"has 1 hashes; 2 expected"),
        (0, 1, [EMPTY_ROOT], EMPTY_ROOT, r"has 1 hashes; 0 expected"),
    ],
    ids=[
        "index at size",
        "negative index",
        "empty tree",
        "short root",
        "long proof hash",
        "truncated",
        "padded",
    ],
)
def test_malformed_inclusion_checks(
    index: int, size: int, proof: list[bytes], root: bytes, message: str
) -> None:
    with pytest.raises(InvalidProofError, match=message):
        verify_inclusion(HASHES[0], index, size, proof, root)


def test_inclusion_proof_of_a_leaf_outside_the_tree() -> None:
    with pytest.raises(InvalidInputError, match="leaf index 3 is not in a tree of size 3"):
        inclusion_proof(3, 3, SMALL)


def test_inclusion_failure_says_what_failed() -> None:
    proof = inclusion_proof(2, 5, SMALL)
    with pytest.raises(InvalidProofError, match="does not lead to the root of the tree of size 5"):
        verify_inclusion(HASHES[3], 2, 5, proof, root_of(HASHES[:5]))


def test_a_leaf_hash_is_required_not_leaf_data() -> None:
    with pytest.raises(InvalidProofError, match="leaf hash"):
        verify_inclusion(DATA[0], 0, 1, [], HASHES[0])


# --- consistency proofs -------------------------------------------------------------------


@pytest.mark.parametrize("new", range(34))
def test_every_consistency_proof_of_small_trees(new: int) -> None:
    tree = tree_of(new)
    for old in range(new + 1):
        proof = consistency_proof(old, new, tree)
        assert proof == ([] if old in (0, new) else subproof(old, DATA[:new], True))
        verify_consistency(old, new, mth(DATA[:old]), mth(DATA[:new]), proof)


@given(old_and_new())
def test_consistency_proofs_verify(case: tuple[int, int]) -> None:
    old, new = case
    proof = consistency_proof(old, new, FULL)
    if 0 < old < new:
        assert proof == subproof(old, DATA[:new], True)
    verify_consistency(old, new, root_of(HASHES[:old]), root_of(HASHES[:new]), proof)


@given(old_and_new(strict=True), st.data())
def test_tampered_consistency_proofs_fail(case: tuple[int, int], data: st.DataObject) -> None:
    old, new = case
    proof = consistency_proof(old, new, FULL)
    old_root, new_root = root_of(HASHES[:old]), root_of(HASHES[:new])
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label="bit")
    position = data.draw(st.integers(0, len(proof) - 1), label="position")
    tampered = list(proof)
    tampered[position] = flip(tampered[position], bit)
    attempts = [
        (old, new, old_root, new_root, tampered),
        (old, new, old_root, new_root, proof[:-1]),
        (old, new, old_root, new_root, proof[1:]),
        (old, new, old_root, new_root, [*proof, HASHES[0]]),
        (old, new, old_root, new_root, [HASHES[0], *proof]),
        (old, new, flip(old_root, bit), new_root, proof),
        (old, new, old_root, flip(new_root, bit), proof),
        (old, new, new_root, old_root, proof),  # swapped roots
        (new, old, new_root, old_root, proof),  # swapped sizes
    ]
    other_old = data.draw(st.integers(1, new).filter(lambda m: m != old), label="other old")
    other_new = data.draw(st.integers(old, 301).filter(lambda n: n != new), label="other new")
    attempts += [
        (other_old, new, root_of(HASHES[:other_old]), new_root, proof),
        (old, other_new, old_root, root_of(HASHES[:other_new]), proof),
    ]
    for m, n, first, second, with_proof in attempts:
        with pytest.raises(InvalidProofError):
            verify_consistency(m, n, first, second, with_proof)


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof", "message"),
    [
        (5, 4, EMPTY_ROOT, EMPTY_ROOT, [], r"size 4 cannot extend a tree of size 5"),
        (-1, 4, EMPTY_ROOT, EMPTY_ROOT, [], r"size 4 cannot extend a tree of size -1"),
        (3, 3, HASHES[0], HASHES[0], [HASHES[1]], r"has 1 hashes; 0 expected"),
        (3, 3, HASHES[0], HASHES[1], [], r"two different roots for the same tree size 3"),
        (0, 3, EMPTY_ROOT, HASHES[1], [HASHES[1]], r"has 1 hashes; 0 expected"),
        (0, 3, HASHES[0], HASHES[1], [], r"root given for the empty tree"),
        (0, 0, EMPTY_ROOT, HASHES[1], [], r"two different roots for the same tree size 0"),
        (1, 3, b"", HASHES[1], [], r"old root\[0\] is not a 32-byte hash \(got 0\)"),
        (1, 3, HASHES[0], b"x" * 64, [], r"new root\[0\] is not a 32-byte hash \(got 64\)"),
        (1, 3, HASHES[0], HASHES[1], [b"x"], r"consistency proof\[0\] is not a 32-byte"),
        (3, 5, HASHES[0], HASHES[1], [HASHES[2]], r"has 1 hashes; 4 expected"),
    ],
    ids=[
        "old after new",
        "negative old",
        "equal sizes with a proof",
        "equal sizes, different roots",
        "from empty with a proof",
        "empty tree with a root",
        "two empty roots",
        "short old root",
        "long new root",
        "short proof hash",
        "truncated",
    ],
)
def test_malformed_consistency_checks(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes], message: str
) -> None:
    with pytest.raises(InvalidProofError, match=message):
        verify_consistency(old, new, old_root, new_root, proof)


def test_consistency_failures_say_which_root() -> None:
    proof = consistency_proof(3, 7, SMALL)
    with pytest.raises(InvalidProofError, match=r"root of the old tree \(size 3\)"):
        verify_consistency(3, 7, HASHES[0], root_of(HASHES[:7]), proof)
    with pytest.raises(InvalidProofError, match=r"root of the new tree \(size 7\)"):
        verify_consistency(3, 7, root_of(HASHES[:3]), HASHES[0], proof)


def test_consistency_proof_needs_ordered_sizes() -> None:
    with pytest.raises(InvalidInputError, match="from size 4 to size 3"):
        consistency_proof(4, 3, SMALL)


def test_a_forked_log_is_not_consistent() -> None:
    # The same first 5 leaves, then a different history: no proof from the fork can pass.
    forked = MemoryTree([*HASHES[:5], leaf_hash(b"rewritten"), *HASHES[6:9]])
    proof = consistency_proof(6, 9, forked)
    with pytest.raises(InvalidProofError):
        verify_consistency(6, 9, root_of(HASHES[:6]), forked.root(), proof)


# --- compact ranges ---------------------------------------------------------------------


@given(st.integers(0, 300), st.integers(0, 300))
def test_extend_equals_repeated_append(begin: int, count: int) -> None:
    leaves = HASHES[begin : begin + count]
    one_by_one = CompactRange.empty(begin)
    for leaf in leaves:
        one_by_one = one_by_one.append(leaf)
    extended = CompactRange.empty(begin).extend(leaves)
    assert extended == one_by_one
    assert extended.hashes == tuple(subtree_hashes(begin, begin + count, FULL))
    if begin == 0:
        assert extended.root() == root_of(leaves)


@given(st.integers(0, 300), st.integers(0, 300))
def test_extend_in_two_batches(first: int, second: int) -> None:
    frontier = CompactRange.empty().extend(HASHES[:first]).extend(HASHES[first : first + second])
    assert frontier.root() == root_of(HASHES[: first + second])
    assert frontier == CompactRange.from_tree(0, first + second, FULL)


@given(st.integers(0, 400), st.integers(0, 400))
def test_stored_form_round_trips(a: int, b: int) -> None:
    begin, end = min(a, b), max(a, b)
    compact = CompactRange.from_tree(begin, end, FULL)
    assert CompactRange.from_bytes(begin, end, compact.to_bytes()) == compact
    assert CompactRange.from_hashes(begin, end, list(compact.hashes)) == compact
    assert len(compact.to_bytes()) == HASH_SIZE * len(decompose(begin, end))


@pytest.mark.parametrize(
    ("begin", "end", "hashes", "message"),
    [
        (0, 5, [HASHES[0]], r"compact range \[0, 5\) has 1 hashes; 2 expected"),
        (0, 0, [HASHES[0]], r"compact range \[0, 0\) has 1 hashes; 0 expected"),
        (0, 3, [HASHES[0], b"x" * 31], r"compact range hash\[1\] is not a 32-byte hash"),
        (4, 3, [], r"\[4, 3\) is not a range"),
    ],
    ids=["too few", "too many", "short hash", "reversed"],
)
def test_compact_range_checks_its_hashes(
    begin: int, end: int, hashes: list[bytes], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        CompactRange.from_hashes(begin, end, hashes)


def test_stored_form_of_the_wrong_length() -> None:
    with pytest.raises(InvalidInputError, match="65 bytes, not a multiple of 32"):
        CompactRange.from_bytes(0, 3, bytes(65))
    with pytest.raises(InvalidInputError, match="has 3 hashes; 2 expected"):
        CompactRange.from_bytes(0, 3, bytes(96))


def test_only_a_range_from_leaf_zero_has_a_root() -> None:
    with pytest.raises(InvalidInputError, match=r"\[2, 4\) does not start at leaf 0"):
        CompactRange.from_tree(2, 4, SMALL).root()


def test_appending_something_that_is_not_a_hash() -> None:
    with pytest.raises(InvalidInputError, match="leaf hash"):
        CompactRange.empty().append(b"envelope bytes")
    with pytest.raises(InvalidInputError, match=r"leaf hash\[1\]"):
        CompactRange.empty().extend([HASHES[0], b"envelope bytes"])


@given(sizes)
def test_root_from_ranges_for_every_split(size: int) -> None:
    root, left = root_of(HASHES[:size]), CompactRange.empty()
    for split_at in range(size + 1):
        right = subtree_hashes(split_at, size, FULL)
        assert root_from_ranges(left, right, size) == root
        if split_at < size:
            left = left.append(HASHES[split_at])


def test_root_from_ranges_of_the_empty_tree() -> None:
    assert root_from_ranges(CompactRange.empty(), [], 0) == EMPTY_ROOT


@given(st.integers(1, 300), st.data())
def test_root_from_ranges_refuses_wrong_counts(size: int, data: st.DataObject) -> None:
    split_at = data.draw(st.integers(0, size - 1), label="split")
    left = CompactRange.empty().extend(HASHES[:split_at])
    right = subtree_hashes(split_at, size, FULL)
    for wrong in (right[:-1], [*right, HASHES[0]], [HASHES[0], *right]):
        with pytest.raises(InvalidProofError, match=r"hashes; \d+ expected"):
            root_from_ranges(left, wrong, size)


def test_root_from_ranges_refuses_bad_shapes() -> None:
    left = CompactRange.empty().extend(HASHES[:5])
    right = subtree_hashes(5, 8, SMALL)
    assert root_from_ranges(left, right, 8) == root_of(HASHES[:8])
    with pytest.raises(InvalidProofError, match=r"right compact range\[1\] is not a 32-byte"):
        root_from_ranges(left, [right[0], b"x"], 8)
    with pytest.raises(InvalidProofError, match="ends at leaf 5, beyond the tree size 4"):
        root_from_ranges(left, [], 4)
    with pytest.raises(InvalidProofError, match="starts at leaf 2, not 0"):
        root_from_ranges(CompactRange.from_tree(2, 5, SMALL), right, 8)
    # A wrong hash gives a wrong root: the caller's comparison with the signed root fails.
    assert root_from_ranges(left, [HASHES[0], right[1]], 8) != root_of(HASHES[:8])


@given(
    st.sampled_from([0, 1, 2, 3, 8]),
    st.lists(st.integers(0, 90), min_size=1, max_size=6),
    st.integers(0, 20),
)
def test_extend_with_blocks_collects_each_completed_block_once(
    level: int, batches: list[int], begin: int
) -> None:
    compact, collected = CompactRange.empty(begin), []
    for count in batches:
        compact, blocks = compact.extend_with_blocks(
            HASHES[compact.end : compact.end + count], level
        )
        collected += blocks
    assert compact == CompactRange.empty(begin).extend(HASHES[begin : compact.end])
    block = 1 << level
    first = -(-begin // block)
    expected = [(j, FULL.perfect(level, j)) for j in range(first, compact.end // block)]
    assert collected == expected


def test_extend_with_blocks_collects_level_8_by_default() -> None:
    compact, blocks = CompactRange.empty().extend_with_blocks(HASHES[:600])
    assert SUBTREE_LEVEL == 8
    assert blocks == [(0, FULL.perfect(8, 0)), (1, FULL.perfect(8, 1))]
    assert compact.root() == root_of(HASHES[:600])


# --- trees ------------------------------------------------------------------------------


def test_memory_tree_subtrees() -> None:
    tree = tree_of(13)
    assert tree.size == 13
    assert tree.leaf(12) == HASHES[12]
    assert tree.perfect(3, 0) == root_of(HASHES[:8])
    assert tree.perfect(2, 2) == root_of(HASHES[8:12])
    for level, index in [(2, 3), (4, 0), (0, 13), (-1, 0), (0, -1)]:
        with pytest.raises(InvalidInputError, match="has no complete subtree"):
            tree.perfect(level, index)


def stored_tree(size: int, block_level: int) -> tuple[LayeredTree, list[tuple[int, int]]]:
    """A LayeredTree over "tables" filled the way a store fills them, with a call log."""
    leaves = HASHES[:size]
    _, blocks = CompactRange.empty().extend_with_blocks(leaves, block_level)
    block_table = [value for _, value in blocks]
    calls: list[tuple[int, int]] = []

    def read_leaves(begin: int, end: int) -> list[bytes]:
        calls.append((begin, end))
        return leaves[begin:end]

    def read_blocks(begin: int, end: int) -> list[bytes]:
        return block_table[begin:end]

    return LayeredTree(read_leaves, read_blocks, block_level), calls


@pytest.mark.parametrize(("size", "block_level"), [(1200, 2), (1200, 8), (77, 0), (1024, 8)])
def test_layered_tree_answers_every_subtree(size: int, block_level: int) -> None:
    tree, calls = stored_tree(size, block_level)
    reference = tree_of(size)
    for level in range(size.bit_length()):
        for index in range(size >> level):
            assert tree.perfect(level, index) == reference.perfect(level, index)
    # Leaves are read only below the block level, never more than one block at a time.
    assert all(end - begin <= (1 << block_level) // 2 for begin, end in calls)


@given(st.integers(1, 1200), st.data())
def test_proofs_from_a_layered_tree(size: int, data: st.DataObject) -> None:
    tree, _ = stored_tree(size, 2)
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old")
    assert inclusion_proof(index, size, tree) == inclusion_proof(index, size, FULL)
    assert consistency_proof(old, size, tree) == consistency_proof(old, size, FULL)


def test_a_store_that_loses_rows_is_an_internal_fault() -> None:
    tree = LayeredTree(lambda b, e: HASHES[b : e - 1], lambda b, e: [], 2)
    with pytest.raises(CreditNetError, match=r"returned 1 leaf hashes \[4, 6\)"):
        tree.perfect(1, 2)
    tree = LayeredTree(lambda b, e: HASHES[b:e], lambda b, e: [], 2)
    with pytest.raises(CreditNetError, match=r"returned 0 level-2 block hashes \[0, 2\)"):
        tree.perfect(3, 0)
    with pytest.raises(InvalidInputError, match="block level must be >= 0"):
        LayeredTree(lambda b, e: [], lambda b, e: [], -1)


@settings(max_examples=20)
@given(st.integers(300, 1200))
def test_large_frontier_matches_reference(size: int) -> None:
    assert CompactRange.empty().extend(HASHES[:size]).root() == root_of(HASHES[:size])
