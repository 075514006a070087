"""The policy enforcer: Keycloak Authorization Services decide who may do what, per path.

A keycloak.json from a Java application may carry a ``policy-enforcer`` block; this module
enforces it as Keycloak's enforcer (``PolicyEnforcer``, ``KeycloakAdapterPolicyEnforcer``)
does, after the adapter has authenticated the request and after the ``[[access]]`` rules:

1. the request path is matched to a resource (:mod:`adapter.web._enforcer_resources`); none
   under ``ENFORCING`` is denied, under ``PERMISSIVE`` passes; a ``DISABLED`` path (or mode)
   passes, and so does a method whose ``scopes-enforcement-mode`` is ``DISABLED``;
2. the scopes the method needs (:mod:`adapter.web._enforcer_permissions`) are looked for in
   the token's own ``authorization.permissions`` (an RPT): covered, it passes without a call;
3. otherwise the UMA grant asks the server for ``<resource id>#<scopes>`` with the caller's
   token (a bearer token as ``subject_token``, the client authenticated; a session's access
   token as the grant's bearer credential, as Keycloak's adapters did), the claim information
   point's claims pushed as ``claim_token``. ``enforcer-grant = "decision"`` asks yes or no;
   ``"permissions"`` asks for the granted scopes (``identity.permissions``). Keycloak answers
   a decision "yes" when *any* asked scope is granted, so a method that needs ALL of several
   scopes is always asked for the permissions and compared here;
4. denied: a browser session gets ``on-deny-redirect-to`` or the 403 page; a bearer request a
   403 (RFC 6750 ``insufficient_scope``) or, with ``user-managed-access``, a permission ticket
   from the Protection API in ``401 WWW-Authenticate: UMA realm=..., as_uri=..., ticket=...``
   (Keycloak asks no grant then: the client takes the ticket to the server itself).

Grants are remembered per (token, resource, scopes, pushed claims) until the token expires or
the path cache's lifespan passes, whichever is first, in a cache bounded in bytes; one grant per
key is in flight at a time. The identity server down (or answering nonsense) is a 503: an
enforcer never lets a request pass because it could not ask.

Where this differs from Keycloak, on purpose: a session asks per resource, as a bearer request
does (Keycloak's servlet adapter fetched one RPT with all of the user's permissions); a
``PERMISSIVE`` path passes without asking (Keycloak asks, and lets it pass when nothing grants
or denies it); a denied bearer request is never redirected (an API client cannot follow
``on-deny-redirect-to``); ``public-paths`` and the adapter's own routes are not enforced.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from adapter.config import AdapterConfig
from adapter.config.model import issuer_realm
from adapter.config.policy_enforcer import PolicyEnforcerConfig
from adapter.errors import ProviderError, TokenError
from adapter.protocol import uma
from adapter.protocol.flows import Flow
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import unverified_claims
from adapter.web._access import Refusal, forbidden_response
from adapter.web._enforcer_claims import (
    ClaimSources,
    body_unreadable,
    claim_sources,
    request_claims,
)
from adapter.web._enforcer_paths import normalize
from adapter.web._enforcer_permissions import (
    RequiredScopes,
    has_claims,
    is_unchecked,
    permissions_cover,
    required_scopes,
    rpt_permissions,
    scopes_satisfied,
)
from adapter.web._enforcer_resources import Resources, Target, Unknown
from adapter.web._http import digest, json_error, redirect, text, wants_json
from adapter.web._steps import (
    Identity,
    NeedIntrospection,
    NeedMetadata,
    Proceed,
    Respond,
    Step,
    WebRequest,
)

log = logging.getLogger(__name__)
MAX_GRANT_BYTES = 8 * 1024 * 1024  # the remembered grants, estimated
GRANT_OVERHEAD = 250  # bytes per remembered grant beyond its key and permissions
MAX_PLANS = 10_000  # the shortcut's plans (token, path, method), dropped together when full
MAX_PLAN_BYTES = 8 * 1024 * 1024  # and their keys' bytes (the token, the path), estimated
MAX_PLAN_PATH = 512  # a longer path is decided on the full path every time
PLAN_OVERHEAD = 300  # bytes per plan beyond its key's strings

Enforcing = Generator[Step, Any, "Identity | Respond"]


@dataclass(frozen=True)
class Grant:
    """What the server said to one UMA grant: granted or not, and what it granted (with
    ``enforcer-grant = "permissions"``, or when ALL of several scopes were needed)."""

    granted: bool
    permissions: tuple[uma.Granted, ...] = ()


@dataclass(frozen=True)
class _Verdict:
    """The enforcer's answer before it becomes a response: pass (with the permissions known),
    or deny (what was missing; whether the server should issue a ticket)."""

    allowed: bool
    permissions: tuple[uma.Granted, ...] = ()
    target: Target | None = None
    required: RequiredScopes | None = None
    # The claims pushed for it (a denied bearer's UMA ticket carries them): request values,
    # never shown.
    claims: Mapping[str, list[str]] = field(default_factory=dict, repr=False)


_PASS = _Verdict(True)


class PolicyEnforcer:
    """One configuration's enforcer: its paths, path cache, PAT and remembered grants."""

    def __init__(self, config: AdapterConfig, block: PolicyEnforcerConfig) -> None:
        self.block = block
        self.resources = Resources(block, config.issuer, config.client_id)
        self.audience = config.client_id
        self.issuer = config.issuer
        self.realm = realm_name(config)
        self.ask_permissions = config.web.enforcer_grant == "permissions"
        self.grants = Grants(MAX_GRANT_BYTES)
        self.lifespan = block.cache.lifespan / 1000
        self.deny_path = block.on_deny_redirect_to
        deny = self.deny_path or ""
        self._deny_page = urlsplit(deny).path if deny.startswith("/") else None
        self.logout_path = config.web.logout_path  # the 403 page's "sign in as someone else"
        self._scope = f"{config.issuer}\0{config.client_id}"
        self._plans = _Plans()  # the shortcut's, per (token, path, method)

        top = block.claim_information_point
        self._body_everywhere = top is not None and top.needs_body
        self._body_somewhere = self._body_everywhere or any(
            p.claim_information_point is not None and p.claim_information_point.needs_body
            for p in block.paths
        )

    def wants_body(self, path: str) -> bool:
        """Whether a claim for this path reads the request's body (``{request.body...}``):
        the shells then read it (bounded) before the enforcer decides, and hand the app the
        same bytes."""
        if not self._body_somewhere:
            return False
        if self._body_everywhere:
            return True
        entry = self.resources.configured(path)
        point = entry.claim_information_point if entry is not None else None
        return point is not None and point.needs_body

    # -- the full path ----------------------------------------------------------------------

    def enforce(self, request: WebRequest, identity: Identity, *, bearer: bool) -> Enforcing:
        """``identity`` (with the permissions known) when the block lets the request pass,
        else the answer to send: denied (403, redirect, UMA ticket) or 503."""
        if self._is_deny_path(request.path):
            return identity
        sources = claim_sources(request, identity, bearer=bearer)  # the body parsed once
        refused = _unusable(sources, self.wants_body(request.path))
        if refused is not None:
            return refused
        try:
            target = yield from self.resources.target(request.path)
            verdict = yield from self._verdict(sources, identity, target, bearer=bearer)
            if verdict.allowed:
                return _with_permissions(identity, verdict.permissions)
            return (yield from self._denied(request, identity, verdict, bearer=bearer))
        except (ProviderError, TokenError) as exc:
            log.warning("policy-enforcer: the identity server could not decide: %s", exc)
            return unavailable(request)

    def _verdict(
        self, sources: ClaimSources, identity: Identity, target: Target | None, *, bearer: bool
    ) -> Generator[Step, Any, _Verdict]:
        claims: dict[str, list[str]] = {}
        if target is not None:
            claims = request_claims(self.block, target.path, sources)
        settled = self._settled(target, sources.request.method, identity, claims)
        if settled is not None:
            return settled
        assert target is not None  # _settled decides every request without one
        method = sources.request.method
        required = required_scopes(target.path, method, self.block.http_method_as_scope)
        if target.resource is None or self.block.user_managed_access:
            return _Verdict(False, target=target, required=required, claims=claims)
        if not identity.access_token:  # nothing to ask the grant with (and nothing to key by)
            log.info("policy-enforcer: the identity has no access token to ask the grant with")
            return _Verdict(False, target=target, required=required)
        grant = yield from self._grant(identity, target, required, claims, bearer=bearer)
        return _Verdict(grant.granted, grant.permissions, target, required)

    def _settled(
        self,
        target: Target | None,
        method: str,
        identity: Identity,
        claims: Mapping[str, list[str]] | None = None,
    ) -> _Verdict | None:
        """The verdict that needs no grant (the shortcut's too, which knows no ``claims``: an
        RPT permission granted for certain claims is left to the full path), else ``None``."""
        if target is None:
            if self.block.enforcement_mode == "PERMISSIVE":
                return _PASS
            log.info("policy-enforcer: no resource for this path: denied (ENFORCING)")
            return _Verdict(False)
        path = target.path
        if path.enforcement_mode in ("DISABLED", "PERMISSIVE"):
            return _PASS
        required = required_scopes(path, method, self.block.http_method_as_scope)
        if is_unchecked(required):
            return _PASS
        held = rpt_permissions(identity.claims)
        if not held:
            return None
        if permissions_cover(held, path, required, target.parent_id, claims):
            return _Verdict(True, tuple(_granted(item) for item in held))
        return None

    def _grant(
        self,
        identity: Identity,
        target: Target,
        required: RequiredScopes,
        claims: Mapping[str, list[str]],
        *,
        bearer: bool,
    ) -> Generator[Step, Any, Grant]:
        """The UMA grant's answer for this token, resource and scopes: remembered, or asked."""
        token = identity.access_token or ""
        key = self._key(token, target, required, claims)
        remembered = self.grants.get(key)
        if remembered is not None:
            return remembered
        asked = uma.Permission(target.resource, required.scopes)
        whole = self.ask_permissions or (required.mode == "ALL" and len(required.scopes) > 1)
        granted, permissions = yield from self._ask(key, token, asked, claims, whole, bearer)
        if whole:  # compared here: Keycloak says yes to any one granted scope
            granted = permissions_cover(
                [{"rsid": p.rsid, "scopes": list(p.scopes)} for p in permissions],
                target.path,
                required,
                target.parent_id,
            )
        grant = Grant(granted, permissions)
        self._remember(key, token, identity, grant, bearer=bearer)
        return grant

    def _ask(
        self,
        key: str,
        token: str,
        asked: uma.Permission,
        claims: Mapping[str, list[str]],
        whole: bool,
        bearer: bool,
    ) -> Generator[Step, Any, tuple[bool, tuple[uma.Granted, ...]]]:
        """The UMA grant for ``asked`` with ``token`` (as the subject token of a bearer
        request, else as the grant's bearer), one in flight per ``key``: the server's decision,
        or with ``whole`` the permissions it grants (which the caller compares)."""
        metadata: ProviderMetadata = yield NeedMetadata()
        endpoint = metadata.endpoint("token_endpoint")
        credentials = {"subject_token": token} if bearer else {"bearer": token}
        flow = (_permissions_flow if whole else _decision_flow)(
            endpoint, self.audience, asked, claims or None, credentials
        )
        answer = yield NeedIntrospection(f"uma-grant\0{self._scope}\0{key}", flow)
        return answer["granted"], tuple(answer["permissions"])

    def _key(
        self,
        token: str,
        target: Target,
        required: RequiredScopes,
        claims: Mapping[str, list[str]],
    ) -> str:
        # The claims as compact JSON (control characters escaped: no NUL inside), hashed with
        # the rest below.
        pushed = json.dumps(claims, sort_keys=True, separators=(",", ":")) if claims else ""
        scopes = ",".join(required.scopes)
        # One fixed-size digest of it all: the grants' memory never holds a token's bytes.
        return digest(f"{target.resource}#{scopes}\0{required.mode}\0{pushed}\0{token}")

    def _remember(
        self, key: str, token: str, identity: Identity, grant: Grant, *, bearer: bool
    ) -> None:
        """Until the token expires or the path cache's lifespan passes. A session's identity
        holds the ID token's claims: the access token's own ``exp`` counts (a JWT's, as the
        server sent it to this client; an opaque one: the lifespan alone)."""
        now = time.time()
        deadline = now + self.lifespan
        claims = identity.claims if bearer else (unverified_claims(token) or {})
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            deadline = min(deadline, float(exp))
        if deadline > now:
            size = len(key) + 120 * len(grant.permissions)
            self.grants.put(key, grant, deadline, size)

    # -- denied -----------------------------------------------------------------------------

    def _denied(
        self, request: WebRequest, identity: Identity, verdict: _Verdict, *, bearer: bool
    ) -> Generator[Step, Any, Respond]:
        target, required = verdict.target, verdict.required
        needed = _needed(target, required)
        log.info("policy-enforcer: denied %s %s (%s)", request.method, request.path, needed)
        if bearer:
            if self.block.user_managed_access and target is not None and target.resource:
                scopes = required.scopes if required is not None else ()
                ticket = yield from self.resources.ticket(target.resource, scopes, verdict.claims)
                return _uma_challenge(self.realm, self.issuer, ticket)
            refused = Refusal("permission", (needed,))
            return forbidden_response(request, identity, refused, self.logout_path)
        if self.deny_path is not None and _navigation(request):
            location = self.deny_path
            if location.startswith("/"):
                location = request.root_path + location
            return redirect(location, [])
        refused = Refusal("permission", (needed,))
        return forbidden_response(request, identity, refused, self.logout_path)

    def _is_deny_path(self, path: str) -> bool:
        """Keycloak lets ``on-deny-redirect-to`` itself through (its isDefaultAccessDeniedUri):
        its path, whatever query it carries."""
        return path == self._deny_page

    # -- checks in code ---------------------------------------------------------------------

    def check(
        self, identity: Identity, permission: uma.Permission, *, bearer: bool | None = None
    ) -> Generator[Step, Any, bool]:
        """Whether the server grants ``permission`` (a resource by name or id, and scopes:
        ALL of them) to ``identity``: ``require(permission="Bank Account#view")`` in the
        framework integrations. The token's own RPT permissions first, then the UMA grant,
        remembered as the enforcer's grants are; the server down raises ``ProviderError``.
        No claims are pushed (no path is asked about): an RPT permission granted for certain
        claims does not count. ``bearer``: how the identity came (default: a session's
        identity carries a CSRF token, a bearer token's never)."""
        if bearer is None:
            bearer = identity.csrf_token is None
        if _rpt_grants(identity.claims, permission):
            return True
        token = identity.access_token
        if not token:
            return False
        resource = permission.resource or ""
        scopes = ",".join(permission.scopes)
        key = digest(f"check:{resource}#{scopes}\0{token}")
        remembered = self.grants.get(key)
        if remembered is None:
            _, permissions = yield from self._ask(key, token, permission, {}, True, bearer)
            granted = any(_covers(p.rsid, p.rsname, p.scopes, permission) for p in permissions)
            remembered = Grant(granted, permissions)
            self._remember(key, token, identity, remembered, bearer=bearer)
        return remembered.granted

    # -- the shortcut -----------------------------------------------------------------------

    def remembered(self, outcome: Proceed, path: str, method: str) -> Proceed | None:
        """A remembered outcome (a session or bearer token seen before) for this request, when
        the enforcer's verdict on it is known without a call: passes as it was (or with the
        permissions known), else ``None`` (the full path decides, and denies).

        Measured hot path: what a (token, path, method) needs is worked out once and kept
        (:class:`_Plan`, where it cannot change: a configured path with its resource id
        known); each request then costs a dictionary look-up and the remembered grant's."""
        identity = outcome.identity
        if identity is None:
            return outcome
        token = identity.access_token
        if not token:
            return None  # plans and grants are the token's: the full path decides
        plan = self._plans.get(token, path, method)
        if plan is None:
            plan = self._plan(identity, path, method)
            if plan is None:
                return None
        verdict = plan.verdict
        if verdict is None:
            grant = self.grants.get(plan.key)
            if grant is None or not grant.granted:
                return None
            verdict = _Verdict(True, grant.permissions)
        elif not verdict.allowed:
            return None
        granted = _with_permissions(identity, verdict.permissions)
        return outcome if granted is identity else replace(outcome, identity=granted)

    def _plan(self, identity: Identity, path: str, method: str) -> _Plan | None:
        """What the shortcut needs for this request, or ``None`` when only the full path can
        tell (a look-up at the server, claims that depend on the request)."""
        if self._is_deny_path(path):
            return _Plan(_PASS)
        target, stable = self.resources.known(path)
        if isinstance(target, Unknown):
            return None
        settled = self._settled(target, method, identity)
        if settled is not None:
            plan = _Plan(settled)
        elif target is None or target.resource is None:
            return None
        elif target.path.claim_information_point or self.block.claim_information_point:
            return None  # the claims depend on the request: asked on the full path
        else:
            required = required_scopes(target.path, method, self.block.http_method_as_scope)
            plan = _Plan(None, self._key(identity.access_token or "", target, required, {}))
        if stable and identity.access_token:
            self._plans.keep(identity.access_token, path, method, plan)
        return plan


