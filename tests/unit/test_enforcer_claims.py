"""The policy enforcer's pushed claims (adapter/web/_enforcer_claims.py): the ``claims`` claim
information point resolved as Keycloak's enforcer resolves it, so that the server's policies see
the same claims as behind a Java adapter, and hostile requests give no values, never errors.

Several expectations are Keycloak's own tests (ClaimInformationPointProviderTest) and sources
(PlaceHolders, RequestPlaceHolderResolver, JsonUtils) replayed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.config import load_config
from adapter.config.policy_enforcer import Claim, ClaimInformationPoint, parse_claim_value
from adapter.web._enforcer_claims import ClaimSources, _pushed, pushed_claims
from adapter.web._steps import WebRequest

TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzdWIifQ."
TOKEN_CLAIMS: dict[str, Any] = {
    "sub": "sub",
    "preferred_username": "username",
    "custom_claim": ["param-other-claims-value1", "param-other-claims-value2"],
    "realm_access": {"roles": ["user", "admin"]},
    "a/b": "slash",
    "m~n": "tilde",
    "email_verified": True,
    "nothing": None,
}


def point(**claims: str | list[str]) -> ClaimInformationPoint:
    """A claim information point as the config reader builds it (parse_claim_value)."""
    built = []
    for name, value in claims.items():
        texts = value if isinstance(value, list) else [value]
        values = tuple(parse_claim_value(name, text) for text in texts)
        built.append(Claim(name, values, isinstance(value, list)))
    return ClaimInformationPoint(tuple(built))


def request(
    *,
    query: str = "a=parameter-a",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    **fields: Any,
) -> WebRequest:
    """The request of Keycloak's own test: parameter a, header b, cookie c, /app/request-uri."""
    defaults: dict[str, Any] = {
        "method": "GET",
        "path": "/request-uri",
        "root_path": "/app",
        "cookies": {"c": "cookie-c"},
        "scheme": "https",
        "peer": "user-remote-addr",
    }
    return WebRequest(
        query=query,
        headers={"b": "header-b", **(headers or {})},
        body=body,
        **(defaults | fields),
    )


def claims(
    cip: ClaimInformationPoint | None, req: WebRequest | None = None, token: str | None = TOKEN
) -> dict[str, list[str]]:
    return pushed_claims(cip, req or request(), token, TOKEN_CLAIMS if token else {})


def json_body(document: Any, content_type: str = "application/json") -> WebRequest:
    return request(headers={"content-type": content_type}, body=json.dumps(document).encode())


# 1. every source ----------------------------------------------------------------------------


def test_keycloaks_basic_claims_information_point() -> None:
    """Keycloak's testBasicClaimsInformationPoint, claim for claim (the URI keeps the query
    here: see the module's docstring)."""
    spec: dict[str, str | list[str]] = {
        "claim-from-request-parameter": "{request.parameter['a']}",
        "claim-from-header": "{request.header['b']}",
        "claim-from-cookie": "{request.cookie['c']}",
        "claim-from-remoteAddr": "{request.remoteAddr}",
        "claim-from-method": "{request.method}",
        "claim-from-uri": "{request.uri}",
        "claim-from-relativePath": "{request.relativePath}",
        "claim-from-secure": "{request.secure}",
        "claim-from-static-value": "static value",
        "claim-from-multiple-static-value": ["static", "value"],
        "param-replace-multiple-placeholder": (
            "Test {keycloak.access_token['/custom_claim/0']} and {request.parameter['a']}"
        ),
    }
    cip = point(**spec)
    assert claims(cip, request(query="")) == {
        "claim-from-header": ["header-b"],
        "claim-from-cookie": ["cookie-c"],
        "claim-from-remoteAddr": ["user-remote-addr"],
        "claim-from-method": ["GET"],
        "claim-from-uri": ["/app/request-uri"],
        "claim-from-relativePath": ["/request-uri"],
        "claim-from-secure": ["true"],
        "claim-from-static-value": ["static value"],
        "claim-from-multiple-static-value": ["static", "value"],
    }
    resolved = claims(cip)
    assert resolved["claim-from-request-parameter"] == ["parameter-a"]
    assert resolved["param-replace-multiple-placeholder"] == [
        "Test param-other-claims-value1 and parameter-a"
    ]
    assert list(resolved) == list(claims(cip, request(query="a=1")))  # configuration order


