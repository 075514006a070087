"""Step-up: a route that needs a stronger or more recent sign-in than the identity's.

An ``[[access]]`` rule (or a framework ``require``) may ask for ``acr`` (the authentication
context class: one of the values listed) and ``max_age`` (seconds since ``auth_time``, the
moment the user last authenticated). The identity's claims say how it signed in: a session's
are its ID token's, a bearer token's its own (Keycloak puts both claims in either).

- A **bearer** (or DPoP) request that falls short is answered 401 with RFC 9470's challenge,
  ``error="insufficient_user_authentication"`` with ``acr_values`` and ``max_age``: the client
  gets a new token from a stronger sign-in and tries again.
- A **session** is sent to sign in again (a browser's page navigation: a redirect to the login
  route with ``acr_values`` and ``max_age``, which pass them on to the identity server, OpenID
  Connect Core §3.1.2.1); a script gets the 401 with the same challenge.
- On the **callback** of such a login, the new ID token must show what was asked (Core
  §3.1.3.7: ``acr`` among the values asked; ``auth_time`` present and recent enough), else the
  sign-in ends on a 403 page: never a new redirect, so never a loop.

``prompt=login`` is never sent: a server that honours ``max_age`` re-authenticates by itself
(Core §3.1.2.1 says it must), and ``prompt=login`` would make every step-up a new password
prompt even where the server could raise the level with a second factor alone. A server that
ignores ``max_age`` ends on the 403 page, which says so in the log.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from adapter.config.access_rules import ACR_VALUE, MAX_ACR_VALUES, Requirement
from adapter.protocol.dpop import www_authenticate
from adapter.web._http import MAX_RETURN_PATH, RAW_PATH_SAFE, json_error, text, wants_json
from adapter.web._refusals import page_navigation
from adapter.web._steps import Respond, WebRequest

MAX_AGE_LIMIT = 366 * 86400  # the largest max_age a login passes on
DESCRIPTION = "a stronger or more recent sign-in is required"


@dataclass(frozen=True)
class StepUp:
    """What a sign-in must show: an ``acr`` among ``acr_values`` (when any), an
    ``auth_time`` at most ``max_age`` seconds old (when given)."""

    acr_values: tuple[str, ...] = ()
    max_age: int | None = None

    def login_query(self) -> dict[str, str]:
        """The login route's (and the authorization request's) parameters for it."""
        query: dict[str, str] = {}
        if self.acr_values:
            query["acr_values"] = " ".join(self.acr_values)
        if self.max_age is not None:
            query["max_age"] = str(self.max_age)
        return query

    def shortfall(
        self, claims: Mapping[str, Any], now: float, leeway: float, since: float | None = None
    ) -> str | None:
        """What ``claims`` lack, said for the log, or ``None`` when they show enough; with
        ``since`` (when a login started), an ``auth_time`` after it is recent enough too."""
        if self.acr_values:
            acr = claims.get("acr")
            if not isinstance(acr, str) or acr not in self.acr_values:
                shown = repr(acr)[:40] if acr is not None else "none"
                return f"acr {shown}, not one of {', '.join(self.acr_values)}"
        if self.max_age is not None:
            at = claims.get("auth_time")
            if isinstance(at, bool) or not isinstance(at, int | float):
                return "no auth_time"
            fresh = since is not None and at >= since - leeway
            if not fresh and now - at > self.max_age + leeway:
                return f"signed in {int(now - at)} s ago, more than {self.max_age} s"
        return None


def step_up_needed(
    requirement: Requirement, claims: Mapping[str, Any], leeway: float
) -> StepUp | None:
    """The step-up ``requirement`` asks of an identity with ``claims``, or ``None`` when its
    sign-in is enough (or nothing is asked)."""
    if not requirement.steps_up:
        return None
    step = StepUp(requirement.acr, requirement.max_age)
    return step if step.shortfall(claims, time.time(), leeway) is not None else None


def challenge_value(request: WebRequest, step: StepUp) -> str:
    """RFC 9470 §3's ``WWW-Authenticate``: the request's scheme (``DPoP`` for a DPoP request,
    with the DPoP parameters; else ``Bearer``), the error and what a new token must show."""
    params = []
    if step.acr_values:
        params.append(f'acr_values="{" ".join(step.acr_values)}"')
    if step.max_age is not None:
        params.append(f"max_age={step.max_age}")
    scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
    if scheme == "dpop":
        base = www_authenticate(error="insufficient_user_authentication", description=DESCRIPTION)
        return ", ".join([base, *params])
    error = f'Bearer error="insufficient_user_authentication", error_description="{DESCRIPTION}"'
    return ", ".join([error, *params])


def step_up_answer(request: WebRequest, step: StepUp, login_path: str) -> Respond:
    """Sign in again: a page navigation of a session is redirected to the login (back to
    this page); anything else (a bearer token, a script) gets the 401 challenge."""
    headers = request.headers
    navigation = page_navigation(
        request.method,
        headers.get("accept", ""),
        headers.get("sec-fetch-mode"),
        headers.get("x-requested-with"),
    )
    if navigation and "authorization" not in headers:
        return Respond(302, (("Location", login_url(request, step, login_path)), _NO_STORE))
    header = [("WWW-Authenticate", challenge_value(request, step))]
    if wants_json(request.headers.get("accept", "")):
        return json_error(401, DESCRIPTION, header, "insufficient_user_authentication")
    return text(401, DESCRIPTION, header)


_NO_STORE = ("Cache-Control", "no-store")


def login_url(request: WebRequest, step: StepUp, login_path: str) -> str:
    """The login route under the app's root, back to this page, with the step-up asked."""
    target = request.raw_path or quote(request.path, safe=RAW_PATH_SAFE)
    if request.query and len(target) + len(request.query) < MAX_RETURN_PATH:
        target += f"?{request.query}"
    query = urlencode({"next": target, **step.login_query()})
    return f"{request.root_path}{login_path}?{query}"


def asked(query: Mapping[str, str]) -> StepUp | None:
    """The step-up a login was asked for (its ``acr_values`` and ``max_age``), or ``None``.
    Values that could not come from this app (not tokens, too many, not a number) are left
    out: the login asks for what is left, and the callback checks that much."""
    values = tuple(
        dict.fromkeys(v for v in query.get("acr_values", "").split() if ACR_VALUE.fullmatch(v))
    )[:MAX_ACR_VALUES]
    raw_age = query.get("max_age", "")
    max_age = int(raw_age) if raw_age.isascii() and raw_age.isdigit() and len(raw_age) < 9 else None
    if max_age is not None and max_age > MAX_AGE_LIMIT:
        max_age = None
    return StepUp(values, max_age) if values or max_age is not None else None


def to_pending(step: StepUp | None) -> dict[str, Any]:
    """What the login cookie keeps of it (compact: two short keys at most)."""
    if step is None:
        return {}
    kept: dict[str, Any] = {}
    if step.acr_values:
        kept["a"] = list(step.acr_values)
    if step.max_age is not None:
        kept["m"] = step.max_age
    return kept


def from_pending(pending: Mapping[str, Any]) -> StepUp | None:
    """The step-up a pending login asked for (as :func:`to_pending` kept it)."""
    values, max_age = pending.get("a"), pending.get("m")
    acr = tuple(v for v in values if isinstance(v, str)) if isinstance(values, list) else ()
    age = max_age if isinstance(max_age, int) and not isinstance(max_age, bool) else None
    return StepUp(acr, age) if acr or age is not None else None