class Grants:
    """The UMA grants' answers by key (:meth:`PolicyEnforcer._key`), each until its deadline;
    bounded in estimated bytes, the oldest out first (a dict keeps insertion order). Reads take
    no lock (one dict look-up: the shortcut's hot path); writes do (WSGI threads)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[str, tuple[float, Grant, int]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Grant | None:
        entry = self._entries.get(key)
        if entry is None or time.time() >= entry[0]:
            return None
        return entry[1]

    def put(self, key: str, grant: Grant, deadline: float, size: int) -> None:
        cost = size + GRANT_OVERHEAD
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            while self._entries and self._bytes + cost > self.max_bytes:
                oldest = next(iter(self._entries))
                self._bytes -= self._entries.pop(oldest)[2]
            self._entries[key] = (deadline, grant, cost)
            self._bytes += cost

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class _Plan:
    """The shortcut's answer for one (token, path, method): a verdict settled without a grant,
    or the key of the remembered grant that decides."""

    verdict: _Verdict | None
    key: str = ""


class _Plans:
    """The shortcut's plans, bounded in entries and in their keys' bytes (all dropped when
    full: rebuilt from the requests that come); denials and long paths are never kept (the
    full path decides them, so junk paths cannot fill it)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str, str], _Plan] = {}
        self._bytes = 0

    def get(self, token: str, path: str, method: str) -> _Plan | None:
        return self._plans.get((token, path, method))

    def keep(self, token: str, path: str, method: str, plan: _Plan) -> None:
        if len(path) > MAX_PLAN_PATH or (plan.verdict is not None and not plan.verdict.allowed):
            return
        cost = len(token) + len(path) + PLAN_OVERHEAD
        if len(self._plans) >= MAX_PLANS or self._bytes + cost > MAX_PLAN_BYTES:
            self._plans = {}
            self._bytes = 0
        self._plans[(token, path, method)] = plan
        self._bytes += cost


