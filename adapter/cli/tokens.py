"""``jwks``, ``token`` and ``assertion``: the bytes ``/k_jwks`` serves, a client_credentials
token, and a fresh client assertion, each from the configured keys and credentials."""

from __future__ import annotations

import argparse
import json
import sys

from adapter.cli.common import Subparsers, UsageError, config_option, load, ring_from_config
from adapter.errors import TokenError


def add_jwks(parent: Subparsers) -> None:
    jwks = parent.add_parser("jwks", help="print exactly the bytes /k_jwks will serve")
    config_option(jwks)
    jwks.add_argument(
        "--pretty", action="store_true", help="indented for reading (not the served bytes)"
    )
    jwks.set_defaults(handler=_jwks)


def _jwks(args: argparse.Namespace) -> int:
    _, ring = ring_from_config(args.config)
    if args.pretty:
        print(json.dumps(json.loads(ring.jwks_bytes), indent=2))
    else:
        sys.stdout.buffer.write(ring.jwks_bytes)  # byte for byte, no newline added
    return 0


def add_token(parent: Subparsers) -> None:
    token = parent.add_parser(
        "token", help="a client_credentials token with the configured authentication"
    )
    config_option(token)
    token.add_argument("--scope", help="space-separated scopes to ask for")
    token.add_argument("--resource", help="the API the token is for (RFC 8707)")
    token.set_defaults(handler=_token)


def _token(args: argparse.Namespace) -> int:
    from adapter.protocol.client import OIDCClient

    with OIDCClient(load(args.config)) as client:
        try:
            tokens = client.client_credentials(args.scope, args.resource)
        except TokenError as exc:
            raise UsageError(f"the identity server refused the token request: {exc}") from None
    print(tokens.to_json())
    return 0


def add_assertion(parent: Subparsers) -> None:
    assertion = parent.add_parser("assertion", help="print a fresh client assertion (JWT)")
    config_option(assertion)
    assertion.set_defaults(handler=_assertion)


def _assertion(args: argparse.Namespace) -> int:
    from adapter.protocol.client import OIDCClient

    with OIDCClient(load(args.config)) as client:
        if client.config.credentials.assertion_audience == "token-endpoint":
            client.metadata()  # the audience is the discovered token endpoint
        print(client.client_assertion())
    return 0
