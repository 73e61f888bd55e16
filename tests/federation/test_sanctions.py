"""Sanction lists: entries, log events, the state machine, the owner's rules and expiry."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.canonical import canonical_bytes
from federation.errors import (
    ConflictError,
    CreditNetError,
    FailedPreconditionError,
    InvalidInputError,
    ListEntryError,
    NotFoundError,
)
from federation.sanctions import (
    DEFAULT_POLICIES,
    EVENT_TYPE,
    Duplicate,
    EntryState,
    Envelope,
    EventBody,
    EventType,
    ListKind,
    ListPolicy,
    Objection,
    Planned,
    Removal,
    RemovalReason,
    SanctionEntry,
    Subject,
    apply_event,
    due_expiries,
    entry_id,
    open_body,
    plan_add,
    plan_amend,
    plan_objection,
    plan_remove,
    policies_from_config,
    seal,
)
from federation.signing import b64encode
from federation.subjects import (
    USCC_ALPHABET,
    SubjectKind,
    parse_subject,
    resident_id_check_char,
    uscc_check_char,
)

ORIGIN = "370200"
OTHER_CITY = "371000"
TODAY = dt.date(2026, 6, 1)
NOW = dt.datetime(2026, 6, 1, 2, 0, 0, tzinfo=dt.UTC)  # 10:00 in China
USCC = "91110000600037341L"
RESIDENT = "11010519491231002X"
RESIDENT_MASKED = "110105********002X"
SALT = bytes(range(16))
SD = ListKind.SERIOUS_DISHONESTY
POLICY = DEFAULT_POLICIES[SD]
LISTED_ON = dt.date(2026, 3, 1)


def make_entry(**overrides: Any) -> SanctionEntry:
    values: dict[str, Any] = {
        "list_kind": SD,
        "subject_id": RESIDENT,
        "subject_name": "张三",
        "reason": "拒不履行法院判决",
        "legal_basis": "《失信行为纠正后的信用信息修复管理办法》第十条",
        "authority": "青岛市发展和改革委员会",
        "decision_no": "青发改信〔2026〕12号",
        "listed_on": LISTED_ON,
        "measures": ("限制高消费", "限制参加政府采购"),
        "appeal": "可于60日内申请行政复议",
        "policy": POLICY,
    }
    values.update(overrides)
    return SanctionEntry.create(**values)


def unchecked(value: object) -> Any:
    """A wrongly typed value, for tests of what happens at run time."""
    return value


def planned_only(result: Planned | Duplicate) -> Planned:
    assert isinstance(result, Planned), result
    return result


def messages_are_safe(error: BaseException) -> str:
    """The error's text, checked never to carry the resident ID in clear."""
    text = str(error)
    if isinstance(error, CreditNetError):
        text += error.diagnostics()
    assert RESIDENT not in text
    assert RESIDENT[:-1] not in text  # not even without its check character
    return text


def sealed(
    event: EventType,
    body: EventBody,
    *,
    index: int,
    entry: SanctionEntry | None = None,
    key: str | None = None,
    at: dt.datetime = NOW,
    kind: ListKind = SD,
) -> tuple[Envelope, bytes]:
    the_id = key or (entry or body.entry or make_entry()).entry_id(ORIGIN)
    return seal(
        origin=ORIGIN,
        index=index,
        at=at,
        event=event,
        list_kind=kind,
        entry_id=the_id,
        body=body,
    )


def added(entry: SanctionEntry | None = None, *, index: int = 0) -> EntryState:
    entry = entry or make_entry()
    envelope, body_bytes = sealed(EventType.ADD, EventBody(SALT, entry=entry), index=index)
    return apply_event(None, envelope, open_body(envelope, body_bytes))


def run(state: EntryState | None, planned: Planned, *, index: int) -> EntryState:
    """Seal, open again (as a replica would) and apply a planned event."""
    envelope, body_bytes = seal(
        origin=ORIGIN,
        index=index,
        at=NOW,
        event=planned.event,
        list_kind=planned.list_kind,
        entry_id=planned.entry_id,
        body=planned.body,
    )
    replica_envelope = Envelope.from_bytes(envelope.to_bytes())
    assert replica_envelope == envelope
    return apply_event(state, replica_envelope, open_body(replica_envelope, body_bytes))


# --- list kinds and policies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("serious-dishonesty", ListKind.SERIOUS_DISHONESTY),
        ("  Watch_List ", ListKind.WATCH_LIST),
        ("RED-LIST", ListKind.RED_LIST),
        ("经营异常名录", ListKind.ABNORMAL_OPERATION),
        ("行政处罚信息", ListKind.ADMINISTRATIVE_PENALTY),
    ],
)
def test_list_kind_parse(text: str, kind: ListKind) -> None:
    assert ListKind.parse(text) is kind


