"""The claims the policy enforcer pushes to the UMA grant (``claim_token``), resolved from the
``claims`` claim information point as Keycloak's enforcer resolves them.

Keycloak's server-side policies read these claims; an app moved from a Java adapter keeps its
policies only if the same request gives the same claims. So this module follows the sources of
keycloak-policy-enforcer (``ClaimsInformationPointProvider``, ``PlaceHolders``,
``RequestPlaceHolderResolver``, ``KeycloakSecurityContextPlaceHolderResolver``,
``JsonUtils.getValues``), quirks included:

- a claim is pushed only when it has at least one value; a claim written as a list gets the
  values of its items one after the other;
- a claim value without placeholders is pushed as written. With placeholders: if one of them
  has no value, the claim value gives none; if one has several (a JSON array), the claim value
  gives those values as they are, *without* the text around them (``PlaceHolders.resolve``
  returns them unchanged); otherwise each placeholder is replaced by its one value, ``[`` and
  ``]`` are dropped from the literal text (``formatPlaceHolder``) and the result is trimmed as
  Java's ``String.trim`` does (characters up to U+0020);
- ``request.parameter``: the first value of the query parameter (``getFirstParam``), blank
  values included; ``request.header``: the header's value; ``request.cookie``: the cookie's;
  ``request.secure``: ``true``/``false``, always a value;
- ``request.body``: nothing when the body is empty. With ``Content-Type: application/json``
  (compared as Keycloak does: case-sensitive, parameters after ``;`` dropped), the JSON pointer
  is looked up, or, standalone, the whole document is taken as a JSON value. With any other
  content type the whole body text is the one value, pointer or not;
- ``keycloak.access_token``: standalone, the token string; with a pointer, the token's claims;
- ``JsonUtils.getValues``: an array gives one value per element (an object element as compact
  JSON, an array element as ``""``); anything else gives one value: a string as is, a number or
  boolean as its JSON text (a fraction as Java's ``Double.toString``: ``1.0E7``), ``null`` as
  ``null``, an object as ``""``, and a pointer that matches nothing as ``""`` (Jackson's
  ``MissingNode``): a claim from a missing member *is* pushed, empty, as Keycloak pushes it.

Where this differs from Keycloak, and why:

- hostile input gives no values, never an exception (Keycloak throws, failing the request): a
  JSON body that does not parse (also: trailing data after the document, a body nested too deep,
  an integer too long for Python), a missing cookie header (Keycloak: NullPointerException), no
  token for ``keycloak.access_token``; a value from the placeholder is substituted literally
  (Keycloak's ``replaceAll`` takes it as a regex replacement, ``$1`` throws, and the placeholder
  as a regex, so ``['/$id']`` is never replaced);
- with several placeholders, one without a value wins over one with several, then the first in
  the text (Keycloak: whichever its ``HashMap`` yields first);
- a header sent several times arrives joined with ``", "`` (:class:`WebRequest`): one value,
  where Keycloak's ``getHeaders`` gives one per header line;
- ``request.parameter`` reads the query only, as Quarkus does (a servlet also reads form
  bodies); :func:`adapter.web._http.query_params` gives nothing for more than 50 fields;
- ``request.uri`` is the URI as the client sent it: root path, path, and ``?query`` when there
  is one. Keycloak's integrations disagree (servlet ``getRequestURI``: no query; Quarkus
  ``absoluteURI``: scheme and host too); the path with its query is what a policy can compare;
- ``keycloak.access_token[...]`` points into the token's verified claims; Keycloak points into
  its ``AccessToken`` class written back to JSON, which drops ``null`` members;
- JSON objects pushed as compact JSON write their numbers as Python does (``1e7`` as
  ``10000000.0``, Jackson ``1.0E7``); a lone surrogate becomes ``?``, as Java's UTF-8 encoder
  writes it, so that the claim token can always be encoded.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import cached_property
from typing import Any, Final

from adapter.config.policy_enforcer import (
    ClaimInformationPoint,
    ClaimValue,
    PathConfig,
    Placeholder,
    PolicyEnforcerConfig,
)
from adapter.jose import strict_json
from adapter.protocol.tokens import unverified_claims
from adapter.web._http import query_params
from adapter.web._steps import Identity, WebRequest

_MISSING: Final = object()  # Jackson's MissingNode: nothing at the pointer, or no JSON body
_JAVA_WHITESPACE = "".join(map(chr, range(0x21)))  # what Java's String.trim() removes
_JSON = "application/json"


def pushed_claims(
    point: ClaimInformationPoint | None,
    request: WebRequest,
    token: str | None,
    token_claims: Mapping[str, Any],
) -> dict[str, list[str]]:
    """Claim name -> values to push, in configuration order; a claim without values is left
    out (Keycloak's ``ClaimsInformationPointProvider.resolve``). Never raises on the request's
    content: whatever cannot be read gives no value."""
    return _pushed(point, ClaimSources(request, token, lambda: token_claims))


def _pushed(point: ClaimInformationPoint | None, sources: ClaimSources) -> dict[str, list[str]]:
    if point is None:
        return {}
    claims: dict[str, list[str]] = {}
    for claim in point.claims:
        values = [_utf8_safe(v) for value in claim.values for v in _claim_values(value, sources)]
        if values:
            claims[claim.name] = values
    return claims


def _claim_values(value: ClaimValue, sources: ClaimSources) -> list[str]:
    """One configured value resolved as ``PlaceHolders.resolve`` does (see the module's
    docstring for the rules on no value, several values and the literal text)."""
    if not value.placeholders:
        return [value.text]
    resolved = {p: sources.resolve(p) for p in dict.fromkeys(value.placeholders)}
    if any(not values for values in resolved.values()):
        return []
    for values in resolved.values():
        if len(values) > 1:
            return values
    text = "".join(
        resolved[part][0] if isinstance(part, Placeholder) else _without_brackets(part)
        for part in value.parts
    )
    return [text.strip(_JAVA_WHITESPACE)]


def _without_brackets(literal: str) -> str:
    """Keycloak takes ``[`` and ``]`` out of the whole value before it substitutes
    (``formatPlaceHolder``), so literal text loses them too: ``[{request.method}]`` is ``GET``."""
    return literal.replace("[", "").replace("]", "")


class ClaimSources:
    """What the placeholders read, for one request: the request, the token, its claims
    (``token_claims`` asked when a pointer first reads them), and the body parsed at most once
    however many claims, points and checks read it."""

    def __init__(
        self,
        request: WebRequest,
        token: str | None,
        token_claims: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.request = request
        self.token = token
        self._token_claims = token_claims

    @cached_property
    def claims(self) -> Mapping[str, Any]:
        return self._token_claims()

    def resolve(self, placeholder: Placeholder) -> list[str]:
        reader = _READERS.get(placeholder.source)
        return reader(self, placeholder.argument) if reader else []

    @cached_property
    def body_json(self) -> Any:
        """The body as JSON, or :data:`_MISSING` when it does not parse (Jackson skips a UTF-8
        byte order mark, so this does too)."""
        body = self.request.body or b""
        if body.startswith(codecs.BOM_UTF8):
            body = body[len(codecs.BOM_UTF8) :]
        try:
            return strict_json(body)
        except (ValueError, RecursionError):
            return _MISSING


def _one(value: str | None) -> list[str]:
    return [] if value is None else [value]


def _parameter(sources: ClaimSources, name: str | None) -> list[str]:
    return _one(query_params(sources.request).get(name or ""))


def _header(sources: ClaimSources, name: str | None) -> list[str]:
    return _one(sources.request.headers.get((name or "").lower()))


def _cookie(sources: ClaimSources, name: str | None) -> list[str]:
    return _one(sources.request.cookies.get(name or ""))


def _remote_addr(sources: ClaimSources, _: str | None) -> list[str]:
    return _one(sources.request.peer)


def _method(sources: ClaimSources, _: str | None) -> list[str]:
    return [sources.request.method]


def _uri(sources: ClaimSources, _: str | None) -> list[str]:
    """The URI as sent: where the app is mounted, the path as the client spelt it (raw, when
    the server gives it), and the query."""
    request = sources.request
    uri = request.root_path + (request.raw_path or request.path)
    return [f"{uri}?{request.query}" if request.query else uri]


def _relative_path(sources: ClaimSources, _: str | None) -> list[str]:
    return [sources.request.path]


def _secure(sources: ClaimSources, _: str | None) -> list[str]:
    return ["true" if sources.request.scheme.lower() in ("https", "wss") else "false"]


def body_unreadable(sources: ClaimSources) -> bool:
    """A JSON body (``Content-Type: application/json``) that does not parse here: its claims
    would have no value while the app's own parser may read one (``NaN``, say), so the enforcer
    refuses the request (400) rather than ask without them. Keycloak fails it too."""
    request = sources.request
    if not request.body or not _is_json(request):
        return False
    return sources.body_json is _MISSING


def _is_json(request: WebRequest) -> bool:
    """Exactly ``application/json`` (Keycloak compares case-sensitively, parameters dropped)."""
    content_type = request.headers.get("content-type", "")
    if ";" in content_type:
        content_type = content_type[: content_type.index(";")].strip()
    return content_type == _JSON


def _body(sources: ClaimSources, pointer: str | None) -> list[str]:
    """``RequestPlaceHolderResolver``'s body: JSON only for exactly ``application/json``, the
    whole text otherwise (decoded as Java's reader does: bad bytes become U+FFFD)."""
    body = sources.request.body
    if not body:
        return []
    if not _is_json(sources.request):
        return [body.decode("utf-8", errors="replace")]
    document = sources.body_json
    if document is _MISSING:
        return []
    return _json_values(document if pointer is None else _at(document, pointer))


def _access_token(sources: ClaimSources, pointer: str | None) -> list[str]:
    """The token, or a value of its claims; nothing without a token (Keycloak would fail)."""
    if sources.token is None:
        return []
    if pointer is None:
        return _one(sources.token)
    return _json_values(_at(sources.claims, pointer))


_READERS: dict[str, Callable[[ClaimSources, str | None], list[str]]] = {
    "request.parameter": _parameter,
    "request.header": _header,
    "request.cookie": _cookie,
    "request.remoteAddr": _remote_addr,
    "request.method": _method,
    "request.uri": _uri,
    "request.relativePath": _relative_path,
    "request.secure": _secure,
    "request.body": _body,
    "keycloak.access_token": _access_token,
}


# --- JSON as Jackson reads it ------------------------------------------------------------------


def _at(node: Any, pointer: str) -> Any:
    """Jackson's ``JsonNode.at``: the node at a JSON pointer, or :data:`_MISSING`. An array
    index is digits without a leading zero (``0`` itself aside) and fits in an int."""
    if not pointer:
        return node
    for token in pointer[1:].split("/"):
        key = _unescape(token)
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list | tuple) and (index := _index(key)) is not None:
            if index >= len(node):
                return _MISSING
            node = node[index]
        else:
            return _MISSING
    return node


def _index(key: str) -> int | None:
    if not key.isascii() or not key.isdigit() or len(key) > 10:
        return None
    if key.startswith("0") and key != "0":
        return None
    index = int(key)
    return index if index <= 2**31 - 1 else None


def _unescape(token: str) -> str:
    """``~1`` is ``/`` and ``~0`` is ``~``; any other ``~`` stays, as in Jackson."""
    out: list[str] = []
    position = 0
    while position < len(token):
        char = token[position]
        if char == "~" and position + 1 < len(token) and token[position + 1] in "01":
            out.append("~" if token[position + 1] == "0" else "/")
            position += 2
            continue
        out.append(char)
        position += 1
    return "".join(out)


def _json_values(node: Any) -> list[str]:
    """``JsonUtils.getValues``: an array's elements one by one (objects as compact JSON), or
    the node's text (:func:`_as_text`)."""
    if not isinstance(node, list | tuple):
        return [_as_text(node)]
    values = []
    for element in node:
        if isinstance(element, Mapping):
            text = _compact_json(element)
            if text is not None:
                values.append(text)
        else:
            values.append(_as_text(element))
    return values


def _as_text(node: Any) -> str:
    """Jackson's ``JsonNode.asText()``: containers and a missing node are ``""``."""
    if node is _MISSING or isinstance(node, Mapping | list | tuple):
        return ""
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, float):
        return _java_double(node)
    return str(node)


