"""Between the wire messages (creditnet.v1) and the domain objects, in one place."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from creditnet.v1 import client_pb2, lists_pb2, subject_pb2
from federation.errors import InvalidInputError, ListEntryError
from federation.sanctions import (
    ListKind,
    ListPolicy,
    Objection,
    Removal,
    RemovalReason,
    SanctionEntry,
)
from federation.subjects import SubjectKind, shown
from node.ledger import AddEntry, AmendEntry, Change, ObjectToEntry, RemoveEntry
from node.queries import EntryAnswer, HistoryItem

SUBJECT_KIND = {
    SubjectKind.USCC: subject_pb2.SUBJECT_KIND_USCC,
    SubjectKind.RESIDENT_ID: subject_pb2.SUBJECT_KIND_RESIDENT_ID,
}
REMOVAL_REASON = {
    RemovalReason.REPAIR: lists_pb2.REMOVAL_REASON_REPAIR,
    RemovalReason.EXPIRY: lists_pb2.REMOVAL_REASON_EXPIRY,
    RemovalReason.OBJECTION_UPHELD: lists_pb2.REMOVAL_REASON_OBJECTION_UPHELD,
    RemovalReason.DECISION_REVOKED: lists_pb2.REMOVAL_REASON_DECISION_REVOKED,
}
REMOVAL_REASON_FROM = {wire: reason for reason, wire in REMOVAL_REASON.items()}


def timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def date_from_wire(text: str, field: str) -> dt.date:
    """A ``YYYY-MM-DD`` field of a request. Refused with what was sent quoted, identifiers
    hidden: a value typed into the wrong field may be a resident ID number."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(f"{field}: {shown(text)} is not a date YYYY-MM-DD") from None


def optional_date_from_wire(text: str, field: str) -> dt.date | None:
    """A ``YYYY-MM-DD`` field of a request that may be left empty."""
    return date_from_wire(text, field) if text.strip() else None


def entry_from_wire(
    message: lists_pb2.ListEntry, policies: Mapping[ListKind, ListPolicy]
) -> SanctionEntry:
    try:
        kind = ListKind.parse(message.list_kind)
    except Exception as exc:
        raise ListEntryError(f"list_kind: {getattr(exc, 'message', exc)}") from None
    return SanctionEntry.create(
        list_kind=kind,
        subject_id=message.subject.id,
        subject_name=message.subject.name,
        reason=message.reason,
        legal_basis=message.legal_basis,
        authority=message.authority,
        decision_no=message.decision_no,
        listed_on=date_from_wire(message.listed_on, "listed_on"),
        publicity_end=optional_date_from_wire(message.publicity_end, "publicity_end"),
        measures=tuple(message.measures),
        appeal=message.appeal,
        policy=policies[kind],
    )


def removal_from_wire(message: lists_pb2.Removal) -> Removal:
    if message.reason not in REMOVAL_REASON_FROM:
        raise ListEntryError(
            "reason: give one of repair, expiry, objection-upheld, decision-revoked"
        )
    return Removal(
        removed_on=date_from_wire(message.removed_on, "removed_on"),
        reason=REMOVAL_REASON_FROM[message.reason],
        authority=message.authority,
        note=message.note,
    )


def change_from_wire(
    message: lists_pb2.ListChange, policies: Mapping[ListKind, ListPolicy]
) -> Change:
    which = message.WhichOneof("change")
    if which == "add":
        return AddEntry(entry_from_wire(message.add, policies))
    if which == "amend":
        return AmendEntry(entry_from_wire(message.amend, policies))
    if which == "remove":
        ref = message.remove.entry
        return RemoveEntry(
            ref.authority, ref.decision_no, removal_from_wire(message.remove.removal)
        )
    if which == "objection":
        ref, objection = message.objection.entry, message.objection.objection
        return ObjectToEntry(
            ref.authority,
            ref.decision_no,
            Objection(
                open=objection.open, on=date_from_wire(objection.on, "on"), note=objection.note
            ),
        )
    raise ListEntryError("a change must be one of add, amend, remove, objection")


def entry_to_wire(entry: SanctionEntry) -> lists_pb2.ListEntry:
    return lists_pb2.ListEntry(
        list_kind=entry.list_kind.value,
        subject=lists_pb2.Subject(
            kind=SUBJECT_KIND[entry.subject.kind], id=entry.subject.id, name=entry.subject.name
        ),
        reason=entry.reason,
        legal_basis=entry.legal_basis,
        authority=entry.authority,
        decision_no=entry.decision_no,
        listed_on=entry.listed_on.isoformat(),
        publicity_end=entry.publicity_end.isoformat(),
        measures=list(entry.measures),
        appeal=entry.appeal,
    )


def removal_to_wire(removal: Removal) -> lists_pb2.Removal:
    return lists_pb2.Removal(
        removed_on=removal.removed_on.isoformat(),
        reason=REMOVAL_REASON[removal.reason],
        authority=removal.authority,
        note=removal.note,
    )


def view_to_wire(answer: EntryAnswer) -> lists_pb2.EntryView:
    state = answer.state
    view = lists_pb2.EntryView(
        origin=state.origin,
        entry_id=state.entry_id,
        entry=entry_to_wire(state.entry),
        active=answer.status.active,
        why=answer.status.why,
        objection_pending=answer.status.objection_pending,
        log_index=state.last_index,
        updated_at=timestamp(state.updated_at),
    )
    if state.removal is not None:
        view.removal.CopyFrom(removal_to_wire(state.removal))
    return view


def history_to_wire(item: HistoryItem) -> client_pb2.HistoryEvent:
    event = client_pb2.HistoryEvent(
        log_index=item.envelope.index,
        at=timestamp(item.envelope.at),
        event=item.envelope.event.value,
        withheld=item.body is None,
    )
    body = item.body
    if body is not None:
        if body.entry is not None:
            event.entry.CopyFrom(entry_to_wire(body.entry))
        if body.removal is not None:
            event.removal.CopyFrom(removal_to_wire(body.removal))
        if body.objection is not None:
            event.objection.CopyFrom(
                lists_pb2.Objection(
                    open=body.objection.open,
                    on=body.objection.on.isoformat(),
                    note=body.objection.note,
                )
            )
    return event
