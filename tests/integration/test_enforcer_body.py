"""The request body the policy enforcer's claims read (``{request.body['/amount']}``), in both
shells, against the real test identity server (its UMA stand-in logs the claims each grant
pushed, decoded): the shell reads the body (at most ``MAX_BODY_BYTES``) only on a path whose
claims read it, and the app gets the very same bytes afterwards.

Each request goes through a test-side wrapper that plays the server's part: it counts the
shell's reads of the body (WSGI: a ``wsgi.input`` that records its reads; ASGI: a ``receive``
that counts its calls) and can frame the body as a server does for a chunked request (WSGI: no
``CONTENT_LENGTH``, ``wsgi.input_terminated``; ASGI: no ``content-length``, several
``http.request`` messages)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from adapter import OIDCMiddleware, OIDCWSGIMiddleware
from adapter.asgi import MAX_BODY_BYTES
from adapter.wsgi import MAX_BODY_BYTES as WSGI_MAX_BODY_BYTES
from tests.app_server import answer_lifespan
from tests.idp_server import IdentityServer
from tests.integration.test_policy_enforcer import bank_server, keycloak_json, user_token
from tests.web_client import APP

AUTHORIZATION = {
    "resources": [
        {"name": "Payments", "uris": ["/pay/*"], "scopes": ["pay"]},
        {"name": "Uploads", "uris": ["/upload/*"], "scopes": ["put"]},
    ],
    "grants": {"alice": ["Payments", "Uploads"]},
}
ENFORCER: dict[str, Any] = {
    "enforcement-mode": "ENFORCING",
    "paths": [
        {
            "path": "/pay/*",
            "methods": [{"method": "POST", "scopes": ["pay"]}],
            "claim-information-point": {"claims": {"amount": "{request.body['/amount']}"}},
        },
        {"path": "/upload/*", "methods": [{"method": "POST", "scopes": ["put"]}]},
    ],
}
GRANT = '"event":"uma.grant"'
CHUNK = 64 * 1024  # the chunked framing's piece (ASGI messages)
SOCKET_READ = 8192  # the most one read of the recording wsgi.input gives (a socket's short read)


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    with bank_server(tmp_path_factory.mktemp("enforcer-body"), AUTHORIZATION) as server:
        yield server


@pytest.fixture(scope="module")
def alice(idp: IdentityServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(idp, 'alice')}"}


def test_both_shells_read_the_same_bound() -> None:
    assert MAX_BODY_BYTES == WSGI_MAX_BODY_BYTES == 1 << 20


# -- the apps: echo the body, tell what the shell had read before them ---------------------------


class RecordingInput:
    """A server's ``wsgi.input``: gives at most SOCKET_READ bytes a read, counts the reads."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        if size is None or size < 0:
            return self._stream.read()
        return self._stream.read(min(size, SOCKET_READ))

    def readline(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return self._stream.readline(size)


def echo_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    recorder: RecordingInput = environ["test.input"]
    read_before = recorder.reads
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    body = b""
    if length:  # as werkzeug reads it: until the length, whatever each read gives
        while len(body) < int(length) and (chunk := stream.read(int(length) - len(body))):
            body += chunk
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    start_response(
        "200 OK",
        [
            ("X-Read-Before-App", str(read_before)),
            ("X-Same-Input", str(stream is recorder)),
            ("X-Content-Length", str(length)),
        ],
    )
    return [body]


def wsgi_framing(app: Any, framing: str) -> Any:
    """The server's side: a recording ``wsgi.input`` and the body framed as ``framing`` says
    (``length``: CONTENT_LENGTH; ``chunked``: none, input terminated; ``unannounced``: none,
    not terminated, as a server that passes a chunked body on without saying so)."""

    def server(environ: dict[str, Any], start_response: Any) -> Any:
        recorder = RecordingInput(environ["wsgi.input"].read())
        environ["wsgi.input"] = environ["test.input"] = recorder
        if framing != "length":
            environ.pop("CONTENT_LENGTH", None)
            environ["wsgi.input_terminated"] = framing == "chunked"
        return app(environ, start_response)

    return server


async def echo_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    received: list[int] = scope["test.received"]
    read_before = received[0]
    body, messages, more = b"", 0, True
    while more:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message.get("body", b"")
        messages += 1
        more = message.get("more_body", False)
    headers = [
        (b"x-read-before-app", str(read_before).encode()),
        (b"x-messages", str(messages).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def asgi_framing(app: Any, framing: str) -> Any:
    """The server's side: a ``receive`` that counts its calls, the body in one message
    (``length``) or in CHUNK pieces without ``content-length`` (``chunked``)."""

    async def server(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        pending: list[dict[str, Any]] = []
        if framing == "chunked":
            scope = {**scope, "headers": [h for h in scope["headers"] if h[0] != b"content-length"]}
            body = (await receive()).get("body", b"")
            parts = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
            pending = [
                {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
                for i, part in enumerate(parts)
            ]
        received = [0]

        async def counted() -> dict[str, Any]:
            received[0] += 1
            return pending.pop(0) if pending else await receive()

        scope["test.received"] = received
        await app(scope, counted, send)

    return server


@pytest.fixture
def make_client(
    idp: IdentityServer, tmp_path: Path
) -> Iterator[Callable[[str, str], httpx.Client]]:
    with ExitStack() as stack:
        made = 0

        def make(shell: str, framing: str = "length") -> httpx.Client:
            nonlocal made
            made += 1
            directory = tmp_path / f"app{made}"
            directory.mkdir()
            path = keycloak_json(directory, idp, ENFORCER)
            if shell == "asgi":
                middleware = OIDCMiddleware(echo_asgi, path)
                app = asgi_framing(middleware, framing)
                client: httpx.Client = stack.enter_context(TestClient(app, base_url=APP))
                return client
            wsgi = OIDCWSGIMiddleware(echo_wsgi, path)
            stack.callback(wsgi.close)
            transport = httpx.WSGITransport(app=wsgi_framing(wsgi, framing))
            return stack.enter_context(httpx.Client(transport=transport, base_url=APP))

        yield make


def padded(size: int) -> bytes:
    """A JSON body with amount 42 of exactly ``size`` bytes."""
    head = b'{"amount": 42, "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


JSON = {"Content-Type": "application/json"}


Post = Callable[[str, str, str, bytes], tuple[httpx.Response, list[dict[str, Any]]]]


@pytest.fixture
def post_json(
    idp: IdentityServer,
    make_client: Callable[[str, str], httpx.Client],
    alice: dict[str, str],
) -> Post:
    """``post_json(shell, framing, path, body)``: ``body`` POSTed as JSON with alice's token to
    ``path`` of a new app in ``shell`` (the body framed as ``framing``); the answer, and the UMA
    grants the server logged since just before it (decoded: claims, outcome)."""

    def post(
        shell: str, framing: str, path: str, body: bytes
    ) -> tuple[httpx.Response, list[dict[str, Any]]]:
        http = make_client(shell, framing)
        before = idp.settled_logs().count(GRANT)
        answer = http.post(path, content=body, headers={**alice, **JSON})
        lines = [line for line in idp.settled_logs().splitlines() if GRANT in line]
        return answer, [json.loads(line[line.index("{") :]) for line in lines[before:]]

    return post


# -- a path whose claims read the body -----------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_the_body_claim_reaches_the_grant_and_the_app_gets_the_same_body(
    post_json: Post, shell: str, framing: str
) -> None:
    body = b'{"amount": 42, "note": "\xc3\xa9t\xc3\xa9"}'
    answer, grants = post_json(shell, framing, "/pay/1", body)
    assert answer.status_code == 200, answer.text
    assert answer.content == body, "the app read the very same bytes"
    assert int(answer.headers["x-read-before-app"]) > 0, "the shell read it first"
    if shell == "wsgi" and framing == "chunked":
        assert answer.headers["x-content-length"] == str(len(body)), "the length now known"
    assert len(grants) == 1
    assert grants[0]["claims"] == {"amount": ["42"]}
    assert grants[0]["outcome"] == "granted"


@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_a_body_in_many_pieces_reaches_the_app_as_it_came(post_json: Post, shell: str) -> None:
    """Just within the bound, in pieces (ASGI: 16 messages; WSGI: short reads): all of it is
    read, pushed, and given back."""
    body = padded(MAX_BODY_BYTES)
    answer, grants = post_json(shell, "chunked", "/pay/2", body)
    assert answer.status_code == 200, answer.text
    assert answer.content == body
    if shell == "asgi":
        assert answer.headers["x-messages"] == str(MAX_BODY_BYTES // CHUNK), "replayed as sent"
    assert grants[0]["claims"] == {"amount": ["42"]}


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_a_body_over_the_bound_gives_no_claim_and_the_app_gets_all_of_it(
    post_json: Post, shell: str, framing: str
) -> None:
    """Past MAX_BODY_BYTES the claims cannot be read: 413, and no grant is asked (asked without
    ``amount``, the server could grant what the policy would deny with it). A length announced
    too large is not read at all; a chunked body is read just past the bound."""
    body = padded(MAX_BODY_BYTES + 1)
    answer, grants = post_json(shell, framing, "/pay/3", body)
    assert answer.status_code == 413, answer.text
    assert grants == [], "nothing asked"


def test_wsgi_a_body_nobody_announced_is_not_waited_for(post_json: Post) -> None:
    """No CONTENT_LENGTH and no ``wsgi.input_terminated``: PEP 3333 says no body; the shell
    reads nothing (never blocks on a stream that will not end) and the claim has no value."""
    answer, grants = post_json("wsgi", "unannounced", "/pay/4", b'{"amount": 42}')
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-read-before-app"] == "0"
    assert answer.headers["x-same-input"] == "True"
    assert "amount" not in (grants[0].get("claims") or {})


# -- a path whose claims do not read the body ----------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_a_path_without_body_claims_is_not_read(post_json: Post, shell: str, framing: str) -> None:
    """The enforcer decides (a grant is asked) without the body: the app streams it itself,
    from the server's own input."""
    body = padded(300_000)
    answer, grants = post_json(shell, framing, "/upload/1", body)
    assert answer.status_code == 200, answer.text
    assert answer.content == body
    assert answer.headers["x-read-before-app"] == "0", "the shell read none of it"
    if shell == "wsgi":
        assert answer.headers["x-same-input"] == "True", "the server's own wsgi.input"
    assert len(grants) == 1, "the full path decided"
