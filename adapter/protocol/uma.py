"""Keycloak Authorization Services as flows: the UMA grant and the Protection API.

The policy enforcer asks the identity server two kinds of questions. *May this user do this?*
is the UMA grant on the token endpoint (``grant_type=urn:ietf:params:oauth:grant-type:
uma-ticket``, ``audience`` the resource server, ``permission=<resource>#<scope>``), answered
as a decision (``response_mode=decision``), the granted permissions (``permissions``) or an
RPT. *Which resource is this path?* is the Protection API (``<issuer>/authz/protection/
resource_set``, ``permission``), called with a PAT: the resource server's own
``client_credentials`` access token (:func:`adapter.protocol.flows.client_credentials`).

Each call is a flow (a generator yielding :class:`~adapter.protocol.flows.Send`), usable from
the library without the middleware, and driven by :func:`~adapter.protocol.flows.run` or
``run_async``. A denial (403 ``access_denied``) is an answer, not an error: ``False`` or no
permissions. Any other refusal is a :class:`~adapter.errors.TokenError` with the server's
words; the server's own failures a :class:`~adapter.errors.ProviderError` (the enforcer's
503, never a pass).

One thing to know about Keycloak's decisions: a grant counts as given when *any* requested
permission is granted (a partial grant carries only the granted scopes). To know that ALL of
several scopes are granted, ask for the permissions and compare, as :func:`uma_permissions`
callers do, or ask one scope at a time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from adapter.errors import ProviderError
from adapter.jose import strict_json
from adapter.protocol.flows import Flow, Send, json_object, oauth_result
from adapter.protocol.permissions import Granted as Granted  # re-exported: the UMA values
from adapter.protocol.permissions import Permission as Permission
from adapter.protocol.tokens import TokenSet

UMA_GRANT = "urn:ietf:params:oauth:grant-type:uma-ticket"
CLAIM_TOKEN_FORMAT = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


@dataclass(frozen=True)
class UmaConfiguration:
    """``<issuer>/.well-known/uma2-configuration``: where the questions go."""

    token_endpoint: str
    resource_registration_endpoint: str
    permission_endpoint: str
    policy_endpoint: str | None
    raw: Mapping[str, Any]


def uma2_configuration_url(issuer: str) -> str:
    """Keycloak publishes it beside the OpenID configuration."""
    return issuer.rstrip("/") + "/.well-known/uma2-configuration"


def uma_configuration(issuer: str) -> Flow[UmaConfiguration]:
    """Fetch the UMA discovery document; the endpoints the enforcer needs must be there."""
    request = httpx.Request(
        "GET", uma2_configuration_url(issuer), headers={"Accept": "application/json"}
    )
    document = json_object((yield Send(request)), "UMA configuration")
    found = {}
    for name in ("token_endpoint", "resource_registration_endpoint", "permission_endpoint"):
        value = document.get(name)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise ProviderError(f"UMA configuration: {name} is missing or not a URL")
        found[name] = value
    policy = document.get("policy_endpoint")
    return UmaConfiguration(
        **found, policy_endpoint=policy if isinstance(policy, str) else None, raw=document
    )


# --- the UMA grant ---------------------------------------------------------------------------


def uma_form(
    audience: str | None,
    permissions: Iterable[Permission] = (),
    *,
    response_mode: str | None = None,
    subject_token: str | None = None,
    ticket: str | None = None,
    rpt: str | None = None,
    claims: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[str, str]]:
    """The grant's form fields (``permission`` repeated); ``claims`` are pushed as Keycloak's
    enforcer pushes them: a base64url JSON ``claim_token`` of the JWT token-type format."""
    form = [("grant_type", UMA_GRANT)]
    if audience:
        form.append(("audience", audience))
    form += [("permission", permission.parameter()) for permission in permissions]
    optional = {"response_mode": response_mode, "subject_token": subject_token}
    optional |= {"ticket": ticket, "rpt": rpt}
    form += [(name, value) for name, value in optional.items() if value]
    if claims:
        encoded = json.dumps({k: list(v) for k, v in claims.items()}, separators=(",", ":"))
        token = base64.urlsafe_b64encode(encoded.encode()).rstrip(b"=").decode()
        form += [("claim_token", token), ("claim_token_format", CLAIM_TOKEN_FORMAT)]
    return form


def _grant(token_endpoint: str, form: list[tuple[str, str]], bearer: str | None) -> Send:
    """The grant's request: with the client's authentication, or (``bearer``) with the user's
    token as the only credential, as Keycloak's guide calls it from a public client."""
    headers = dict(_FORM)
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    request = httpx.Request("POST", token_endpoint, headers=headers, content=urlencode(form))
    return Send(request, authenticate=bearer is None)


def _document(response: httpx.Response) -> Any:
    """The response's JSON, or ``None`` for anything else (hostile input: strict_json)."""
    try:
        return strict_json(response.content)
    except (ValueError, RecursionError):
        return None


def _denied(response: httpx.Response) -> bool:
    """A 403 ``access_denied``: the server's no (Keycloak: "not_authorized")."""
    if response.status_code != 403:
        return False
    document = _document(response)
    return isinstance(document, dict) and document.get("error") == "access_denied"


def uma_decision(
    token_endpoint: str,
    audience: str,
    permissions: Iterable[Permission],
    *,
    subject_token: str | None = None,
    bearer: str | None = None,
    claims: Mapping[str, Sequence[str]] | None = None,
) -> Flow[bool]:
    """``response_mode=decision``: ``True`` when the server grants (any of) ``permissions``
    to the user of ``subject_token`` (client authenticated) or ``bearer``; ``False`` when it
    denies them."""
    form = uma_form(
        audience, permissions, response_mode="decision", subject_token=subject_token, claims=claims
    )
    response = yield _grant(token_endpoint, form, bearer)
    if _denied(response):
        return False
    result = oauth_result(response, "UMA decision").get("result")
    if not isinstance(result, bool):
        raise ProviderError("UMA decision: the answer has no boolean result")
    return result


