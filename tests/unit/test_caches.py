"""The request-path caches stay within their byte budgets whatever the traffic (review item 10)."""

from __future__ import annotations

import time
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from adapter.protocol.tokens import RefusedTokens, ValidatedTokenCache
from adapter.stores import MemoryStore
from adapter.web._decisions import DecisionCache, server_names
from adapter.web._http import cookie_span, parse_cookie_header
from adapter.web.session import EndedSessions


def test_decision_cache_is_bounded_in_bytes() -> None:
    cache: DecisionCache[str] = DecisionCache(max_bytes=1024 * 1024)
    deadline = time.time() + 60
    for index in range(10_000):
        cache.put(f"{index:06d}" + "v" * 4000, f"sid-{index}", "outcome", deadline, size=12_000)
    assert cache.size <= 1024 * 1024
    assert 0 < len(cache) < 100
    assert cache.get("009999" + "v" * 4000) == "outcome", "the newest stay"


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


def test_decision_cache_forgets_only_the_sessions_a_logout_names() -> None:
    """Sessions are known by the server's names too: a logout of a server session or of a user
    forgets those (all of their cookies) and nothing else; names leave with their sessions."""
    names = {"alice-1": ("s1", "alice"), "alice-2": ("s2", "alice"), "bob": ("s3", "bob")}
    cache: DecisionCache[str] = DecisionCache(names=lambda sid: server_names(*names[sid]))
    deadline = time.time() + 60
    for sid in names:
        cache.put(f"cookie-{sid}", sid, sid, deadline, size=100)
    cache.forget_named(server_names("s1", None))
    assert cache.get("cookie-alice-1") is None
    assert cache.get("cookie-alice-2") == "alice-2"
    cache.forget_named(server_names(None, "alice"))
    assert cache.get("cookie-alice-2") is None
    assert cache.get("cookie-bob") == "bob"
    cache.forget_session("bob")
    assert not cache._named, "no name outlives its sessions"
    unnamed: DecisionCache[str] = DecisionCache()  # cannot tell sessions apart: forgets all
    unnamed.put("cookie", "sid", "x", deadline, size=100)
    unnamed.forget_named(server_names(None, "someone-else"))
    assert len(unnamed) == 0


def test_a_session_remembered_again_is_still_known_by_its_server_names() -> None:
    """The same cookie remembered twice (a path under an [[access]] rule decided in full, two
    threads meeting a new cookie), or a session whose last other entry was just evicted: a
    back-channel logout still finds it (a review found one forgotten by name and kept)."""
    cache: DecisionCache[str] = DecisionCache(names=lambda outcome: server_names("s1", "alice"))
    deadline = time.time() + 60
    cache.put("cookie", "sid-1", "first", deadline, size=100)
    cache.put("cookie", "sid-1", "again", deadline, size=100)
    cache.forget_named(server_names("s1", None))
    assert cache.get("cookie") is None
    entry = 6 + 100 + 400  # a value of 6 characters, its size, the overhead
    # The outcome names its session: alice's is known by the server's names, the others not.
    full: DecisionCache[str] = DecisionCache(
        max_bytes=16 * entry, names=lambda outcome: server_names("s1", outcome)
    )
    full.put("cookie", "sid-1", "alice", deadline, size=100)
    for index in range(15):
        full.put(f"other{index:x}", f"sid-other-{index}", f"user{index}", deadline, size=100)
    full.put("sealed", "sid-1", "alice", deadline, size=100)  # evicts "cookie": its last key
    assert full.get("cookie") is None
    assert full.get("sealed") == "alice"
    full.forget_named(server_names(None, "alice"))
    assert full.get("sealed") is None, "known by name after its last key was evicted"


def test_decision_cache_refuses_what_was_decided_before_a_clear() -> None:
    cache: DecisionCache[str] = DecisionCache()
    deadline = time.time() + 60
    since = cache.generation
    cache.clear()
    cache.put("cookie", "sid", "old", deadline, size=10, since=since)
    assert cache.get("cookie") is None
    cache.put("cookie", "sid", "new", deadline, size=10, since=cache.generation)
    assert cache.get("cookie") == "new"


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


def test_ended_sessions_never_forget_an_ended_session_early() -> None:
    """Full: the oldest record gives way to a watermark that refuses every session created
    before it (fail closed), so churning logouts cannot revive a stolen cookie."""
    now = time.time()
    ended = EndedSessions(max_entries=3)
    ended.end("victim", created_at=now - 100, until=now + 3600)
    for index in range(5):
        ended.end(f"churn-{index}", created_at=now - 50 + index, until=now + 3600)
    assert len(ended) == 3
    assert ended.refuses("victim", now - 100), "evicted, still refused"
    assert ended.refuses("someone-old", now - 60), "older sessions are refused with it"
    assert not ended.refuses("someone-new", now)


def test_memory_store_is_bounded_in_bytes() -> None:
    store = MemoryStore(max_bytes=1024 * 1024)
    for index in range(200):
        store.save(f"sid-{index}", {"at": "t" * 30_000, "claims": {"sub": str(index)}})
    assert store.size <= 1024 * 1024
    assert store.load("sid-199") is not None, "the newest stay"
    assert store.load("sid-0") is None


COOKIE_TEXT = st.text(st.sampled_from('ab=; \t"_-_Hos'), max_size=40)


@given(prefix=COOKIE_TEXT, suffix=COOKIE_TEXT, value=st.text('xyz=" ', max_size=8))
def test_the_fast_cookie_scan_agrees_with_the_parser(prefix: str, suffix: str, value: str) -> None:
    """The hot path finds a cookie exactly where the full parser does: never inside another
    cookie's value (``a=x __Host-s=y`` is one cookie, ``a``)."""
    header = f"{prefix}__Host-s={value}{suffix}"
    assert scanned(header, "__Host-s") == parse_cookie_header(header).get("__Host-s")
    tossed = "foo=x __Host-s=attacker; __Host-s=victim"
    assert scanned(tossed, "__Host-s") == "victim"


def scanned(header: str, name: str) -> str | None:
    """The value at :func:`cookie_span`, stripped as the parser strips it."""
    span = cookie_span(header, name)
    return None if span is None else header[span[0] : span[1]].strip().strip('"')


def test_server_logouts_keep_the_later_logout_and_fail_closed_when_full() -> None:
    from adapter.web.session import ServerLogouts

    now = time.time()
    logouts = ServerLogouts(max_entries=2)
    logouts.apply(None, "alice", at=now, until=now + 3600)
    logouts.apply(None, "alice", at=now - 100, until=now + 10)  # an older record, read later
    assert logouts.refuses({"sub": "alice"}, created_at=now - 50), "not rolled back"
    logouts.apply("sid-1", None, at=now - 30, until=now + 3600)
    logouts.apply("sid-2", None, at=now - 20, until=now + 3600)
    logouts.apply("sid-3", None, at=now - 10, until=now + 3600)  # pushes sid-1 out
    assert logouts.refuses({"sid": "sid-1", "sub": "bob"}, created_at=now - 40)
    assert not logouts.refuses({"sid": "sid-9", "sub": "bob"}, created_at=now)