@pytest.mark.parametrize("text", ["dishonesty", "", "black-list", RESIDENT])
def test_list_kind_parse_error_lists_known_kinds(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        ListKind.parse(text)
    message = messages_are_safe(caught.value)
    assert all(kind.value in message for kind in ListKind)


def test_every_list_kind_has_a_chinese_name() -> None:
    names = {kind.name_zh for kind in ListKind}
    assert len(names) == len(ListKind)
    assert ListKind.SERIOUS_DISHONESTY.name_zh == "严重失信主体名单"
    assert "红名单" in ListKind.RED_LIST.name_zh


@pytest.mark.parametrize(
    ("kind", "public", "low", "high"),
    [
        (ListKind.SERIOUS_DISHONESTY, True, 182, 1095),
        (ListKind.JOINT_PUNISHMENT, True, 90, 365),
        (ListKind.ABNORMAL_OPERATION, True, 90, 1095),
        (ListKind.ADMINISTRATIVE_PENALTY, True, 90, 1095),
        (ListKind.WATCH_LIST, False, 90, 365),
        (ListKind.RED_LIST, True, 0, 1095),
    ],
)
def test_default_policies(kind: ListKind, public: bool, low: int, high: int) -> None:
    policy = DEFAULT_POLICIES[kind]
    assert (policy.kind, policy.public, policy.replicate_to) == (kind, public, ("*",))
    assert (policy.min_publicity_days, policy.max_publicity_days) == (low, high)
    assert policy.replicates_to(OTHER_CITY) is public


def test_replicate_to_named_cities_only() -> None:
    policy = dataclasses.replace(POLICY, replicate_to=(OTHER_CITY,))
    assert policy.replicates_to(OTHER_CITY)
    assert not policy.replicates_to("370600")


@pytest.mark.parametrize("targets", [("*",), (OTHER_CITY,), (OTHER_CITY, "370600")])
def test_watch_list_never_replicates(targets: tuple[str, ...]) -> None:
    policy = dataclasses.replace(DEFAULT_POLICIES[ListKind.WATCH_LIST], replicate_to=targets)
    assert not policy.replicates_to(OTHER_CITY)
    config = policies_from_config({"watch-list": {"replicate_to": list(targets)}})
    assert not config[ListKind.WATCH_LIST].replicates_to(OTHER_CITY)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"public": 1}, "public"),
        ({"replicate_to": ("*", OTHER_CITY)}, "replicate_to"),
        ({"replicate_to": ("37020",)}, "replicate_to"),
        ({"replicate_to": (OTHER_CITY, OTHER_CITY)}, "replicate_to"),
        ({"replicate_to": "*"}, "replicate_to"),
        ({"min_publicity_days": -1}, "min_publicity_days"),
        ({"min_publicity_days": True}, "min_publicity_days"),
        ({"max_publicity_days": 0}, "max_publicity_days"),
        ({"max_publicity_days": 90.0}, "max_publicity_days"),
        ({"min_publicity_days": 400, "max_publicity_days": 365}, "min_publicity_days"),
    ],
)
def test_policy_validation(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        dataclasses.replace(POLICY, **changes)


def test_policies_from_config_defaults_and_overrides() -> None:
    assert policies_from_config({}) == dict(DEFAULT_POLICIES)
    policies = policies_from_config(
        {
            "serious-dishonesty": {"min_publicity_days": 365, "replicate_to": [OTHER_CITY]},
            "red-list": {"public": False},
            "joint-punishment": {"replicate_to": "*", "max_publicity_days": 730},
        }
    )
    assert set(policies) == set(ListKind)
    serious = policies[ListKind.SERIOUS_DISHONESTY]
    assert (serious.min_publicity_days, serious.max_publicity_days) == (365, 1095)
    assert serious.replicate_to == (OTHER_CITY,) and serious.public
    assert not policies[ListKind.RED_LIST].public
    assert policies[ListKind.JOINT_PUNISHMENT].max_publicity_days == 730
    assert policies[ListKind.WATCH_LIST] == DEFAULT_POLICIES[ListKind.WATCH_LIST]


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"serious_dishonesty": {}}, "serious_dishonesty"),
        ({"black-list": {"public": True}}, "black-list"),
        ({"red-list": {"pubic": True}}, "pubic"),
        ({"red-list": {"max_days": 3}}, "max_days"),
        ({"red-list": []}, "red-list"),
        ({"red-list": {"replicate_to": 370200}}, "replicate_to"),
        ({"red-list": {"replicate_to": ["37O200"]}}, "replicate_to"),
        ({"red-list": {"min_publicity_days": "90"}}, "min_publicity_days"),
        ({"watch-list": {"max_publicity_days": 30}}, "min_publicity_days"),
    ],
)
def test_policies_from_config_errors(table: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        policies_from_config(table)
    assert named in str(caught.value)
    if "unknown" in str(caught.value) and "kind" in str(caught.value):
        assert all(kind.value in str(caught.value) for kind in ListKind)


# --- subjects and entries ---------------------------------------------------------------------


def test_subject_never_shows_a_resident_id() -> None:
    subject = make_entry().subject
    assert subject.kind is SubjectKind.RESIDENT_ID and subject.id == RESIDENT
    assert subject.masked == RESIDENT_MASKED
    for text in (repr(subject), str(subject), repr(make_entry()), repr(added())):
        assert RESIDENT not in text
    assert RESIDENT_MASKED in repr(subject)
    uscc = make_entry(subject_id=USCC).subject
    assert uscc.kind is SubjectKind.USCC and uscc.masked == USCC


def test_create_normalises_and_defaults() -> None:
    entry = make_entry(
        list_kind="serious_dishonesty",
        subject_id=" ９１１１００００６０００３７３４１ｌ ",
        subject_name="  某某科技有限公司 ",
        reason=" 虚假申报 \n",
        measures=[" 限制高消费 "],
        appeal="",
    )
    assert entry.list_kind is SD
    assert entry.subject == Subject(SubjectKind.USCC, USCC, "某某科技有限公司")
    assert entry.reason == "虚假申报"
    assert entry.measures == ("限制高消费",)
    assert entry.appeal == ""
    assert entry.publicity_end == LISTED_ON + dt.timedelta(days=1095)


def test_create_accepts_the_last_day_of_maximum_publicity() -> None:
    last = LISTED_ON + dt.timedelta(days=POLICY.max_publicity_days)
    assert make_entry(publicity_end=last).publicity_end == last
    with pytest.raises(ListEntryError, match=f"publicity_end.*{last}"):
        make_entry(publicity_end=last + dt.timedelta(days=1))


def test_create_refuses_a_policy_of_another_kind() -> None:
    with pytest.raises(InvalidInputError, match="policy"):
        make_entry(list_kind=ListKind.RED_LIST)


ENTRY_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"list_kind": "blacklist"}, "list_kind"),
    ({"subject_id": RESIDENT[:-1] + "1"}, "subject.id"),  # wrong check character
    ({"subject_id": RESIDENT[:17]}, "subject.id"),
    ({"subject_id": "91110000600037341A"}, "subject.id"),
    # Born after the listing date: a resident ID checked on listed_on.
    ({"subject_id": "110105202701010011"}, "subject.id"),
    ({"subject_id": 110105}, "subject.id"),
    ({"subject_name": "  "}, "subject.name"),
    ({"subject_name": "x" * 201}, "subject.name"),
    ({"subject_name": "张\n三"}, "subject.name"),
    ({"reason": ""}, "reason"),
    ({"reason": "x" * 4001}, "reason"),
    ({"reason": "bell \x07"}, "reason"),
    ({"reason": "\ud800"}, "reason"),
    ({"legal_basis": ""}, "legal_basis"),
    ({"legal_basis": None}, "legal_basis"),
    ({"authority": ""}, "authority"),
    ({"authority": "a\tb"}, "authority"),
    ({"decision_no": ""}, "decision_no"),
    ({"decision_no": "x" * 101}, "decision_no"),
    ({"listed_on": dt.datetime(2026, 3, 1, tzinfo=dt.UTC)}, "listed_on"),
    ({"listed_on": "2026-03-01"}, "listed_on"),
    ({"publicity_end": LISTED_ON}, "publicity_end"),
    ({"publicity_end": LISTED_ON - dt.timedelta(days=1)}, "publicity_end"),
    ({"publicity_end": LISTED_ON + dt.timedelta(days=1096)}, "publicity_end"),
    ({"measures": "限制高消费"}, "measures"),
    ({"measures": ["限制高消费", "限制高消费"]}, "measures"),
    ({"measures": ["ok", ""]}, "measures[1]"),
    ({"measures": [3]}, "measures[0]"),
    ({"measures": ["m"] * 51}, "measures"),
    ({"appeal": None}, "appeal"),
]


