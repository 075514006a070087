"""Security findings on what the identity server sends: compressed bodies, where discovery
points, and how much of the server's text reaches messages and logs."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import tracemalloc
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from adapter import ConfigError, ConfigWarning, load_config
from adapter.errors import ProviderError, TokenError
from adapter.protocol.client import OIDCClient
from adapter.protocol.flows import Flow, get_json, run, run_async, token_request
from adapter.protocol.provider import Provider, ProviderMetadata, ServerKeys
from tests.http_host import LocalHost, Seen

ISSUER = "https://kc.internal/realms/demo"
PEAK_LIMIT = 8 * 1024 * 1024


# --- A: responses are capped before they are inflated ----------------------------------------


@functools.lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB of zeros, compressed a MiB at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(1024)]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture
def host() -> Iterator[LocalHost]:
    with LocalHost() as served:
        yield served


def serve(host: LocalHost, path: str, body: bytes, encoding: str | None) -> str:
    headers = {"Content-Type": "application/json"}
    if encoding is not None:
        headers["Content-Encoding"] = encoding

    def reply(_: Seen) -> tuple[int, dict[str, str], bytes]:
        return 200, headers, body

    host.route(path, reply)
    return host.url(path)


@contextmanager
def traced(peak: list[int]) -> Iterator[None]:
    """Trace allocations inside the block; its peak is appended to ``peak``."""
    tracemalloc.start()
    try:
        yield
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def drive(flow: Flow[Any], mode: str, peak: list[int] | None = None) -> Any:
    """Run ``flow`` with a real client, sync or async (tracing only the exchange itself)."""
    peak = [] if peak is None else peak
    if mode == "sync":
        with httpx.Client(trust_env=False) as client, traced(peak):
            return run(flow, client)

    async def go() -> Any:
        async with httpx.AsyncClient(trust_env=False) as client:
            with traced(peak):
                return await run_async(flow, client)

    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gzip_bomb_is_refused_in_bounded_memory(host: LocalHost, mode: str) -> None:
    bomb = gzip_bomb()
    url = serve(host, "/.well-known/openid-configuration", bomb, "gzip")
    peak: list[int] = []
    with pytest.raises(ProviderError, match="larger than") as raised:
        drive(get_json(url, "discovery"), mode, peak)
    assert peak[0] < PEAK_LIMIT, f"reading the answer took {peak[0]} bytes"
    assert "\n" not in str(raised.value)
    (seen,) = host.requests_to("/.well-known/openid-configuration")
    assert seen.headers.get("accept-encoding") == "identity"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110: deflate is the zlib format
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers do
        ("identity", lambda data: data),
    ],
)
def test_small_compressed_answer_still_works(
    host: LocalHost, mode: str, encoding: str, compress: Any
) -> None:
    document = {"issuer": ISSUER, "padding": "x" * 5000}
    url = serve(host, "/doc", compress(json.dumps(document).encode()), encoding)
    result = drive(get_json(url, "discovery"), mode)
    assert result == document
    assert host.requests_to("/doc")[0].headers.get("accept-encoding") == "identity"


def test_unknown_content_encoding_is_refused(host: LocalHost) -> None:
    url = serve(host, "/doc", b'{"issuer": "secret-body-text"}', "x-custom")
    with pytest.raises(ProviderError) as raised:
        drive(get_json(url, "discovery"), "sync")
    assert url in str(raised.value)
    assert "secret-body-text" not in str(raised.value)


def test_truncated_gzip_is_refused(host: LocalHost) -> None:
    url = serve(host, "/doc", gzip.compress(b'{"issuer": "x"}')[:-8], "gzip")
    with pytest.raises(ProviderError, match="/doc"):
        drive(get_json(url, "discovery"), "sync")


# --- B: discovery cannot send credentials elsewhere ------------------------------------------


def document(**endpoints: str) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "token_endpoint": "https://kc.internal/realms/demo/token",
        "jwks_uri": "https://kc.internal/realms/demo/certs",
        **endpoints,
    }


def test_endpoints_on_the_issuer_host_are_accepted() -> None:
    metadata = ProviderMetadata.from_document(
        document(authorization_endpoint="https://KC.internal:443/realms/demo/auth"), ISSUER
    )
    assert metadata.authorization_endpoint == "https://KC.internal:443/realms/demo/auth"


@pytest.mark.parametrize(
    "name",
    [
        "token_endpoint",
        "authorization_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
        "pushed_authorization_request_endpoint",
    ],
)
def test_an_endpoint_on_another_host_is_refused(name: str) -> None:
    with pytest.raises(ProviderError) as raised:
        ProviderMetadata.from_document(document(**{name: "https://evil.example/steal"}), ISSUER)
    message = str(raised.value)
    assert name in message
    assert "on evil.example:443, the issuer on kc.internal:443" in message
    assert 'add "evil.example" to endpoint-hosts' in message


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@kc.internal/realms/demo/auth",  # a browser goes to evil.example
        "https://user:pw@kc.internal/realms/demo/auth",
        "https://kc.internal/realms/demo/auth\tx",
        "https://kc.internal/realms/ demo/auth",
    ],
)
def test_ambiguous_endpoint_urls_are_refused(url: str) -> None:
    with pytest.raises(ProviderError, match="authorization_endpoint"):
        ProviderMetadata.from_document(document(authorization_endpoint=url), ISSUER)


def test_an_endpoint_on_another_port_is_refused() -> None:
    with pytest.raises(ProviderError, match=r'add "kc.internal:8443" to endpoint-hosts'):
        ProviderMetadata.from_document(
            document(token_endpoint="https://kc.internal:8443/token"), ISSUER
        )


def test_endpoint_hosts_allow_a_host_with_or_without_port() -> None:
    moved = document(
        authorization_endpoint="https://SSO.example.com/realms/demo/auth",
        end_session_endpoint="https://logout.example.com:8443/logout",
    )
    metadata = ProviderMetadata.from_document(
        moved, ISSUER, endpoint_hosts=("sso.example.com", "logout.example.com:8443")
    )
    assert metadata.end_session_endpoint == "https://logout.example.com:8443/logout"
    with pytest.raises(ProviderError, match="end_session_endpoint"):
        ProviderMetadata.from_document(
            moved, ISSUER, endpoint_hosts=("sso.example.com", "logout.example.com:9443")
        )


def test_plain_http_endpoints_follow_ssl_required() -> None:
    local = "http://127.0.0.1:8080"
    plain = {"issuer": local, "token_endpoint": local + "/token"}
    with pytest.raises(ProviderError, match=r"token_endpoint .*ssl-required"):
        ProviderMetadata.from_document(plain, local, ssl_required="all")
    assert ProviderMetadata.from_document(plain, local, ssl_required="external")
    downgraded = document(token_endpoint="http://kc.internal/token")
    with pytest.raises(ProviderError, match=r"token_endpoint uses plain http"):
        ProviderMetadata.from_document(downgraded, ISSUER, endpoint_hosts=("kc.internal",))
    assert ProviderMetadata.from_document(
        downgraded, ISSUER, ssl_required="none", endpoint_hosts=("kc.internal",)
    )


@pytest.mark.parametrize(
    "url", ["https://kc.internal/" + "p" * 100_000, "https://kc.internal:99999/t", "https:///t"]
)
def test_an_endpoint_url_that_cannot_be_used_is_refused(url: str) -> None:
    with pytest.raises(ProviderError, match="jwks_uri") as raised:
        ProviderMetadata.from_document(document(jwks_uri=url), ISSUER)
    assert_one_short_line(str(raised.value))


def test_provider_applies_its_endpoint_hosts() -> None:
    moved = document(authorization_endpoint="https://sso.example.com/auth")
    for allowed, accepted in (((), False), (("sso.example.com",), True)):
        flow = Provider(ISSUER, endpoint_hosts=allowed).metadata_flow()
        step = next(flow)
        response = httpx.Response(200, json=moved, request=step.request)
        if accepted:
            with pytest.raises(StopIteration):
                flow.send(response)
        else:
            with pytest.raises(ProviderError, match="endpoint-hosts"):
                flow.send(response)


def config(**extra: Any) -> dict[str, Any]:
    return {"issuer": ISSUER, "client-id": "app", "public-client": True, **extra}


def test_endpoint_hosts_load_and_reach_the_provider() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        loaded = load_config(
            config(**{"endpoint-hosts": ["sso.example.com", "Logout.example.com:8443"]})
        )
    assert loaded.endpoint_hosts == ("sso.example.com", "logout.example.com:8443")
    assert load_config(config()).endpoint_hosts == ()
    with OIDCClient(loaded) as client:
        assert client.provider.endpoint_hosts == ("sso.example.com", "logout.example.com:8443")
        assert client.provider.ssl_required == "external"


@pytest.mark.parametrize(
    "value",
    [
        "sso.example.com",
        ["https://sso.example.com"],
        ["sso.example.com/realms"],
        [""],
        [42],
        ["sso.example.com:99999"],
        ["user@sso.example.com"],
    ],
)
def test_bad_endpoint_hosts_are_config_errors(value: Any) -> None:
    with pytest.raises(ConfigError, match="endpoint-hosts") as raised:
        load_config(config(**{"endpoint-hosts": value}))
    assert "\n" not in str(raised.value)


# --- C: server text is bounded in logs and errors --------------------------------------------


def token_error(body: dict[str, Any]) -> TokenError:
    flow = token_request("https://kc.internal/token", {"grant_type": "client_credentials"})
    step = next(flow)
    with pytest.raises(TokenError) as raised:
        flow.send(httpx.Response(400, json=body, request=step.request))
    return raised.value


def assert_one_short_line(text: str, limit: int = 300) -> None:
    assert len(text) < limit, f"{len(text)} characters"
    assert text.isprintable(), "control characters or line breaks"


def test_huge_error_description_is_bounded() -> None:
    error = token_error({"error": "invalid_grant", "error_description": "x" * 1_000_000})
    assert_one_short_line(str(error))
    assert error.error == "invalid_grant"
    assert error.description is not None
    assert len(error.description) <= 200
    assert error.description.endswith("...")


def test_huge_error_code_is_bounded() -> None:
    error = token_error({"error": "e" * 1_000_000, "error_description": "d" * 1_000_000})
    assert_one_short_line(str(error))
    assert len(error.error) <= 64


def test_line_breaks_and_control_characters_become_one_line() -> None:
    error = token_error(
        {
            "error": "invalid_grant\n2026-01-01 INFO forged log line",
            "error_description": "bad\r\n\x1b[31mred\x00\u2028end",
        }
    )
    assert_one_short_line(str(error))
    assert "forged log line" in error.error


def test_huge_issuer_in_discovery_mismatch_is_bounded() -> None:
    with pytest.raises(ProviderError) as raised:
        ProviderMetadata.from_document({"issuer": "i" * 1_000_000 + "\n"}, ISSUER)
    assert_one_short_line(str(raised.value), 400)
    with pytest.raises(ProviderError) as raised:
        ProviderMetadata.from_document({"issuer": ["i"] * 1_000_000}, ISSUER)
    assert_one_short_line(str(raised.value), 400)


@pytest.mark.filterwarnings("ignore:Key size should be")
def test_huge_kid_in_a_log_line_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (refused)
    jwk = RSAKey.import_key(small.public_key()).as_dict()
    bad = {"kty": "RSA", "n": "%%%", "e": "AQAB", "kid": "k\n" * 500_000}
    with caplog.at_level(logging.WARNING, logger="adapter.protocol.provider"):
        ServerKeys({"keys": [{**jwk, "kid": "w" * 1_000_000}, bad]})
    assert len(caplog.records) == 2
    for record in caplog.records:
        assert_one_short_line(record.getMessage())


def test_huge_endpoint_url_is_bounded_in_transport_errors() -> None:
    with httpx.Client(trust_env=False) as client, pytest.raises(ProviderError) as raised:
        run(get_json("http://127.0.0.1:9/" + "p" * 60_000, "server JWKS"), client)
    assert_one_short_line(str(raised.value))


def test_bounded_text() -> None:
    from adapter.errors import bounded_text

    assert bounded_text("invalid_grant", 64) == "invalid_grant"
    assert bounded_text("a" * 100, 10) == "aaaaaaa..."
    assert bounded_text("a\nb\tc\x00d\u202ee", 64) == "a b c?d?e"
    assert bounded_text(["x"] * 10, 64) == "(a list)"
    assert bounded_text(None, 64) == "(a NoneType)"
