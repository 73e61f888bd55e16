"""The sync batch check (``verify_extension``): what a receiver accepts from a sender.

A sender streams a tree of ``size`` leaves in batches, each with the compact range of the
rest of the tree; the receiver checks each batch against the signed root before applying
it. Honest batches always pass; any change to a leaf, a right-hand hash, the batch's place
or the number of hashes is refused.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import InvalidProofError
from federation.merkle import (
    CompactRange,
    MemoryTree,
    leaf_hash,
    subtree_hashes,
    verify_extension,
)


def tree_of(size: int, salt: int = 0) -> MemoryTree:
    return MemoryTree([leaf_hash(f"{salt}:{i}".encode()) for i in range(size)])


@st.composite
def batched_trees(draw: st.DrawFn) -> tuple[MemoryTree, list[int]]:
    """A tree and the batch boundaries a sender cuts it into (0 = b0 < ... < bk = size)."""
    size = draw(st.integers(min_value=1, max_value=600))
    cuts = (
        draw(st.sets(st.integers(min_value=1, max_value=size - 1), max_size=12))
        if size > 1
        else set()
    )
    return tree_of(size), [0, *sorted(cuts), size]


def leaves(tree: MemoryTree, begin: int, end: int) -> list[bytes]:
    return [tree.leaf(i) for i in range(begin, end)]


@settings(max_examples=200, deadline=None)
@given(batched_trees())
def test_honest_batches_are_accepted_and_rebuild_the_tree(
    case: tuple[MemoryTree, list[int]],
) -> None:
    tree, cuts = case
    held = CompactRange.empty()
    for begin, end in itertools.pairwise(cuts):
        right = subtree_hashes(end, tree.size, tree)
        held = verify_extension(held, leaves(tree, begin, end), right, tree.size, tree.root())
    assert held.end == tree.size and held.root() == tree.root()


@settings(max_examples=200, deadline=None)
@given(batched_trees(), st.data())
def test_any_tampering_is_refused(case: tuple[MemoryTree, list[int]], data: st.DataObject) -> None:
    tree, cuts = case
    index = data.draw(st.integers(min_value=0, max_value=len(cuts) - 2))
    begin, end = cuts[index], cuts[index + 1]
    held = CompactRange.empty().extend(leaves(tree, 0, begin))
    batch = leaves(tree, begin, end)
    right = subtree_hashes(end, tree.size, tree)
    how = data.draw(
        st.sampled_from(
            ["leaf", "right", "drop-right", "pad-right", "drop-leaf", "swap-leaves", "root"]
        )
    )
    # Size and root come together from the signed checkpoint: they are not the sender's to
    # change (the right-hand hashes' levels follow from the size, so only the pair binds).
    size, root = tree.size, tree.root()
    if how == "leaf":
        at = data.draw(st.integers(min_value=0, max_value=len(batch) - 1))
        batch[at] = hashlib.sha256(batch[at]).digest()
    elif how == "right":
        if not right:
            return  # the last batch has no right-hand hashes to tamper with
        at = data.draw(st.integers(min_value=0, max_value=len(right) - 1))
        right[at] = hashlib.sha256(right[at]).digest()
    elif how == "drop-right":
        if not right:
            return
        right = right[:-1]
    elif how == "pad-right":
        right = [*right, b"\0" * 32]
    elif how == "drop-leaf":
        if len(batch) == 1:
            return
        batch = batch[:-1]  # a shorter batch with the same right hashes
    elif how == "swap-leaves":
        if len(batch) < 2 or batch[0] == batch[1]:
            return
        batch[0], batch[1] = batch[1], batch[0]
    elif how == "root":
        root = hashlib.sha256(root).digest()
    with pytest.raises(InvalidProofError):
        verify_extension(held, batch, right, size, root)


def test_a_batch_from_another_tree_is_refused() -> None:
    honest, forked = tree_of(300), tree_of(300, salt=1)
    held = CompactRange.empty().extend(leaves(honest, 0, 100))
    with pytest.raises(InvalidProofError, match="does not give the signed root"):
        verify_extension(
            held,
            leaves(forked, 100, 200),
            subtree_hashes(200, 300, forked),
            300,
            forked.root(),
        )


def test_an_empty_or_overlong_batch_is_refused() -> None:
    tree = tree_of(10)
    with pytest.raises(InvalidProofError, match="at least one leaf"):
        verify_extension(CompactRange.empty(), [], [], 10, tree.root())
    with pytest.raises(InvalidProofError, match="past the tree size"):
        verify_extension(CompactRange.empty(), leaves(tree, 0, 10) * 2, [], 10, tree.root())
