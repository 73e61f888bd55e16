"""The rating desk (:mod:`node.ratings_desk`) between real nodes' storage and trust stores:
what a city publishes, what a peer pulls and keeps, and what a clerk is told.

Each city has its own SQLite database, trust store and signing key; a peer's ``GetRatings``
is answered by the other city's desk through the wire format, without a network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from creditnet.v1 import peer_pb2, reports_pb2
from federation.clock import FixedClock
from federation.errors import InvalidInputError, NotFoundError
from federation.manifest import Manifest, SignedManifest, build_manifest, next_version
from federation.ratings import (
    PRESET_SCALES,
    RatingStatement,
    RecognitionPolicy,
    ScaleMapping,
    SignedRatingStatement,
    SignedScaleMapping,
)
from federation.sanctions import Subject
from federation.subjects import SubjectKind, parse_subject
from node.ratings_desk import RatingDesk, statement_for
from node.storage import Database, open_database
from node.storage.reports import RatingRepository
from node.storage.repositories import ManifestRepository
from node.trust import TrustStore
from tests.federation.conftest import NOW, YEAR, TestCity, make_city

QINGDAO, YANTAI, WEIHAI = "370200", "370600", "371000"
COMPANY = Subject(SubjectKind.USCC, "91110000600037341L", "某某贸易有限公司")
PERSON = Subject(SubjectKind.RESIDENT_ID, "11010519491231002X", "张三")
TODAY = dt.date(2026, 6, 1)  # NOW in China
TAX_TABLE = {"A": "A", "B": "B", "M": "B", "C": "C", "D": "D"}
RATING = RatingStatement(
    issuer=YANTAI,
    subject=COMPANY,
    scale_id="tax-credit",
    grade="B",
    issued_on=TODAY - dt.timedelta(days=40),
    valid_until=TODAY + dt.timedelta(days=200),
    evidence_ref="烟税评〔2026〕12号",
)

Tamper = Callable[[peer_pb2.GetRatingsResponse], peer_pb2.GetRatingsResponse]


def signed(
    manifest: Manifest, *, by: Sequence[TestCity], leaving: Sequence[TestCity] = ()
) -> bytes:
    """``manifest`` signed by the members ``by`` and, with their previous keys, ``leaving``."""
    document = SignedManifest(manifest)
    for city in by:
        document = document.sign(city.key)
    for city in leaving:
        document = document.sign(city.key, city_code=city.code)
    return document.to_bytes()


class Node:
    """One city's node as the desk sees it: its database, trust store, peers and desk."""

    def __init__(self, directory: Path, city: TestCity, first: bytes) -> None:
        self.city = city
        self.clock = FixedClock(NOW)
        self.db: Database = open_database(f"sqlite:///{directory / city.code}.db")
        TrustStore(ManifestRepository(self.db), self.clock).install(first, source="test")
        self.ratings = RatingRepository(self.db)
        self.peers: dict[str, PeerStub] = {}
        self.desk = self.start(city)

    def start(self, city: TestCity) -> RatingDesk:
        """The trust store and desk as the node starts them (node.service.server), again
        after a restart with a new key."""
        self.city = city
        self.trust = TrustStore(ManifestRepository(self.db), self.clock)
        desk = RatingDesk(
            city_code=city.code,
            signing_key=city.key,
            trust=self.trust,
            ratings=self.ratings,
            scales=dict(PRESET_SCALES),
            mappings={"tax-credit": TAX_TABLE},
            policy=RecognitionPolicy(),
            links=self,  # type: ignore[arg-type]
            clock=self.clock,
        )
        desk.publish_mappings()
        self.trust.on_change(desk.follow)
        self.desk = desk
        return desk

    def adopt(self, manifest: bytes) -> None:
        self.trust.install(manifest, source="test")

    def stub(self, city_code: str) -> PeerStub | None:
        """What ``PeerLinks.stub`` gives."""
        return self.peers.get(city_code)

    def pull(self) -> None:
        asyncio.run(self.desk.pull_all())

    def about(self, subject: Subject) -> list[tuple[str, bool, str | None, tuple[str, ...]]]:
        found = self.desk.about(parse_subject(subject.id, today=TODAY))
        return [
            (
                a.statement.evidence_ref,
                a.recognition.recognised,
                a.recognition.common_grade,
                a.recognition.reasons,
            )
            for a in found
        ]


