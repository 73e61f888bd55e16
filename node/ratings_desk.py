"""This city's ratings and the ratings it holds from the other cities (信用评价互认).

The city rates subjects on its own local scales, signs each rating statement, and signs a
mapping of each local scale onto the federation's common scale. Peers pull both (with the
signatures checked against the manifest) and each applies its own recognition policy when
a clerk asks about a subject.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc

from creditnet.v1 import peer_pb2, reports_pb2
from federation.clock import Clock, china_date
from federation.errors import ConfigError, CreditNetError, InvalidInputError, NotFoundError
from federation.manifest import Manifest
from federation.ratings import (
    MappingBook,
    RatingScale,
    RatingStatement,
    Recognition,
    RecognitionPolicy,
    ScaleMapping,
    SignedRatingStatement,
    SignedScaleMapping,
    newer_mapping,
    recognise,
)
from federation.sanctions import Subject
from federation.signing import SigningKey
from federation.subjects import SubjectId, shown
from node.peers import PeerLinks
from node.storage.database import check_storable
from node.storage.reports import RatingRepository, StoredStatement
from node.trust import TrustStore

if TYPE_CHECKING:
    from creditnet.v1.peer_pb2_grpc import PeerServiceAsyncStub

log = logging.getLogger(__name__)

MAX_STATEMENTS_PER_ANSWER = 500


@dataclasses.dataclass(frozen=True)
class RatingAnswer:
    statement: RatingStatement
    scale: RatingScale | None
    recognition: Recognition
    received_at: dt.datetime
    #: Whether this is its issuer's newest rating of the subject on that scale. An older
    #: one is superseded: shown as history, not recognised, and left out of reports.
    current: bool = True


class RatingDesk:
    def __init__(
        self,
        *,
        city_code: str,
        signing_key: SigningKey,
        trust: TrustStore,
        ratings: RatingRepository,
        scales: Mapping[str, RatingScale],
        mappings: Mapping[str, Mapping[str, str]],
        policy: RecognitionPolicy,
        links: PeerLinks,
        clock: Clock,
    ) -> None:
        self._me = city_code
        self._key = signing_key
        self._trust = trust
        self._ratings = ratings
        self.scales = scales
        self._mappings = mappings
        self._policy = policy
        self._links = links
        self._clock = clock

    # --- own ratings -----------------------------------------------------------------

    def publish_mappings(self) -> None:
        """Sign the configured mapping of each local scale: a new version when it changed,
        or when the one held is signed with another key than this node's (peers verify
        against the current manifest only, so after a key rotation the old signature would
        be refused)."""
        common = self._trust.current.common_scale
        held = {m.scale_id: m for m in self._ratings.mappings(self._me)}
        for scale_id, table in self._mappings.items():
            scale = self.scales.get(scale_id)
            if scale is None:
                raise InvalidInputError(f"[ratings.mappings.{scale_id}]: no such scale")
            stored = held.get(scale_id)
            version = 1
            if stored is not None:
                signed_before = SignedScaleMapping.from_bytes(stored.document)
                current = signed_before.mapping
                if (
                    current.scale == scale
                    and dict(current.mapping) == dict(table)
                    and tuple(current.common_scale) == tuple(common)
                    and signed_before.keyid == self._key.public_key.keyid
                ):
                    continue
                version = stored.version + 1
            try:
                mapping = ScaleMapping(
                    issuer=self._me,
                    scale=scale,
                    common_scale=common,
                    mapping=dict(table),
                    version=version,
                )
            except CreditNetError as exc:
                # A node.toml problem: the operator fixes the table and starts again.
                raise ConfigError(f"[ratings.mappings.{scale_id}]: {exc.message}") from None
            signed = SignedScaleMapping.sign(mapping, self._key)
            self._ratings.put_mapping(
                self._me, scale_id, version, signed.to_bytes(), self._clock.now()
            )
            log.info(
                "scale mapping published", extra={"fields": {"scale": scale_id, "version": version}}
            )

    def follow(self, manifest: Manifest) -> None:
        """A new manifest (a trust store listener): sign the mappings again if it needs it,
        e.g. a new common scale. A mapping that no longer fits is reported, not raised: the
        manifest is adopted all the same."""
        try:
            self.publish_mappings()
        except CreditNetError as exc:
            log.warning(
                "scale mappings not published for the new manifest",
                extra={"fields": {"manifest": manifest.version, "reason": exc.message}},
            )

    def scale(self, scale_id: str) -> RatingScale:
        """One of this city's scales, by the id a client gave."""
        scale = self.scales.get(scale_id)
        if scale is None:
            raise NotFoundError(
                f"scale {shown(scale_id)} is not one of this city's scales "
                f"({', '.join(sorted(self.scales))})"
            )
        return scale

    def submit(self, statement: RatingStatement) -> int:
        """Sign and record a rating of this city; returns its sequence number."""
        if statement.issuer != self._me:
            raise InvalidInputError(f"this node rates for {self._me}, not {statement.issuer}")
        signed = SignedRatingStatement.sign(
            statement, self._key, scale=self.scale(statement.scale_id)
        )
        sequence = self._ratings.next_sequence(self._me)
        self._ratings.add_statements([self._stored(signed, sequence)])
        return sequence

    def _stored(self, signed: SignedRatingStatement, sequence: int) -> StoredStatement:
        statement = signed.statement
        return StoredStatement(
            issuer=statement.issuer,
            sequence=sequence,
            subject_id=statement.subject.id,
            scale_id=statement.scale_id,
            issued_on=statement.issued_on,
            valid_until=statement.valid_until,
            document=signed.to_bytes(),
            received_at=self._clock.now(),
        )

    def publications(self, after: int, limit: int) -> peer_pb2.GetRatingsResponse:
        """What a peer pulls: every mapping and the statements after ``after``."""
        check_storable(after, field="after_sequence", what="a rating statement sequence")
        limit = min(limit or MAX_STATEMENTS_PER_ANSWER, MAX_STATEMENTS_PER_ANSWER)
        rows = self._ratings.statements_after(self._me, after, limit + 1)
        more = len(rows) > limit
        rows = self._signed_now(rows[:limit])
        return peer_pb2.GetRatingsResponse(
            mappings=[
                reports_pb2.SignedRatingDocument(document=m.document)
                for m in self._ratings.mappings(self._me)
            ],
            statements=[reports_pb2.SignedRatingDocument(document=r.document) for r in rows],
            last_sequence=rows[-1].sequence if rows else after,
            more=more,
        )

    def _signed_now(self, rows: list[StoredStatement]) -> list[StoredStatement]:
        """``rows`` (this city's statements) as peers can verify them: signed with the
        current key. One signed before this city rotated its key is signed again the first
        time it is served, and stored so (SM2 signs in milliseconds, in the event loop)."""
        keyid = self._key.public_key.keyid
        again: dict[int, bytes] = {}
        for row in rows:
            signed = SignedRatingStatement.from_bytes(row.document)
            if signed.keyid != keyid:
                again[row.sequence] = signed.signed_again(self._key).to_bytes()
        self._ratings.replace_documents(self._me, again)
        return [
            dataclasses.replace(row, document=again[row.sequence]) if row.sequence in again else row
            for row in rows
        ]

    # --- the other cities' ratings -----------------------------------------------------

    async def pull_all(self) -> None:
        for member in self._trust.current.members:
            if member.city_code == self._me:
                continue
            stub = self._links.stub(member.city_code)
            if stub is None:
                continue
            try:
                await self._pull(member.city_code, stub)
            except grpc.aio.AioRpcError:
                continue  # unreachable peers show in status through the heartbeat
            except CreditNetError as exc:
                log.warning(
                    "ratings from peer refused",
                    extra={"fields": {"peer": member.city_code, "reason": exc.message}},
                )

    async def _pull(self, issuer: str, stub: PeerServiceAsyncStub) -> None:
        """Store what ``issuer`` publishes after what is held; a document that fails its
        checks is logged and not stored, without failing the others (see below)."""
        manifest = self._trust.current
        while True:
            after = self._ratings.last_sequence(issuer)
            answer = await stub.GetRatings(
                peer_pb2.GetRatingsRequest(after_sequence=after), timeout=10
            )
            held = {
                m.scale_id: SignedScaleMapping.from_bytes(m.document).mapping
                for m in self._ratings.mappings(issuer)
            }
            for document in answer.mappings:
                try:
                    self._keep_mapping(issuer, document.document, manifest, held)
                except CreditNetError as exc:
                    log.warning(
                        "scale mapping from peer refused",
                        extra={"fields": {"peer": issuer, "reason": exc.message}},
                    )
            rows: list[StoredStatement] = []
            for sequence, document in enumerate(answer.statements, start=after + 1):
                try:
                    signed = self._verified_statement(issuer, document.document, manifest)
                except CreditNetError as exc:
                    # The issuer numbers its statements and they are kept without gaps, so
                    # that the next pull resumes after the last one held. Storing the later
                    # statements would leave a gap; passing over this one would lose it for
                    # good, though such a failure usually passes (one node has adopted the
                    # manifest with the issuer's new key, the other not yet). So the pull
                    # stops here: the statements before it are kept, and the next pull asks
                    # again from this one.
                    log.warning(
                        "rating statement from peer refused; its later ones wait for it",
                        extra={
                            "fields": {"peer": issuer, "sequence": sequence, "reason": exc.message}
                        },
                    )
                    self._ratings.add_statements(rows)
                    return
                rows.append(self._stored(signed, sequence))
            self._ratings.add_statements(rows)  # all or nothing, sequences continuous
            if not answer.more or not rows:
                return

    def _keep_mapping(
        self, issuer: str, document: bytes, manifest: Manifest, held: dict[str, ScaleMapping]
    ) -> None:
        """Store a verified mapping newer than the one ``held``; one with the same version
        but another content is a ScaleMappingConflictError, and the one held stays."""
        signed = SignedScaleMapping.from_bytes(document)
        mapping = signed.verify(manifest)
        if mapping.issuer != issuer:
            raise InvalidInputError(f"{issuer} sent a mapping of {mapping.issuer}")
        if newer_mapping(held.get(mapping.scale_id), mapping) is not mapping:
            return  # the one held: the same, or newer
        self._ratings.put_mapping(
            issuer, mapping.scale_id, mapping.version, signed.to_bytes(), self._clock.now()
        )
        held[mapping.scale_id] = mapping

    @staticmethod
    def _verified_statement(
        issuer: str, document: bytes, manifest: Manifest
    ) -> SignedRatingStatement:
        signed = SignedRatingStatement.from_bytes(document)
        statement = signed.verify(manifest)
        if statement.issuer != issuer:
            raise InvalidInputError(f"{issuer} sent a rating of {statement.issuer}")
        return signed

    # --- queries ----------------------------------------------------------------------

    def about(self, subject: SubjectId) -> list[RatingAnswer]:
        """Every rating held about ``subject``, each with this city's recognition of it.

        Ratings of a city that has left the federation are listed too, not recognised and
        without a common grade, so that a clerk sees they exist and why they do not count.
        Signatures are not checked again: each document was verified when it arrived, and
        one signed before its issuer rotated its key no longer verifies against the current
        manifest, though it was genuine; membership is what the current manifest decides.
        """
        now = self._clock.now()
        manifest = self._trust.current
        book = MappingBook(
            SignedScaleMapping.from_bytes(m.document).mapping for m in self._ratings.mappings()
        )
        rows = self._ratings.by_subject(subject.value)
        newest: dict[tuple[str, str], tuple[dt.date, int]] = {}
        for row in rows:
            key, rank = (row.issuer, row.scale_id), (row.issued_on, row.sequence)
            newest[key] = max(newest.get(key, rank), rank)
        answers = []
        for row in rows:
            statement = SignedRatingStatement.from_bytes(row.document).statement
            mapping = book.lookup(statement.issuer, statement.scale_id)
            recognition = recognise(statement, mapping, self._policy, now=now, manifest=manifest)
            # The issuer's own definition of its scale, as its mapping carries it: a scale of
            # the same id here may be defined otherwise. Only this city's ratings fall back
            # on the local definition.
            scale = mapping.scale if mapping is not None else None
            if scale is None and statement.issuer == self._me:
                scale = self.scales.get(statement.scale_id)
            latest = newest[row.issuer, row.scale_id]
            current = (row.issued_on, row.sequence) == latest
            if not current:
                recognition = dataclasses.replace(
                    recognition,
                    recognised=False,
                    reasons=(
                        *recognition.reasons,
                        f"superseded: {row.issuer} rated the subject again on this scale on "
                        f"{latest[0]}",
                    ),
                )
            answers.append(RatingAnswer(statement, scale, recognition, row.received_at, current))
        answers.sort(
            key=lambda a: (a.statement.issuer, a.statement.scale_id, a.statement.issued_on)
        )
        return answers


def statement_for(
    *,
    issuer: str,
    subject: SubjectId,
    subject_name: str,
    scale: RatingScale,
    grade: str,
    points: int | None,
    issued_on: dt.date | None,
    valid_until: dt.date,
    evidence_ref: str,
    clock: Clock,
) -> RatingStatement:
    """A statement from what a platform submitted; the grade of a points scale follows from
    the points when not given."""
    if points is not None and not grade and scale.kind == "points":
        grade = scale.grade_of(points)
    today = china_date(clock.now())
    if issued_on is not None and issued_on > today:
        raise InvalidInputError(
            f"issued_on {issued_on} is after today ({today} in China): a rating is issued on "
            "or before the day this node signs it"
        )
    return RatingStatement(
        issuer=issuer,
        subject=Subject(kind=subject.kind, id=subject.value, name=subject_name),
        scale_id=scale.scale_id,
        grade=grade,
        points=points,
        issued_on=issued_on or today,
        valid_until=valid_until,
        evidence_ref=evidence_ref,
    )
