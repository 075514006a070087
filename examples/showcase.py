"""What the example apps show a person trying them: a profile with readable claims, two
downstream calls.

Shared by the Starlette, Flask and FastAPI examples so their pages say the same thing; nothing
here is needed to use the adapter.
"""

from __future__ import annotations

import html
import json
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from adapter import Identity
from adapter.protocol.dpop_auth import DPoPProofs

# Claims that are seconds since the epoch (RFC 7519 §4.1, OpenID Connect Core §2 and §5.1).
TIME_CLAIMS = frozenset({"exp", "iat", "nbf", "auth_time", "updated_at"})
# The nonce only binds the ID token to this login: it means nothing to a reader.
HIDDEN_CLAIMS = frozenset({"nonce"})


def readable_claims(claims: Mapping[str, Any]) -> str:
    """An HTML table of the claims: times as UTC dates (the number kept), the nonce left out."""
    rows = []
    for name in sorted(claims):
        if name in HIDDEN_CLAIMS:
            continue
        value = claims[name]
        if name in TIME_CLAIMS and isinstance(value, int | float):
            moment = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            shown = f"{moment} ({value})"
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value, sort_keys=True)
        rows.append(
            f"<tr id='claim-{html.escape(name)}'><th>{html.escape(name)}</th>"
            f"<td>{html.escape(shown)}</td></tr>"
        )
    return "<table id='claims'>" + "".join(rows) + "</table>"


def profile_page(user: Identity, root: str, *, downstream: bool = True) -> str:
    """The body of the profile page: name, roles, claims, a link downstream, a logout button.

    ``root`` is the prefix the app is mounted under (links keep it); the logout form carries
    the CSRF token the middleware checks.
    """
    roles = html.escape(", ".join(sorted(user.roles)) or "none")
    link = f"<p><a href='{root}/downstream'>Call the downstream API</a></p>" if downstream else ""
    return (
        f"<p id='name'>{html.escape(user.display_name)}</p>"
        f"<p>Roles: <span id='roles'>{roles}</span></p>"
        + readable_claims(user.claims)
        + link
        + f"<form method='post' action='{root}/oidc/logout'>"
        f"<input type='hidden' name='csrf' value='{html.escape(user.csrf_token or '')}'>"
        "<button id='logout' type='submit'>Log out</button></form>"
    )


def downstream_page(as_user: str, as_service: str, back: str) -> str:
    """The body of the downstream page: the same API called twice, each call labelled."""
    return (
        "<h2>With your own access token</h2>"
        "<p>The app forwards the token the identity server issued to you at sign-in: the API "
        "sees you.</p>"
        f"<pre id='as-user'>{html.escape(as_user)}</pre>"
        "<h2>With the app's service-account token</h2>"
        "<p>The app asks for its own token (client_credentials, authenticated with its "
        "private key): the API sees the app, whoever is signed in.</p>"
        f"<pre id='as-service'>{html.escape(as_service)}</pre>"
        f"<p><a href='{back}'>Back</a></p>"
    )


def user_token(identity: Identity) -> httpx.Auth:
    """The signed-in user's access token for a downstream call: ``Bearer``, or, when the
    session's tokens are DPoP-bound (``dpop-tokens``, the FAPI profile), ``DPoP`` with a
    fresh proof of the session's key."""
    assert identity.access_token is not None
    if identity.dpop_key is not None:
        return DPoPProofs(identity.dpop_key, access_token=identity.access_token)
    return _Bearer(identity.access_token)


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