class PeerStub:
    """A peer's ``GetRatings``, answered by its desk and passed through the wire format."""

    def __init__(self, node: Node, tamper: Tamper | None = None) -> None:
        self.node, self.tamper = node, tamper

    async def GetRatings(  # gRPC method names are CamelCase
        self,
        request: peer_pb2.GetRatingsRequest,
        timeout: float,  # noqa: ASYNC109 (as grpc stubs take it)
    ) -> peer_pb2.GetRatingsResponse:
        answer = self.node.desk.publications(request.after_sequence, request.limit)
        wire = peer_pb2.GetRatingsResponse.FromString(answer.SerializeToString())
        return self.tamper(wire) if self.tamper else wire


CITIES = {code: make_city(code) for code in (QINGDAO, YANTAI, WEIHAI)}
STRANGER = make_city(YANTAI)  # another key claiming to be Yantai's
V1 = build_manifest(
    federation_id="jiaodong",
    federation_name="胶东经济圈",
    members=[c.member for c in CITIES.values()],
    threshold=2,
    expires=NOW + YEAR,
)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Node]]:
    """Yantai rates, Qingdao pulls from Yantai."""
    first = signed(V1, by=list(CITIES.values()))
    made = {code: Node(tmp_path, city, first) for code, city in CITIES.items()}
    made[QINGDAO].peers[YANTAI] = PeerStub(made[YANTAI])
    yield made
    for node in made.values():
        node.db.close()


def evidence(number: int) -> str:
    return f"烟税评〔2026〕{number}号"


def rate(node: Node, number: int) -> int:
    return node.desk.submit(dataclasses.replace(RATING, evidence_ref=evidence(number)))


# --- the clerk's answer ------------------------------------------------------------------


def test_a_newer_rating_on_the_same_scale_supersedes_the_older(nodes: dict[str, Node]) -> None:
    yantai, qingdao = nodes[YANTAI], nodes[QINGDAO]
    later = TODAY - dt.timedelta(days=5)
    newer = dataclasses.replace(RATING, grade="M", evidence_ref=evidence(2), issued_on=later)
    yantai.desk.submit(newer)
    rate(yantai, 1)  # sent afterwards, but issued 40 days ago: still the older one
    qingdao.pull()
    found = qingdao.desk.about(parse_subject(COMPANY.id, today=TODAY))
    assert [(a.statement.evidence_ref, a.current, a.recognition.recognised) for a in found] == [
        (evidence(1), False, False),
        (evidence(2), True, True),
    ]
    older = found[0].recognition
    assert older.common_grade == "B"  # still shown, as history
    assert older.reasons[-1] == (
        f"superseded: {YANTAI} rated the subject again on this scale on {later}"
    )


def test_a_rating_dated_after_today_is_refused_where_it_is_signed() -> None:
    clock = FixedClock(NOW)
    with pytest.raises(InvalidInputError, match=r"issued_on .* is after today \(.* in China\)"):
        statement_for(
            issuer=YANTAI,
            subject=parse_subject(COMPANY.id, today=TODAY),
            subject_name=COMPANY.name,
            scale=PRESET_SCALES["tax-credit"],
            grade="A",
            points=None,
            issued_on=TODAY + dt.timedelta(days=1),
            valid_until=TODAY + dt.timedelta(days=30),
            evidence_ref="x",
            clock=clock,
        )


