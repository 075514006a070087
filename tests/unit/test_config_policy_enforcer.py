"""keycloak.json's ``policy-enforcer`` block (adapter/config/policy_enforcer.py): every field of
Keycloak's PolicyEnforcerConfig with its default, the same block as ``[policy-enforcer]`` in
TOML, and one-line refusals naming the JSON path of what this adapter cannot honour."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.config import load_config
from adapter.config.policy_enforcer import (
    MethodConfig,
    PathCacheConfig,
    PathConfig,
    Placeholder,
    PolicyEnforcerConfig,
    pattern_problem,
)
from adapter.errors import ConfigError

KEYCLOAK = {
    "realm": "demo",
    "auth-server-url": "https://sso.example.com/",
    "resource": "bank-app",
    "public-client": True,
}

# Keycloak's Authorization Services documentation's example, with the rest of the fields.
DOCUMENTED: dict[str, Any] = {
    "enforcement-mode": "ENFORCING",
    "paths": [
        {
            "path": "/users/*",
            "methods": [
                {"method": "GET", "scopes": ["urn:app.com:scopes:view"]},
                {"method": "POST", "scopes": ["urn:app.com:scopes:create"]},
            ],
        },
        {
            "name": "Bank Account",
            "path": "/account/{id}",
            "type": "urn:bank-app:resources:account",
            "methods": [
                {
                    "method": "DELETE",
                    "scopes": ["delete", "admin"],
                    "scopes-enforcement-mode": "ANY",
                }
            ],
            "claim-information-point": {
                "claims": {"claim-from-header": "{request.header['b']}"},
            },
        },
        {"path": "/public/*", "enforcement-mode": "DISABLED"},
        {"path": "/*.html", "scopes": ["read"]},
    ],
    "path-cache": {"max-entries": 200, "lifespan": 60000},
    "lazy-load-paths": True,
    "http-method-as-scope": False,
    "on-deny-redirect-to": "/access-denied",
    "user-managed-access": {},
    "claim-information-point": {
        "claims": {
            "claim-from-request-parameter": "{request.parameter['a']}",
            "claim-from-cookie": "{request.cookie['c']}",
            "claim-from-remoteAddr": "{request.remoteAddr}",
            "claim-from-method": "{request.method}",
            "claim-from-uri": "{request.uri}",
            "claim-from-relativePath": "{request.relativePath}",
            "claim-from-secure": "{request.secure}",
            "claim-from-json-body-object": "{request.body['/a/b/c']}",
            "claim-from-body": "{request.body}",
            "claim-from-static-value": "static value",
            "claim-from-multiple-static-value": ["static", "value"],
            "param-replace-multiple-placeholder": (
                "Test {keycloak.access_token['/custom_claim/0']} and {request.parameter['a']}"
            ),
        }
    },
}


def enforcer(block: Any) -> PolicyEnforcerConfig:
    config = load_config({**KEYCLOAK, "policy-enforcer": block}).policy_enforcer
    assert config is not None
    return config


def refusal(block: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        enforcer(block)
    message = str(caught.value)
    assert "\n" not in message
    return message


# 1. every field, with Keycloak's defaults -------------------------------------------------------


def test_without_the_block_there_is_no_enforcer() -> None:
    assert load_config(KEYCLOAK).policy_enforcer is None


def test_an_empty_block_has_keycloaks_defaults() -> None:
    config = enforcer({})

    assert config == PolicyEnforcerConfig()
    assert config.enforcement_mode == "ENFORCING"
    assert config.paths == ()
    assert config.path_cache is None
    assert config.cache == PathCacheConfig(max_entries=1000, lifespan=30000)
    assert config.lazy_load_paths is False
    assert config.http_method_as_scope is False
    assert config.on_deny_redirect_to is None
    assert config.user_managed_access is False
    assert config.claim_information_point is None


def test_the_documented_block_is_read_whole() -> None:
    config = enforcer(DOCUMENTED)

    users, account, public, html = config.paths
    assert users == PathConfig(
        path="/users/*",
        methods=(
            MethodConfig("GET", ("urn:app.com:scopes:view",), "ALL"),
            MethodConfig("POST", ("urn:app.com:scopes:create",), "ALL"),
        ),
    )
    assert account.name == "Bank Account"
    assert account.type == "urn:bank-app:resources:account"
    assert account.methods == (MethodConfig("DELETE", ("delete", "admin"), "ANY"),)
    assert account.claim_information_point is not None
    (header,) = account.claim_information_point.claims
    assert header.name == "claim-from-header"
    assert header.values[0].parts == (Placeholder("request.header", "b"),)
    assert account.claim_information_point.needs_body is False
    assert public.enforcement_mode == "DISABLED"
    assert html.scopes == ("read",)
    assert config.path_cache == PathCacheConfig(200, 60000)
    assert config.lazy_load_paths is True
    assert config.on_deny_redirect_to == "/access-denied"
    assert config.user_managed_access is True
    assert config.claim_information_point is not None
    assert config.claim_information_point.needs_body is True


def test_claim_values_are_parsed_into_text_and_placeholders() -> None:
    cip = enforcer(DOCUMENTED).claim_information_point
    assert cip is not None
    claims = {claim.name: claim for claim in cip.claims}

    header = enforcer(DOCUMENTED).paths[1].claim_information_point
    assert header is not None
    assert header.claims[0].values[0].parts == (Placeholder("request.header", "b"),)
    assert claims["claim-from-request-parameter"].values[0].parts == (
        Placeholder("request.parameter", "a"),
    )
    assert claims["claim-from-remoteAddr"].values[0].parts == (Placeholder("request.remoteAddr"),)
    assert claims["claim-from-json-body-object"].values[0].placeholders == (
        Placeholder("request.body", "/a/b/c"),
    )
    assert claims["claim-from-static-value"].values[0].parts == ("static value",)
    multiple = claims["claim-from-multiple-static-value"]
    assert multiple.listed is True
    assert [value.text for value in multiple.values] == ["static", "value"]
    assert claims["param-replace-multiple-placeholder"].values[0].parts == (
        "Test ",
        Placeholder("keycloak.access_token", "/custom_claim/0"),
        " and ",
        Placeholder("request.parameter", "a"),
    )


def test_modes_and_methods_are_read_in_any_case_and_kept_in_keycloaks() -> None:
    config = enforcer(
        {
            "enforcement-mode": "permissive",
            "paths": [
                {"path": "/a", "methods": [{"method": "get", "scopes-enforcement-mode": "any"}]}
            ],
        }
    )

    assert config.enforcement_mode == "PERMISSIVE"
    assert config.paths[0].methods == (MethodConfig("GET", (), "ANY"),)


def test_the_same_block_in_toml_is_the_same_configuration(tmp_path: Path) -> None:
    json_file = tmp_path / "keycloak.json"
    json_file.write_text(json.dumps({**KEYCLOAK, "policy-enforcer": DOCUMENTED}))
    toml_file = tmp_path / "adapter.toml"
    toml_file.write_text(
        'issuer = "https://sso.example.com/realms/demo"\n'
        'client-id = "bank-app"\npublic-client = true\n\n'
        "[policy-enforcer]\n"
        'enforcement-mode = "ENFORCING"\n'
        "lazy-load-paths = true\n"
        'on-deny-redirect-to = "/access-denied"\n'
        "user-managed-access = {}\n"
        "path-cache = { max-entries = 200, lifespan = 60000 }\n"
        "[policy-enforcer.claim-information-point.claims]\n"
        + "".join(
            f"{json.dumps(name)} = {json.dumps(value)}\n"
            for name, value in DOCUMENTED["claim-information-point"]["claims"].items()
        )
        + '\n[[policy-enforcer.paths]]\npath = "/users/*"\n'
        '[[policy-enforcer.paths.methods]]\nmethod = "GET"\nscopes = ["urn:app.com:scopes:view"]\n'
        '[[policy-enforcer.paths.methods]]\nmethod = "POST"\n'
        'scopes = ["urn:app.com:scopes:create"]\n'
        '\n[[policy-enforcer.paths]]\nname = "Bank Account"\npath = "/account/{id}"\n'
        'type = "urn:bank-app:resources:account"\n'
        'methods = [{ method = "DELETE", scopes = ["delete", "admin"], '
        'scopes-enforcement-mode = "ANY" }]\n'
        "claim-information-point = { claims = { claim-from-header = \"{request.header['b']}\" } }\n"
        '\n[[policy-enforcer.paths]]\npath = "/public/*"\nenforcement-mode = "DISABLED"\n'
        '\n[[policy-enforcer.paths]]\npath = "/*.html"\nscopes = ["read"]\n'
    )

    assert load_config(toml_file).policy_enforcer == load_config(json_file).policy_enforcer


def test_env_references_are_substituted_in_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDC_TEST_DENIED", "/denied")

    assert enforcer({"on-deny-redirect-to": "${env.OIDC_TEST_DENIED}"}).on_deny_redirect_to == (
        "/denied"
    )


def test_the_summary_names_what_the_block_does() -> None:
    summary = enforcer(DOCUMENTED).summary()

    assert summary.startswith("ENFORCING, 4 path(s), 1 DISABLED")
    assert "lazy, path cache 200 for 60000 ms" in summary
    assert "denied -> /access-denied" in summary
    assert "user-managed access" in summary
    assert "pushes claims" in summary


# 2. refusals: one line, the JSON path, the fix --------------------------------------------------


@pytest.mark.parametrize(
    ("block", "names", "fix"),
    [
        (
            {
                "paths": [
                    {"path": "/a"},
                    {"path": "/b"},
                    {
                        "path": "/c",
                        "methods": [{"method": "GET", "scopes-enforcement-mode": "SOME"}],
                    },
                ]
            },
            "policy-enforcer.paths[2].methods[0].scopes-enforcement-mode",
            "use one of ALL, ANY, DISABLED",
        ),
        (
            {"enforcement-mode": "STRICT"},
            "policy-enforcer.enforcement-mode",
            "ENFORCING, PERMISSIVE",
        ),
        (
            {"lazy-load-path": True},
            "policy-enforcer.lazy-load-path",
            "did you mean lazy-load-paths?",
        ),
        (
            {"paths": [{"path": "/a", "methodz": []}]},
            "policy-enforcer.paths[0].methodz",
            "methods?",
        ),
        (
            {"paths": [{"path": "/a", "methods": [{"method": "GET", "scope": ["x"]}]}]},
            "policy-enforcer.paths[0].methods[0].scope",
            "did you mean scopes?",
        ),
        ({"path-cache": {"lifespan": -5}}, "policy-enforcer.path-cache.lifespan", "at least 0"),
        (
            {"path-cache": {"max-entries": 0}},
            "policy-enforcer.path-cache.max-entries",
            "at least 1",
        ),
        ({"path-cache": {"entries": 5}}, "policy-enforcer.path-cache.entries", "max-entries"),
        ({"paths": [{"name": "x"}]}, "policy-enforcer.paths[0].path", "missing"),
        ({"paths": [{"path": "api/*"}]}, "policy-enforcer.paths[0].path", "starting with /"),
        ({"paths": [{"path": "/api/*/x"}]}, "policy-enforcer.paths[0].path", "trailing /*"),
        ({"paths": [{"path": "/r/x{id}"}]}, "policy-enforcer.paths[0].path", "whole segment"),
        ({"paths": [{"path": "/r/{id"}]}, "policy-enforcer.paths[0].path", "whole segment"),
        (
            {"paths": [{"path": "/a", "methods": [{"method": "GET"}, {"method": "get"}]}]},
            "policy-enforcer.paths[0].methods[1].method",
            "listed twice",
        ),
        (
            {"paths": [{"path": "/a", "methods": [{"method": "G E T"}]}]},
            "policy-enforcer.paths[0].methods[0].method",
            "not an HTTP method",
        ),
        (
            {"paths": [{"path": "/a", "invalidated": True}]},
            "policy-enforcer.paths[0].invalidated",
            "internally",
        ),
        ({"realm": "other"}, "policy-enforcer.realm", "this file's own realm"),
        (
            {"credentials": {"secret": "s"}},
            "policy-enforcer.credentials",
            "this file's credentials",
        ),
        ({"resource": "x"}, "policy-enforcer.resource", "this file's client"),
        ({"auth-server-url": "https://x"}, "policy-enforcer.auth-server-url", "auth-server-url"),
        ({"user-managed-access": True}, "policy-enforcer.user-managed-access", "empty object"),
        ({"on-deny-redirect-to": "denied"}, "policy-enforcer.on-deny-redirect-to", "a path"),
        (
            {"on-deny-redirect-to": "//evil.example"},
            "policy-enforcer.on-deny-redirect-to",
            "a path",
        ),
        (
            {"claim-information-point": {"http": {"url": "http://x"}}},
            "policy-enforcer.claim-information-point.http",
            "claims provider",
        ),
        (
            {"paths": [{"path": "/a", "claim-information-point": {"my-provider": {}}}]},
            "policy-enforcer.paths[0].claim-information-point.my-provider",
            "not supported",
        ),
        (
            {"claim-information-point": {"claims": {"a": "{request.params['a']}"}}},
            "policy-enforcer.claim-information-point.claims.a",
            "unknown placeholder",
        ),
        (
            {"claim-information-point": {"claims": {"a": "{request.body['a']}"}}},
            "policy-enforcer.claim-information-point.claims.a",
            "JSON pointer",
        ),
        (
            {"claim-information-point": {"claims": {"a": "x {request.method"}}},
            "policy-enforcer.claim-information-point.claims.a",
            "unbalanced",
        ),
        (
            {"claim-information-point": {"claims": {"a": 5}}},
            "policy-enforcer.claim-information-point.claims.a",
            "string or a list",
        ),
        (
            {"claim-information-point": {"claims": ["a"]}},
            "policy-enforcer.claim-information-point.claims",
            "claim names and values",
        ),
        ({"paths": {"path": "/a"}}, "policy-enforcer.paths", "must be a list"),
        ("ENFORCING", "policy-enforcer", "must be an object"),
    ],
)
def test_what_cannot_be_honoured_is_refused_in_one_line(block: Any, names: str, fix: str) -> None:
    message = refusal(block)

    assert re.search(rf"(^|: ){re.escape(names)}: ", message), message
    assert fix in message


def test_the_refusal_never_echoes_a_secret_of_the_standalone_enforcer() -> None:
    message = refusal({"credentials": {"secret": "hunter2-very-secret"}})

    assert "hunter2" not in message


@pytest.mark.parametrize(
    "pattern",
    [
        "/",
        "/*",
        "/a",
        "/a/*",
        "/*.html",
        "/a/*.html",
        "/r/{id}",
        "/r/{id}/sub",
        "/r/{id}/*",
        "/{version}/resource",
        "/api/{version}/resource/*",
    ],
)
def test_keycloaks_documented_patterns_are_accepted(pattern: str) -> None:
    assert pattern_problem(pattern) is None
    assert enforcer({"paths": [{"path": pattern}]}).paths[0].path == pattern


# 3. the block in the rest of the configuration ----------------------------------------------------


def test_the_block_is_no_longer_listed_as_not_used() -> None:
    config = load_config({**KEYCLOAK, "policy-enforcer": {}})

    assert "policy-enforcer" not in config.unused_fields


@pytest.mark.filterwarnings("error::adapter.errors.ConfigWarning")
def test_a_block_loads_without_a_warning_now_that_it_is_enforced() -> None:
    load_config({**KEYCLOAK, "policy-enforcer": {}})


def test_the_authorization_docs_examples_load(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/authorization.md's keycloak.json and its TOML twin are the same enforcer."""
    from tests.docs_blocks import run_by

    keycloak_json, native = run_by(request.node.nodeid)
    monkeypatch.setenv("BANK_APP_SECRET", "s" * 32)

    from_json = load_config(json.loads(keycloak_json.text))
    from_toml = load_config(tomllib.loads(native.text))

    assert from_json.policy_enforcer == from_toml.policy_enforcer
    assert from_json.policy_enforcer is not None
    assert [p.path for p in from_json.policy_enforcer.paths] == [
        "/users/*",
        "/account/{id}",
        "/public/*",
    ]
    assert from_json.policy_enforcer.on_deny_redirect_to == "/access-denied"