@pytest.mark.parametrize(("changes", "field"), ENTRY_ERRORS)
def test_entry_validation_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ListEntryError) as caught:
        make_entry(**changes)
    assert messages_are_safe(caught.value).startswith(f"{field}:")


def test_entry_round_trip() -> None:
    entry = make_entry()
    document = entry.to_json()
    assert document["subject"] == {"kind": "resident-id", "id": RESIDENT, "name": "张三"}
    assert document["listed_on"] == "2026-03-01"
    assert document["measures"] == ["限制高消费", "限制参加政府采购"]
    assert SanctionEntry.from_json(json.loads(canonical_bytes(document))) == entry


def _mutated(path: str, value: Any) -> dict[str, Any]:
    document = make_entry().to_json()
    target = document
    *parents, leaf = path.split(".")
    for parent in parents:
        target = target[parent]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return document


_DELETE = object()

FROM_JSON_ERRORS: list[tuple[str, Any, str]] = [
    ("list_kind", "Serious-Dishonesty", "list_kind"),  # strict: no forgiveness in JSON
    ("list_kind", 3, "list_kind"),
    ("subject", "someone", "subject"),
    ("subject.kind", "person", "subject.kind"),
    ("subject.kind", "uscc", "subject.id"),  # a resident ID declared as a USCC
    ("subject.id", RESIDENT.lower(), "subject.id"),  # not normalised
    ("subject.id", " " + RESIDENT, "subject.id"),
    ("subject.id", ["x"], "subject.id"),
    ("subject.extra", "x", "subject"),
    ("subject.name", _DELETE, "subject"),
    ("listed_on", "2026-3-1", "listed_on"),
    ("listed_on", "2026-02-30", "listed_on"),
    ("listed_on", 20260301, "listed_on"),
    ("publicity_end", "2026-03-01", "publicity_end"),
    ("measures", "a", "measures"),
    ("measures", [None], "measures[0]"),
    ("reason", 1, "reason"),
    ("reason", " padded", "reason"),
    ("appeal", " ", "appeal"),
    ("appeal", _DELETE, "entry"),
    ("comment", "x", "entry"),
]


@pytest.mark.parametrize(("path", "value", "field"), FROM_JSON_ERRORS)
def test_entry_from_json_is_strict(path: str, value: Any, field: str) -> None:
    with pytest.raises(ListEntryError) as caught:
        SanctionEntry.from_json(_mutated(path, value))
    assert messages_are_safe(caught.value).startswith(f"{field}:")


def test_a_uscc_declared_as_resident_id_is_refused() -> None:
    document = make_entry(subject_id=USCC).to_json()
    document["subject"]["kind"] = "resident-id"
    with pytest.raises(ListEntryError, match=r"^subject\.id"):
        SanctionEntry.from_json(document)


def test_entry_id() -> None:
    key = entry_id(ORIGIN, "青岛市发展和改革委员会", "青发改信〔2026〕12号")
    expected = hashlib.sha256(
        canonical_bytes(
            {
                "origin": ORIGIN,
                "authority": "青岛市发展和改革委员会",
                "decision_no": "青发改信〔2026〕12号",
            }
        )
    ).hexdigest()[:32]
    assert key == expected == make_entry().entry_id(ORIGIN)
    assert len({key, entry_id(OTHER_CITY, "a", "b"), entry_id(ORIGIN, "a", "c")}) == 3
    # Content other than the decision does not change the id: the idempotency key.
    assert make_entry(reason="其他").entry_id(ORIGIN) == key


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (
            lambda: Removal(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), RemovalReason.REPAIR, "x"),
            "removed_on",
        ),
        (lambda: Removal(TODAY, unchecked("repair"), "x"), "reason"),
        (lambda: Removal(TODAY, RemovalReason.REPAIR, ""), "authority"),
        (lambda: Removal(TODAY, RemovalReason.REPAIR, "x", " n"), "note"),
        (lambda: Objection(unchecked(1), TODAY), "open"),
        (lambda: Objection(True, unchecked("2026-01-01")), "on"),
        (lambda: Objection(True, TODAY, "\x00"), "note"),
    ],
)
def test_removal_and_objection_validation(factory: Callable[[], object], field: str) -> None:
    with pytest.raises(ListEntryError, match=f"^{field}:"):
        factory()


@pytest.mark.parametrize(
    ("parse", "document", "field"),
    [
        (
            Removal.from_json,
            {"removed_on": "2026-01-01", "reason": "x", "authority": "a", "note": ""},
            "reason",
        ),
        (
            Removal.from_json,
            {"removed_on": "2026-01-01", "reason": "repair", "authority": "a"},
            "removal",
        ),
        (
            Removal.from_json,
            {"removed_on": None, "reason": "repair", "authority": "a", "note": ""},
            "removed_on",
        ),
        (Objection.from_json, {"open": "yes", "on": "2026-01-01", "note": ""}, "open"),
        (Objection.from_json, {"open": True, "on": "01/01/2026", "note": ""}, "on"),
        (Objection.from_json, [], "objection"),
    ],
)
def test_removal_and_objection_from_json_is_strict(
    parse: Callable[[object], object], document: object, field: str
) -> None:
    with pytest.raises(ListEntryError, match=f"^{field}:"):
        parse(document)


def test_removal_and_objection_round_trip() -> None:
    removal = Removal(TODAY, RemovalReason.OBJECTION_UPHELD, "青岛市发展和改革委员会", "复核")
    assert removal.to_json()["reason"] == "objection-upheld"
    assert Removal.from_json(removal.to_json()) == removal
    objection = Objection(True, TODAY, "申请人提出异议")
    assert Objection.from_json(objection.to_json()) == objection


