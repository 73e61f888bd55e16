"""Signed checkpoints: signing, verification against the manifest, strict parsing, split views."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.canonical import canonical_bytes
from federation.checkpoint import (
    CHECKPOINT_TYPE,
    MAX_SIZE,
    SPLIT_VIEW_TYPE,
    Checkpoint,
    SignedCheckpoint,
    SplitViewEvidence,
    conflicting,
    sign_checkpoint,
    verify_checkpoint,
)
from federation.errors import CheckpointError, CreditNetError, ErrorCode, InvalidInputError
from federation.manifest import build_manifest
from federation.merkle import EMPTY_ROOT, leaf_hash, root_of
from federation.signing import b64encode
from tests.federation.conftest import NOW, YEAR, make_city

QINGDAO, YANTAI, WEIFANG = "370200", "370600", "370700"
CITIES = {code: make_city(code) for code in (QINGDAO, YANTAI, WEIFANG)}
STRANGER = make_city("999999")
MANIFEST = build_manifest(
    federation_id="jiaodong",
    federation_name="胶东经济圈",
    members=[c.member for c in CITIES.values()],
    threshold=2,
    expires=NOW + YEAR,
)
ROOT = root_of([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
CHECKPOINT = Checkpoint(QINGDAO, 3, ROOT, NOW - dt.timedelta(minutes=1))


def signed(checkpoint: Checkpoint = CHECKPOINT, city: str = QINGDAO) -> SignedCheckpoint:
    key = STRANGER.key if city == "stranger" else CITIES[city].key
    return sign_checkpoint(checkpoint, key)


def test_sign_and_verify() -> None:
    document = signed()
    assert verify_checkpoint(document, MANIFEST, now=NOW) == CHECKPOINT
    assert document.keyid == CITIES[QINGDAO].key.public_key.keyid
    again = SignedCheckpoint.from_bytes(document.to_bytes())
    assert again == document
    assert verify_checkpoint(again, MANIFEST, now=NOW) == CHECKPOINT


def test_wire_form() -> None:
    document = json.loads(signed().to_bytes())
    assert document == {
        "checkpoint": {
            "type": CHECKPOINT_TYPE,
            "origin": QINGDAO,
            "size": 3,
            "root": ROOT.hex(),
            "timestamp": "2026-06-01T07:59:00Z",
        },
        "keyid": CITIES[QINGDAO].key.public_key.keyid,
        "signature": b64encode(signed().signature),
    }
    assert signed().to_bytes() == canonical_bytes(document)
    assert CHECKPOINT.signed_bytes() == canonical_bytes(document["checkpoint"])


def test_timestamp_is_kept_in_utc_to_the_second() -> None:
    beijing = dt.timezone(dt.timedelta(hours=8))
    at = dt.datetime(2026, 6, 1, 15, 59, 0, 123456, tzinfo=beijing)
    assert Checkpoint(QINGDAO, 3, ROOT, at) == CHECKPOINT


@pytest.mark.parametrize(
    "change",
    [
        {"size": 4},
        {"root": leaf_hash(b"other")},
        {"timestamp": NOW - dt.timedelta(minutes=2)},
        {"origin": YANTAI},
    ],
    ids=["size", "root", "timestamp", "origin"],
)
def test_tampered_checkpoints_do_not_verify(change: dict[str, Any]) -> None:
    document = signed()
    tampered = dataclasses.replace(
        document, checkpoint=dataclasses.replace(document.checkpoint, **change)
    )
    # A changed origin points at another member's key, so the key id check fails first.
    message = "signed with key" if "origin" in change else "signature by 370200's key does not"
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(tampered, MANIFEST, now=NOW)


def test_tampered_bytes_do_not_verify() -> None:
    data = signed().to_bytes().replace(b'"size":3', b'"size":2')
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(SignedCheckpoint.from_bytes(data), MANIFEST, now=NOW)


def test_garbage_signature() -> None:
    document = dataclasses.replace(signed(), signature=bytes(64))
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(document, MANIFEST, now=NOW)


def test_origin_not_a_member() -> None:
    outsider = Checkpoint("999999", 3, ROOT, NOW)
    with pytest.raises(
        CheckpointError,
        match=r"^checkpoint of 999999 at size 3: 999999 is not a member of manifest v1 of "
        r"jiaodong$",
    ):
        verify_checkpoint(signed(outsider, "stranger"), MANIFEST, now=NOW)


def test_signed_by_another_member() -> None:
    document = signed(CHECKPOINT, YANTAI)
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint of 370200 at size 3 is signed with key \w{16} \(the key of 370600\), "
        r"not with 370200's signing key",
    ):
        verify_checkpoint(document, MANIFEST, now=NOW)


def test_signed_by_a_stranger() -> None:
    with pytest.raises(CheckpointError, match=r"\(not a member's key\)"):
        verify_checkpoint(signed(CHECKPOINT, "stranger"), MANIFEST, now=NOW)


def test_signed_with_a_rotated_away_key() -> None:
    rotated = CITIES[QINGDAO].with_new_key()
    manifest = dataclasses.replace(
        MANIFEST,
        members=tuple(rotated.member if m.city_code == QINGDAO else m for m in MANIFEST.members),
    )
    with pytest.raises(CheckpointError, match="not a member's key"):
        verify_checkpoint(signed(), manifest, now=NOW)
    assert verify_checkpoint(sign_checkpoint(CHECKPOINT, rotated.key), manifest, now=NOW)


@pytest.mark.parametrize(
    ("ahead", "ok"),
    [
        (dt.timedelta(0), True),
        (dt.timedelta(minutes=5), True),
        (dt.timedelta(minutes=5, seconds=1), False),
        (dt.timedelta(days=1), False),
    ],
)
def test_timestamps_from_the_future(ahead: dt.timedelta, ok: bool) -> None:
    document = signed(dataclasses.replace(CHECKPOINT, timestamp=NOW + ahead))
    if ok:
        verify_checkpoint(document, MANIFEST, now=NOW)
    else:
        with pytest.raises(CheckpointError, match=r"is from the future: timestamp 2026-06-0"):
            verify_checkpoint(document, MANIFEST, now=NOW)


def test_old_checkpoints_are_not_refused_here() -> None:
    # Staleness is a sync policy (compare with the held checkpoint), not a signature matter.
    document = signed(dataclasses.replace(CHECKPOINT, timestamp=NOW - YEAR))
    verify_checkpoint(document, MANIFEST, now=NOW)


def test_skew_is_configurable() -> None:
    document = signed(dataclasses.replace(CHECKPOINT, timestamp=NOW + dt.timedelta(minutes=1)))
    with pytest.raises(CheckpointError, match="from the future"):
        verify_checkpoint(document, MANIFEST, now=NOW, max_skew=dt.timedelta(0))


def test_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        verify_checkpoint(signed(), MANIFEST, now=NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("origin", "size", "root", "timestamp", "message"),
    [
        ("37020", 3, ROOT, NOW, "checkpoint origin: city code '37020' is not a six-digit"),
        (QINGDAO, -1, ROOT, NOW, "size must be an integer >= 0, not -1"),
        (QINGDAO, True, ROOT, NOW, "size must be an integer >= 0, not True"),
        (QINGDAO, 3, ROOT[:31], NOW, "root must be a 32-byte SHA-256 hash"),
        (QINGDAO, 3, ROOT.hex(), NOW, "root must be a 32-byte SHA-256 hash"),
        (QINGDAO, 0, ROOT, NOW, "empty log must have the empty root"),
        (QINGDAO, 3, ROOT, NOW.replace(tzinfo=None), "timezone-aware"),
    ],
    ids=["origin", "negative size", "bool size", "short root", "hex root", "empty", "naive"],
)
def test_checkpoint_fields_are_checked(
    origin: Any, size: Any, root: Any, timestamp: Any, message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpoint(origin, size, root, timestamp)


def test_empty_log_checkpoint() -> None:
    empty = Checkpoint(QINGDAO, 0, EMPTY_ROOT, NOW)
    assert verify_checkpoint(signed(empty), MANIFEST, now=NOW) == empty


# --- parsing ------------------------------------------------------------------------------


def wire(**changes: Any) -> bytes:
    document = signed().to_json()
    for path, value in changes.items():
        target = document
        *parents, last = path.split("__")
        for name in parents:
            target = target[name]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff", "signed checkpoint is not UTF-8 text"),
        (b"[1]", "signed checkpoint must be a JSON object"),
        (b'{"a": 1.5}', "floats are not allowed"),
        (b'{"keyid": "a", "keyid": "b"}', "key 'keyid' appears twice"),
        (
            wire(extra=1),
            r"signed checkpoint: fields do not match \(missing \[\], unknown \['extra'\]",
        ),
        (wire(keyid=KeyError), r"missing \['keyid'\]"),
        (wire(keyid="AB" * 32), "keyid must be 64 lower-case hex digits"),
        (wire(signature=5), "keyid and signature must be strings"),
        (wire(signature="!!"), "signature is not valid base64"),
        (wire(signature=""), "signature must be 1 to 1024 bytes"),
        (wire(signature=b64encode(bytes(64)) + "\n"), "not valid base64"),
        (wire(checkpoint=[]), "checkpoint must be a JSON object"),
        (wire(checkpoint__type="creditnet.other/v1"), "not a checkpoint: type is"),
        (wire(checkpoint__root=ROOT.hex().upper()), "root must be 64 lower-case hex digits"),
        (wire(checkpoint__root=ROOT.hex()[:62]), "root must be 64 lower-case hex digits"),
        (wire(checkpoint__size="3"), "size must be an integer"),
        (wire(checkpoint__size=True), "size must be an integer"),
        (wire(checkpoint__size=-3), "size must be an integer >= 0"),
        (wire(checkpoint__size=2**63), "larger than any log can be"),
        (wire(checkpoint__origin=370200), "origin must be a string"),
        (wire(checkpoint__timestamp=5), "timestamp must be a string"),
        (wire(checkpoint__timestamp="2026-06-01T07:59:00+08:00"), "must be in UTC"),
        (wire(checkpoint__timestamp="yesterday"), "timestamp is not an RFC 3339 UTC time"),
        (wire(checkpoint__timestamp="2026-06-01T07:59:00.5Z"), "not in canonical form"),
        (wire(checkpoint__seq=1), r"unknown \['seq'\]"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_documents(data: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        SignedCheckpoint.from_bytes(data)


def test_canonical_base64_is_required() -> None:
    # The last base64 character of a 64-byte value carries 2 unused bits: setting them gives
    # another text for the same bytes, which a strict reader refuses.
    text = b64encode(signed().signature)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = text[-3]
    sloppy = text[:-3] + alphabet[alphabet.index(last) | 1] + text[-2:]
    if sloppy == text:
        sloppy = text[:-3] + alphabet[alphabet.index(last) ^ 1] + text[-2:]
    with pytest.raises(CheckpointError, match="not in canonical base64"):
        SignedCheckpoint.from_bytes(wire(signature=sloppy))


def test_checkpoint_errors_are_permission_denied() -> None:
    with pytest.raises(CheckpointError) as caught:
        SignedCheckpoint.from_bytes(b"{}")
    assert caught.value.code is ErrorCode.PERMISSION_DENIED


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_project_errors(data: bytes) -> None:
    with contextlib.suppress(CreditNetError):
        SignedCheckpoint.from_bytes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@given(
    st.sampled_from(["checkpoint", "keyid", "signature"]),
    st.sampled_from([None, "type", "origin", "size", "root", "timestamp"]),
    json_values,
)
def test_arbitrary_field_values_raise_only_project_errors(
    field: str, inner: str | None, value: Any
) -> None:
    document = signed().to_json()
    if field == "checkpoint" and inner is not None:
        document["checkpoint"][inner] = value
    else:
        document[field] = value
    try:
        parsed = SignedCheckpoint.from_bytes(canonical_bytes(document))
    except CreditNetError:
        return
    # Whatever parses is exactly what was sent.
    assert parsed.to_json() == document


@given(
    st.integers(0, MAX_SIZE),
    st.binary(min_size=32, max_size=32),
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ),
)
def test_round_trip(size: int, root: bytes, at: dt.datetime) -> None:
    checkpoint = Checkpoint(QINGDAO, size, EMPTY_ROOT if size == 0 else root, at)
    document = signed(checkpoint)
    assert SignedCheckpoint.from_bytes(document.to_bytes()) == document


def test_the_largest_size_is_the_largest_a_signed_64_bit_column_holds() -> None:
    # Sizes are stored in signed 64-bit columns, where a larger one overflows (an
    # OverflowError from SQLite, not a refusal).
    assert MAX_SIZE == 2**63 - 1
    largest = Checkpoint(QINGDAO, MAX_SIZE, ROOT, NOW)
    assert SignedCheckpoint.from_bytes(signed(largest).to_bytes()).checkpoint == largest


@given(st.integers(MAX_SIZE + 1, 2**80))
def test_a_signed_checkpoint_larger_than_any_log_is_refused(size: int) -> None:
    with pytest.raises(CheckpointError, match="larger than any log can be"):
        Checkpoint(QINGDAO, size, ROOT, NOW)
    # The same checkpoint validly signed by its origin: refused when read.
    document = signed().to_json()
    document["checkpoint"]["size"] = size
    document["signature"] = b64encode(
        CITIES[QINGDAO].key.sign(canonical_bytes(document["checkpoint"]))
    )
    with pytest.raises(CheckpointError, match=f"checkpoint size {size} is larger than any log"):
        SignedCheckpoint.from_bytes(canonical_bytes(document))


# --- split views --------------------------------------------------------------------------


def test_conflicting_checkpoints() -> None:
    other = dataclasses.replace(CHECKPOINT, root=leaf_hash(b"fork"))
    reason = conflicting(CHECKPOINT, other)
    assert reason is not None
    assert reason.startswith("370200 signed two different roots for log size 3: ")
    assert reason == conflicting(other, CHECKPOINT)


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"timestamp": NOW},
        {"size": 4, "root": leaf_hash(b"fork")},
        {"origin": YANTAI, "root": leaf_hash(b"fork")},
    ],
    ids=["same", "later with same root", "other size", "other origin"],
)
def test_not_conflicting(change: dict[str, Any]) -> None:
    assert conflicting(CHECKPOINT, dataclasses.replace(CHECKPOINT, **change)) is None


def test_split_view_evidence_round_trips_and_verifies() -> None:
    fork = signed(dataclasses.replace(CHECKPOINT, root=leaf_hash(b"fork")))
    reason = conflicting(CHECKPOINT, fork.checkpoint)
    assert reason is not None
    evidence = SplitViewEvidence(signed(), fork, reason)
    document = json.loads(canonical_bytes(evidence.to_json()))
    assert document["type"] == SPLIT_VIEW_TYPE
    again = SplitViewEvidence.from_json(document)
    assert again == evidence
    assert again.origin == QINGDAO
    # Anyone holding the manifest can check it without trusting the messenger.
    for part in (again.first, again.second):
        verify_checkpoint(part, MANIFEST, now=NOW)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(type="x"), "not split-view evidence: type is 'x'"),
        (lambda d: d.update(extra=1), r"unknown \['extra'\]"),
        (lambda d: d.update(reason=""), "reason of 1 to 1000 characters"),
        (lambda d: d.update(reason=7), "reason of 1 to 1000 characters"),
        (lambda d: d.update(second=d["first"]), "two different checkpoints"),
        (lambda d: d["second"].update(keyid="x"), "second: checkpoint keyid must be 64"),
        (lambda d: d["first"]["checkpoint"].update(size=-1), "first: checkpoint size must"),
    ],
    ids=["type", "extra", "empty reason", "reason type", "same twice", "keyid", "size"],
)
def test_malformed_split_view_evidence(mutate: Any, message: str) -> None:
    fork = signed(dataclasses.replace(CHECKPOINT, root=leaf_hash(b"fork")))
    document = SplitViewEvidence(signed(), fork, "two roots").to_json()
    mutate(document)
    with pytest.raises(CheckpointError, match=message):
        SplitViewEvidence.from_json(document)


def test_split_view_evidence_needs_one_origin() -> None:
    other = signed(Checkpoint(YANTAI, 3, ROOT, NOW), YANTAI)
    with pytest.raises(CheckpointError, match="one origin, not of 370200 and 370600"):
        SplitViewEvidence(signed(), other, "two roots")
    with pytest.raises(CheckpointError, match="must be a JSON object"):
        SplitViewEvidence.from_json([])