def _compact_json(node: Mapping[str, Any]) -> str | None:
    """An object as Jackson writes it (no spaces, no escaping of non-ASCII); ``None`` when it
    cannot be written (nested too deep for the encoder, or not JSON at all)."""
    try:
        return json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        return None


def _java_double(number: float) -> str:
    """Java's ``Double.toString``: the shortest digits that read back (as Python's ``repr``),
    plain from 10^-3 up to 10^7 with at least one decimal (``100.0``), else ``1.0E7`` style."""
    if math.isinf(number) or math.isnan(number):
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    sign = "-" if math.copysign(1.0, number) < 0 else ""
    if number == 0:
        return f"{sign}0.0"
    decimal = Decimal(repr(abs(number)))
    digits = "".join(map(str, decimal.as_tuple().digits)).rstrip("0") or "0"
    exponent = decimal.adjusted()  # the power of ten of the first digit
    if 1e-3 <= abs(number) < 1e7:
        if exponent >= 0:
            whole = digits[: exponent + 1].ljust(exponent + 1, "0")
            return f"{sign}{whole}.{digits[exponent + 1 :] or '0'}"
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exponent}"


def _utf8_safe(text: str) -> str:
    """The value with lone surrogates (``"\\ud800"`` in JSON) as ``?``, as Java's UTF-8
    encoder writes them: the claim token is UTF-8, and must always encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def claim_sources(request: WebRequest, identity: Identity, *, bearer: bool) -> ClaimSources:
    """What one request's claims read. ``{keycloak.access_token[...]}`` reads the access
    token's claims: a bearer identity's own, a session's from its access token (which the
    server gave this client), decoded only if a claim points into them."""
    token = identity.access_token
    if bearer:
        return ClaimSources(request, token, lambda: identity.claims)
    return ClaimSources(request, token, lambda: (unverified_claims(token) if token else None) or {})


def request_claims(
    block: PolicyEnforcerConfig, path: PathConfig, sources: ClaimSources
) -> dict[str, list[str]]:
    """The claims pushed with a grant or ticket for ``path``: the block's claim information
    point, then the path's (a name in both: the path's wins), as Keycloak's
    ``resolveClaims``."""
    claims = _pushed(block.claim_information_point, sources)
    claims.update(_pushed(path.claim_information_point, sources))
    return claims
