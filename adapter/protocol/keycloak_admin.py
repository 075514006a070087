"""Keycloak's admin REST call that makes a realm forget the client keys it has cached.

Keycloak caches the keys it fetched from a client's JWKS URL and keeps accepting assertions
signed by any of them until the cache is cleared ("If you think that private key of your client
was compromised, ... it's also good to clear the keys cache"). ``POST
{auth-server-url}/admin/realms/{realm}/clear-keys-cache`` does it; the caller's token needs the
realm-management client's ``manage-realm`` role. Written as a flow like every other exchange
with the server (:mod:`adapter.protocol.flows`), so the command drives it with the client's own
connection (CA set, proxy, back-channel URL).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from adapter.errors import ProviderError
from adapter.protocol.flows import Flow, Send

_REALM_URL = re.compile(r"^(?P<base>https?://[^?#]+?)/realms/(?P<realm>[^/?#]+)/?$")
MANAGE_REALM_FIX = (
    "the token needs the role manage-realm of the client realm-management (Keycloak admin "
    "console: Clients > {client} > Service account roles > Assign role), or pass an admin's "
    "token with --admin-token-env"
)


def clear_keys_cache_url(issuer: str) -> str | None:
    """The admin URL for a Keycloak realm's issuer (``.../realms/NAME``), else ``None``: only
    Keycloak's issuers have that shape, and only Keycloak has this call."""
    match = _REALM_URL.match(issuer)
    if match is None:
        return None
    realm = quote(match["realm"], safe="")
    return f"{match['base']}/admin/realms/{realm}/clear-keys-cache"


def clear_keys_cache(url: str, token: str, client_id: str) -> Flow[int]:
    """POST the clear-keys-cache call with ``token`` (bearer); the status on success (204).

    Refusals become :class:`ProviderError` with one line that says what to fix: the role for a
    403, the token for a 401, the status for anything else.
    """
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    response = yield Send(httpx.Request("POST", url, headers=headers))
    status = response.status_code
    if status in (200, 204):
        return status
    if status == 403:
        raise ProviderError(
            f"the identity server refused to clear its key cache (403 Forbidden at {url}): "
            + MANAGE_REALM_FIX.format(client=client_id)
        )
    if status == 401:
        raise ProviderError(
            f"the identity server did not accept the token for its admin API (401 at {url}); "
            "the token must come from the same realm (or its master realm for an admin)"
        )
    if status == 404:
        raise ProviderError(
            f"no clear-keys-cache call at {url} (404): is this a Keycloak realm? Clear the "
            "server's cache of this client's keys by hand"
        )
    raise ProviderError(f"the identity server answered HTTP {status} to clear-keys-cache ({url})")
