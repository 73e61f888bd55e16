"""The node's trust store: the chain of federation manifests it has accepted, persisted.

The rules (threshold, versions, expiry) live in :mod:`federation.manifest`; this module
applies them to what is stored and records every version it adopts, so that a restarted
node trusts exactly what it trusted before and can hand the chain to peers that lag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from federation.clock import Clock, format_utc
from federation.errors import CreditNetError, FailedPreconditionError
from federation.manifest import Manifest, SignedManifest, TrustedChain
from federation.member import Member
from federation.reports import ManifestEpoch, epochs
from node.config import NodeConfig
from node.identity import load_member
from node.keystore import SECRET_MODE, read_secret, write_file
from node.storage.database import open_database
from node.storage.repositories import EventRepository, ManifestRepository, StoredManifest

log = logging.getLogger(__name__)


class NotInManifestError(FailedPreconditionError):
    """This node's own identity does not match any member of the manifest."""


@dataclasses.dataclass(frozen=True)
class TrustPin:
    """What this node trusts, kept outside its database: the SHA-256 of its first manifest,
    and the newest version it adopted with that version's SHA-256.

    The chain in the database is verified again at every start, but that alone cannot tell
    a chain cut short (the newest versions deleted: a member removed since trusted again)
    or one begun from another first manifest. The pin, a 0600 file in the node's keys
    directory, can: a chain that does not start with the pinned first manifest, or does
    not reach the pinned version, is refused (fail closed).
    """

    first_sha256: str
    version: int
    sha256: str

    @classmethod
    def of(cls, chain: TrustedChain) -> TrustPin:
        documents = chain.documents()
        return cls(_sha256(documents[0]), documents[-1].manifest.version, _sha256(documents[-1]))

    def check(self, chain: TrustedChain, where: Path) -> None:
        documents = chain.documents()
        by_version = {d.manifest.version: d for d in documents}
        pinned = by_version.get(self.version)
        if _sha256(documents[0]) != self.first_sha256:
            problem = "does not start with the first manifest this node trusted"
        elif pinned is None:
            problem = (
                f"ends at v{documents[-1].manifest.version}, before v{self.version}, which "
                "this node had adopted (versions were deleted: a rollback)"
            )
        elif _sha256(pinned) != self.sha256:
            problem = f"holds another v{self.version} than the one this node adopted"
        else:
            return
        raise FailedPreconditionError(
            f"the manifest chain in the database {problem} (pinned in {where})",
            hint="restore the database from a backup, or, if the node is meant to start "
            f"over, remove {where} and install the federation's manifests again",
        )


def _sha256(signed: SignedManifest) -> str:
    return hashlib.sha256(signed.to_bytes()).hexdigest()