def test_a_city_removed_from_the_federation_is_no_longer_recognised(
    nodes: dict[str, Node],
) -> None:
    yantai, qingdao = nodes[YANTAI], nodes[QINGDAO]
    rate(yantai, 1)
    qingdao.pull()
    [(_, recognised, grade, _)] = qingdao.about(COMPANY)
    assert (recognised, grade) == (True, "B")

    v2 = next_version(V1, expires=NOW + YEAR, remove=[YANTAI])
    qingdao.adopt(signed(v2, by=[CITIES[QINGDAO], CITIES[WEIHAI]]))

    # Still listed, so the clerk sees it exists, but neither recognised nor graded.
    [(ref, recognised, grade, reasons)] = qingdao.about(COMPANY)
    assert (ref, recognised, grade) == (evidence(1), False, None)
    assert reasons == (
        "Yantai's tax-credit rating B has no common grade: Yantai (370600) is no longer a "
        "member of the federation (manifest v2 of jiaodong); not recognised",
    )


# --- key rotation --------------------------------------------------------------------------


def test_ratings_keep_replicating_after_the_issuer_rotates_its_key(
    nodes: dict[str, Node], caplog: pytest.LogCaptureFixture
) -> None:
    yantai, qingdao, weihai = nodes[YANTAI], nodes[QINGDAO], nodes[WEIHAI]
    rate(yantai, 1)
    qingdao.pull()
    rotated = CITIES[YANTAI].with_new_key()
    v2 = signed(
        next_version(V1, expires=NOW + YEAR, replace=[rotated.member]),
        by=[CITIES[QINGDAO], rotated, CITIES[WEIHAI]],
        leaving=[CITIES[YANTAI]],
    )
    for node in nodes.values():
        node.adopt(v2)
    yantai.start(rotated)  # restarted with its new key
    [mapping] = yantai.ratings.mappings(YANTAI)
    assert mapping.version == 2  # signed again, by the new key
    rate(yantai, 2)

    qingdao.pull()
    assert qingdao.ratings.last_sequence(YANTAI) == 2
    assert [m.version for m in qingdao.ratings.mappings(YANTAI)] == [2]
    # Both held: the first, signed by the old key, was verified when it arrived; the
    # second, of the same scale and day, supersedes it.
    assert [(ref, ok) for ref, ok, _, _ in qingdao.about(COMPANY)] == [
        (evidence(1), False),
        (evidence(2), True),
    ]
    # A city pulling for the first time gets the statement signed before the rotation
    # signed again by the new key, which Yantai keeps (it signs each one once).
    before = SignedRatingStatement.from_bytes(
        yantai.ratings.statements_after(YANTAI, 0, 1)[0].document
    )
    assert before.keyid == CITIES[YANTAI].key.public_key.keyid
    weihai.peers[YANTAI] = PeerStub(yantai)
    weihai.pull()
    assert weihai.ratings.last_sequence(YANTAI) == 2
    # Both taken in (the first one is not recognised only because the second supersedes it).
    first, second = weihai.about(COMPANY)
    assert first[3][-1].startswith("superseded: ") and second[1]
    assert "refused" not in caplog.text
    after = SignedRatingStatement.from_bytes(
        yantai.ratings.statements_after(YANTAI, 0, 1)[0].document
    )
    assert after.keyid == rotated.key.public_key.keyid
    assert after.statement == before.statement
    served = yantai.desk.publications(0, 10).statements[0].document
    assert served == yantai.ratings.statements_after(YANTAI, 0, 1)[0].document  # as kept