def test_a_parameter_is_its_first_value_blank_values_included() -> None:
    cip = point(p="{request.parameter['p']}", q="{request.parameter['q']}")
    assert claims(cip, request(query="p=1&p=2&q=")) == {"p": ["1"], "q": [""]}
    assert claims(cip, request(query="p=%C3%A9+x")) == {"p": ["é x"]}
    assert claims(cip, request(query="")) == {}


def test_a_header_is_found_whatever_its_case_and_sent_twice_it_is_one_value() -> None:
    cip = point(h="{request.header['X-Tenant']}")
    assert claims(cip, request(headers={"x-tenant": "a, b"})) == {"h": ["a, b"]}
    assert claims(cip) == {}


def test_a_missing_cookie_gives_no_value() -> None:
    cip = point(c="{request.cookie['c']}")
    assert claims(cip, request(cookies={})) == {}
    assert claims(cip, request(cookies={"c": ""})) == {"c": [""]}


def test_the_connection_method_uri_path_and_scheme() -> None:
    cip = point(
        addr="{request.remoteAddr}",
        method="{request.method}",
        uri="{request.uri}",
        path="{request.relativePath}",
        secure="{request.secure}",
    )
    req = request(
        method="delete",
        path="/a b",
        raw_path="/a%20b",
        query="x=1&y",
        scheme="http",
        peer=None,
    )
    assert claims(cip, req) == {
        "method": ["DELETE"],
        "uri": ["/app/a%20b?x=1&y"],
        "path": ["/a b"],
        "secure": ["false"],
    }


# 2. the body ----------------------------------------------------------------------------------

BODY = {"a": {"b": {"c": "c-value"}}, "d": ["d-value1", "d-value2"], "e": {"number": 123}}


def test_keycloaks_json_body_claims() -> None:
    """testBodyJsonClaimsInformationPoint: a pointer into the JSON body, with or without a
    charset in the content type."""
    cip = point(
        obj="{request.body['/a/b/c']}",
        arr="{request.body['/d/1']}",
        all="{request.body['/d']}",
        num="{request.body['/e/number']}",
    )
    for content_type in ("application/json", "application/json; charset=utf-8"):
        assert claims(cip, json_body(BODY, content_type)) == {
            "obj": ["c-value"],
            "arr": ["d-value2"],
            "all": ["d-value1", "d-value2"],
            "num": ["123"],
        }


def test_objects_in_an_array_are_compact_json() -> None:
    """testBodyJsonObjectClaim; an array in an array is Jackson's asText() of it: empty."""
    document = {"roles": [{"roleSpec": 2342, "roleId": 4234}, {"é": [1]}, [1, 2], None, 1.5]}
    cip = point(roles="{request.body['/roles']}")
    assert claims(cip, json_body(document)) == {
        "roles": ['{"roleSpec":2342,"roleId":4234}', '{"é":[1]}', "", "null", "1.5"]
    }


def test_a_body_that_is_not_json_is_its_text_pointer_or_not() -> None:
    cip = point(whole="{request.body}", pointed="{request.body['/a']}")
    body = b'{"a": 1}'
    for content_type in (None, "text/plain", "Application/JSON", "application/json+x"):
        headers = {"content-type": content_type} if content_type else {}
        expected = {"whole": ['{"a": 1}'], "pointed": ['{"a": 1}']}
        assert claims(cip, request(headers=headers, body=body)) == expected
    assert claims(cip, request(body=b"caf\xc3\xa9 \xff")) == {
        "whole": ["café \ufffd"],
        "pointed": ["café \ufffd"],
    }


def test_a_whole_json_body_is_its_value_as_keycloak_reads_it() -> None:
    """Standalone {request.body} with a JSON body: JsonUtils.getValues of the document, so an
    object gives "" and an array its elements."""
    cip = point(whole="{request.body}")
    assert claims(cip, json_body({"a": 1})) == {"whole": [""]}
    assert claims(cip, json_body(["x", 2, True])) == {"whole": ["x", "2", "true"]}
    assert claims(cip, json_body("text")) == {"whole": ["text"]}


