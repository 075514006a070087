"""DPoP as a client (RFC 9449 §5, §8): every call that asks for or uses a DPoP-bound token
carries a fresh proof of the client's key, and a server's ``DPoP-Nonce`` is remembered and
answered.

:class:`DPoPProofs` is an ``httpx.Auth``: to the token endpoint it wraps the client
authentication (a retry signs a fresh client assertion too: its ``jti`` must not repeat); to an
API it carries the token (``Authorization: DPoP``, the proof's ``ath``). A server that answers
``use_dpop_nonce`` (400 from a token endpoint, 401 from an API) with a ``DPoP-Nonce`` is asked
again once, with that nonce; the nonce is kept per server (its origin) for the next calls, and
a newer one a server sends with any answer replaces it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator
from urllib.parse import urlsplit

import httpx

from adapter.protocol.dpop import DPoPKey, make_proof

MAX_SERVERS = 256  # origins whose nonce is remembered (a handful in practice)


class DPoPNonces:
    """The last ``DPoP-Nonce`` of each server (by origin), shared by a process's calls."""

    def __init__(self) -> None:
        self._by_origin: dict[str, str] = {}
        self._lock = threading.Lock()
        self.retries = 0  # use_dpop_nonce answers asked again (for tests and metrics)

    def get(self, url: httpx.URL) -> str | None:
        return self._by_origin.get(_origin(url))

    def keep(self, url: httpx.URL, response: httpx.Response) -> str | None:
        """Remember the nonce ``response`` sends (if any); it is returned."""
        nonce: str | None = response.headers.get("dpop-nonce")
        if nonce is None or not nonce.isascii() or len(nonce) > 512:
            return None
        with self._lock:
            if len(self._by_origin) >= MAX_SERVERS:
                self._by_origin.clear()
            self._by_origin[_origin(url)] = nonce
        return nonce


NONCES = DPoPNonces()  # the process's: servers' nonces are per server, not per client


class DPoPProofs(httpx.Auth):
    """A fresh DPoP proof of ``key`` on every request; with ``inner``, the client
    authentication too (signed again for the one retry); with ``access_token``, the token as
    ``Authorization: DPoP`` and its hash in the proof."""

    def __init__(
        self,
        key: DPoPKey,
        inner: httpx.Auth | None = None,
        *,
        access_token: str | None = None,
        nonces: DPoPNonces = NONCES,
    ) -> None:
        self.key = key
        self.inner = inner
        # A token endpoint says use_dpop_nonce in its JSON body; an API in its challenge: its
        # (maybe large) answers are not read whole for that.
        self.requires_response_body = inner is not None
        self.access_token = access_token
        self.nonces = nonces

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        for attempt in (1, 2):
            sent = self._signed(_copy(request))
            response = yield sent
            fresh = self.nonces.keep(request.url, response)
            if attempt == 2 or fresh is None or not _asks_for_nonce(response):
                return
            self.nonces.retries += 1

    def _signed(self, request: httpx.Request) -> httpx.Request:
        if self.inner is not None:
            request = next(self.inner.sync_auth_flow(request))
        nonce = self.nonces.get(request.url)
        proof = make_proof(
            self.key,
            request.method,
            str(request.url),
            access_token=self.access_token,
            nonce=nonce,
        )
        request.headers["DPoP"] = proof
        if self.access_token is not None:
            request.headers["Authorization"] = f"DPoP {self.access_token}"
        return request

    def __repr__(self) -> str:
        return f"DPoPProofs({self.key!r})"


def _copy(request: httpx.Request) -> httpx.Request:
    """The request as first built (a retry must not carry the first try's assertion)."""
    return httpx.Request(
        request.method,
        request.url,
        headers=request.headers.copy(),
        content=request.content,
        extensions=dict(request.extensions),
    )


def _asks_for_nonce(response: httpx.Response) -> bool:
    """``use_dpop_nonce``: in a token endpoint's JSON error, or an API's challenge."""
    if response.status_code not in (400, 401):
        return False
    if 'error="use_dpop_nonce"' in response.headers.get("www-authenticate", ""):
        return True
    try:
        document = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("error") == "use_dpop_nonce"


def _origin(url: httpx.URL) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}".lower()