def _navigation(request: WebRequest) -> bool:
    """A page the browser navigates to (GET or HEAD, not asking for JSON): the one kind of
    request ``on-deny-redirect-to`` answers. A ``fetch`` DELETE that is redirected would be
    repeated at the deny page (and answered 405 there), so it gets the 403 instead."""
    return request.method in ("GET", "HEAD") and not wants_json(request.headers.get("accept", ""))


def realm_name(config: AdapterConfig) -> str:
    """The realm the UMA challenge names: keycloak.json's ``realm``, else the issuer's last
    ``/realms/<name>`` segment, else the client id."""
    return config.realm or issuer_realm(config.issuer) or config.client_id


def _with_permissions(identity: Identity, permissions: tuple[uma.Granted, ...]) -> Identity:
    if not permissions or identity.permissions == permissions:
        return identity
    return replace(identity, permissions=permissions)


def _granted(item: Mapping[str, Any]) -> uma.Granted:
    scopes = item.get("scopes")
    names = (
        tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list | tuple) else ()
    )
    name = item.get("rsname")
    return uma.Granted(str(item.get("rsid") or ""), name if isinstance(name, str) else None, names)


def _covers(
    rsid: str | None, rsname: str | None, scopes: tuple[str, ...], wanted: uma.Permission
) -> bool:
    """Whether one granted permission covers ``wanted``: its resource (by id or name; none
    asked: any) and ALL its scopes (a permission without scopes: the whole resource)."""
    if wanted.resource is not None and wanted.resource not in (rsid, rsname):
        return False
    return scopes_satisfied(RequiredScopes(wanted.scopes, "ALL"), scopes)


