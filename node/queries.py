"""Read side of the lists: what a city platform asks about entries across the federation.

Every answer is computed at the time of asking from the stored entry states, so that an
entry past its end of publicity stops being served even while its owner is offline.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Sequence

from federation.clock import Clock
from federation.errors import InvalidInputError, NotFoundError
from federation.sanctions import (
    EffectiveStatus,
    EntryState,
    Envelope,
    EventBody,
    ListKind,
    check_entry_id,
)
from federation.subjects import SubjectId
from node.logstore import state_from_row
from node.storage.lists import (
    EntryRepository,
    LogHead,
    LogRepository,
    ReplicaRepository,
    ReplicaStatus,
)

MAX_PAGE = 1000
DEFAULT_PAGE = 100
#: A token this node issues is about 100 characters (base64 of a city code, a list kind and
#: an entry id); a bound keeps a hostile one cheap to refuse.
MAX_PAGE_TOKEN_CHARS = 512


@dataclasses.dataclass(frozen=True)
class EntryAnswer:
    state: EntryState
    status: EffectiveStatus


@dataclasses.dataclass(frozen=True)
class Freshness:
    origin: str
    verified_size: int
    latest_seen_size: int
    head: LogHead | None
    replica: ReplicaStatus | None


@dataclasses.dataclass(frozen=True)
class HistoryItem:
    envelope: Envelope
    body: EventBody | None


class ListQueries:
    def __init__(
        self,
        *,
        city_code: str,
        logs: LogRepository,
        entries: EntryRepository,
        replicas: ReplicaRepository,
        clock: Clock,
    ) -> None:
        self._me = city_code
        self._logs = logs
        self._entries = entries
        self._replicas = replicas
        self._clock = clock

    def subject_status(self, subject: SubjectId, *, include_inactive: bool) -> list[EntryAnswer]:
        now = self._clock.now()
        answers = []
        for row in self._entries.by_subject(subject.value):
            state = state_from_row(row)
            status = state.effective(now)
            if status.active or include_inactive:
                answers.append(EntryAnswer(state, status))
        answers.sort(key=lambda a: (not a.status.active, a.state.origin, a.state.entry_id))
        return answers

    def freshness(self, origins: Sequence[str]) -> list[Freshness]:
        heads = self._logs.heads()
        replicas = self._replicas.all()
        result = []
        for origin in origins:
            head, replica = heads.get(origin), replicas.get(origin)
            verified = head.size if head else 0
            seen = (
                verified
                if origin == self._me
                else max(verified, (replica.latest_seen_size or 0) if replica else 0)
            )
            result.append(Freshness(origin, verified, seen, head, replica))
        return result

    def export_page(
        self,
        *,
        origin: str | None,
        list_kind: str | None,
        active_only: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[EntryAnswer], str]:
        if list_kind:
            ListKind.parse(list_kind)
        limit = DEFAULT_PAGE if page_size == 0 else page_size
        if not 0 < limit <= MAX_PAGE:
            raise InvalidInputError(f"page_size {page_size} is out of range; at most {MAX_PAGE}")
        after = _decode_token(page_token) if page_token else None
        rows = self._entries.page(
            origin=origin or None, list_kind=list_kind or None, after=after, limit=limit
        )
        now = self._clock.now()
        answers = []
        for row in rows:
            state = state_from_row(row)
            status = state.effective(now)
            if status.active or not active_only:
                answers.append(EntryAnswer(state, status))
        token = ""
        if len(rows) == limit:
            last = rows[-1]
            token = _encode_token((last.origin, last.list_kind, last.entry_id))
        return answers, token

    def history(self, origin: str, entry_id: str) -> list[HistoryItem]:
        check_entry_id(entry_id)
        leaves = self._logs.entry_leaves(origin, entry_id)
        if not leaves:
            raise NotFoundError(f"no entry {entry_id} of {origin} is held here")
        items = []
        for leaf in leaves:
            envelope = Envelope.from_bytes(leaf.envelope)
            body = None if leaf.body is None else EventBody.from_bytes(leaf.body, envelope.event)
            items.append(HistoryItem(envelope, body))
        return items


def _encode_token(key: tuple[str, str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_token(token: str) -> tuple[str, str, str]:
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise InvalidInputError(
            f"page_token is not one this node issued: {len(token)} characters, "
            f"more than {MAX_PAGE_TOKEN_CHARS}"
        )
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeEncodeError, RecursionError):
        raise InvalidInputError("page_token is not one this node issued") from None
    if not (isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key)):
        raise InvalidInputError("page_token is not one this node issued")
    return key[0], key[1], key[2]