_KEYS = st.sampled_from(
    [
        "enforcement-mode", "paths", "path", "methods", "method", "scopes", "name",
        "scopes-enforcement-mode", "path-cache", "lifespan", "max-entries", "lazy-load-paths",
        "claim-information-point", "claims", "user-managed-access", "on-deny-redirect-to", "x",
    ]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**12),
    st.sampled_from(["/a", "/*", "/r/{id}", "ANY", "GET", "{request.method}", "{x", "", "*"]),
    st.text(max_size=8),
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


@given(_DOCUMENTS)
@settings(max_examples=300, deadline=None)
def test_any_block_loads_or_is_one_config_error(block: Any) -> None:
    """The block is hostile input like the rest of the file: never a traceback."""
    message = ""
    try:
        config = load_config({**KEYCLOAK, "policy-enforcer": block}).policy_enforcer
    except ConfigError as error:
        message = str(error)
    else:  # what loads writes back as a document that loads the same (config convert's way)
        assert config is None or enforcer(config.as_document()) == config
    assert "\n" not in message


def test_the_documented_block_writes_back_as_it_reads() -> None:
    config = enforcer(DOCUMENTED)

    assert enforcer(config.as_document()) == config
    assert enforcer(json.loads(json.dumps(config.as_document()))) == config
    assert config.as_document()["paths"][1]["methods"] == [
        {"method": "DELETE", "scopes": ["delete", "admin"], "scopes-enforcement-mode": "ANY"}
    ]
