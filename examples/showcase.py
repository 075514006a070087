"""What the example apps show a person trying them: claims made readable, two downstream calls.

Shared by the Starlette and Flask examples so both pages say the same thing; nothing here is
needed to use the adapter.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

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