def uma_permissions(
    token_endpoint: str,
    audience: str,
    permissions: Iterable[Permission] = (),
    *,
    subject_token: str | None = None,
    bearer: str | None = None,
    ticket: str | None = None,
    claims: Mapping[str, Sequence[str]] | None = None,
) -> Flow[tuple[Granted, ...]]:
    """``response_mode=permissions``: what the server grants of ``permissions`` (none asked:
    of every resource of ``audience``); empty when it denies them all."""
    form = uma_form(
        audience,
        permissions,
        response_mode="permissions",
        subject_token=subject_token,
        ticket=ticket,
        claims=claims,
    )
    response = yield _grant(token_endpoint, form, bearer)
    if _denied(response):
        return ()
    if response.status_code == 200:
        document = _document(response)
        if isinstance(document, list):
            return tuple(_granted(item) for item in document)
    oauth_result(response, "UMA permissions")  # raises the server's refusal
    raise ProviderError("UMA permissions: the answer is not a list of permissions")


def _granted(item: object) -> Granted:
    if not isinstance(item, dict) or not isinstance(item.get("rsid"), str):
        raise ProviderError("UMA permissions: a permission without a resource id (rsid)")
    scopes = item.get("scopes") or []
    name = item.get("rsname")
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        raise ProviderError("UMA permissions: a permission's scopes are not a list of names")
    return Granted(item["rsid"], name if isinstance(name, str) else None, tuple(scopes))


def uma_rpt(
    token_endpoint: str,
    audience: str | None,
    permissions: Iterable[Permission] = (),
    *,
    subject_token: str | None = None,
    bearer: str | None = None,
    ticket: str | None = None,
    rpt: str | None = None,
    claims: Mapping[str, Sequence[str]] | None = None,
) -> Flow[TokenSet | None]:
    """The default answer, an RPT (its ``authorization.permissions`` claim lists the grants);
    ``None`` when the server denies everything asked. ``ticket``: the permission ticket of a
    UMA challenge instead of ``permissions``; ``rpt``: a previous RPT to extend."""
    form = uma_form(
        audience, permissions, subject_token=subject_token, ticket=ticket, rpt=rpt, claims=claims
    )
    response = yield _grant(token_endpoint, form, bearer)
    if _denied(response):
        return None
    return TokenSet.from_response(oauth_result(response, "UMA grant"))


# --- the Protection API ----------------------------------------------------------------------


def _protected(method: str, url: str, pat: str, **kwargs: Any) -> Send:
    headers = {"Authorization": f"Bearer {pat}", "Accept": "application/json"}
    return Send(httpx.Request(method, url, headers=headers, **kwargs))


def _json_list(response: httpx.Response, what: str) -> list[Any]:
    if response.status_code != 200:
        oauth_result(response, what)  # the server's refusal, in its words
        raise ProviderError(f"{what}: the server answered HTTP {response.status_code}")
    document = _document(response)
    if not isinstance(document, list):
        raise ProviderError(f"{what}: the answer is not a JSON list")
    return document


def find_resources(
    resource_set_endpoint: str,
    pat: str,
    *,
    uri: str | None = None,
    matching_uri: bool = False,
    name: str | None = None,
    exact_name: bool = False,
    deep: bool = False,
) -> Flow[tuple[Any, ...]]:
    """``GET resource_set`` with Keycloak's filters: the ids of the resources found, or with
    ``deep`` their representations. ``uri`` with ``matching_uri``: the one resource whose URI
    pattern matches the path best (Keycloak's lazy path loading)."""
    query: dict[str, str] = {}
    if uri is not None:
        query["uri"] = uri
        if matching_uri:
            query["matchingUri"] = "true"
    if name is not None:
        query["name"] = name
        if exact_name:
            query["exactName"] = "true"
    if deep:
        query["deep"] = "true"
    response = yield _protected("GET", resource_set_endpoint, pat, params=query)
    return tuple(_json_list(response, "Protection API resource_set"))


def get_resource(
    resource_set_endpoint: str, pat: str, resource_id: str
) -> Flow[dict[str, Any] | None]:
    """``GET resource_set/<id>``: the representation (name, uris, resource_scopes, type), or
    ``None`` for an unknown id."""
    url = f"{resource_set_endpoint.rstrip('/')}/{quote(resource_id, safe='')}"
    response = yield _protected("GET", url, pat)
    if response.status_code == 404:
        return None
    return json_object(response, "Protection API resource_set")


def permission_ticket(
    permission_endpoint: str,
    pat: str,
    requested: Iterable[tuple[str, Sequence[str]]],
    claims: Mapping[str, Sequence[str]] | None = None,
) -> Flow[str]:
    """``POST permission``: a ticket for ``(resource id, scopes)`` pairs, for the UMA
    challenge of a denied request (``401 WWW-Authenticate: UMA ... ticket=...``)."""
    body = [
        {"resource_id": resource, "resource_scopes": list(scopes)}
        | ({"claims": {k: list(v) for k, v in claims.items()}} if claims else {})
        for resource, scopes in requested
    ]
    response = yield _protected("POST", permission_endpoint, pat, json=body)
    if response.status_code not in (200, 201):
        oauth_result(response, "Protection API permission")
        raise ProviderError(f"Protection API permission: HTTP {response.status_code}")
    document = _document(response)
    ticket = document.get("ticket") if isinstance(document, dict) else None
    if not isinstance(ticket, str) or not ticket:
        raise ProviderError("Protection API permission: the answer has no ticket")
    return ticket