class TrustStore:
    def __init__(
        self,
        repository: ManifestRepository,
        clock: Clock,
        events: EventRepository | None = None,
        *,
        pin_path: Path | None = None,
    ) -> None:
        self._repository = repository
        self._events = events
        self._clock = clock
        self._pin_path = pin_path
        self._chain: TrustedChain | None = None
        self._listeners: list[Callable[[Manifest], None]] = []
        self._load()
        # The version the listeners were last told about: they start from the one loaded.
        self._notified: int | None = self._chain.current.version if self._chain else None

    def _load(self) -> None:
        stored = self._repository.chain()
        if stored:
            # Re-verified: a database edited behind the node's back must not become trusted.
            self._chain = TrustedChain.restore(
                [SignedManifest.from_bytes(s.document) for s in stored]
            )

    def check_pin(self) -> None:
        """Refuse (fail closed) a chain that does not match what this node pinned outside
        its database; pin the chain held now if nothing is pinned yet (a node from before
        pins). The node checks at start-up; the operator's CLI does not, so that it can
        still install the versions a database restored from an older backup lacks."""
        if self._pin_path is None or self._chain is None:
            return
        pin = self._read_pin()
        if pin is None:
            self._write_pin()
        else:
            pin.check(self._chain, self._pin_path)

    def _read_pin(self) -> TrustPin | None:
        if self._pin_path is None or not self._pin_path.exists():
            return None
        try:
            fields = json.loads(read_secret(self._pin_path))
            return TrustPin(
                str(fields["first_sha256"]), int(fields["version"]), str(fields["sha256"])
            )
        except (ValueError, KeyError, TypeError):
            raise FailedPreconditionError(
                f"{self._pin_path} is not a trust pin this node wrote",
                hint="restore it from a backup, or remove it to pin the chain held now",
            ) from None

    def _write_pin(self) -> None:
        """Pin the chain held now, unless the pin is already at a later version (another
        process, such as the operator's CLI, may have adopted more)."""
        if self._pin_path is None or self._chain is None:
            return
        pin, held = TrustPin.of(self._chain), self._read_pin()
        if held is not None and held.version >= pin.version:
            return
        data = json.dumps(dataclasses.asdict(pin), sort_keys=True).encode() + b"\n"
        write_file(self._pin_path, data, mode=SECRET_MODE, force=True)

    @property
    def installed(self) -> bool:
        return self._chain is not None

    @property
    def current(self) -> Manifest:
        if self._chain is None:
            raise FailedPreconditionError(
                "no federation manifest is installed",
                hint="install one with: credit-node federation install MANIFEST --dir DIR",
            )
        return self._chain.current

    def on_change(self, listener: Callable[[Manifest], None]) -> None:
        self._listeners.append(listener)

    def epochs(self) -> tuple[ManifestEpoch, ...]:
        """Every trusted version with the time this node adopted it (the first one counts
        as known from the start): what offline report verification needs."""
        if self._chain is None:
            return ()
        adopted = {s.version: s.adopted_at for s in self._repository.chain()}
        first = self._chain.documents()[0].manifest.version
        adopted.pop(first, None)
        return epochs(self._chain, adopted)

    def documents_after(self, version: int) -> list[bytes]:
        return [s.document for s in self._repository.after(version)]

    def check_current(self) -> Manifest:
        """The current manifest, refusing an expired one (fail closed)."""
        manifest = self.current
        if manifest.is_expired(self._clock.now()):
            raise FailedPreconditionError(
                f"federation manifest v{manifest.version} expired at "
                f"{format_utc(manifest.expires)}",
                hint="sign and install a newer version (credit-node federation create --from)",
            )
        return manifest

    def install(self, document: bytes, *, source: str, me: Member | None = None) -> Manifest:
        """Accept one manifest from the operator: the first one, or the next version."""
        candidate = SignedManifest.from_bytes(document)
        if self._chain is not None:
            return self._extend([candidate], source)
        chain = TrustedChain.bootstrap(candidate, now=self._clock.now())
        if me is not None:
            check_membership(chain.current, me)
        self._store([candidate], source)
        self._chain = chain
        self._write_pin()
        self._notify()
        return self.current

    def adopt_chain(self, documents: Sequence[bytes], *, source: str) -> Manifest:
        """Walk versions offered by a peer; all or nothing (only the last is checked for
        expiry, like TUF's root rotation)."""
        if self._chain is None:
            raise FailedPreconditionError("cannot adopt peer manifests before the first install")
        return self._extend([SignedManifest.from_bytes(d) for d in documents], source)

    def _extend(self, candidates: Sequence[SignedManifest], source: str) -> Manifest:
        assert self._chain is not None
        self._chain.update_many(candidates, now=self._clock.now())  # verifies; all or nothing
        try:
            self._store(candidates, source)
        except Exception:
            self._load()  # memory follows what was stored, nothing more
            self._notify()  # another process may have stored (some of) the versions
            if self.current.version < candidates[-1].manifest.version:
                raise
            # Another process (the operator's CLI) stored the same versions first: the
            # chain just loaded, verified again, is at the version offered.
        self._write_pin()
        self._notify()
        return self.current

    def refresh(self) -> bool:
        """Pick up versions another process (the operator's CLI) stored meanwhile."""
        if self._chain is None:
            self._load()
            return self._chain is not None
        newer = self._repository.after(self._chain.current.version)
        if not newer:
            self._notify()  # in case a change was not told yet (a listener failed)
            return False
        try:
            self._chain.update_many(
                [SignedManifest.from_bytes(s.document) for s in newer], now=self._clock.now()
            )
        except CreditNetError as exc:
            log.warning("stored manifest not adopted", extra={"fields": {"reason": exc.message}})
            return False
        self._write_pin()
        self._notify()
        return True

    def _store(self, accepted: Sequence[SignedManifest], source: str) -> None:
        now = self._clock.now()
        records = []
        for signed in accepted:
            document = signed.to_bytes()
            records.append(
                StoredManifest(
                    version=signed.manifest.version,
                    federation_id=signed.manifest.federation_id,
                    document=document,
                    sha256=hashlib.sha256(document).hexdigest(),
                    expires=signed.manifest.expires,
                    adopted_at=now,
                    source=source,
                )
            )
        self._repository.append_many(records)
        for record in records:
            log.info(
                "manifest adopted",
                extra={"fields": {"version": record.version, "source": source}},
            )
            if self._events is not None:
                self._events.record(now, "manifest.adopted", f"v{record.version} from {source}")

    def _notify(self) -> None:
        """Tell the listeners about the current version, once. One that fails is logged
        and does not keep the others from hearing; all are told again at the next
        :meth:`refresh`, so listeners must take the same manifest twice in their stride."""
        manifest = self.current
        if manifest.version == self._notified:
            return
        failed = False
        for listener in self._listeners:
            try:
                listener(manifest)
            except Exception:
                failed = True
                log.exception(
                    "a part of the node did not take the new manifest",
                    extra={"fields": {"version": manifest.version}},
                )
        if not failed:
            self._notified = manifest.version


def check_membership(manifest: Manifest, me: Member) -> None:
    """Refuse a manifest that does not list this node with exactly its own keys."""
    listed = manifest.member(me.city_code)
    if listed is None:
        raise NotInManifestError(
            f"this node ({me.city_code}) is not a member of federation manifest "
            f"v{manifest.version} ({manifest.federation_id})"
        )
    if listed.signing_key != me.signing_key:
        raise NotInManifestError(
            f"manifest v{manifest.version} lists another signing key for {me.city_code}"
        )
    if listed.tls_fingerprint != me.tls_fingerprint:
        raise NotInManifestError(
            f"manifest v{manifest.version} lists another TLS certificate for {me.city_code}"
        )


def install_manifest(config: NodeConfig, document: bytes, *, clock: Clock) -> Manifest:
    """Install a manifest into a node's trust store (the node may be running: it picks up
    the new version at its next heartbeat)."""
    me = load_member(config)
    database = open_database(config.database_url)
    try:
        store = TrustStore(
            ManifestRepository(database),
            clock,
            EventRepository(database),
            pin_path=config.trust_pin_path,
        )
        return store.install(document, source="operator", me=me)
    finally:
        database.close()
