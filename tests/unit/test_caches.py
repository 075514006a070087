"""The request-path caches stay within their byte budgets whatever the traffic (review item 10)."""

from __future__ import annotations

import time
import tracemalloc

from adapter._decisions import DecisionCache
from adapter.tokens import RefusedTokens, ValidatedTokenCache


def test_decision_cache_is_bounded_in_bytes() -> None:
    cache: DecisionCache[str] = DecisionCache(max_bytes=1024 * 1024)
    deadline = time.time() + 60
    for index in range(10_000):
        cache.put(f"{index:06d}" + "v" * 4000, f"sid-{index}", "outcome", deadline, size=12_000)
    assert cache.size <= 1024 * 1024
    assert 0 < len(cache) < 100
    assert cache.get("009999" + "v" * 4000) == "outcome", "the newest entries stay"


def test_decision_cache_shares_one_outcome_per_session_and_forgets_it_whole() -> None:
    cache: DecisionCache[object] = DecisionCache()
    deadline = time.time() + 60
    first, second = object(), object()
    cache.put("cookie-a", "sid-1", first, deadline, size=100)
    cache.put("cookie-b", "sid-1", second, deadline, size=100)  # the same session, re-sealed
    assert cache.get("cookie-a") is second, "one identity per session: the newest"
    cache.put("cookie-c", "sid-2", first, deadline, size=100)
    cache.forget_session("sid-1")
    assert cache.get("cookie-a") is None
    assert cache.get("cookie-b") is None
    assert cache.get("cookie-c") is first
    assert len(cache) == 1


def test_decision_cache_drops_expired_entries_as_it_inserts() -> None:
    cache: DecisionCache[str] = DecisionCache()
    past = time.time() - 1
    for index in range(5):
        cache.put(f"old-{index}", f"sid-{index}", "x", past, size=10)
    cache.put("new", "sid-new", "y", time.time() + 60, size=10)
    assert len(cache) == 1


def test_validated_token_cache_is_bounded_in_bytes() -> None:
    cache = ValidatedTokenCache(max_bytes=4 * 1024 * 1024)
    claims = {"iss": "https://sso.example.com", "exp": time.time() + 3600, "sub": "u"}
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(10_000):
        cache.put(f"{index:06d}." + "t" * 8000, claims)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert cache.size <= 4 * 1024 * 1024
    assert grown < 8 * 1024 * 1024, f"grew by {grown} bytes for a 4 MB budget"


def test_validated_token_cache_drops_expired_entries_as_it_inserts() -> None:
    cache = ValidatedTokenCache()
    for index in range(5):
        cache.put(f"old-{index}", {"exp": time.time() - 1})
    cache.put("new", {"exp": time.time() + 60})
    assert len(cache) == 1


def test_refused_tokens_are_forgotten_after_their_window() -> None:
    refused = RefusedTokens(seconds=0.0)
    refused.add("k")
    assert "k" not in refused
    lasting = RefusedTokens(seconds=10, max_entries=3)
    for key in "abcd":
        lasting.add(key)
    assert "a" not in lasting
    assert "d" in lasting
    assert len(lasting) == 3
