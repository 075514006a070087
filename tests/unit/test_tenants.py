"""Several realms in one app: the tenants file (adapter.config.tenants) and the choice of a
tenant per request (adapter._tenancy), without a server."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from adapter import ConfigError, OIDCMiddleware
from adapter.asgi import WIRE
from adapter.config.tenants import load_tenant_config, load_tenants, tenants_or_plain
from adapter.web._steps import Proceed, Respond

SECRET = "tenants-test-session-secret-0123456789"


def keycloak_json(realm: str, client: str = "app") -> dict[str, Any]:
    """A public client's keycloak.json, as the console exports it."""
    return {
        "realm": realm,
        "auth-server-url": "http://127.0.0.1:8080/",
        "ssl-required": "external",
        "resource": client,
        "public-client": True,
    }


def write_tenants(directory: Path, body: str, **files: dict[str, Any]) -> Path:
    (directory / "tenants").mkdir(exist_ok=True)
    for name, document in files.items():
        (directory / "tenants" / f"{name}.json").write_text(json.dumps(document))
    path = directory / "adapter.toml"
    path.write_text(body)
    path.chmod(0o600)
    return path


TWO_BY_PREFIX = f"""
session-secret = "{SECRET}"
public-paths = ["/public"]

[[tenants]]
name = "acme"
config = "tenants/acme.json"
path-prefix = "/acme"

[[tenants]]
name = "globex"
config = "tenants/globex.json"
path-prefix = "/globex"
"""


def test_each_tenant_is_its_file_over_the_shared_settings(tmp_path: Path) -> None:
    path = write_tenants(
        tmp_path,
        TWO_BY_PREFIX,
        acme=keycloak_json("acme"),
        globex={**keycloak_json("globex"), "public-paths": ["/open"]},
    )
    tenants = load_tenants(path)
    acme, globex = tenants.tenants
    assert (acme.name, acme.path_prefix, acme.host) == ("acme", "/acme", None)
    assert acme.config.issuer == "http://127.0.0.1:8080/realms/acme"
    assert globex.config.issuer == "http://127.0.0.1:8080/realms/globex"
    assert acme.config.web.public_paths == ("/public",)  # shared
    assert globex.config.web.public_paths == ("/open",)  # the tenant's own wins
    assert acme.config.tenant == "acme"
    assert acme.config.source == tmp_path / "tenants" / "acme.json"
    assert path in acme.config.watched_files()  # the shared part reloads each tenant too
    assert [s.reveal() for s in acme.config.web.session_secrets] == [SECRET]


def test_a_shared_setting_is_replaced_by_the_tenants_other_spelling(tmp_path: Path) -> None:
    secret_file = tmp_path / "tenants" / "acme-secret"
    (tmp_path / "tenants").mkdir()
    secret_file.write_text("acme-own-session-secret-0123456789abcdef\n")
    secret_file.chmod(0o600)
    path = write_tenants(
        tmp_path,
        TWO_BY_PREFIX,
        acme={**keycloak_json("acme"), "session-secret-file": "acme-secret"},
        globex=keycloak_json("globex"),
    )
    acme = load_tenants(path).named("acme").config
    assert [s.reveal() for s in acme.web.session_secrets] == [
        "acme-own-session-secret-0123456789abcdef"
    ]