def test_no_body_gives_no_value() -> None:
    cip = point(whole="{request.body}", pointed="{request.body['/a']}")
    assert claims(cip, request(body=None)) == {}
    assert claims(cip, request(headers={"content-type": "application/json"}, body=b"")) == {}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"a": 1} trailing',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' + b"9" * 5000 + b"}",
        b'{"a": NaN}',
        b'{"a": "\xff"}',
        b"   ",
    ],
    ids=["text", "trailing", "deep", "huge-int", "nan", "bad-utf8", "blank"],
)
def test_a_hostile_json_body_gives_no_values(body: bytes) -> None:
    cip = point(pointed="{request.body['/a']}", whole="{request.body}", s="static")
    req = request(headers={"content-type": "application/json"}, body=body)
    assert claims(cip, req) == {"s": ["static"]}


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_any_body_never_raises(body: bytes) -> None:
    cip = point(p="{request.body['/a/0']}", w="x-{request.body}")
    for content_type in ("application/json", "text/plain"):
        resolved = claims(cip, request(headers={"content-type": content_type}, body=body))
        assert all(isinstance(v, str) for values in resolved.values() for v in values)


def test_a_lone_surrogate_is_written_as_java_writes_it() -> None:
    cip = point(a="{request.body['/a']}")
    req = request(headers={"content-type": "application/json"}, body=b'{"a": "x\\ud800y"}')
    assert claims(cip, req) == {"a": ["x?y"]}


def test_a_utf8_byte_order_mark_is_skipped_as_jackson_does() -> None:
    cip = point(a="{request.body['/a']}")
    req = request(headers={"content-type": "application/json"}, body=b'\xef\xbb\xbf{"a": "x"}')
    assert claims(cip, req) == {"a": ["x"]}


# 3. JSON values and pointers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "text"),
    [
        ("42", "42"),
        ("-0", "0"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        ("1.5", "1.5"),
        ("100.0", "100.0"),
        ("1e2", "100.0"),
        ("-0.0", "-0.0"),
        ("0.001", "0.001"),
        ("0.0001", "1.0E-4"),
        ("1234567.5", "1234567.5"),
        ("1e7", "1.0E7"),
        ("1.2345e20", "1.2345E20"),
        ("1e400", "Infinity"),
        ("true", "true"),
        ("false", "false"),
        ("null", "null"),
        ('"s"', "s"),
        ('{"x": 1}', ""),
    ],
)
def test_numbers_and_literals_are_rendered_as_jackson_renders_them(literal: str, text: str) -> None:
    cip = point(v="{request.body['/v']}")
    body = f'{{"v": {literal}}}'.encode()
    assert claims(cip, request(headers={"content-type": "application/json"}, body=body)) == {
        "v": [text]
    }


def test_a_pointer_that_matches_nothing_is_an_empty_value_as_in_keycloak() -> None:
    """Jackson's MissingNode.asText() is "", and Keycloak pushes it."""
    cip = point(
        missing="{request.body['/nope']}",
        through_text="{request.body['/s/x']}",
        index_out="{request.body['/d/5']}",
        leading_zero="{request.body['/d/01']}",
        minus="{request.body['/d/-']}",
        prefixed="id-{request.body['/nope']}",
    )
    resolved = claims(cip, json_body({"s": "text", "d": ["d0", "d1"]}))
    assert resolved == {
        "missing": [""],
        "through_text": [""],
        "index_out": [""],
        "leading_zero": [""],
        "minus": [""],
        "prefixed": ["id-"],
    }


def test_pointer_escapes_and_object_members_named_like_indexes() -> None:
    cip = point(slash="{request.body['/a~1b']}", tilde="{request.body['/m~0n']}")
    cip2 = point(key="{request.body['/o/0']}", empty="{request.body['/']}")
    assert claims(cip, json_body({"a/b": "slash", "m~n": "tilde"})) == {
        "slash": ["slash"],
        "tilde": ["tilde"],
    }
    assert claims(cip2, json_body({"o": {"0": "zero"}, "": "empty"})) == {
        "key": ["zero"],
        "empty": ["empty"],
    }


# 4. the access token -------------------------------------------------------------------------


def test_the_access_token_and_its_claims() -> None:
    cip = point(
        token="{keycloak.access_token}",
        sub="{keycloak.access_token['/sub']}",
        roles="{keycloak.access_token['/realm_access/roles']}",
        verified="{keycloak.access_token['/email_verified']}",
        slash="{keycloak.access_token['/a~1b']}",
        nothing="{keycloak.access_token['/nothing']}",
        absent="{keycloak.access_token['/absent']}",
    )
    assert claims(cip) == {
        "token": [TOKEN],
        "sub": ["sub"],
        "roles": ["user", "admin"],
        "verified": ["true"],
        "slash": ["slash"],
        "nothing": ["null"],
        "absent": [""],
    }


