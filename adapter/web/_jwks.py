"""The ``/k_jwks`` answers: built once per key ring, chosen per request without decoding.

The identity server fetches this endpoint on every key cache miss and revalidates it with the
ETag; both answers are the same objects for every request of a key ring (immutable
:class:`Respond` values: a shell hands the server lists of its own). The tenant the answers are
reported under (metrics) is fixed with them: the configured name, nothing read per request.
"""

from __future__ import annotations

from adapter import _observe
from adapter.keys.keyring import KeyRing
from adapter.web._http import etags
from adapter.web._steps import Respond


class JwksAnswers:
    """The three ``/k_jwks`` answers (200, HEAD's 200, 304) and the ETag as sent, for the key
    ring of ``tenant`` (its configured name; ``None``: a plain configuration)."""

    __slots__ = ("_etag", "_etag_bytes", "_head", "_not_modified", "_ok", "_tenant")

    def __init__(self, ring: KeyRing, tenant: str | None = None) -> None:
        etag, body = ring.etag, ring.jwks_bytes
        common = (("ETag", etag), ("Cache-Control", "public, max-age=60"))
        full = (*common, ("Content-Type", "application/json"), ("Content-Length", str(len(body))))
        self._ok = Respond(200, full, body)
        self._head = Respond(200, full)
        self._not_modified = Respond(304, common)
        self._etag = etag
        self._etag_bytes = etag.encode("latin-1")
        self._tenant = tenant

    def answer(self, method: str, if_none_match: str | bytes | None) -> Respond | None:
        """The answer (``None``: not GET/HEAD). ``if_none_match`` may be the header's bytes as
        ASGI gives it: the server's two usual requests (a fetch without it, a revalidation with
        the exact ETag) are answered first, without decoding anything."""
        if method == "GET" and if_none_match is None:
            if _observe.listening:
                _observe.observer.jwks_answer(self._tenant, 200, self._etag)
            return self._ok
        if method != "GET" and method != "HEAD":
            return None
        matched = if_none_match is not None and (
            if_none_match == self._etag_bytes or self._listed(if_none_match)
        )
        if _observe.listening:
            _observe.observer.jwks_answer(self._tenant, 304 if matched else 200, self._etag)
        if matched:
            return self._not_modified
        return self._ok if method == "GET" else self._head

    def _listed(self, if_none_match: str | bytes) -> bool:
        header = (
            if_none_match.decode("latin-1") if isinstance(if_none_match, bytes) else if_none_match
        )
        return bool(header) and (header == self._etag or self._etag in etags(header))
