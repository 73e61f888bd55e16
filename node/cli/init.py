"""``credit-node init``: create a city node's keys, certificate, member card and config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from federation.signing import ED25519, SUITES
from node.config import DEFAULT_CLIENT_LISTEN, DEFAULT_ENDPOINT, NodePaths
from node.identity import DEFAULT_PAILLIER_BITS, init_node


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "init",
        help="create a node: keys, TLS certificate, member card and node.toml",
        description=(
            "Create a city node in DIR: a signing key (Ed25519, or SM2/SM3 with "
            "--signature-suite sm2-sm3), a TLS key and self-signed "
            "certificate, a Paillier key pair, a client API token, the signed member card "
            "and node.toml. Refuses to replace an existing identity without --force."
        ),
    )
    parser.add_argument(
        "--city", required=True, metavar="CODE", help="six-digit GB/T 2260 city code"
    )
    parser.add_argument("--dir", required=True, type=Path, help="the node directory")
    parser.add_argument("--name", help="the city's name (default: from the federation presets)")
    parser.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        metavar="HOST:PORT",
        help=f"peer endpoint advertised to other members (default {DEFAULT_ENDPOINT})",
    )
    parser.add_argument(
        "--peer-listen",
        metavar="HOST:PORT",
        help="bind address of the peer API (default: the endpoint)",
    )
    parser.add_argument(
        "--client-listen",
        default=DEFAULT_CLIENT_LISTEN,
        metavar="HOST:PORT",
        help=f"bind address of the client API (default {DEFAULT_CLIENT_LISTEN})",
    )
    parser.add_argument(
        "--paillier-bits",
        type=int,
        default=DEFAULT_PAILLIER_BITS,
        metavar="N",
        help=f"Paillier modulus size (default {DEFAULT_PAILLIER_BITS})",
    )
    parser.add_argument(
        "--signature-suite",
        choices=SUITES,
        default=ED25519,
        help=f"suite of the signing key; the federation's suite (default {ED25519}; "
        "sm2-sm3 is the GB/T 32918 国密 suite). The TLS key is ECDSA P-256 either way",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing identity with new keys"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    member = init_node(
        args.dir,
        city_code=args.city,
        name=args.name,
        endpoint=args.endpoint,
        peer_listen=args.peer_listen,
        client_listen=args.client_listen,
        paillier_bits=args.paillier_bits,
        signature_suite=args.signature_suite,
        force=args.force,
    )
    files = NodePaths(args.dir)
    print(f"Created node {member.city_code} ({member.name}) in {files.home}")
    print(f"  config          {files.config_path}")
    print(f"  member card     {files.member_card_path}")
    print(
        f"  signing key     {files.signing_key_path}  "
        f"({member.signing_key.suite}, id {member.signing_key.keyid})"
    )
    print(f"  TLS key         {files.tls_key_path}")
    print(f"  TLS certificate {files.tls_cert_path}")
    print(f"                  sha256 {member.tls_fingerprint}")
    bits = member.paillier_n.bit_length()
    weak = (
        f": for tests only, use {DEFAULT_PAILLIER_BITS} in production"
        if bits < DEFAULT_PAILLIER_BITS
        else ""
    )
    print(f"  Paillier key    {files.paillier_key_path}  ({bits} bits{weak})")
    print(f"  client token    {files.client_token_path}")
    print(f"  peer endpoint   {member.endpoint}")
    if args.force:
        print("Replaced the previous identity: the federation must accept the new member card.")
    print()
    print("Next: hand member-card.json to the other members of the federation;")
    print("then create or join the federation with `credit-node federation ...`.")
    return 0
