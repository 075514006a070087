"""The policy enforcer (issue 25): a signed-in request whose decision is remembered.

A session seen before is answered from its remembered decision; with a ``policy-enforcer``
block, the entry also asks the enforcer, which finds the path's resource (the configured path,
no look-up) and the UMA grant remembered for (token, resource, scopes; for the path cache's
lifespan, 30 s by default, which the run stays within). The row measures what
the middleware adds to the bare app for such a request against what Starlette's
``SessionMiddleware`` adds for reading its cookie (target ≤ 0.5), in the same rounds; a second,
informational row against the same request without an enforcer. The grant is asked once, before
the clock runs (the identity server is an in-process MockTransport that says yes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx

from adapter import OIDCMiddleware
from bench.measure import Row, median, timed
from bench.requests import (
    added_row,
    asgi_caller,
    bare_asgi,
    config,
    identity_server,
    session_cookie,
    session_middleware_caller,
)

TARGET = 0.5  # issue 25: a remembered decision vs SessionMiddleware's added cost
PATH = "/account/7"
BLOCK = {
    "paths": [
        {
            "path": "/account/*",
            "id": "res-2",
            "name": "Bank Account",
            "methods": [{"method": "GET", "scopes": ["view"]}],
        }
    ],
}


def enforcer_rows(number: int, rounds: int) -> list[Row]:
    made = identity_server()
    grants: list[str] = []

    def idp(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode()) if request.method == "POST" else {}
        if form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:uma-ticket"]:
            grants.append(form["permission"][0])
            return httpx.Response(200, json={"result": True})
        return made.idp(request)

    enforced = _middleware(idp, {"policy-enforcer": BLOCK})
    plain = _middleware(idp, {})
    ours = asgi_caller(enforced, PATH, headers=[(b"cookie", session_cookie(enforced).encode())])
    without = asgi_caller(plain, PATH, headers=[(b"cookie", session_cookie(plain).encode())])
    assert ours() == 200 == without(), "the session must be valid and the grant given"
    assert ours() == 200, "the second request: the remembered decision"
    assert grants == ["res-2#view"], "one grant, asked before the clock runs"
    theirs = session_middleware_caller(bare_asgi)
    bare = asgi_caller(bare_asgi, PATH)
    times = timed([ours, theirs, bare, without], number, rounds)
    assert grants == ["res-2#view"], "and never again"
    ours_times, theirs_times, bare_times, without_times = times
    return [
        added_row(
            "ASGI signed in, enforcer decision remembered: added vs SessionMiddleware's",
            ours_times,
            theirs_times,
            bare_times,
            TARGET,
        ),
        Row(
            "ASGI signed in, enforcer decision remembered vs no enforcer",
            median(ours_times),
            median(without_times),
        ),
    ]


def _middleware(idp: Any, settings: dict[str, Any]) -> OIDCMiddleware:
    transport = httpx.MockTransport(idp)
    return OIDCMiddleware(
        bare_asgi, config(**settings), http=httpx.AsyncClient(transport=transport)
    )