def test_a_new_common_scale_has_the_mappings_signed_again(nodes: dict[str, Node]) -> None:
    yantai, qingdao = nodes[YANTAI], nodes[QINGDAO]
    rate(yantai, 1)
    qingdao.pull()
    finer = dataclasses.replace(
        next_version(V1, expires=NOW + YEAR), common_scale=("A", "B", "C", "D", "E")
    )
    for node in nodes.values():
        node.adopt(signed(finer, by=list(CITIES.values())))
    [mapping] = yantai.ratings.mappings(YANTAI)
    assert mapping.version == 2  # by the trust store's listener, without a restart

    qingdao.pull()
    [(_, recognised, grade, _)] = qingdao.about(COMPANY)
    assert (recognised, grade) == (True, "B")


# --- what a peer refuses -------------------------------------------------------------------


def forged_statement(statement: RatingStatement) -> reports_pb2.SignedRatingDocument:
    """``statement`` signed by a key that is not its issuer's."""
    forged = SignedRatingStatement.sign(statement, STRANGER.key, scale=PRESET_SCALES["tax-credit"])
    return reports_pb2.SignedRatingDocument(document=forged.to_bytes())


def test_a_refused_mapping_does_not_stop_the_others_nor_the_statements(
    nodes: dict[str, Node], caplog: pytest.LogCaptureFixture
) -> None:
    yantai, qingdao = nodes[YANTAI], nodes[QINGDAO]
    rate(yantai, 1)
    customs = ScaleMapping(
        issuer=YANTAI,
        scale=PRESET_SCALES["customs"],
        common_scale=V1.common_scale,
        mapping=dict(zip(PRESET_SCALES["customs"].grades, "ABCDD", strict=True)),
        version=1,
    )
    forged = SignedScaleMapping.sign(customs, STRANGER.key).to_bytes()

    def with_forged_mapping(answer: peer_pb2.GetRatingsResponse) -> peer_pb2.GetRatingsResponse:
        genuine = list(answer.mappings)
        del answer.mappings[:]
        answer.mappings.add(document=forged)  # first: it must not stop the ones after it
        answer.mappings.extend(genuine)
        return answer

    qingdao.peers[YANTAI] = PeerStub(yantai, with_forged_mapping)
    qingdao.pull()
    assert [m.scale_id for m in qingdao.ratings.mappings(YANTAI)] == ["tax-credit"]
    assert qingdao.ratings.last_sequence(YANTAI) == 1
    [record] = [r for r in caplog.records if r.getMessage() == "scale mapping from peer refused"]
    assert record.levelname == "WARNING" and "customs" in record.fields["reason"]


def test_a_refused_statement_keeps_the_ones_before_and_holds_back_the_ones_after(
    nodes: dict[str, Node], caplog: pytest.LogCaptureFixture
) -> None:
    yantai, qingdao = nodes[YANTAI], nodes[QINGDAO]
    for number in (1, 2, 3):
        rate(yantai, number)
    person = dataclasses.replace(RATING, subject=PERSON, evidence_ref="个人 " + PERSON.id)

    def second_forged(answer: peer_pb2.GetRatingsResponse) -> peer_pb2.GetRatingsResponse:
        answer.statements[1].CopyFrom(forged_statement(person))
        return answer

    qingdao.peers[YANTAI] = PeerStub(yantai, second_forged)
    qingdao.pull()
    assert qingdao.ratings.last_sequence(YANTAI) == 1
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.fields["peer"] == YANTAI and record.fields["sequence"] == 2
    assert PERSON.id not in caplog.text and PERSON.id not in repr(record.fields)

    qingdao.peers[YANTAI] = PeerStub(yantai)  # the next pull asks again from 2
    qingdao.pull()
    assert [ref for ref, *_ in qingdao.about(COMPANY)] == [evidence(n) for n in (1, 2, 3)]