def test_without_a_token_the_token_gives_no_value() -> None:
    cip = point(token="{keycloak.access_token}", sub="{keycloak.access_token['/sub']}")
    assert claims(cip, token=None) == {}


def decodes_token_claims(cip: Any) -> bool:
    """Whether resolving ``cip`` asked for the access token's claims (a session's token is
    decoded for that, so only a pointer into it should ask)."""
    asked: list[bool] = []

    def token_claims() -> Mapping[str, Any]:
        asked.append(True)
        return TOKEN_CLAIMS

    _pushed(cip, ClaimSources(request(), "a.b.c", token_claims))
    return bool(asked)


def test_the_token_claims_are_read_only_for_a_pointer_into_the_token() -> None:
    assert decodes_token_claims(point(a="{keycloak.access_token['/sub']}"))
    assert not decodes_token_claims(point(a="{keycloak.access_token}", b="{request.method}"))
    assert not decodes_token_claims(None)


# 5. templates: literal text, several values, no value ----------------------------------------


def test_literal_text_around_placeholders() -> None:
    """The text is kept, [ and ] are dropped from it (formatPlaceHolder), the result trimmed as
    Java's String.trim(); a value without placeholders is left as written."""
    cip = point(
        id="id-{request.parameter['a']}",
        two="{request.method} {request.relativePath}",
        brackets="[{request.method}]",
        trimmed="  {request.method}\t",
        same="{request.parameter['a']}/{request.parameter['a']}",
        dollar="{request.header['d']}",
        static=" [as written] ",
    )
    req = request(query="a=x%24", headers={"d": "$1\\"})
    assert claims(cip, req) == {
        "id": ["id-x$"],
        "two": ["GET /request-uri"],
        "brackets": ["GET"],
        "trimmed": ["GET"],
        "same": ["x$/x$"],
        "dollar": ["$1\\"],
        "static": [" [as written] "],
    }


def test_several_values_replace_the_whole_value_as_in_keycloak() -> None:
    """PlaceHolders.resolve returns a multi-valued placeholder's values unchanged: the text
    around them is dropped."""
    cip = point(roles="role-{keycloak.access_token['/realm_access/roles']}")
    assert claims(cip) == {"roles": ["user", "admin"]}


def test_a_placeholder_without_value_empties_its_claim_value() -> None:
    cip = point(
        gone="id-{request.parameter['missing']}",
        mixed="{keycloak.access_token['/realm_access/roles']}-{request.header['missing']}",
        listed=["{request.parameter['missing']}", "{request.parameter['a']}", "static"],
        empty_list=["{request.cookie['missing']}", "{request.header['missing']}"],
    )
    assert claims(cip) == {"listed": ["parameter-a", "static"]}


def test_no_claim_information_point_pushes_nothing() -> None:
    assert claims(None) == {}


# 6. through the real config reader --------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::adapter.errors.ConfigWarning")
def test_a_claim_information_point_read_from_keycloak_json() -> None:
    document = {
        "realm": "demo",
        "auth-server-url": "https://sso.example.com/",
        "resource": "bank-app",
        "public-client": True,
        "policy-enforcer": {
            "paths": [
                {
                    "path": "/account/{id}",
                    "claim-information-point": {
                        "claims": {
                            "claim-from-header": "{request.header['b']}",
                            "claim-from-json-body-object": "{request.body['/a/b/c']}",
                            "claim-from-multiple-static-value": ["static", "value"],
                            "roles": "{keycloak.access_token['/realm_access/roles']}",
                            "absent": "{request.parameter['nope']}",
                        }
                    },
                }
            ],
        },
    }
    enforcer = load_config(document).policy_enforcer
    assert enforcer is not None
    cip = enforcer.paths[0].claim_information_point
    assert decodes_token_claims(cip)
    assert claims(cip, json_body(BODY)) == {
        "claim-from-header": ["header-b"],
        "claim-from-json-body-object": ["c-value"],
        "claim-from-multiple-static-value": ["static", "value"],
        "roles": ["user", "admin"],
    }
