"""A signed-in session's outcome: built from its session, remembered, and decided for a
session cookie this process meets for the first time.

The full path (:meth:`WebCore._with_session`) and the entry's miss (:func:`first_seen`) build
the same outcome here and remember it for the same time: until the access token needs a
refresh, the session ends, or a minute passes (:mod:`adapter.web._decisions`).
"""

from __future__ import annotations

import time

from adapter.web._context import RouteContext
from adapter.web._refresh import needs_refresh, refresh_margin
from adapter.web._steps import Identity, Proceed
from adapter.web.session import Session, is_split

DECISION_REUSE = 60  # seconds a session's decision is remembered at most


def first_seen(context: RouteContext, value: str | bytes) -> Proceed | None:
    """The outcome for a session cookie value not decided before, where opening it is all the
    full path would do; ``None`` where it would do more (a store to read, news from the other
    processes, a refresh due, a split cookie, anything refused). So the first request of each
    session (after a deploy; with many workers, in every worker) costs the cookie's opening,
    not a request object and the full path's steps (the ``unseen session`` bench row)."""
    if context.config.bearer_only or is_split(value):
        return None
    since = context.decisions.generation
    session = context.cookies.opened(value)
    if session is None or needs_refresh(context, session):
        return None
    outcome = signed_in(context, session, [])
    remember(context, value, session, outcome, since)  # the bytes as they came: not encoded
    return outcome


def signed_in(context: RouteContext, session: Session, cookies: list[str]) -> Proceed:
    """The outcome for a request of ``session``, setting ``cookies`` (a refresh's)."""
    private = context.web.private_responses
    return Proceed(identity(context, session), cookies, private=private, vary_cookie=private)


def identity(context: RouteContext, session: Session) -> Identity:
    """The identity the app sees for ``session``."""
    return context.identity_from_claims(
        session.claims,
        access_token=session.access_token,
        id_token=session.id_token,
        csrf_token=session.csrf,
        scope=session.scope,
        dpop_key=session.bound_key,
    )


def remember(
    context: RouteContext,
    value: str | bytes,
    session: Session,
    outcome: Proceed,
    since: int,
) -> None:
    """Remember ``outcome`` for the session cookie ``value`` while it holds; ``since``: the
    decision cache's generation when the session was loaded (a clear since then, a reload or
    news that may have been missed, and it is not remembered). A core whose configuration was
    replaced meanwhile remembers nothing (its epoch is no longer the cache's): its outcome was
    decided under the old one, and the new one's entry would find it."""
    if context.config.bearer_only or not context.cookies.sharing.live():
        return  # while another process's news could be missed, decide every time
    if context.decisions.epoch != context.decisions_epoch:
        return  # read before the put: a renewal after it bumps the generation ``since`` holds
    if is_split(value):
        return  # split across cookies: rare and large, decided in full each time
    now = time.time()
    deadline = min(now + DECISION_REUSE, int(session.created_at) + context.web.session_max_age)
    if session.expires_at is not None:
        deadline = min(deadline, session.expires_at - refresh_margin(context))
    if deadline > now:
        context.decisions.put(value, session.sid, outcome, deadline, 3 * len(value), since)
        # A logout may have ended the session since it was loaded: it records the end before
        # it forgets the session's decisions, so checking after the put leaves no moment in
        # which an ended session stays remembered.
        cookies = context.cookies
        if cookies.ended.refuses(session.sid, session.created_at) or cookies.logouts.refuses(
            session.claims, session.created_at
        ):
            context.decisions.forget_session(session.sid)