def _rpt_grants(claims: Mapping[str, Any], wanted: uma.Permission) -> bool:
    for item in rpt_permissions(claims):
        if has_claims(item):
            continue  # granted for certain pushed claims, and a check in code pushes none
        granted = _granted(item)
        if _covers(granted.rsid, granted.rsname, granted.scopes, wanted):
            return True
    return False


def _needed(target: Target | None, required: RequiredScopes | None) -> str:
    """What was needed, as ``Resource#scope`` (the 403's ``missing`` and the log)."""
    if target is None:
        return "a resource for this path"
    if required is None or not required.scopes:
        return target.label
    joiner = ", " if required.mode == "ALL" else " or "
    return f"{target.label}#{joiner.join(required.scopes)}"


def _uma_challenge(realm: str, issuer: str, ticket: str) -> Respond:
    """Keycloak's answer to a denied bearer request under user-managed access."""
    value = f'UMA realm="{_quoted(realm)}", as_uri="{_quoted(issuer)}", ticket="{ticket}"'
    return text(401, "permission required: ask the server with this ticket", [
        ("WWW-Authenticate", value),
    ])  # fmt: skip


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _unusable(sources: ClaimSources, reads_body: bool) -> Respond | None:
    """400 or 413 for a request the enforcer will not ask about: a path the app may read
    otherwise (``.``, ``..``, ``//``: :func:`~adapter.web._enforcer_paths.normalize`), a body
    its claims read that the shell could not (over ``MAX_BODY_BYTES``, cut short) or that does
    not parse as the JSON it says it is: asked without those claims, the server could grant
    what the policy would deny with them."""
    request = sources.request
    if normalize(request.path) is None:
        log.info("policy-enforcer: a path with . or .. or empty segments: refused")
        return text(400, "a path with . or .. or empty segments names no page here", [])
    if not reads_body:
        return None
    if request.body is None:
        log.info("policy-enforcer: the body its claims read is too large or incomplete")
        return text(413, "request body too large for the authorization check", [])
    if body_unreadable(sources):
        log.info("policy-enforcer: the JSON body its claims read does not parse")
        return text(400, "the JSON body does not parse", [])
    return None


def unavailable(request: WebRequest) -> Respond:
    """503: the enforcer could not ask; the request is not let through."""
    message = "authorization is unavailable; try again in a moment"
    headers = [("Retry-After", "5")]
    if wants_json(request.headers.get("accept", "")):
        return json_error(503, message, headers, "temporarily_unavailable")
    return text(503, message, headers)


def _decision_flow(
    endpoint: str,
    audience: str,
    asked: uma.Permission,
    claims: Mapping[str, list[str]] | None,
    credentials: Mapping[str, str],
) -> Flow[dict[str, Any]]:
    granted = yield from uma.uma_decision(endpoint, audience, [asked], claims=claims, **credentials)
    return {"granted": granted, "permissions": []}


def _permissions_flow(
    endpoint: str,
    audience: str,
    asked: uma.Permission,
    claims: Mapping[str, list[str]] | None,
    credentials: Mapping[str, str],
) -> Flow[dict[str, Any]]:
    permissions = yield from uma.uma_permissions(
        endpoint, audience, [asked], claims=claims, **credentials
    )
    return {"granted": bool(permissions), "permissions": list(permissions)}