# --- envelopes and bodies -----------------------------------------------------------------------


def test_envelope_round_trip_and_form() -> None:
    body = EventBody(SALT, entry=make_entry())
    at = dt.datetime(2026, 6, 1, 14, 0, 0, 123456, tzinfo=CST)
    envelope, body_bytes = sealed(EventType.ADD, body, index=17, at=at)
    assert envelope.at == dt.datetime(2026, 6, 1, 6, 0, 0, tzinfo=dt.UTC)
    data = envelope.to_bytes()
    assert json.loads(data) == {
        "type": EVENT_TYPE,
        "origin": ORIGIN,
        "index": 17,
        "at": "2026-06-01T06:00:00Z",
        "event": "add",
        "list_kind": "serious-dishonesty",
        "entry_id": make_entry().entry_id(ORIGIN),
        "body_sha256": hashlib.sha256(body_bytes).hexdigest(),
    }
    assert data == canonical_bytes(json.loads(data))
    assert Envelope.from_bytes(data) == envelope
    # The body is canonical JSON with a base64 salt: no resident ID leaks into a repr.
    assert json.loads(body_bytes)["salt"] == b64encode(SALT)
    assert EventBody.from_bytes(body_bytes, EventType.ADD) == body
    assert RESIDENT not in repr(body)


CST = dt.timezone(dt.timedelta(hours=8))


