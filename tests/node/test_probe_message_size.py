"""The size of a probe request and its answer on the wire, against the bound the querier cuts
its batches by (federation.matching.probe_message_bytes, subjects_per_request)."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp

from creditnet.v1 import matching_pb2
from federation import matching
from federation.matching import MatchingError, probe_message_bytes, subjects_per_request
from tests.federation.test_matching import build_index, company, publish, run, small_layout

MiB = 1024 * 1024


def wire_sizes(kinds: int, subjects: int, *, count_only: bool) -> tuple[int, int]:
    """The bytes of a real probe request for ``subjects`` subjects and of its real answer,
    against a table of ``kinds`` list kinds under a 1024-bit key."""
    layout_kinds = tuple(f"kind-{i}" for i in range(kinds))
    index = build_index(lambda: small_layout(kinds=layout_kinds), {company(1): [layout_kinds[0]]})
    _, answers, plan, secrets_, request_id = run(
        index, publish(index), [company(i) for i in range(subjects)]
    )
    layout = index.layout
    sent_at = Timestamp()
    sent_at.FromDatetime(dt.datetime.now(dt.UTC))
    request = matching_pb2.ProbeRequest(
        request_id=request_id,
        sent_at=sent_at,
        table_id=secrets.token_hex(16),
        epoch=2**63 - 1,
        mode=matching_pb2.MATCH_MODE_COUNT if count_only else matching_pb2.MATCH_MODE_MEMBERSHIP,
        subjects=subjects,
        # The largest a ciphertext may be: every byte of n^2's width.
        ciphertexts=[(layout.n_square - 1).to_bytes(layout.ciphertext_bytes, "big")]
        * plan.ciphertexts,
    )
    if not count_only:
        return request.ByteSize(), matching_pb2.ProbeResponse(answers=answers).ByteSize()
    querier, holder = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    blinded = matching.blind_expected(
        querier, matching.expected_digests(plan, secrets_, request_id)
    )
    request.blinded_expected.extend(blinded)
    twice, own = matching.blind_for_count(holder, blinded, answers)
    answer = matching_pb2.ProbeResponse(twice_blinded=twice, holder_blinded=own)
    return request.ByteSize(), answer.ByteSize()


@pytest.mark.parametrize("count_only", [False, True])
@pytest.mark.parametrize(("kinds", "subjects"), [(1, 1), (2, 9), (3, 40), (6, 25), (8, 3)])
def test_the_bound_holds_and_is_close(kinds: int, subjects: int, count_only: bool) -> None:
    request, answer = wire_sizes(kinds, subjects, count_only=count_only)
    layout = small_layout(kinds=tuple(f"kind-{i}" for i in range(kinds)))
    bound = probe_message_bytes(layout, subjects, count_only=count_only)
    largest = max(request, answer)
    assert largest <= bound
    # Not so loose that batches are cut much finer than they need to be.
    assert bound <= 1.05 * largest + 600


def test_count_only_requests_are_cut_finer_with_more_kinds() -> None:
    n = (1 << 2047) | secrets.randbits(2046) | 1  # a 2048-bit modulus: the production size
    sizes = {
        kinds: subjects_per_request(
            matching.TableLayout(
                n=n, seed=bytes(16), bins=4096, kinds=tuple(f"k{i}" for i in range(kinds))
            ),
            count_only=True,
            most=1000,
            max_message_bytes=4 * MiB,
        )
        for kinds in (1, 3, 5, 6, 8)
    }
    # Six kinds: 63 expected digests per probe, about 6.4 KB a subject: 1,000 do not fit.
    assert sizes[1] == sizes[3] == sizes[5] == 1000
    assert 1000 > sizes[6] > sizes[8] >= 100


@pytest.mark.parametrize("count_only", [False, True])
@pytest.mark.parametrize("limit", [64 * 1024, 300 * 1024, 4 * MiB])
def test_subjects_per_request_is_the_most_that_fit(count_only: bool, limit: int) -> None:
    layout = small_layout(bins=4096, kinds=tuple(f"kind-{i}" for i in range(6)))
    most = 5000
    size = subjects_per_request(layout, count_only=count_only, most=most, max_message_bytes=limit)
    assert 1 <= size <= most
    assert probe_message_bytes(layout, size, count_only=count_only) <= limit
    if size < most:
        assert probe_message_bytes(layout, size + 1, count_only=count_only) > limit
    assert subjects_per_request(layout, count_only=count_only, most=3, max_message_bytes=limit) <= 3


def test_a_limit_too_small_for_one_subject_is_a_clear_error() -> None:
    layout = small_layout(kinds=tuple(f"kind-{i}" for i in range(8)))
    with pytest.raises(MatchingError, match="max_message_bytes"):
        subjects_per_request(layout, count_only=True, most=10, max_message_bytes=4096)
