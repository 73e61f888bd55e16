"""``credit-node federation``: create, sign, show and verify the signed federation manifest.

The trust rules live in :mod:`federation.manifest`; this module reads and writes files,
asks the domain code, and prints. Typical use, for the five Jiaodong cities::

    credit-node federation create --preset jiaodong --card qd.json --card yt.json ... \\
        --out manifest-v1.json
    credit-node federation sign manifest-v1.json --dir /var/lib/credit-node   # each city
    credit-node federation verify manifest-v1.json
    credit-node federation create --from manifest-v1.json --add zibo.json --out manifest-v2.json
    credit-node federation verify manifest-v2.json --trusted manifest-v1.json

The signature suite (Ed25519 or SM2/SM3) is the federation's: a new federation takes the
suite of its members' cards (``--signature-suite`` to insist on one), and a next version
keeps it. To move a federation to SM2/SM3, every city makes an SM2 card (``credit-node init
--signature-suite sm2-sm3`` in a new directory), and one version replaces every card::

    credit-node federation create --from manifest-v2.json --signature-suite sm2-sm3 \\
        --replace qd-sm2.json --replace yt-sm2.json ... --out manifest-v3.json

signed by a threshold of the old keys (``sign --key OLD.pem --city CODE``) and by every new key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from federation.clock import Clock, SystemClock, format_utc
from federation.errors import (
    AlreadyExistsError,
    CreditNetError,
    InvalidInputError,
    KeyFileError,
    NotFoundError,
)
from federation.manifest import (
    Manifest,
    SignedManifest,
    build_manifest,
    members_suite,
    next_version,
    valid_signers,
    verify_initial,
    verify_update,
)
from federation.member import Member, check_city_code, parse_member_card
from federation.presets import preset
from federation.signing import SUITES, SigningKey
from node.config import load_config
from node.trust import install_manifest

#: The clock the verbs use for expiry; tests replace it with a FixedClock.
CLOCK: Clock = SystemClock()

DEFAULT_EXPIRES_DAYS = 365
MAX_EXPIRES_DAYS = 10 * 365

NODE_SIGNING_KEY = Path("keys") / "signing.pem"
NODE_MEMBER_CARD = Path("member-card.json")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "federation",
        help="create, sign, show and verify the federation manifest",
        description="Create, sign, show and verify the signed federation manifest "
        "(the list of member cities, their keys and the signature threshold).",
    )
    verbs = parser.add_subparsers(dest="federation_command", required=True, metavar="VERB")
    _register_create(verbs)
    _register_sign(verbs)
    _register_show(verbs)
    _register_verify(verbs)
    _register_install(verbs)


# --- create ---------------------------------------------------------------------------


def _register_create(verbs: argparse._SubParsersAction[Any]) -> None:
    create = verbs.add_parser(
        "create",
        help="write a new, unsigned manifest (the first one, or the next version)",
        description="Write an unsigned manifest: the first version from a preset and the "
        "members' cards, or the next version of an existing manifest.",
    )
    base = create.add_mutually_exclusive_group(required=True)
    base.add_argument("--preset", metavar="NAME", help="first version: a named federation")
    base.add_argument(
        "--from", dest="from_file", type=Path, metavar="FILE", help="next version of FILE"
    )
    create.add_argument(
        "--card",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="with --preset: a member card (repeat for each city)",
    )
    create.add_argument(
        "--add", action="append", default=[], type=Path, metavar="CARD", help="add a member"
    )
    create.add_argument(
        "--remove", action="append", default=[], metavar="CITY", help="remove a member"
    )
    create.add_argument(
        "--replace",
        action="append",
        default=[],
        type=Path,
        metavar="CARD",
        help="a member's new card (rotated key, new endpoint or certificate)",
    )
    create.add_argument(
        "--threshold",
        type=int,
        metavar="N",
        help="signatures needed (default: a majority for a new federation, unchanged otherwise)",
    )
    create.add_argument(
        "--signature-suite",
        choices=SUITES,
        metavar="SUITE",
        help=f"the federation's signature suite, one of {', '.join(SUITES)} (default: the "
        "suite of the cards for a new federation, unchanged otherwise; a new suite needs "
        "every member's card replaced by one with a key of that suite)",
    )
    create.add_argument(
        "--expires-days",
        type=int,
        default=DEFAULT_EXPIRES_DAYS,
        metavar="DAYS",
        help=f"days until the manifest expires (default {DEFAULT_EXPIRES_DAYS})",
    )
    create.add_argument("--out", type=Path, required=True, metavar="FILE")
    create.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    create.set_defaults(handler=create_manifest)


def create_manifest(args: argparse.Namespace) -> int:
    if not 1 <= args.expires_days <= MAX_EXPIRES_DAYS:
        raise InvalidInputError(f"--expires-days must be between 1 and {MAX_EXPIRES_DAYS}")
    expires = CLOCK.now() + dt.timedelta(days=args.expires_days)
    if args.preset is not None:
        if args.add or args.remove or args.replace:
            raise InvalidInputError("--add, --remove and --replace go with --from, not --preset")
        manifest = _first_version(args, expires)
    else:
        if args.card:
            raise InvalidInputError("--card goes with --preset; use --add or --replace")
        manifest = _next_version(args, expires)
    _write(args.out, SignedManifest(manifest).to_bytes(), force=args.force)
    print(
        f"wrote unsigned {manifest.describe()} to {args.out}: "
        f"{len(manifest.members)} members, threshold {manifest.threshold}, "
        f"expires {format_utc(manifest.expires)}, signature suite {manifest.signature_suite}"
    )
    print(f"next: each member signs it: credit-node federation sign {args.out} --dir NODE_DIR")
    return 0


def _first_version(args: argparse.Namespace, expires: dt.datetime) -> Manifest:
    federation = preset(args.preset)
    if not args.card:
        raise InvalidInputError("a new federation needs the members' cards (--card FILE)")
    members = [_read_card(path) for path in args.card]
    for member in members:
        if federation.city(member.city_code) is None:
            raise InvalidInputError(
                f"member card of {member.city_code} ({member.name}) is not for a city of "
                f"{federation.federation_id} ({federation.name})",
                hint=f"its cities are {', '.join(federation.codes)}",
            )
    threshold = len(members) // 2 + 1 if args.threshold is None else args.threshold
    suite = args.signature_suite
    if suite is None:
        try:
            suite = members_suite(members)
        except CreditNetError as exc:
            raise type(exc)(
                f"member cards: {exc.message}",
                hint="every city makes its card with the federation's suite (credit-node "
                "init --signature-suite SUITE)",
            ) from None
    return build_manifest(
        federation_id=federation.federation_id,
        federation_name=federation.name,
        members=members,
        threshold=threshold,
        expires=expires,
        signature_suite=suite,
    )


def _next_version(args: argparse.Namespace, expires: dt.datetime) -> Manifest:
    current = _read_manifest(args.from_file).manifest
    suite = args.signature_suite
    changes = args.add or args.remove or args.replace or args.threshold is not None
    if not changes and suite in (None, current.signature_suite):
        print(f"note: no member changes; v{current.version + 1} only renews the expiry")
    if suite is not None and suite != current.signature_suite:
        print(
            f"note: the signature suite changes from {current.signature_suite} to {suite}: "
            f"every member's card must be replaced by one with a {suite} key, and v"
            f"{current.version + 1} signed by a threshold of the old keys and by every new key"
        )
    return next_version(
        current,
        add=[_read_card(path) for path in args.add],
        remove=[check_city_code(code) for code in args.remove],
        replace=[_read_card(path) for path in args.replace],
        threshold=args.threshold,
        expires=expires,
        signature_suite=suite,
    )


# --- sign -----------------------------------------------------------------------------


def _register_sign(verbs: argparse._SubParsersAction[Any]) -> None:
    sign = verbs.add_parser(
        "sign",
        help="add this city's signature to a manifest",
        description="Add a signature to a manifest, with the key of a node directory (--dir) "
        "or a key file (--key). To sign an update with a key of the previous version "
        "(a key being rotated, or a member being removed), use --key and --city.",
    )
    sign.add_argument("file", type=Path, metavar="FILE")
    source = sign.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dir", type=Path, metavar="NODE_DIR", help="the node's directory (keys/signing.pem)"
    )
    source.add_argument("--key", type=Path, metavar="PEM", help="a signing key file")
    sign.add_argument("--city", metavar="CODE", help="with --key: the city the key belongs to")
    sign.add_argument("--out", type=Path, metavar="FILE", help="default: update FILE in place")
    sign.set_defaults(handler=sign_manifest)


def sign_manifest(args: argparse.Namespace) -> int:
    signed = _read_manifest(args.file)
    city: str | None
    if args.dir is not None:
        if args.city is not None:
            raise InvalidInputError("--city goes with --key; with --dir it comes from the card")
        key, city = _node_key(args.dir)
    else:
        key = _read_signing_key(args.key)
        city = None if args.city is None else check_city_code(args.city)
    signed = signed.sign(key, city_code=city)
    manifest = signed.manifest
    keyid = key.public_key.keyid
    signer = next(s.city_code for s in signed.signatures if s.keyid == keyid)
    out = args.out or args.file
    _write(out, signed.to_bytes(), force=True)
    own = valid_signers(signed, manifest)
    print(f"signed {manifest.describe()} as {signer} (key {keyid[:16]}); wrote {out}")
    if manifest.member_by_keyid(keyid) is None:
        counts = (
            "it will not count"
            if manifest.version == 1
            else f"it counts only if {signer} has this key in v{manifest.version - 1}"
        )
        print(f"note: this key is not in v{manifest.version}; {counts}")
    print(
        f"valid signatures from its members: {len(own)} of {manifest.threshold} needed "
        f"({', '.join(own) or 'none'})"
    )
    return 0


def _node_key(directory: Path) -> tuple[SigningKey, str]:
    card = _read_card(directory / NODE_MEMBER_CARD)
    key = _read_signing_key(directory / NODE_SIGNING_KEY)
    if key.public_key != card.signing_key:
        raise KeyFileError(
            f"{directory / NODE_SIGNING_KEY} is not the key of {directory / NODE_MEMBER_CARD}",
            hint="to sign with a previous key, use --key FILE --city CODE",
        )
    return key, card.city_code


# --- show -----------------------------------------------------------------------------


def _register_show(verbs: argparse._SubParsersAction[Any]) -> None:
    show = verbs.add_parser("show", help="print a manifest in human-readable form")
    show.add_argument("file", type=Path, metavar="FILE")
    show.set_defaults(handler=show_manifest)


def show_manifest(args: argparse.Namespace) -> int:
    signed = _read_manifest(args.file)
    manifest = signed.manifest
    expired = " (EXPIRED)" if manifest.is_expired(CLOCK.now()) else ""
    print(f"federation:   {manifest.federation_id} ({manifest.federation_name})")
    print(f"version:      {manifest.version}")
    print(f"expires:      {format_utc(manifest.expires)}{expired}")
    print(f"threshold:    {manifest.threshold} of {len(manifest.members)} members")
    print(f"suite:        {manifest.signature_suite}")
    print(f"common scale: {' '.join(manifest.common_scale)}")
    print("members:")
    width = max(len("ENDPOINT"), *(len(m.endpoint) for m in manifest.members))
    print(f"  {'CITY':<6}  {'ENDPOINT':<{width}}  {'TLS SHA-256':<16}  {'KEY ID':<16}  NAME")
    for member in manifest.members:
        print(
            f"  {member.city_code:<6}  {member.endpoint:<{width}}  "
            f"{member.tls_fingerprint[:16]}  {member.signing_key.keyid[:16]}  {member.name}"
        )
    own = valid_signers(signed, manifest)
    print(
        f"signatures:   {len(signed.signatures)} "
        f"({len(own)} valid from its members; {manifest.threshold} needed)"
    )
    for signature, status in signed.signature_status(manifest):
        if status == "unknown key":
            status = "key not in this version (a previous version's key, or unknown)"
        print(f"  {signature.city_code:<6}  key {signature.keyid[:16]}  {status}")
    return 0


# --- verify ---------------------------------------------------------------------------


def _register_verify(verbs: argparse._SubParsersAction[Any]) -> None:
    verify = verbs.add_parser(
        "verify",
        help="check a manifest: as a first manifest, or as the update of a trusted one",
        description="Without --trusted, check FILE as a federation's first manifest (signed by "
        "a threshold of its own members, not expired). With --trusted, check FILE as the "
        "next version of the trusted manifest. Exit 0 if valid, non-zero if not.",
    )
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument(
        "--trusted", type=Path, metavar="CURRENT_FILE", help="the manifest trusted now"
    )
    verify.set_defaults(handler=verify_manifest)


def verify_manifest(args: argparse.Namespace) -> int:
    candidate = _read_manifest(args.file)
    now = CLOCK.now()

    def report(line: str) -> None:
        print(f"  {line}")

    if args.trusted is None:
        print(f"checking {args.file} as a first (bootstrap) manifest:")
        manifest = verify_initial(candidate, now=now, on_check=report)
    else:
        trusted = _read_manifest(args.trusted).manifest
        print(f"checking {args.file} as the update of trusted {trusted.describe()}:")
        manifest = verify_update(trusted, candidate, now=now, on_check=report)
    print(f"valid: {manifest.describe()}")
    return 0


# --- install --------------------------------------------------------------------------


def _register_install(verbs: argparse._SubParsersAction[Any]) -> None:
    install = verbs.add_parser(
        "install",
        help="make a node trust a manifest (its first, or the next version)",
        description="Install FILE into the node's trust store. A node's first manifest must "
        "list the node with exactly its own keys; later versions must be valid updates of "
        "the version the node trusts. A running node adopts the new version within one "
        "heartbeat and its peers fetch it from there.",
    )
    install.add_argument("file", type=Path, metavar="FILE")
    install.add_argument("--dir", type=Path, required=True, help="the node directory")
    install.set_defaults(handler=install_manifest_file)


def install_manifest_file(args: argparse.Namespace) -> int:
    document = _read(args.file, "manifest")
    config = load_config(args.dir)
    try:
        manifest = install_manifest(config, document, clock=CLOCK)
    except KeyFileError:
        raise  # the node's own member card, which the message names: not the manifest
    except CreditNetError as exc:
        raise _in_file(args.file, exc) from None
    print(
        f"installed {manifest.describe()} ({len(manifest.members)} members, threshold "
        f"{manifest.threshold}, expires {format_utc(manifest.expires)}) into {config.home}"
    )
    return 0


# --- files ----------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what} {path}: {exc.strerror}") from None


def _in_file(path: Path, exc: CreditNetError) -> CreditNetError:
    """The same error, naming the file it came from."""
    return type(exc)(f"{path}: {exc.message}", hint=exc.hint)


def _read_manifest(path: Path) -> SignedManifest:
    data = _read(path, "manifest")
    try:
        return SignedManifest.from_bytes(data)
    except CreditNetError as exc:
        raise _in_file(path, exc) from None


def _read_card(path: Path) -> Member:
    data = _read(path, "member card")
    try:
        return parse_member_card(data)
    except CreditNetError as exc:
        raise _in_file(path, exc) from None


def _read_signing_key(path: Path) -> SigningKey:
    data = _read(path, "signing key")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"signing key {path} is accessible by other users (mode {stat.S_IMODE(mode):04o})",
            hint=f"chmod 600 {path}",
        )
    try:
        return SigningKey.from_pem(data)
    except CreditNetError as exc:
        raise _in_file(path, exc) from None


def _write(path: Path, data: bytes, *, force: bool) -> None:
    """Write atomically (a reader sees the old file or the new one, never half of one)."""
    if path.exists() and not force:
        raise AlreadyExistsError(f"{path} already exists", hint="choose another --out or --force")
    directory = path.parent
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise InvalidInputError(f"cannot write to {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.write(b"\n")
        # A manifest is public: readable by all, like a certificate.
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write {path}: {exc.strerror}") from None