def _envelope_json(**changes: object) -> bytes:
    envelope, _ = sealed(EventType.ADD, EventBody(SALT, entry=make_entry()), index=3)
    document = json.loads(envelope.to_bytes())
    for key, value in changes.items():
        if value is _DELETE:
            document.pop(key, None)
        else:
            document[key] = value
    return canonical_bytes(document)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not valid JSON"),
        (b"[]", "object"),
        (b"\xff", "UTF-8"),
        (b"{" * 3000, "JSON"),
        (b" " * 5000, "bytes"),
        (_envelope_json(type="creditnet.list-event/v2"), "type"),
        (_envelope_json(extra=1), "extra"),
        (_envelope_json(origin=_DELETE), "origin"),
        (_envelope_json(origin="070200"), "origin"),
        (_envelope_json(origin=RESIDENT), "origin"),
        (_envelope_json(index=-1), "index"),
        (_envelope_json(index=True), "index"),
        (_envelope_json(index=2**63), "index"),
        (_envelope_json(at="2026-06-01T06:00:00+00:00"), "at"),
        (_envelope_json(at="2026-06-01T06:00:00.5Z"), "at"),
        (_envelope_json(at="2026-06-01 06:00:00Z"), "at"),
        (_envelope_json(at="yesterday"), "at"),
        (_envelope_json(at=0), "at"),
        (_envelope_json(event="delete"), "event"),
        (_envelope_json(event=None), "event"),
        (_envelope_json(list_kind="Red-List"), "list_kind"),
        (_envelope_json(entry_id="A" * 32), "entry_id"),
        (_envelope_json(entry_id="a" * 31), "entry_id"),
        (_envelope_json(body_sha256="0" * 63), "body_sha256"),
        (_envelope_json().replace(b",", b", "), "canonical"),
    ],
)
def test_envelope_from_bytes_is_strict(data: bytes, words: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Envelope.from_bytes(data)
    assert words in messages_are_safe(caught.value)


def _body_json(event: EventType, **changes: Any) -> bytes:
    payload: dict[EventType, EventBody] = {
        EventType.ADD: EventBody(SALT, entry=make_entry()),
        EventType.REMOVE: EventBody(SALT, removal=Removal(TODAY, RemovalReason.REPAIR, "a")),
        EventType.OBJECTION: EventBody(SALT, objection=Objection(True, TODAY)),
    }
    document = json.loads(payload[event].to_bytes())
    for key, value in changes.items():
        if value is _DELETE:
            document.pop(key, None)
        else:
            document[key] = value
    return canonical_bytes(document)


@pytest.mark.parametrize(
    ("data", "event", "error", "words"),
    [
        (_body_json(EventType.ADD), EventType.REMOVE, InvalidInputError, "removal"),
        (_body_json(EventType.REMOVE), EventType.AMEND, InvalidInputError, "entry"),
        (_body_json(EventType.OBJECTION), EventType.ADD, InvalidInputError, "entry"),
        (_body_json(EventType.ADD, salt=_DELETE), EventType.ADD, InvalidInputError, "salt"),
        (
            _body_json(EventType.ADD, salt=b64encode(bytes(15))),
            EventType.ADD,
            InvalidInputError,
            "salt",
        ),
        (_body_json(EventType.ADD, salt="not base64!"), EventType.ADD, InvalidInputError, "salt"),
        # "AAE...=" with non-zero padding bits decodes, but is not the canonical base64 form.
        (
            _body_json(EventType.ADD, salt=b64encode(SALT)[:-2] + "x="),
            EventType.ADD,
            InvalidInputError,
            "salt",
        ),
        (_body_json(EventType.ADD, salt=1), EventType.ADD, InvalidInputError, "salt"),
        (_body_json(EventType.ADD, removal={}), EventType.ADD, InvalidInputError, "removal"),
        (_body_json(EventType.ADD, entry={}), EventType.ADD, ListEntryError, "entry"),
        (_body_json(EventType.REMOVE, removal=None), EventType.REMOVE, ListEntryError, "removal"),
        (
            _body_json(EventType.OBJECTION, objection={"open": True}),
            EventType.OBJECTION,
            ListEntryError,
            "objection",
        ),
        (
            _body_json(EventType.OBJECTION).replace(b"{", b"{ ", 1),
            EventType.OBJECTION,
            InvalidInputError,
            "canonical",
        ),
        (
            _body_json(EventType.OBJECTION).replace(b'"note":""', b'"note":"\\ud800"'),
            EventType.OBJECTION,
            InvalidInputError,
            "note",
        ),
    ],
)
def test_body_from_bytes_is_strict(
    data: bytes, event: EventType, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as caught:
        EventBody.from_bytes(data, event)
    assert words in messages_are_safe(caught.value)


def test_body_needs_exactly_one_payload_and_a_salt() -> None:
    with pytest.raises(InvalidInputError, match="exactly one"):
        EventBody(SALT)
    with pytest.raises(InvalidInputError, match="exactly one"):
        EventBody(
            SALT,
            removal=Removal(TODAY, RemovalReason.REPAIR, "a"),
            objection=Objection(True, TODAY),
        )
    with pytest.raises(InvalidInputError, match="salt"):
        EventBody(bytes(8), objection=Objection(True, TODAY))


def test_open_body_accepts_what_seal_made() -> None:
    body = EventBody(SALT, entry=make_entry())
    envelope, body_bytes = sealed(EventType.ADD, body, index=0)
    assert open_body(envelope, body_bytes) == body


def test_open_body_refuses_a_tampered_body() -> None:
    envelope, body_bytes = sealed(EventType.ADD, EventBody(SALT, entry=make_entry()), index=0)
    tampered = body_bytes.replace("张三".encode(), "李四".encode())
    assert tampered != body_bytes
    with pytest.raises(InvalidInputError, match="body_sha256") as caught:
        open_body(envelope, tampered)
    messages_are_safe(caught.value)


def test_open_body_refuses_a_wrong_hash() -> None:
    envelope, body_bytes = sealed(EventType.ADD, EventBody(SALT, entry=make_entry()), index=0)
    wrong = dataclasses.replace(envelope, body_sha256="0" * 64)
    with pytest.raises(InvalidInputError, match="body_sha256"):
        open_body(wrong, body_bytes)


def _forged(envelope: Envelope, body_bytes: bytes, **changes: Any) -> Envelope:
    """An envelope that hashes the body correctly but says something else about it."""
    return dataclasses.replace(
        envelope, body_sha256=hashlib.sha256(body_bytes).hexdigest(), **changes
    )


def test_open_body_refuses_a_wrong_list_kind() -> None:
    envelope, body_bytes = sealed(EventType.ADD, EventBody(SALT, entry=make_entry()), index=0)
    forged = _forged(envelope, body_bytes, list_kind=ListKind.RED_LIST)
    with pytest.raises(ListEntryError, match=r"^list_kind:.*red-list"):
        open_body(forged, body_bytes)
    with pytest.raises(ListEntryError, match=r"^list_kind:"):
        seal(
            origin=ORIGIN,
            index=0,
            at=NOW,
            event=EventType.ADD,
            list_kind=ListKind.RED_LIST,
            entry_id=envelope.entry_id,
            body=EventBody(SALT, entry=make_entry()),
        )


@pytest.mark.parametrize(
    "changes", [{"entry_id": "0" * 32}, {"origin": OTHER_CITY}], ids=["entry_id", "origin"]
)
def test_open_body_refuses_a_wrong_entry_id(changes: dict[str, Any]) -> None:
    envelope, body_bytes = sealed(EventType.ADD, EventBody(SALT, entry=make_entry()), index=0)
    with pytest.raises(InvalidInputError, match=r"^entry_id:") as caught:
        open_body(_forged(envelope, body_bytes, **changes), body_bytes)
    messages_are_safe(caught.value)


def test_open_body_refuses_a_body_of_another_event() -> None:
    body = EventBody(SALT, removal=Removal(TODAY, RemovalReason.REPAIR, "a"))
    envelope, body_bytes = sealed(EventType.REMOVE, body, index=1)
    with pytest.raises(InvalidInputError, match="entry"):
        open_body(_forged(envelope, body_bytes, event=EventType.AMEND), body_bytes)
    with pytest.raises(InvalidInputError, match="needs a body with removal"):
        sealed(EventType.REMOVE, EventBody(SALT, objection=Objection(True, TODAY)), index=1)


# --- the state machine --------------------------------------------------------------------------


def _event(state: EntryState | None, event: EventType, body: EventBody, index: int) -> EntryState:
    key = state.entry_id if state else make_entry().entry_id(ORIGIN)
    envelope, body_bytes = sealed(event, body, index=index, key=key)
    return apply_event(state, envelope, open_body(envelope, body_bytes))


REMOVAL = Removal(dt.date(2026, 5, 1), RemovalReason.DECISION_REVOKED, "青岛市发展和改革委员会")


def test_transitions() -> None:
    state = added(index=4)
    assert (state.origin, state.last_index, state.updated_at) == (ORIGIN, 4, NOW)
    assert state.removal is None and state.objection is None
    amended_entry = make_entry(reason="新的事由", subject_name="张三(更正)")
    state = _event(state, EventType.AMEND, EventBody(SALT, entry=amended_entry), 5)
    assert state.entry == amended_entry and state.last_index == 5
    opened = Objection(True, dt.date(2026, 5, 2))
    state = _event(state, EventType.OBJECTION, EventBody(SALT, objection=opened), 6)
    assert state.objection == opened and state.objection_open
    state = _event(state, EventType.REMOVE, EventBody(SALT, removal=REMOVAL), 9)
    assert state.removal == REMOVAL and state.removed and state.last_index == 9
    # An objection can still be closed on a removed entry: the record is kept.
    closed = Objection(False, dt.date(2026, 5, 3))
    state = _event(state, EventType.OBJECTION, EventBody(SALT, objection=closed), 10)
    assert state.objection == closed and not state.objection_open
    assert state.entry == amended_entry


def _removed() -> EntryState:
    return _event(added(), EventType.REMOVE, EventBody(SALT, removal=REMOVAL), 1)


@pytest.mark.parametrize(
    ("state", "event", "body", "index", "words"),
    [
        (added, EventType.ADD, EventBody(SALT, entry=make_entry()), 1, "already exists"),
        (lambda: None, EventType.AMEND, EventBody(SALT, entry=make_entry()), 0, "never added"),
        (lambda: None, EventType.REMOVE, EventBody(SALT, removal=REMOVAL), 0, "never added"),
        (
            lambda: None,
            EventType.OBJECTION,
            EventBody(SALT, objection=Objection(True, TODAY)),
            0,
            "never added",
        ),
        (_removed, EventType.AMEND, EventBody(SALT, entry=make_entry(reason="x")), 2, "removed"),
        (_removed, EventType.REMOVE, EventBody(SALT, removal=REMOVAL), 2, "already removed"),
        (added, EventType.AMEND, EventBody(SALT, entry=make_entry(subject_id=USCC)), 1, "subject"),
        (added, EventType.REMOVE, EventBody(SALT, removal=REMOVAL), 0, "in order"),
    ],
)
def test_invalid_transitions(
    state: Callable[[], EntryState | None],
    event: EventType,
    body: EventBody,
    index: int,
    words: str,
) -> None:
    with pytest.raises(FailedPreconditionError, match=words) as caught:
        _event(state(), event, body, index)
    messages_are_safe(caught.value)


def test_amend_cannot_move_an_entry_to_another_list() -> None:
    state = added()
    other = make_entry(
        list_kind=ListKind.JOINT_PUNISHMENT, policy=DEFAULT_POLICIES[ListKind.JOINT_PUNISHMENT]
    )
    envelope, body_bytes = sealed(
        EventType.AMEND, EventBody(SALT, entry=other), index=1, kind=ListKind.JOINT_PUNISHMENT
    )
    with pytest.raises(FailedPreconditionError, match="serious-dishonesty"):
        apply_event(state, envelope, open_body(envelope, body_bytes))


def test_apply_refuses_a_state_of_another_entry() -> None:
    state = added()
    envelope, body_bytes = sealed(
        EventType.REMOVE, EventBody(SALT, removal=REMOVAL), index=1, key="0" * 32
    )
    with pytest.raises(FailedPreconditionError, match="state given"):
        apply_event(state, envelope, open_body(envelope, body_bytes))


# --- effective status ---------------------------------------------------------------------------


def _china(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=CST)


def test_effective_at_the_boundaries_of_publicity() -> None:
    entry = make_entry(publicity_end=dt.date(2027, 3, 1))
    state = added(entry)
    end = entry.publicity_end
    last_minute = _china(end, 23, 59).astimezone(dt.UTC)  # 15:59 UTC, same day
    assert state.effective(last_minute).active
    status = state.effective(_china(end + dt.timedelta(days=1), 0, 0).astimezone(dt.UTC))
    assert status == state.effective(_china(end + dt.timedelta(days=1), 0, 0))
    assert not status.active and status.why == "publicity ended on 2027-03-01"
    assert not status.objection_pending
    first = state.effective(_china(LISTED_ON, 0, 0))
    assert first.active and "2027-03-01" in first.why
    before = state.effective(_china(LISTED_ON, 0, 0) - dt.timedelta(minutes=1))
    assert not before.active and before.why == "listed from 2026-03-01"


def test_effective_removed_and_objections() -> None:
    state = added()
    status = _removed().effective(NOW)
    assert not status.active and status.why == "removed on 2026-05-01: decision-revoked"
    opened = _event(
        state, EventType.OBJECTION, EventBody(SALT, objection=Objection(True, TODAY)), 1
    )
    pending = opened.effective(NOW)
    assert pending.active and pending.objection_pending
    assert "objection pending (异议处理中)" in pending.why
    closed = _event(
        opened, EventType.OBJECTION, EventBody(SALT, objection=Objection(False, TODAY)), 2
    )
    assert closed.effective(NOW) == state.effective(NOW)
    assert not closed.effective(NOW).objection_pending
    # Once publicity has ended a pending objection is moot.
    later = opened.effective(NOW + dt.timedelta(days=4000))
    assert not later.active and not later.objection_pending


def test_effective_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone"):
        added().effective(dt.datetime(2026, 6, 1))


# --- planning: adds and amendments --------------------------------------------------------------


def test_plan_add_then_duplicate_then_conflict() -> None:
    entry = make_entry()
    planned = plan_add(ORIGIN, None, entry, POLICY, TODAY, salt=SALT)
    assert planned == Planned(
        EventType.ADD, entry.entry_id(ORIGIN), SD, EventBody(SALT, entry=entry)
    )
    state = run(None, planned, index=0)
    assert plan_add(ORIGIN, state, make_entry(), POLICY, TODAY) == Duplicate(state.entry_id)
    with pytest.raises(ConflictError, match="use amend") as caught:
        plan_add(ORIGIN, state, make_entry(reason="另一事由"), POLICY, TODAY)
    messages_are_safe(caught.value)


def test_plan_add_of_a_removed_decision() -> None:
    state = _removed()
    assert plan_add(ORIGIN, state, make_entry(), POLICY, TODAY) == Duplicate(state.entry_id)
    with pytest.raises(ConflictError, match="removed on 2026-05-01"):
        plan_add(ORIGIN, state, make_entry(reason="另一事由"), POLICY, TODAY)


def test_salt_is_fresh_unless_given() -> None:
    first = plan_add(ORIGIN, None, make_entry(), POLICY, TODAY)
    second = plan_add(ORIGIN, None, make_entry(), POLICY, TODAY)
    assert isinstance(first, Planned) and isinstance(second, Planned)
    assert len(first.body.salt) == 16 and first.body.salt != second.body.salt
    assert first.body.to_bytes() != second.body.to_bytes()


@pytest.mark.parametrize(
    ("entry", "policy", "error", "field"),
    [
        (
            lambda: make_entry(listed_on=TODAY + dt.timedelta(days=1)),
            POLICY,
            ListEntryError,
            "listed_on",
        ),
        # The node's policy was shortened: an entry made under the old one is refused.
        (
            make_entry,
            dataclasses.replace(POLICY, max_publicity_days=365),
            ListEntryError,
            "publicity_end",
        ),
        (make_entry, DEFAULT_POLICIES[ListKind.RED_LIST], InvalidInputError, "the policy"),
    ],
)
def test_plan_add_validation(
    entry: Callable[[], SanctionEntry], policy: ListPolicy, error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        plan_add(ORIGIN, None, entry(), policy, TODAY)
    assert messages_are_safe(caught.value).startswith(field)


def test_plan_add_accepts_today() -> None:
    assert isinstance(plan_add(ORIGIN, None, make_entry(listed_on=TODAY), POLICY, TODAY), Planned)


def test_plan_amend() -> None:
    with pytest.raises(NotFoundError, match="add it first"):
        plan_amend(ORIGIN, None, make_entry(), POLICY, TODAY)
    state = added()
    assert plan_amend(ORIGIN, state, make_entry(), POLICY, TODAY) == Duplicate(state.entry_id)
    new = make_entry(measures=("限制高消费",), publicity_end=dt.date(2028, 3, 1))
    planned = plan_amend(ORIGIN, state, new, POLICY, TODAY, salt=SALT)
    assert isinstance(planned, Planned) and planned.event is EventType.AMEND
    assert run(state, planned, index=1).entry == new


@pytest.mark.parametrize(
    ("state", "entry", "error", "words"),
    [
        (added, lambda: make_entry(subject_id=USCC), ListEntryError, "^subject:"),
        (_removed, lambda: make_entry(reason="x"), FailedPreconditionError, "removed on"),
        (
            added,
            lambda: make_entry(listed_on=TODAY + dt.timedelta(days=2)),
            ListEntryError,
            "^listed_on:",
        ),
    ],
)
def test_plan_amend_rules(
    state: Callable[[], EntryState],
    entry: Callable[[], SanctionEntry],
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error, match=words) as caught:
        plan_amend(ORIGIN, state(), entry(), POLICY, TODAY)
    messages_are_safe(caught.value)


def test_plan_amend_cannot_change_the_list() -> None:
    other = make_entry(
        list_kind=ListKind.JOINT_PUNISHMENT, policy=DEFAULT_POLICIES[ListKind.JOINT_PUNISHMENT]
    )
    with pytest.raises(ListEntryError, match=r"^list_kind:"):
        plan_amend(ORIGIN, added(), other, DEFAULT_POLICIES[ListKind.JOINT_PUNISHMENT], TODAY)


def test_planners_refuse_a_state_of_another_city() -> None:
    state = dataclasses.replace(added(), origin=OTHER_CITY)
    with pytest.raises(InvalidInputError, match=OTHER_CITY):
        plan_remove(ORIGIN, state, REMOVAL, POLICY, TODAY)


# --- planning: removals and objections ---------------------------------------------------------


def test_plan_remove_then_duplicate() -> None:
    with pytest.raises(NotFoundError):
        plan_remove(ORIGIN, None, REMOVAL, POLICY, TODAY)
    state = added()
    planned = plan_remove(ORIGIN, state, REMOVAL, POLICY, TODAY, salt=SALT)
    assert planned == Planned(
        EventType.REMOVE, state.entry_id, SD, EventBody(SALT, removal=REMOVAL)
    )
    removed = run(state, planned, index=1)
    assert plan_remove(ORIGIN, removed, REMOVAL, POLICY, TODAY) == Duplicate(state.entry_id)
    other = dataclasses.replace(REMOVAL, note="再次")
    with pytest.raises(FailedPreconditionError, match="already removed on 2026-05-01"):
        plan_remove(ORIGIN, removed, other, POLICY, TODAY)


EARLIEST_REPAIR = LISTED_ON + dt.timedelta(days=182)  # 2026-08-30
REPAIR_TODAY = dt.date(2026, 12, 1)


@pytest.mark.parametrize(
    ("removed_on", "reason", "today", "words"),
    [
        (
            LISTED_ON - dt.timedelta(days=1),
            RemovalReason.DECISION_REVOKED,
            TODAY,
            "before listed_on",
        ),
        (TODAY + dt.timedelta(days=1), RemovalReason.DECISION_REVOKED, TODAY, "in the future"),
        (EARLIEST_REPAIR - dt.timedelta(days=1), RemovalReason.REPAIR, REPAIR_TODAY, "2026-08-30"),
        (LISTED_ON, RemovalReason.REPAIR, TODAY, "earliest allowed date is 2026-08-30"),
        (TODAY, RemovalReason.EXPIRY, TODAY, "^reason:"),
    ],
)
def test_plan_remove_rules(
    removed_on: dt.date, reason: RemovalReason, today: dt.date, words: str
) -> None:
    removal = Removal(removed_on, reason, "青岛市发展和改革委员会")
    with pytest.raises(ListEntryError, match=words) as caught:
        plan_remove(ORIGIN, added(), removal, POLICY, today)
    assert messages_are_safe(caught.value).startswith(("removed_on:", "reason:"))


@pytest.mark.parametrize(
    ("removed_on", "reason", "policy"),
    [
        (EARLIEST_REPAIR, RemovalReason.REPAIR, POLICY),
        (LISTED_ON, RemovalReason.DECISION_REVOKED, POLICY),
        (LISTED_ON, RemovalReason.OBJECTION_UPHELD, POLICY),
        (LISTED_ON, RemovalReason.REPAIR, dataclasses.replace(POLICY, min_publicity_days=0)),
    ],
)
def test_plan_remove_allowed(
    removed_on: dt.date, reason: RemovalReason, policy: ListPolicy
) -> None:
    removal = Removal(removed_on, reason, "青岛市发展和改革委员会")
    planned = plan_remove(ORIGIN, added(), removal, policy, REPAIR_TODAY)
    assert isinstance(planned, Planned) and planned.body.removal == removal


def test_plan_objection_cycle() -> None:
    with pytest.raises(NotFoundError):
        plan_objection(ORIGIN, None, Objection(True, TODAY), TODAY)
    state = added()
    opened = Objection(True, dt.date(2026, 5, 20), "申请人提出异议")
    planned = plan_objection(ORIGIN, state, opened, TODAY, salt=SALT)
    assert isinstance(planned, Planned) and planned.event is EventType.OBJECTION
    state = run(state, planned, index=1)
    assert plan_objection(ORIGIN, state, opened, TODAY) == Duplicate(state.entry_id)
    with pytest.raises(FailedPreconditionError, match="already open since 2026-05-20"):
        plan_objection(ORIGIN, state, Objection(True, TODAY), TODAY)
    with pytest.raises(ListEntryError, match=r"^on:.*2026-05-20"):
        plan_objection(ORIGIN, state, Objection(False, dt.date(2026, 5, 19)), TODAY)
    closed = Objection(False, TODAY, "异议不成立")
    state = run(state, planned_only(plan_objection(ORIGIN, state, closed, TODAY)), index=2)
    assert not state.objection_open
    with pytest.raises(FailedPreconditionError, match="no objection"):
        plan_objection(ORIGIN, state, Objection(False, TODAY, "again"), TODAY)
    # Another objection can be opened once the first is closed.
    assert isinstance(plan_objection(ORIGIN, state, Objection(True, TODAY), TODAY), Planned)


@pytest.mark.parametrize(
    ("state", "objection", "error", "words"),
    [
        (added, Objection(True, TODAY + dt.timedelta(days=1)), ListEntryError, "^on:.*future"),
        (
            added,
            Objection(True, LISTED_ON - dt.timedelta(days=1)),
            ListEntryError,
            "^on:.*listed_on",
        ),
        (added, Objection(False, TODAY), FailedPreconditionError, "no objection"),
        (_removed, Objection(True, TODAY), FailedPreconditionError, "removed"),
    ],
)
def test_plan_objection_rules(
    state: Callable[[], EntryState], objection: Objection, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        plan_objection(ORIGIN, state(), objection, TODAY)


# --- expiry ---------------------------------------------------------------------------------------


def test_due_expiries() -> None:
    end = dt.date(2026, 9, 1)
    expiring = added(make_entry(publicity_end=end))
    other = added(make_entry(decision_no="青发改信〔2026〕13号"))
    removed = _removed()
    states = [expiring, other, removed]
    assert due_expiries(states, _china(end, 23, 59)) == []
    after = _china(end + dt.timedelta(days=1), 0, 0).astimezone(dt.UTC)
    due = due_expiries(states, after)
    assert due == [
        (
            expiring.entry_id,
            Removal(
                dt.date(2026, 9, 2), RemovalReason.EXPIRY, "publicity period ended (automatic)"
            ),
        )
    ]
    # The removal is one the owner's own rules accept, and it ends publicity for good.
    key, removal = due[0]
    planned = plan_remove(ORIGIN, expiring, removal, POLICY, dt.date(2026, 9, 2))
    assert isinstance(planned, Planned) and planned.entry_id == key
    state = run(expiring, planned, index=1)
    assert state.effective(after).why == "removed on 2026-09-02: expiry"
    assert due_expiries([state], after) == []


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_envelope_from_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(CreditNetError):
        Envelope.from_bytes(data)


@settings(max_examples=300)
@given(st.binary(max_size=400), st.sampled_from(EventType))
def test_body_from_arbitrary_bytes(data: bytes, event: EventType) -> None:
    with contextlib.suppress(CreditNetError):
        EventBody.from_bytes(data, event)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


BODIES = {
    EventType.ADD: EventBody(SALT, entry=make_entry()),
    EventType.AMEND: EventBody(SALT, entry=make_entry()),
    EventType.REMOVE: EventBody(SALT, removal=REMOVAL),
    EventType.OBJECTION: EventBody(SALT, objection=Objection(True, TODAY)),
}


@settings(max_examples=200)
@given(st.sampled_from(list(EventType)), st.data())
def test_body_with_any_field_replaced(event: EventType, data: st.DataObject) -> None:
    """Valid bodies with one field, anywhere in them, replaced by arbitrary JSON."""
    document = BODIES[event].to_json()
    target = document
    while True:
        key = data.draw(st.sampled_from(sorted(target)))
        if isinstance(target[key], dict) and data.draw(st.booleans()):
            target = target[key]
            continue
        target[key] = data.draw(JSON_VALUES)
        break
    with contextlib.suppress(CreditNetError):
        EventBody.from_bytes(canonical_bytes(document), event)


ENVELOPE_KEYS = ["type", "origin", "index", "at", "event", "list_kind", "entry_id", "body_sha256"]


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from([*ENVELOPE_KEYS, "extra"]), JSON_VALUES | st.just(_DELETE), min_size=1
    )
)
def test_envelope_with_fields_replaced(changes: dict[str, Any]) -> None:
    """A valid envelope with some fields replaced by arbitrary JSON, or deleted."""
    data = _envelope_json(**changes)
    try:
        envelope = Envelope.from_bytes(data)
    except CreditNetError:
        return
    assert envelope.to_bytes() == data


def _uscc_or_none(first17: str) -> str | None:
    value = first17 + uscc_check_char(first17)
    try:
        subject = parse_subject(value, today=TODAY)
    except CreditNetError:
        return None
    return value if subject.kind is SubjectKind.USCC else None


USCCS = (
    st.tuples(
        st.sampled_from("123456789ANY"),
        st.sampled_from("123456789"),
        st.text("0123456789", min_size=6, max_size=6),
        st.text(USCC_ALPHABET, min_size=9, max_size=9),
    )
    .map(lambda parts: _uscc_or_none("".join(parts)) or "")
    .filter(bool)
)

RESIDENT_IDS = st.tuples(
    st.sampled_from(["110105", "370202", "371002", "370687"]),
    st.dates(dt.date(1900, 1, 1), dt.date(2008, 12, 31)),
    st.text("0123456789", min_size=3, max_size=3),
).map(
    lambda p: (first17 := p[0] + p[1].strftime("%Y%m%d") + p[2]) + resident_id_check_char(first17)
)

TEXT = (
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)


@st.composite
def entries(draw: st.DrawFn) -> SanctionEntry:
    kind = draw(st.sampled_from(list(ListKind)))
    policy = DEFAULT_POLICIES[kind]
    listed_on = draw(st.dates(dt.date(2010, 1, 1), TODAY))
    days = draw(st.integers(1, policy.max_publicity_days))
    return SanctionEntry.create(
        list_kind=kind,
        subject_id=draw(USCCS | RESIDENT_IDS),
        subject_name=draw(TEXT),
        reason=draw(TEXT),
        legal_basis=draw(TEXT),
        authority=draw(TEXT),
        decision_no=draw(TEXT),
        listed_on=listed_on,
        publicity_end=listed_on + dt.timedelta(days=days),
        measures=draw(st.lists(TEXT, max_size=4, unique=True)),
        appeal=draw(st.just("") | TEXT),
        policy=policy,
    )


@settings(max_examples=100)
@given(entries(), st.binary(min_size=16, max_size=16), st.integers(0, 2**63 - 1))
def test_valid_entries_round_trip(entry: SanctionEntry, salt: bytes, index: int) -> None:
    assert SanctionEntry.from_json(json.loads(canonical_bytes(entry.to_json()))) == entry
    planned = plan_add(ORIGIN, None, entry, DEFAULT_POLICIES[entry.list_kind], TODAY, salt=salt)
    assert isinstance(planned, Planned)
    envelope, body_bytes = seal(
        origin=ORIGIN,
        index=index,
        at=NOW,
        event=planned.event,
        list_kind=planned.list_kind,
        entry_id=planned.entry_id,
        body=planned.body,
    )
    received = Envelope.from_bytes(envelope.to_bytes())
    assert received == envelope
    assert open_body(received, body_bytes) == planned.body
    state = apply_event(None, received, planned.body)
    assert state.entry == entry
    assert entry.subject.id not in repr(state) or entry.subject.kind is SubjectKind.USCC
