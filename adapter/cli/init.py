"""``init``: a first configuration for a Keycloak client, and the console steps that match it.

Asks (on a terminal) or takes as flags the issuer or a keycloak.json, the client id and the
app's public URL; makes a key in a new PKCS#12 keystore (as ``keys generate`` does), writes
``adapter.toml`` for ``private_key_jwt`` with that keystore (mode 0600, never over a file), and
prints the exact Keycloak admin console settings for this client, or with ``--json`` the same
as data (with the client's OpenID registration metadata for other servers). The file is loaded
before anything is written, and once written it passes ``config check``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes

from adapter.cli.common import (
    PROG,
    Subparsers,
    UsageError,
    env_password,
    fingerprint,
    print_note,
    prompt,
    warn,
)
from adapter.config._convert import toml_string
from adapter.config._readers import is_loopback
from adapter.config.model import AdapterConfig, issuer_realm, load_config, read_document
from adapter.errors import ConfigError
from adapter.jose import ASYMMETRIC_ALGORITHMS, key_type_name
from adapter.keys.generate import (
    common_name,
    generate_private_key,
    self_signed_certificate,
    write_keystore,
    write_private_file,
)
from adapter.keys.keyring import default_kid
from adapter.keys.loader import load_key_ring

CONFIG_NAME = "adapter.toml"
DEFAULT_KEYSTORE_ENV = "KEYSTORE_PASSWORD"  # named in the file when the password was typed
KEY_DAYS = 365
# What the middleware answers by default (WebConfig): the URLs the server is told about.
CALLBACK, LOGOUT, BACKCHANNEL, JWKS = (
    "/oidc/callback",
    "/oidc/logout",
    "/oidc/backchannel-logout",
    "/k_jwks",
)
# keycloak.json fields init takes over; the others are listed as not copied.
_KEYCLOAK_TAKEN = ("issuer", "realm", "auth-server-url", "resource", "ssl-required")
_KEYCLOAK_REPLACED = frozenset({"credentials", "confidential-port", "public-client"})


@dataclass(frozen=True)
class Answers:
    """What init was told, flags or answers alike."""

    issuer: str
    client_id: str
    url: str  # the app's public URL, without a trailing /
    out: Path
    alg: str
    password_env: str | None  # None: the password is asked for
    bearer_api: bool
    ssl_required: str | None = None  # from a keycloak.json that sets it
    not_copied: tuple[str, ...] = ()  # keycloak.json fields left out


@dataclass(frozen=True)
class Step:
    """One setting in the Keycloak admin console: where it is, what, to which value."""

    where: str
    setting: str
    value: str
    when: str | None = None  # a condition, for a step that not every app needs


@dataclass(frozen=True)
class NewKey:
    alias: str
    kid: str
    algorithm: str
    type: str
    sha256: str


@dataclass(frozen=True)
class _Paths:
    config: Path
    keystore: Path
    alias: str
    made_directory: bool = False


def add_init(parent: Subparsers) -> None:
    init = parent.add_parser(
        "init",
        help="a first adapter.toml and key for a Keycloak client, and the console steps",
        description="Write adapter.toml (private_key_jwt) and a new PKCS#12 keystore, then "
        "print the Keycloak admin console settings for the client. Asks for what the flags "
        "do not give when run on a terminal (never with --yes).",
    )
    source = init.add_mutually_exclusive_group()
    source.add_argument("--issuer", metavar="URL", help="the issuer, e.g. https://sso/realms/x")
    source.add_argument(
        "--keycloak-json", type=Path, metavar="FILE", help="take issuer and client id from it"
    )
    init.add_argument("--client-id", metavar="ID", help="the client id (Keycloak: Client ID)")
    init.add_argument(
        "--url", metavar="PUBLIC_URL", help="the app's public URL, e.g. https://app.example.com"
    )
    init.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="directory for adapter.toml and the keystore (default: the current one)",
    )
    init.add_argument(
        "--alg",
        choices=ASYMMETRIC_ALGORITHMS,
        default="RS256",
        metavar="ALG",
        help=f"signing algorithm: {', '.join(ASYMMETRIC_ALGORITHMS)} (default: %(default)s)",
    )
    init.add_argument(
        "--store-password-env",
        metavar="NAME",
        help="environment variable with the keystore password; the configuration reads it "
        f"from there too (default: prompt, and the file names {DEFAULT_KEYSTORE_ENV})",
    )
    init.add_argument(
        "--bearer-api",
        action="store_true",
        help="the app also accepts bearer tokens (APIs): the audience mapper step is needed",
    )
    init.add_argument("--json", action="store_true", help="print the result as JSON")
    init.add_argument("--yes", action="store_true", help="never ask: every answer from flags")
    init.set_defaults(handler=_init)


def _init(args: argparse.Namespace) -> int:
    answers = _gather(args)
    paths = _paths(answers)
    text = config_text(answers, paths)
    _check_loads(text, paths)
    password = _password(answers, args.yes)
    if paths.made_directory:
        paths.config.parent.mkdir(mode=0o700)
    key = _make_key(paths, answers.alg, password)
    try:
        write_private_file(paths.config, text.encode("utf-8"))
        config = _check_written(paths, answers)
    except (ConfigError, UsageError):
        paths.keystore.unlink(missing_ok=True)
        raise
    report = _report(answers, paths, key, config)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0


# --- the answers -----------------------------------------------------------------------------


def _gather(args: argparse.Namespace) -> Answers:
    ask = not args.yes and sys.stdin.isatty()
    issuer: str | None = args.issuer
    client_id: str | None = args.client_id
    keycloak: Path | None = args.keycloak_json
    if issuer is None and keycloak is None:
        answer = _ask(ask, "--issuer", "Issuer URL, or the path of a keycloak.json")
        if not answer.startswith(("https://", "http://")) and Path(answer).is_file():
            keycloak = Path(answer)
        else:
            issuer = answer
    taken: dict[str, Any] = {}
    if keycloak is not None:
        taken = _from_keycloak_json(keycloak)
        issuer = taken["issuer"]
        if client_id is not None and client_id != taken["client_id"]:
            raise UsageError(
                f"--client-id: {client_id!r} differs from {keycloak}'s resource "
                f"{taken['client_id']!r}; drop one of them"
            )
        client_id = taken["client_id"]
    if client_id is None:
        client_id = _ask(ask, "--client-id", "Client id (Keycloak: Client ID)")
    url = args.url or _ask(ask, "--url", "The app's public URL (e.g. https://app.example.com)")
    bearer = args.bearer_api or (ask and _ask_yes_no("Does the app accept bearer tokens (APIs)?"))
    assert issuer is not None  # given, answered, or from the keycloak.json
    return Answers(
        issuer=issuer.strip(),
        client_id=_client_id(client_id),
        url=_public_url(url.strip()),
        out=args.out,
        alg=args.alg,
        password_env=args.store_password_env,
        bearer_api=bearer,
        ssl_required=taken.get("ssl_required"),
        not_copied=tuple(taken.get("not_copied", ())),
    )


def _ask(ask: bool, flag: str, question: str) -> str:
    if not ask:
        raise UsageError(f"{flag}: needed (no terminal to ask on, or --yes); give it as {flag}")
    print(f"{question}: ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip()
    if not answer:
        raise UsageError(f"{flag}: no answer given; run again and answer, or pass {flag}")
    return answer


def _ask_yes_no(question: str) -> bool:
    print(f"{question} [y/N]: ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _from_keycloak_json(path: Path) -> dict[str, Any]:
    """The issuer and client id of a keycloak.json (checked as the loader checks them), its
    ssl-required, and the fields init does not copy."""
    document = read_document(path)
    if not isinstance(document, dict):
        raise UsageError(f"--keycloak-json: {path} is not a JSON object; give the exported file")
    taken = {name: document[name] for name in _KEYCLOAK_TAKEN if name in document}
    if "resource" not in taken:
        raise UsageError(f"--keycloak-json: {path} has no resource (the client id)")
    try:
        config = load_config({**taken, "public-client": True}, base_dir=path.parent, web=False)
    except ConfigError as error:
        raise UsageError(f"--keycloak-json: {path}: {error}") from None
    not_copied = sorted(set(document) - set(_KEYCLOAK_TAKEN) - _KEYCLOAK_REPLACED)
    ssl_required = config.ssl_required if "ssl-required" in document else None
    return {
        "issuer": config.issuer,
        "client_id": config.client_id,
        "ssl_required": ssl_required if ssl_required != "external" else None,
        "not_copied": not_copied,
    }


def _client_id(value: str) -> str:
    client_id = value.strip()
    if not client_id or any(ord(c) < 32 for c in client_id):
        raise UsageError("--client-id: must be printable text, e.g. --client-id my-app")
    return client_id


def _public_url(url: str) -> str:
    """The app's public URL: http(s), a host, no query, no trailing slash."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = urlsplit("")
    if parts.scheme not in ("https", "http") or not host:
        raise UsageError(f"--url: {url!r} is not an http(s) URL; e.g. https://app.example.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError("--url: give scheme, host and path only (no query, user or fragment)")
    if parts.scheme == "http" and not is_loopback(host):
        warn(
            f"--url: {url} is plain http: browsers drop the adapter's Secure cookies there and "
            "Keycloak refuses http redirect URIs for confidential clients in production; use "
            "https"
        )
    return url.rstrip("/")


def _password(answers: Answers, never_ask: bool) -> str:
    from_env = env_password("--store-password-env", answers.password_env)
    if from_env is not None:
        return from_env
    typed = None if never_ask else prompt("Keystore password", confirm=True)
    if not typed:
        raise UsageError(
            "--store-password-env: needed (no terminal to prompt on, or --yes); name an "
            "environment variable that holds the keystore password"
        )
    return typed


# --- the files -------------------------------------------------------------------------------


def _paths(answers: Answers) -> _Paths:
    """Where the files go; refuses a file that exists before anything is asked or made."""
    out = answers.out
    made = False
    if not out.is_dir():
        if out.exists() or not out.parent.is_dir():
            raise UsageError(
                f"--out: {out} is not a directory that exists or can be made; create it "
                f"(mkdir -p {shlex.quote(str(out))}) or choose another"
            )
        made = True
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", answers.client_id).strip(".-") or "client"
    alias = f"{safe}-{datetime.now(UTC):%Y-%m-%d}"
    paths = _Paths(out / CONFIG_NAME, out / f"{alias}.p12", alias, made)
    if paths.config.exists():
        raise UsageError(
            f"{paths.config}: already exists, and init never overwrites it; check it with "
            f"{PROG} config check {shlex.quote(str(paths.config))}, or choose another --out "
            "directory"
        )
    if paths.keystore.exists():
        raise UsageError(
            f"{paths.keystore}: already exists, and init never overwrites it; move it away "
            "or choose another --out directory"
        )
    return paths


def config_text(answers: Answers, paths: _Paths) -> str:
    """adapter.toml: private_key_jwt with the new keystore, the redirect URI of the public
    URL, and commented hints for what a production set-up adds."""
    password_env = answers.password_env or DEFAULT_KEYSTORE_ENV
    lines = [
        f"# Written by `{PROG} init`: client {answers.client_id} of the app at {answers.url}.",
        f"# Check it with `{PROG} config check {CONFIG_NAME}`; every field: docs/configuration.md",
        f"issuer = {toml_string(answers.issuer)}",
        f"client-id = {toml_string(answers.client_id)}",
        f"redirect-uri = {toml_string(answers.url + CALLBACK)}",
    ]
    if answers.ssl_required is not None:
        lines.append(f"ssl-required = {toml_string(answers.ssl_required)}")
    lines += [
        "# With several processes or replicas, seal sessions with one secret (32+ random bytes):",
        '# session-secret-env = "SESSION_SECRET"',
        "",
        "[credentials]",
        'method = "private_key_jwt"',
        "",
        "[[credentials.keys]]",
        f"keystore = {toml_string(paths.keystore.name)}",
        f"password-env = {toml_string(password_env)}",
        f"alias = {toml_string(paths.alias)}",
        'state = "active"',
    ]
    if answers.alg.startswith(("RS", "PS")) and answers.alg != "RS256":  # not the key's default
        lines.append(f"algorithm = {toml_string(answers.alg)}")
    return "\n".join(lines) + "\n"


def _check_loads(text: str, paths: _Paths) -> None:
    """Load the new file's settings before anything is written (the keystore is not opened,
    and its password variable need not be set yet)."""
    document = tomllib.loads(text)
    for key in document["credentials"]["keys"]:
        key["password"] = key.pop("password-env")  # a placeholder: only its presence counts
    try:
        load_config(document, base_dir=paths.config.parent)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def _make_key(paths: _Paths, alg: str, password: str) -> NewKey:
    private_key = generate_private_key(alg)
    certificate = self_signed_certificate(private_key, common_name(paths.alias), KEY_DAYS, alg)
    write_keystore(paths.keystore, "pkcs12", paths.alias, private_key, certificate, password)
    return NewKey(
        alias=paths.alias,
        kid=default_kid(private_key.public_key()),
        algorithm=alg,
        type=key_type_name(private_key),
        sha256=fingerprint(certificate, hashes.SHA256()),
    )


def _check_written(paths: _Paths, answers: Answers) -> AdapterConfig | None:
    """The written file loaded as ``config check`` loads it, keystore included, when the
    password came from its variable; ``None`` when it was typed (the variable the file names
    may be unset here, or hold another password)."""
    if answers.password_env is None:
        return None
    try:
        config = load_config(paths.config)
        load_key_ring(config)
    except ConfigError as error:
        paths.config.unlink(missing_ok=True)
        raise UsageError(
            f"the new configuration does not load, so it was removed: {error}"
        ) from None
    return config


# --- what to tell the server -----------------------------------------------------------------


def keycloak_steps(client_id: str, url: str, alg: str, bearer_api: bool) -> list[Step]:
    """The admin console settings of this client, in the order the console shows them."""
    settings = "Clients > " + client_id + " > Settings"
    audience = f"Clients > {client_id} > Client scopes > {client_id}-dedicated > Add mapper"
    others = "and the same on every other client whose tokens call the app's APIs"
    bearer = others if bearer_api else f"only if the app accepts bearer tokens for APIs, {others}"
    return [
        Step("Clients > Create client (or open it)", "Client ID", client_id),
        Step(f"{settings} > Capability config", "Client authentication", "On"),
        Step(f"{settings} > Capability config", "Standard flow", "On"),
        Step(f"{settings} > Access settings", "Valid redirect URIs", url + CALLBACK),
        Step(f"{settings} > Access settings", "Valid post logout redirect URIs", url + LOGOUT),
        Step(f"{settings} > Logout settings", "Front channel logout", "Off"),
        Step(f"{settings} > Logout settings", "Backchannel logout URL", url + BACKCHANNEL),
        Step(f"{settings} > Logout settings", "Backchannel logout session required", "On"),
        Step(f"Clients > {client_id} > Credentials", "Client Authenticator", "Signed JWT"),
        Step(f"Clients > {client_id} > Credentials", "Signature algorithm", alg),
        Step(f"Clients > {client_id} > Keys", "Use JWKS URL", "On"),
        Step(f"Clients > {client_id} > Keys", "JWKS URL", url + JWKS),
        Step(f"{audience} > By configuration > Audience", "Included Client Audience", client_id,
             bearer),
        Step(f"{audience} > By configuration > Audience", "Add to access token", "On", bearer),
    ]  # fmt: skip


def client_metadata(client_id: str, url: str, alg: str) -> dict[str, Any]:
    """The same client as OpenID registration metadata (RFC 7591), for other servers."""
    return {
        "client_id": client_id,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": alg,
        "jwks_uri": url + JWKS,
        "redirect_uris": [url + CALLBACK],
        "post_logout_redirect_uris": [url + LOGOUT],
        "backchannel_logout_uri": url + BACKCHANNEL,
        "backchannel_logout_session_required": True,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }


def _report(
    answers: Answers, paths: _Paths, key: NewKey, config: AdapterConfig | None
) -> dict[str, Any]:
    password_env = answers.password_env or DEFAULT_KEYSTORE_ENV
    config_path = shlex.quote(str(paths.config))
    steps = keycloak_steps(answers.client_id, answers.url, answers.alg, answers.bearer_api)
    return {
        "config": str(paths.config),
        "keystore": str(paths.keystore),
        "issuer": answers.issuer,
        "client_id": answers.client_id,
        "url": answers.url,
        "key": asdict(key),
        "password_env": password_env,
        "checked": config is not None,  # loaded as config check loads it, keystore included
        "not_copied": list(answers.not_copied),
        "keycloak": {
            "realm": issuer_realm(answers.issuer),
            "steps": [asdict(step) for step in steps],
        },
        "client_metadata": client_metadata(answers.client_id, answers.url, answers.alg),
        "next": [
            f"{PROG} config check {config_path}",
            f"{PROG} doctor --config {config_path} --url {shlex.quote(answers.url)}",
        ],
    }


def _print_report(report: dict[str, Any]) -> None:
    key = report["key"]
    print(
        f"wrote {report['keystore']}: PKCS#12, alias {key['alias']}, kid {key['kid']}, "
        f"{key['algorithm']} ({key['type']}), sha256 {key['sha256']}"
    )
    print(
        f"wrote {report['config']}: issuer {report['issuer']}, client {report['client_id']}, "
        f"private_key_jwt; the keystore password comes from ${report['password_env']}"
    )
    realm = report["keycloak"]["realm"]
    print()
    print(f"In the Keycloak admin console{f', realm {realm}' if realm else ''}:")
    for number, step in enumerate(report["keycloak"]["steps"], 1):
        when = f"  ({step['when']})" if step["when"] else ""
        print(f"{number:>3}. {step['where']}: {step['setting']} = {step['value']}{when}")
    print()
    print("Another OpenID provider: register the client_metadata of --json.")
    if not report["checked"]:
        print(f"Set {report['password_env']} to the keystore password where the app runs.")
    if report["not_copied"]:
        print_note(
            f"not copied from the keycloak.json: {', '.join(report['not_copied'])} (add them to "
            f"{report['config']} if the app needs them; docs/configuration.md)"
        )
    print("Next:")
    for command in report["next"]:
        print(f"  {command}")
