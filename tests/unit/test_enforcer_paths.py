"""Path matching as Keycloak's policy enforcer does it (adapter/web/_enforcer_paths.py): its
patterns, which configured path wins when several match, resource instances, and the
bounded, expiring path cache of lazily loaded paths (the scopes a method needs:
test_enforcer_permissions.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.config.policy_enforcer import (
    MethodConfig,
    PathCacheConfig,
    PathConfig,
    PolicyEnforcerConfig,
)
from adapter.web._enforcer_paths import (
    PathCache,
    PathMatcher,
    instance_path,
    instance_uris,
    normalize,
    path_matcher,
    paths_from_resource,
    should_ask_server,
)

# The patterns of Keycloak's Authorization Services documentation (policy enforcer, "paths"):
# wildcard, suffix, sub-paths, path parameters, exact match, and the patterns beside them.
CONFIGURED = (
    "/*",
    "/*.html",
    "/resource",
    "/resource/*",
    "/resource/{id}",
    "/resource/{id}/sub",
    "/api/{version}/resource",
    "/api/{version}/resource/*",
    "/api/v1/resource",
)


def matcher(*patterns: str) -> PathMatcher[str]:
    return PathMatcher(patterns, lambda pattern: pattern)


# 1. Keycloak's documented patterns and its precedence --------------------------------------


@pytest.mark.parametrize(
    ("request_path", "winner", "kind"),
    [
        ("/resource", "/resource", "exact"),  # exact before everything
        ("/resource/1", "/resource/{id}", "template"),  # template before wildcard
        ("/resource/1/sub", "/resource/{id}/sub", "template"),
        ("/resource/1/other", "/resource/*", "wildcard"),  # the longest wildcard
        ("/resource/a/b/c", "/resource/*", "wildcard"),
        ("/page.html", "/*.html", "suffix"),  # suffix before wildcard
        ("/deep/er/page.html", "/*.html", "suffix"),
        ("/resource/page.html", "/resource/{id}", "template"),  # template before suffix
        ("/other", "/*", "wildcard"),
        ("/", "/*", "exact"),  # /* at its own root
        ("/api/v1/resource", "/api/v1/resource", "exact"),  # exact before template
        ("/api/v2/resource", "/api/{version}/resource", "template"),
        ("/api/v2/resource/7", "/api/{version}/resource/*", "wildcard"),
        ("/api/v2/other", "/*", "wildcard"),
    ],
)
def test_keycloaks_documented_patterns_and_precedence(
    request_path: str, winner: str, kind: str
) -> None:
    found = matcher(*CONFIGURED).match(request_path)

    assert found is not None
    assert (found.pattern, found.kind) == (winner, kind)


def test_the_order_of_the_file_does_not_change_the_winner_across_kinds() -> None:
    for request_path in ("/resource/1", "/resource/1/x", "/a.html", "/x", "/api/v1/resource"):
        forward = matcher(*CONFIGURED).match(request_path)
        backward = matcher(*reversed(CONFIGURED)).match(request_path)
        assert forward is not None
        assert backward is not None
        assert forward.pattern == backward.pattern, request_path


def test_a_sub_path_wildcard_at_its_root_is_an_exact_match_the_first_wins() -> None:
    """Keycloak returns /a/* for /a as it returns an exact /a: whichever the file has first."""
    first = matcher("/resource/*", "/resource").match("/resource")
    second = matcher("/resource", "/resource/*").match("/resource")

    assert first is not None
    assert (first.pattern, first.kind) == ("/resource/*", "exact")
    assert second is not None
    assert second.pattern == "/resource"


def test_a_sub_path_wildcard_covers_its_root_but_not_a_longer_name() -> None:
    api = matcher("/api/*")

    assert api.match("/api") is not None
    assert api.match("/api/x") is not None
    assert api.match("/apix") is None
    assert api.match("/") is None


def test_template_parameters_are_one_whole_segment_and_are_given_back() -> None:
    found = matcher("/account/{id}/items/{item}").match("/account/42/items/7")

    assert found is not None
    assert dict(found.params) == {"id": "42", "item": "7"}
    assert matcher("/account/{id}").match("/account/42/more") is None
    assert matcher("/account/{id}").match("/account") is None


def test_the_template_with_more_literal_segments_wins() -> None:
    found = matcher("/r/{a}/{b}", "/r/{a}/sub").match("/r/1/sub")

    assert found is not None
    assert found.pattern == "/r/{a}/sub"


def test_among_equals_the_first_exact_and_the_last_suffix_win() -> None:
    entries = [PathConfig("/a", name="first"), PathConfig("/a", name="second")]
    exact = PathMatcher(entries, lambda path: path.path).match("/a")
    suffixes = [PathConfig("/*.html", name="first"), PathConfig("/*.html", name="last")]
    suffix = PathMatcher(suffixes, lambda path: path.path).match("/x.html")

    assert exact is not None
    assert exact.entry.name == "first"
    assert suffix is not None
    assert suffix.entry.name == "last"


def test_a_suffix_pattern_keeps_its_directory_here() -> None:
    """The one documented difference: Keycloak matches /static/*.html by the extension only."""
    static = matcher("/static/*.html")

    assert static.match("/static/a.html") is not None
    assert static.match("/static/deep/a.html") is not None
    assert static.match("/other/a.html") is None


def test_no_configured_path_is_no_match() -> None:
    assert matcher("/a", "/b/*").match("/c") is None


# 2. request paths: the path the app routes, never rewritten but for a trailing slash ---------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/resource", "/resource"),
        ("/resource/", "/resource"),
        ("/", "/"),
        ("/resource;jsessionid=1", "/resource;jsessionid=1"),  # as the app sees it
        ("/%72esource", "/%72esource"),  # decoded once by the server: never again here
        ("/a?b", "/a?b"),  # a decoded %3F is part of the path
        ("//resource", None),
        ("/a//b", None),
        ("/resource//", None),
        ("/x/../resource", None),
        ("/./resource", None),
        ("/resource/.", None),
        ("/../resource", None),
        ("resource", None),
        ("", None),
    ],
)
def test_request_paths_are_taken_as_the_app_routes_them(raw: str, normal: str | None) -> None:
    assert normalize(raw) == normal


def test_a_path_the_app_could_read_otherwise_matches_nothing() -> None:
    """Dot and empty segments are refused (the enforcer answers 400): resolved here, they
    could move a request into a weaker entry than the one the app's route serves."""
    admin = matcher("/api/admin", "/api/*", "/public/*")

    for dodge in ("/api/x/../admin", "/api//admin/", "/api/../public/x", "/api/./admin"):
        assert admin.match(dodge) is None, dodge
    found = admin.match("/api/admin/")
    assert found is not None
    assert found.pattern == "/api/admin"


@given(st.text(alphabet="/.%;?#ab2F", max_size=12))
def test_normalising_is_idempotent(raw: str) -> None:
    once = normalize("/" + raw)
    if once is not None:
        assert normalize(once) == once
        assert "//" not in once
        assert "/./" not in once
        assert "/../" not in once
        assert once == "/" + raw or once + "/" == "/" + raw, "nothing rewritten but a slash"


ACCOUNT = PathConfig(
    "/account/{id}",
    scopes=("view", "delete"),
    methods=(MethodConfig("GET", ("view",)), MethodConfig("DELETE", ("delete",), "ANY")),
)


# 3. lazily loaded paths ---------------------------------------------------------------------


def test_a_server_resource_stands_for_one_path_per_uri() -> None:
    resource = {
        "_id": "r-1",
        "name": "Bank Account",
        "type": "urn:bank:account",
        "uris": ["/account/{id}", "/accounts/{id}"],
        "resource_scopes": [{"name": "view"}, {"name": "delete"}],
    }

    paths = paths_from_resource(resource)

    assert [path.path for path in paths] == ["/account/{id}", "/accounts/{id}"]
    assert {(p.id, p.name, p.type, p.scopes) for p in paths} == {
        ("r-1", "Bank Account", "urn:bank:account", ("view", "delete"))
    }


def test_the_server_is_asked_for_unmatched_and_wildcard_paths_when_lazy() -> None:
    lazy = PolicyEnforcerConfig(paths=(PathConfig("/*"), PathConfig("/a")), lazy_load_paths=True)
    eager = PolicyEnforcerConfig(paths=lazy.paths)
    lazy_matcher = path_matcher(lazy)

    assert should_ask_server(lazy, lazy_matcher.match("/x")) is True  # only /* covers it
    assert should_ask_server(lazy, lazy_matcher.match("/a")) is False
    assert should_ask_server(lazy, None) is True
    assert should_ask_server(eager, None) is False
    assert should_ask_server(PolicyEnforcerConfig(path_cache=PathCacheConfig()), None) is True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_path_cache_remembers_for_its_lifespan_misses_too() -> None:
    clock = Clock()
    cache: PathCache[str] = PathCache(PathCacheConfig(max_entries=10, lifespan=30000), clock)
    cache.put("/a", "resource-a")
    cache.put("/nothing", None)

    assert cache.get("/a") == (True, "resource-a")
    assert cache.get("/nothing") == (True, None)
    assert cache.get("/b") == (False, None)
    clock.now += 29.999
    assert cache.get("/a") == (True, "resource-a")
    clock.now += 0.001
    assert cache.get("/a") == (False, None)
    assert len(cache) == 1  # the expired entry left


def test_the_path_cache_holds_at_most_max_entries_least_recently_used_leave() -> None:
    cache: PathCache[int] = PathCache(PathCacheConfig(max_entries=2, lifespan=30000), Clock())
    cache.put("/1", 1)
    cache.put("/2", 2)
    assert cache.get("/1") == (True, 1)  # /2 is now the least recently used
    cache.put("/3", 3)

    assert cache.get("/2") == (False, None)
    assert cache.get("/1") == (True, 1)
    assert cache.get("/3") == (True, 3)
    assert len(cache) == 2


def test_a_zero_lifespan_caches_nothing() -> None:
    cache: PathCache[int] = PathCache(PathCacheConfig(max_entries=2, lifespan=0), Clock())
    cache.put("/1", 1)

    assert cache.get("/1") == (False, None)


def test_a_template_match_looks_its_instance_up_by_path_then_parent() -> None:
    found = matcher("/resource/{id}/*", "/account/{id}", "/*").match("/resource/1/test/")
    account = matcher("/account/{id}").match("/account/7")
    plain = matcher("/*").match("/x")

    assert found is not None
    assert instance_uris(found, "/resource/1/test/") == ("/resource/1/test", "/resource/1")
    assert account is not None
    assert instance_uris(account, "/account/7") == ("/account/7",)
    assert plain is not None
    assert instance_uris(plain, "/x") == ()


def test_an_instance_keeps_the_patterns_methods_and_mode() -> None:
    instance = instance_path(
        ACCOUNT,
        {"_id": "alice-account", "name": "Alice Account", "uris": ["/account/alice"], "type": "t"},
    )

    assert instance is not None
    assert (instance.id, instance.name, instance.path) == (
        "alice-account",
        "Alice Account",
        "/account/alice",
    )
    assert instance.methods == ACCOUNT.methods
    assert instance.scopes == ACCOUNT.scopes
    assert instance_path(ACCOUNT, {"_id": "x", "uris": []}) is None
