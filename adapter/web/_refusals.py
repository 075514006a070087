"""The answer to a request that needs a signed-in user and has none: 401 or a login redirect.

An API client gets ``401`` with the bearer challenge (its body JSON when it asks for JSON); a
browser's page navigation gets a redirect to the login route that comes back to the page. Both
the entry's shortcut (a request without credentials) and the full path (a session that ended)
answer here, so they cannot differ. The answers are built once: the 401s per state, each
redirect per target (bounded).
"""

from __future__ import annotations

from urllib.parse import urlencode

from adapter.web._bearer import challenge
from adapter.web._http import MAX_RETURN_PATH, wants_json
from adapter.web._steps import Respond

LOGIN_REDIRECTS_KEPT = 512  # redirect answers remembered per state, by target


class Refusals:
    """The 401 and the login redirects for one configuration (immutable, shared answers)."""

    def __init__(self, client_id: str, login_path: str) -> None:
        self.challenge = challenge(client_id, None)
        self.challenge_json = challenge(client_id, None, as_json=True)  # Accept: JSON
        self._login_path = login_path
        self._redirects: dict[tuple[str, str], Respond] = {}

    def answer(
        self,
        method: str,
        raw_path: str,
        query: str,
        root_path: str,
        accept: str,
        fetch_mode: str | None,
        requested_with: str | None,
    ) -> Respond:
        """401 for an API client, a redirect to log in (back to this page) for a browser's page
        navigation; a shell hands the server a list of its own."""
        if not page_navigation(method, accept, fetch_mode, requested_with):
            return self.challenge_json if wants_json(accept) else self.challenge
        target = raw_path + (f"?{query}" if query else "")
        if len(target) > MAX_RETURN_PATH:  # it would not come back anyway (safe_return_path)
            target = raw_path if len(raw_path) <= MAX_RETURN_PATH else "/"
        key = (root_path, target)
        answer = self._redirects.get(key)
        if answer is None:
            # ``next`` is relative to the app's root: a login can only return inside it.
            location = f"{root_path}{self._login_path}?{urlencode({'next': target})}"
            answer = Respond(302, (("Location", location), ("Cache-Control", "no-store")))
            if len(self._redirects) >= LOGIN_REDIRECTS_KEPT:
                self._redirects.clear()  # bounded: junk paths cannot grow it
            self._redirects[key] = answer
        return answer


def page_navigation(
    method: str, accept: str, fetch_mode: str | None, requested_with: str | None
) -> bool:
    """Whether a browser is loading a page (it can follow a login redirect), rather than a
    script or an API client asking for data (it needs the 401)."""
    if method not in ("GET", "HEAD"):
        return False
    if fetch_mode:
        navigation = fetch_mode == "navigate"
    else:
        navigation = "text/html" in accept or not accept or accept.strip() == "*/*"
    xhr = requested_with is not None and requested_with.lower() == "xmlhttprequest"
    return navigation and not xhr and not wants_json(accept)
