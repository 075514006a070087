"""Who may do what: roles, client roles and scopes a request needs, decided in one place.

The configuration's ``[[access]]`` rules (ordered, first match wins) and the framework idioms
(``adapter.integrations.starlette.require``, ``adapter.integrations.fastapi.require`` ...) all
ask :func:`refusal`; none decides on its own. A rule that does not match leaves the request to
the default: signed in.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass

from adapter.config.access_rules import AccessRule, Requirement, public_overlaps
from adapter.web._http import safe_return_path
from adapter.web._steps import Identity, Respond, WebRequest


@dataclass(frozen=True)
class Refusal:
    """Why an identity is refused: ``scope`` (RFC 6750 ``insufficient_scope``) or ``role``."""

    kind: str
    missing: tuple[str, ...]


def refusal(identity: Identity, requirement: Requirement) -> Refusal | None:
    """``None`` when ``identity`` holds what ``requirement`` asks, else what is missing."""
    missing_scopes = requirement.scopes - identity.scopes
    if missing_scopes:
        return Refusal("scope", tuple(sorted(missing_scopes)))
    missing = (requirement.roles - identity.roles) | (
        requirement.client_roles - identity.client_roles
    )
    if missing:
        return Refusal("role", tuple(sorted(missing)))
    held = identity.roles | identity.client_roles
    if requirement.any_role and not requirement.any_role & held:
        return Refusal("role", tuple(sorted(requirement.any_role)))
    return None


def requirement_for(rules: Sequence[AccessRule], path: str, method: str) -> Requirement | None:
    """The requirement of the first rule that matches, or ``None`` (signed in is enough)."""
    rule = rule_for(rules, path, method)
    return rule.requirement if rule is not None else None


def rule_for(rules: Sequence[AccessRule], path: str, method: str) -> AccessRule | None:
    """The first rule that matches (first match wins), or ``None``."""
    for rule in rules:
        if rule.matches(path, method):
            return rule
    return None


class PublicPaths:
    """``public-paths``: each entry matches itself and, unless it is "/", everything below it;
    except where an ``[[access]]`` rule covers the request (a guarded path is never anonymous,
    whatever ``public-paths`` says). One set look-up and one C-level prefix test: every
    anonymous request asks."""

    __slots__ = ("_exact", "_guarded", "_prefixes")

    def __init__(self, paths: Sequence[str], rules: Sequence[AccessRule]) -> None:
        self._exact = frozenset(paths)
        self._prefixes = tuple(p.rstrip("/") + "/" for p in paths if p != "/")
        # The rules that cover part of a public path (`config check` names each of them).
        self._guarded = tuple(dict.fromkeys(rule for rule, _ in public_overlaps(rules, paths)))

    def covers(self, path: str, method: str) -> bool:
        if not (path in self._exact or path.startswith(self._prefixes)):
            return False
        return not self._guarded or requirement_for(self._guarded, path, method) is None


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not allowed</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}
button{{font:inherit;padding:.4rem 1rem}}</style></head>
<body><h1>Not allowed</h1>
<p>You are signed in as <strong>{name}</strong>, but this page needs {needs}.</p>
<form method="post" action="{logout}"><input type="hidden" name="csrf" value="{csrf}">{again}
<button type="submit">Sign out and sign in as someone else</button></form>
<p><a href="{home}">Back to the start page</a></p></body></html>
"""


def forbidden_response(
    request: WebRequest, identity: Identity, refused: Refusal, logout_path: str
) -> Respond:
    """403: a short page for a browser (sign out, sign in as someone else), JSON for an API
    client, and for a bearer token RFC 6750's ``WWW-Authenticate`` (``insufficient_scope``
    when a scope is missing)."""
    missing = ", ".join(refused.missing)
    headers = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
    if "authorization" in request.headers:
        # RFC 6750 §3.1: "the request requires higher privileges than provided by the access
        # token" - a missing role as much as a missing scope; the scope is named when it is one.
        challenge = 'Bearer error="insufficient_scope"'
        if refused.kind == "scope":
            challenge += f', scope="{" ".join(refused.missing)}"'
        headers.append(("WWW-Authenticate", challenge))
    accept = request.headers.get("accept", "")
    if request.method == "GET" and "text/html" in accept and "authorization" not in request.headers:
        page = _PAGE.format(
            name=html.escape(identity.display_name),
            needs=html.escape(
                f"the {refused.kind} {missing}"
                if len(refused.missing) == 1
                else f"these {refused.kind}s: {missing}"
            ),
            logout=html.escape(request.root_path + logout_path),
            csrf=html.escape(identity.csrf_token or ""),
            again=_sign_in_again(request),  # the logout then signs in again, back to here
            home=html.escape(request.root_path + "/"),
        )
        headers.append(("Content-Type", "text/html; charset=utf-8"))
        return Respond(403, headers, page.encode())
    body = {"error": "forbidden", "missing": list(refused.missing), "kind": refused.kind}
    headers.append(("Content-Type", "application/json"))
    return Respond(403, headers, json.dumps(body).encode())


def _sign_in_again(request: WebRequest) -> str:
    """The form's ``next`` field: the refused page, where the login after the logout returns
    (inside the app); none when the page is unknown (the logout goes to its usual end)."""
    target = request.raw_path or request.path
    if not target:
        return ""
    page = safe_return_path(target + (f"?{request.query}" if request.query else ""))
    return f'\n<input type="hidden" name="next" value="{html.escape(page)}">'
