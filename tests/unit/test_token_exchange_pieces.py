"""Token exchange's pieces, one at a time (RFC 8693): what the flow sends and how it reads the
answer; the exchanged tokens kept per key, one exchange in flight per key; the httpx ``Auth``
that sends them. The exchange against a real server is tests/integration/test_token_exchange.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from urllib.parse import parse_qs

import httpx
import pytest

from adapter.errors import ProviderError, TokenError
from adapter.protocol.flows import Send, TokenSet
from adapter.protocol.token_exchange import (
    ACCESS_TOKEN_TYPE,
    GRANT_TYPE,
    ExchangedTokens,
    TokenExchangeAuth,
    exchange_key,
    subject_token,
    token_exchange,
)

TOKEN_ENDPOINT = "https://sso.example.com/token"


def answered(response: httpx.Response, **options: str) -> tuple[Send, object]:
    """Run the flow for ``alice-token`` to ``orders-api`` against ``response``."""
    flow = token_exchange(TOKEN_ENDPOINT, "alice-token", audience="orders-api", **options)
    step = next(flow)
    response.request = step.request
    with pytest.raises(StopIteration) as done:
        flow.send(response)
    return step, done.value.value


def test_the_exchange_sends_rfc_8693_parameters_with_client_authentication() -> None:
    response = httpx.Response(
        200,
        json={"access_token": "orders", "token_type": "Bearer", "expires_in": 300,
              "issued_token_type": ACCESS_TOKEN_TYPE},
    )  # fmt: skip
    step, tokens = answered(response, scope="orders:read")
    assert step.authenticate, "the exchange is authenticated as the client"
    assert parse_qs(step.request.content.decode()) == {
        "grant_type": [GRANT_TYPE],
        "subject_token": ["alice-token"],
        "subject_token_type": [ACCESS_TOKEN_TYPE],
        "requested_token_type": [ACCESS_TOKEN_TYPE],
        "audience": ["orders-api"],
        "scope": ["orders:read"],
    }
    assert isinstance(tokens, TokenSet)
    assert tokens.access_token == "orders"


def test_the_servers_refusal_is_a_token_error_with_its_text() -> None:
    refusal = {
        "error": "access_denied",
        "error_description": "Client is not within the token audience",
    }
    with pytest.raises(TokenError) as raised:
        answered(httpx.Response(400, json=refusal))
    assert raised.value.error == "access_denied"
    assert raised.value.description == "Client is not within the token audience"


def test_another_issued_token_type_than_asked_is_refused() -> None:
    body = {"access_token": "x", "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"}
    with pytest.raises(ProviderError, match="issued"):
        answered(httpx.Response(200, json=body))


def tokens(name: str, lives: float | None = 300) -> TokenSet:
    return TokenSet(access_token=name, expires_at=None if lives is None else time.time() + lives)


def test_exchanged_tokens_are_kept_per_subject_audience_and_scope_until_near_expiry() -> None:
    kept = ExchangedTokens(margin=30)
    made: list[str] = []

    def exchange(name: str, lives: float | None = 300) -> TokenSet:
        made.append(name)
        return tokens(name, lives)

    key = exchange_key("alice-token", "orders-api", None, None)
    assert kept.get(key, lambda: exchange("one")).access_token == "one"
    assert kept.get(key, lambda: exchange("two")).access_token == "one", "kept"
    other = exchange_key("alice-token", "billing-api", None, None)
    assert kept.get(other, lambda: exchange("three")).access_token == "three"
    refreshed = exchange_key("alice-refreshed-token", "orders-api", None, None)
    assert kept.get(refreshed, lambda: exchange("four")).access_token == "four"
    short = exchange_key("bob-token", "orders-api", None, None)
    assert kept.get(short, lambda: exchange("five", lives=20)).access_token == "five"
    until = kept._kept[short][0]
    assert time.time() + 9 < until <= time.time() + 10, "a 20 s token: kept half its life"
    timeless = exchange_key("carol-token", "orders-api", None, None)
    kept.get(timeless, lambda: exchange("seven", lives=None))
    assert kept.get(timeless, lambda: exchange("eight", lives=None)).access_token == "eight"
    assert made == ["one", "three", "four", "five", "seven", "eight"]
    assert "alice" not in repr(kept)
    assert b"alice" not in key[0], "the subject token is kept as its hash"


def test_the_bound_drops_the_least_recently_used() -> None:
    kept = ExchangedTokens(max_kept=2)
    keys = [exchange_key(f"t{i}", "api", None, None) for i in range(3)]
    for i, key in enumerate(keys):
        kept.get(key, lambda i=i: tokens(f"x{i}"))  # type: ignore[misc]
    assert len(kept) == 2
    assert kept.kept(keys[0]) is None
    assert kept.kept(keys[2]) is not None


def test_one_exchange_per_key_while_threads_wait_for_it() -> None:
    kept = ExchangedTokens()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> TokenSet:
        calls.append(1)
        started.set()
        release.wait(5)
        return tokens("shared")

    key = exchange_key("alice-token", "orders-api", None, None)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(kept.get(key, slow).access_token))
        for _ in range(8)
    ]
    threads[0].start()
    assert started.wait(5)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(5)
    assert results == ["shared"] * 8
    assert calls == [1]


def test_one_exchange_per_key_among_tasks() -> None:
    kept = ExchangedTokens()
    calls: list[int] = []

    async def slow() -> TokenSet:
        calls.append(1)
        await asyncio.sleep(0)  # yields to the other tasks, which must wait, not exchange
        return tokens("shared")

    async def main() -> list[str]:
        key = exchange_key("alice-token", "orders-api", None, None)
        found = await asyncio.gather(*(kept.get_async(key, slow) for _ in range(8)))
        return [t.access_token for t in found]

    assert asyncio.run(main()) == ["shared"] * 8
    assert calls == [1]


class Identityish:
    def __init__(self, token: str | None) -> None:
        self.access_token = token


def test_the_subject_is_a_token_an_identity_or_a_callable() -> None:
    assert subject_token("t") == "t"
    assert subject_token(Identityish("u")) == "u"
    assert subject_token(lambda: "v") == "v"
    with pytest.raises(ValueError, match="access token"):
        subject_token(Identityish(None))


def test_the_auth_sends_the_exchanged_token_and_exchanges_again_after_a_401() -> None:
    kept = ExchangedTokens()
    issued = iter(["first", "second"])

    def exchange(user_token: str) -> TokenSet:
        key = exchange_key(user_token, "orders-api", None, None)
        return kept.get(key, lambda: tokens(next(issued)))

    def forget(user_token: str, token: str) -> None:
        kept.drop(exchange_key(user_token, "orders-api", None, None), token)

    seen: list[str | None] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(401 if len(seen) == 1 else 200)

    auth = TokenExchangeAuth(
        Identityish("alice-token"), exchange, forget, allowed_origins=["https://orders.example"]
    )
    with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as http:
        assert http.get("https://orders.example/items").status_code == 200
        assert seen == ["Bearer first", "Bearer second"]
        http.get("https://elsewhere.example/")
    assert seen[-1] is None, "never sent to an origin not allowed"
    assert "alice" not in repr(auth)