def test_a_second_mapping_under_a_version_held_is_refused_and_the_first_kept(
    nodes: dict[str, Node], caplog: pytest.LogCaptureFixture
) -> None:
    yantai, qingdao = nodes[YANTAI], nodes[QINGDAO]
    rate(yantai, 1)
    qingdao.pull()
    [first] = qingdao.ratings.mappings(YANTAI)
    # Yantai, say restored from an old backup, signs another table under version 1.
    harsher = ScaleMapping(
        issuer=YANTAI,
        scale=PRESET_SCALES["tax-credit"],
        common_scale=V1.common_scale,
        mapping={**TAX_TABLE, "B": "C", "M": "C"},
        version=first.version,
    )
    other = SignedScaleMapping.sign(harsher, CITIES[YANTAI].key).to_bytes()

    def with_other_mapping(answer: peer_pb2.GetRatingsResponse) -> peer_pb2.GetRatingsResponse:
        answer.mappings[0].document = other
        return answer

    qingdao.peers[YANTAI] = PeerStub(yantai, with_other_mapping)
    rate(yantai, 2)
    qingdao.pull()
    assert qingdao.ratings.mappings(YANTAI) == [first]
    assert qingdao.ratings.last_sequence(YANTAI) == 2
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.getMessage() == "scale mapping from peer refused"
    assert "signed two mappings with one version number" in record.fields["reason"]
    assert [grade for _, _, grade, _ in qingdao.about(COMPANY)] == ["B", "B"]


# --- what a peer asks ----------------------------------------------------------------------


@pytest.mark.parametrize("after", [2**63, 2**64 - 1])
def test_a_sequence_beyond_what_a_database_holds_is_a_clear_error(
    nodes: dict[str, Node], after: int
) -> None:
    yantai = nodes[YANTAI]
    rate(yantai, 1)
    with pytest.raises(InvalidInputError, match=rf"after_sequence {after} is out of range"):
        yantai.desk.publications(after, 0)
    highest = yantai.desk.publications(2**63 - 1, 0)
    assert (len(highest.statements), highest.last_sequence) == (0, 2**63 - 1)


# --- what a client asks --------------------------------------------------------------------


def test_an_unknown_scale_is_named_without_what_could_be_an_identifier(
    nodes: dict[str, Node],
) -> None:
    desk = nodes[YANTAI].desk
    assert desk.scale("tax-credit") is PRESET_SCALES["tax-credit"]
    with pytest.raises(NotFoundError, match="scale 'no-such-scale' is not one of") as found:
        desk.scale("no-such-scale")
    assert "customs, public-credit-gbt45255, tax-credit, weihai-haibei" in found.value.message
    typed = "x" + PERSON.id.lower()  # a valid scale id, though it holds an ID number
    with pytest.raises(NotFoundError, match=r"scale '\[hidden\]' is not one of") as found:
        desk.submit(dataclasses.replace(RATING, scale_id=typed))
    assert PERSON.id.lower() not in found.value.message


def test_a_rating_is_shown_in_its_issuers_scale_never_in_a_local_one_of_the_same_id(
    nodes: dict[str, Node],
) -> None:
    yantai, qingdao = nodes[YANTAI], nodes[QINGDAO]
    rate(yantai, 1)
    qingdao.desk.submit(dataclasses.replace(RATING, issuer=QINGDAO, evidence_ref="青税评 2"))

    def without_mappings(answer: peer_pb2.GetRatingsResponse) -> peer_pb2.GetRatingsResponse:
        del answer.mappings[:]
        return answer

    qingdao.peers[YANTAI] = PeerStub(yantai, without_mappings)
    qingdao.pull()
    # Qingdao has a tax-credit scale of its own; Yantai's definition never reached it.
    company = parse_subject(COMPANY.id, today=TODAY)
    scales = {a.statement.issuer: a.scale for a in qingdao.desk.about(company)}
    assert scales == {YANTAI: None, QINGDAO: PRESET_SCALES["tax-credit"]}
    qingdao.peers[YANTAI] = PeerStub(yantai)
    qingdao.pull()
    scales = {a.statement.issuer: a.scale for a in qingdao.desk.about(company)}
    assert scales[YANTAI] == PRESET_SCALES["tax-credit"]  # from Yantai's signed mapping