def test_shared_file_paths_are_relative_to_the_tenants_file(tmp_path: Path) -> None:
    (tmp_path / "shared-secret").write_text("shared-session-secret-0123456789abcdef\n")
    (tmp_path / "shared-secret").chmod(0o600)
    body = TWO_BY_PREFIX.replace(
        f'session-secret = "{SECRET}"', 'session-secret-file = "shared-secret"'
    )
    path = write_tenants(tmp_path, body, acme=keycloak_json("acme"), globex=keycloak_json("globex"))
    acme = load_tenants(path).named("acme").config
    assert [s.reveal() for s in acme.web.session_secrets] == [
        "shared-session-secret-0123456789abcdef"
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"/globex"', '"/acme"'), "path-prefix '/acme' is given twice (acme and globex)"),
        (('"/globex"', '"/acme/eu"'), "path-prefix '/acme/eu' (globex) lies inside '/acme' (acme)"),
        (('name = "globex"', 'name = "acme"'), "name 'acme' is given twice"),
        (('name = "globex"', 'name = "Globex Inc"'), "tenants[1].name: must be lower-case"),
        (('"/globex"', '"globex/"'), "tenants[1] (globex).path-prefix: must be a path"),
        (('"/globex"', '"/g/../x"'), "tenants[1] (globex).path-prefix: must be a path"),
        (
            ('path-prefix = "/globex"', 'path-prefix = "/globex"\nhost = "globex.example"'),
            "tenants[1] (globex): give path-prefix or host, not both",
        ),
        (
            ('path-prefix = "/globex"', 'host = "https://globex.example"'),
            "tenants[1] (globex).host: must be a host name",
        ),
        (('path-prefix = "/globex"', ""), "tenants[1] (globex): says neither path-prefix nor host"),
        (('config = "tenants/globex.json"', 'config = "tenants/nope.json"'), "nope.json"),
        (
            ('path-prefix = "/globex"', 'path-prefix = "/globex"\nrealm = "x"'),
            "unknown field 'realm'",
        ),
        (
            ('session-secret = "', 'realm = "acme"\nsession-secret = "'),
            "realm: names a tenant's client",
        ),
    ],
)
def test_a_wrong_tenants_file_names_the_tenant_and_the_fix(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    body = TWO_BY_PREFIX.replace(*change)
    path = write_tenants(tmp_path, body, acme=keycloak_json("acme"), globex=keycloak_json("globex"))
    with pytest.raises(ConfigError) as caught:
        load_tenants(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_error_in_a_tenants_own_file_names_tenant_file_and_field(tmp_path: Path) -> None:
    path = write_tenants(
        tmp_path,
        TWO_BY_PREFIX,
        acme=keycloak_json("acme"),
        globex={**keycloak_json("globex"), "session-max-age": "long"},
    )
    with pytest.raises(ConfigError) as caught:
        load_tenants(path)
    text = str(caught.value)
    assert "tenants[1] (globex)" in text
    assert str(tmp_path / "tenants" / "globex.json") in text
    assert "session-max-age" in text


def test_one_tenant_reloads_alone(tmp_path: Path) -> None:
    path = write_tenants(
        tmp_path,
        TWO_BY_PREFIX,
        acme=keycloak_json("acme"),
        globex={**keycloak_json("globex"), "session-max-age": "long"},
    )
    acme = load_tenant_config(path, "acme")  # globex's broken file does not stop acme
    assert acme.issuer.endswith("/realms/acme")
    with pytest.raises(ConfigError, match="tenant 'initech' is no longer listed"):
        load_tenant_config(path, "initech")


def test_a_resolver_needs_tenants(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(keycloak_json("acme")))
    assert tenants_or_plain(plain) == plain
    with pytest.raises(ConfigError, match="tenant_resolver: chooses among tenants"):
        tenants_or_plain(plain, resolver=True)


# --- the choice per request ----------------------------------------------------------------------


async def _app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def scope(path: str, host: str = "127.0.0.1:8000", root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": root_path + path,
        "root_path": root_path,
        "headers": [(b"host", host.encode())],
    }


def middleware(tmp_path: Path, body: str, **kwargs: Any) -> OIDCMiddleware:
    path = write_tenants(tmp_path, body, acme=keycloak_json("acme"), globex=keycloak_json("globex"))
    return OIDCMiddleware(_app, path, **kwargs)


@pytest.mark.parametrize(
    ("path", "tenant", "seen_path", "seen_root"),
    [
        ("/acme/sso/login", "acme", "/sso/login", "/acme"),
        ("/acme", "acme", "/", "/acme"),
        ("/globex/k_jwks", "globex", "/k_jwks", "/globex"),
        ("/acmex/page", None, "/acmex/page", ""),
        ("/", None, "/", ""),
    ],
)
def test_a_path_prefix_mounts_its_tenant_there(
    tmp_path: Path, path: str, tenant: str | None, seen_path: str, seen_root: str
) -> None:
    tenancy = middleware(tmp_path, TWO_BY_PREFIX).tenancy
    site, relative, root, _ = tenancy.choose(WIRE, scope(path), path, "")
    assert (site.name if site else None, relative, root) == (tenant, seen_path, seen_root)


def test_under_a_root_path_the_prefix_follows_it(tmp_path: Path) -> None:
    tenancy = middleware(tmp_path, TWO_BY_PREFIX).tenancy
    site, relative, root, _ = tenancy.choose(
        WIRE, scope("/acme/x", root_path="/app"), "/acme/x", "/app"
    )
    assert (site and site.name, relative, root) == ("acme", "/x", "/app/acme")


def test_a_host_chooses_its_tenant_whatever_its_port_and_case(tmp_path: Path) -> None:
    body = TWO_BY_PREFIX.replace('path-prefix = "/acme"', 'host = "127.0.0.1"').replace(
        'path-prefix = "/globex"', 'host = "localhost"'
    )
    tenancy = middleware(tmp_path, body).tenancy
    for host, name in (
        ("127.0.0.1:8000", "acme"),
        ("LocalHost:9", "globex"),
        ("localhost", "globex"),
    ):
        site, relative, root, _ = tenancy.choose(WIRE, scope("/x", host), "/x", "")
        assert (site and site.name, relative, root) == (name, "/x", "")
    site, _, _, _ = tenancy.choose(WIRE, scope("/x", "example.com"), "/x", "")
    assert site is None


def test_a_host_or_resolver_never_reaches_another_tenants_prefix(tmp_path: Path) -> None:
    """acme by prefix, globex by host: a request to globex's host for /acme/admin would run
    acme's page (the app routes by path) with globex's identity: no tenant takes it (404)."""
    body = TWO_BY_PREFIX.replace('path-prefix = "/globex"', 'host = "globex.example"')
    tenancy = middleware(tmp_path, body).tenancy
    for path in ("/acme/admin", "/acme"):
        request = scope(path, "globex.example")
        site, relative, _, _ = tenancy.choose(WIRE, request, path, "")
        assert site is None
        answer = tenancy.unclaimed(WIRE, request, relative, "GET")
        assert isinstance(answer, Respond)
        assert answer.status == 404
    site, relative, root, _ = tenancy.choose(WIRE, scope("/x", "globex.example"), "/x", "")
    assert (site and site.name, relative, root) == ("globex", "/x", "")
    site, relative, root, _ = tenancy.choose(
        WIRE, scope("/acme/x", "globex.example.:80"), "/acme/x", ""
    )
    assert site is None
    named = OIDCMiddleware(_app, tmp_path / "adapter.toml", tenant_resolver=lambda s: "globex")
    site, _, _, _ = named.tenancy.choose(WIRE, scope("/acme/admin"), "/acme/admin", "")
    assert site is None  # the resolver's tenant, but acme's page
    site, _, _, _ = named.tenancy.choose(WIRE, scope("/reports"), "/reports", "")
    assert site is not None
    assert site.name == "globex"


def test_no_tenant_fails_closed_but_on_the_shared_public_paths(tmp_path: Path) -> None:
    tenancy = middleware(tmp_path, TWO_BY_PREFIX).tenancy

    def answer(path: str, *headers: tuple[bytes, bytes]) -> Any:
        request = scope(path)
        request["headers"].extend(headers)
        site, relative, _, _ = tenancy.choose(WIRE, request, path, "")
        assert site is None
        return tenancy.unclaimed(WIRE, request, relative, "GET")

    passed = answer("/public/about")  # public-paths, outside every tenant: the app's
    assert isinstance(passed, Proceed)
    assert passed.identity is None
    for path in ("/k_jwks", "/admin", "/ACME/admin", "//acme/admin", "/acmex"):
        refused = answer(path)
        assert isinstance(refused, Respond)
        assert refused.status == 404, path
    dots = answer("/acme/../globex/admin")
    assert isinstance(dots, Respond)
    assert dots.status == 400
    bearer = answer("/admin", (b"authorization", b"Bearer not-a-jwt"))
    assert isinstance(bearer, Respond)
    assert bearer.status == 401
    assert dict(bearer.headers)["WWW-Authenticate"].endswith('error="invalid_token"')


def test_a_host_with_a_final_dot_is_the_same_host(tmp_path: Path) -> None:
    body = TWO_BY_PREFIX.replace('path-prefix = "/acme"', 'host = "acme.example.com"')
    tenancy = middleware(tmp_path, body).tenancy
    site, _, _, _ = tenancy.choose(WIRE, scope("/x", "ACME.example.com.:443"), "/x", "")
    assert site is not None
    assert site.name == "acme"


def test_a_resolver_that_raises_names_no_tenant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(scope: dict[str, Any]) -> str | None:
        raise KeyError("x-tenant")

    tenancy = middleware(tmp_path, TWO_BY_PREFIX, tenant_resolver=broken).tenancy
    assert tenancy.choose(WIRE, scope("/x"), "/x", "")[0] is None
    site, _, _, _ = tenancy.choose(WIRE, scope("/acme/x"), "/acme/x", "")
    assert site is not None
    assert site.name == "acme"
    assert "tenant_resolver raised KeyError" in caplog.text


def test_two_tenants_may_not_be_the_same_client(tmp_path: Path) -> None:
    path = write_tenants(
        tmp_path, TWO_BY_PREFIX, acme=keycloak_json("acme"), globex=keycloak_json("acme")
    )
    with pytest.raises(ConfigError, match="acme and globex are the same client"):
        load_tenants(path)


def test_an_issuer_two_tenants_share_routes_no_bearer_token(tmp_path: Path) -> None:
    from adapter.web._tenants import _bearer_issuer

    path = write_tenants(
        tmp_path, TWO_BY_PREFIX, acme=keycloak_json("acme"), globex=keycloak_json("acme", "other")
    )
    tenancy = OIDCMiddleware(_app, path).tenancy
    token = "e30." + "eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjgwODAvcmVhbG1zL2FjbWUifQ" + ".c2ln"
    request = scope("/api")
    request["headers"].append((b"authorization", f"Bearer {token}".encode()))
    assert _bearer_issuer(f"Bearer {token}") == "http://127.0.0.1:8080/realms/acme"
    assert tenancy.choose(WIRE, request, "/api", "")[0] is None  # which of the two? neither


def test_a_bearer_tokens_tenant_is_remembered_within_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issuer's tenant is remembered by the header (decoded once, not per request), the
    memory cleared when full; the headers read to choose are handed on, not read again."""
    import adapter.web._tenants as tenants_module

    path = write_tenants(
        tmp_path, TWO_BY_PREFIX, acme=keycloak_json("acme"), globex=keycloak_json("globex")
    )
    tenancy = OIDCMiddleware(_app, path).tenancy
    issuer = json.dumps({"iss": "http://127.0.0.1:8080/realms/acme"}).encode()
    token = "e30." + base64.urlsafe_b64encode(issuer).decode().rstrip("=") + ".c2ln"
    request = scope("/api")
    request["headers"].append((b"authorization", f"Bearer {token}".encode()))
    decoded: list[str] = []
    original = tenants_module.unverified_issuer
    monkeypatch.setattr(
        tenants_module, "unverified_issuer", lambda t: decoded.append(t) or original(t)
    )
    monkeypatch.setattr(tenants_module, "MAX_REMEMBERED_TOKENS", 2)
    for _ in range(3):
        site, _, _, read = tenancy.choose(WIRE, request, "/api", "")
        assert site is not None
        assert site.name == "acme"
        assert read == (None, f"Bearer {token}")
    assert decoded == [token]
    for other in ("x.e30.y", "z.e30.w"):  # two more tokens fill the memory, which is cleared
        stranger = scope("/api")
        stranger["headers"].append((b"authorization", f"Bearer {other}".encode()))
        assert tenancy.choose(WIRE, stranger, "/api", "")[0] is None
    tenancy.choose(WIRE, request, "/api", "")
    assert decoded == [token, "x.e30.y", "z.e30.w", token]


def test_the_resolver_names_the_tenant_first(tmp_path: Path) -> None:
    body = TWO_BY_PREFIX.replace('path-prefix = "/globex"\n', "")

    def by_header(scope: dict[str, Any]) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-tenant":
                return str(value.decode())
        return None

    tenancy = middleware(tmp_path, body, tenant_resolver=by_header).tenancy
    request = scope("/x")
    request["headers"].append((b"x-tenant", b"globex"))
    site, relative, root, _ = tenancy.choose(WIRE, request, "/x", "")
    assert (site and site.name, relative, root) == ("globex", "/x", "")
    site, relative, root, _ = tenancy.choose(WIRE, scope("/acme/x"), "/acme/x", "")
    assert (site and site.name, relative, root) == ("acme", "/x", "/acme")  # then the file's
    request = scope("/x")
    request["headers"].append((b"x-tenant", b"initech"))  # not one of ours
    assert tenancy.choose(WIRE, request, "/x", "")[0] is None


def test_tenants_never_share_a_session(tmp_path: Path) -> None:
    """One session secret, two tenants: a cookie sealed for one does not open at the other."""
    from adapter.web.session import Session

    app = middleware(tmp_path, TWO_BY_PREFIX)
    acme, globex = (site.shell.front()[1].core.cookies.codec for site in app.tenancy)
    session = Session.new({"sub": "alice"}, id_token="x", access_token="y", refresh_token=None)
    sealed = acme.seal({"d": session.to_dict(), "t": 1}, "session")
    assert acme.open(sealed, "session") is not None
    assert globex.open(sealed, "session") is None


def test_the_documented_tenants_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/tenants.md's example, as written, with the two files it names."""
    from tests.docs_blocks import one_run_by

    block = one_run_by("tests/unit/test_tenants.py::test_the_documented_tenants_file_loads")
    (tmp_path / "adapter.toml").write_text(block.text)
    (tmp_path / "tenants").mkdir()
    (tmp_path / "tenants" / "acme.json").write_text(json.dumps(keycloak_json("acme")))
    (tmp_path / "tenants" / "globex.toml").write_text(
        'issuer = "https://sso.globex.example.com/realms/globex"\nclient-id = "app"\n'
        "public-client = true\n"
    )
    monkeypatch.setenv("SESSION_SECRET", SECRET)
    acme, globex = load_tenants(tmp_path / "adapter.toml").tenants
    assert (acme.name, acme.path_prefix, globex.name, globex.host) == (
        "acme", "/acme", "globex", "globex.example.com",
    )  # fmt: skip
    assert globex.config.web.public_paths == ("/", "/health")


def test_a_prefix_spelled_with_escapes_gives_no_raw_path_that_keeps_it() -> None:
    from adapter.asgi import _raw_path

    request = {"raw_path": b"/%61cme/x%2Fy?q=1"}
    assert _raw_path(request, "/acme") is None  # then the decoded path, quoted, stands in
    assert _raw_path({"raw_path": b"/acme/x%2Fy"}, "/acme") == "/x%2Fy"
    assert _raw_path({"raw_path": b"/x"}, "/acme") == "/x"  # a server that left the root out


def test_a_reload_refuses_a_tenant_moved_to_another_prefix(tmp_path: Path) -> None:
    app = middleware(tmp_path, TWO_BY_PREFIX)
    path = tmp_path / "adapter.toml"
    path.write_text(TWO_BY_PREFIX.replace('"/globex"', '"/initech"'))
    assert app.reload() is False
    status = app.tenancy.statuses["globex"]
    assert status is not None
    assert "path-prefix: changed from '/globex' to '/initech'" in str(status.last_error)
    assert app.tenancy.statuses["acme"] is not None
    assert app.tenancy.statuses["acme"].last_error is None  # acme's place did not move
