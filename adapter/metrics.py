"""Prometheus metrics for operators (the ``metrics`` extra: ``prometheus_client``).

    from adapter.metrics import enable, metrics_app
    enable(middleware)                       # start counting (once per process)
    app.mount("/metrics", metrics_app())     # ASGI; metrics_wsgi_app() for WSGI

What is counted: sign-ins (ok / refused), refreshes (ok / failed), calls to the token endpoint
and their latency, ``/k_jwks`` answers (200 / 304), reloads (ok / refused); and, read when
scraped: each key's state, the next switch time, and when ``/k_jwks`` was first fetched after
the key set last changed (so an operator sees the identity server has picked up a ``next``
key before it becomes active).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from adapter import _observe


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            "adapter.metrics needs prometheus_client; install the extra: "
            "pip install 'oidc-adapter[metrics]'"
        ) from None
    return prometheus_client


class _Counting(_observe.Observer):
    """Reports turned into Prometheus series (in ``registry``)."""

    def __init__(self, registry: Any) -> None:
        prom = _prometheus()
        self.logins = prom.Counter(
            "oidc_adapter_logins", "Sign-ins by result", ["result"], registry=registry
        )
        self.refreshes = prom.Counter(
            "oidc_adapter_refreshes", "Token refreshes by result", ["result"], registry=registry
        )
        self.token_calls = prom.Histogram(
            "oidc_adapter_token_call_seconds",
            "Calls to the identity server's token endpoint, by result",
            ["result"],
            registry=registry,
        )
        self.jwks = prom.Counter(
            "oidc_adapter_jwks_answers", "/k_jwks answers by status", ["status"], registry=registry
        )
        self.reloads = prom.Counter(
            "oidc_adapter_reloads", "Configuration reloads by result", ["result"], registry=registry
        )
        self.key_set_etag = ""
        self.key_set_first_fetch = 0.0

    def login(self, ok: bool) -> None:
        self.logins.labels("ok" if ok else "refused").inc()

    def refresh(self, ok: bool) -> None:
        self.refreshes.labels("ok" if ok else "failed").inc()

    def token_call(self, seconds: float, ok: bool) -> None:
        self.token_calls.labels("ok" if ok else "failed").observe(seconds)

    def jwks_answer(self, status: int, etag: str) -> None:
        self.jwks.labels(str(status)).inc()
        if etag != self.key_set_etag:  # a new key set: its first fetch is the one that counts
            self.key_set_etag, self.key_set_first_fetch = etag, time.time()

    def reload(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "refused").inc()


class _KeyStates:
    """A collector read at scrape time: the current key states of a middleware."""

    def __init__(self, middleware: Any, counting: _Counting) -> None:
        self._middleware = middleware
        self._counting = counting

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        states = GaugeMetricFamily(
            "oidc_adapter_key_state", "1 for each key in its state", labels=["kid", "state"]
        )
        next_switch = GaugeMetricFamily(
            "oidc_adapter_next_key_switch_timestamp_seconds",
            "When the next key becomes active by its activate-at (0: none staged)",
        )
        fetched = GaugeMetricFamily(
            "oidc_adapter_jwks_fetched_after_change_timestamp_seconds",
            "When /k_jwks was first fetched after the key set last changed (0: not yet)",
        )
        status = self._middleware.status
        upcoming = 0.0
        for key in status.keys if status is not None else []:
            states.add_metric([key.get("kid", ""), key.get("state", "")], 1)
        _, core = self._middleware.shell.core()
        now = time.time()
        for key in core.ring.keys:
            if key.activate_at is not None and key.activate_at.timestamp() > now:
                when = key.activate_at.timestamp()
                upcoming = when if not upcoming else min(upcoming, when)
        next_switch.add_metric([], upcoming)
        current = core.ring.etag == self._counting.key_set_etag
        fetched.add_metric([], self._counting.key_set_first_fetch if current else 0.0)
        yield states
        yield next_switch
        yield fetched


_enabled: dict[int, _Counting] = {}


def enable(middleware: Any = None, registry: Any = None) -> None:
    """Start counting in this process (into ``registry``, Prometheus's default one unless
    given); with ``middleware``, its key states are reported too."""
    prom = _prometheus()
    registry = registry if registry is not None else prom.REGISTRY
    counting = _enabled.get(id(registry))
    if counting is None:
        counting = _enabled[id(registry)] = _Counting(registry)
        _observe.observer = counting
        _observe.listening = True
    if middleware is not None:
        registry.register(_KeyStates(middleware, counting))


def metrics_app(registry: Any = None) -> Any:
    """An ASGI app that serves the metrics (mount it where the app chooses)."""
    prom = _prometheus()
    return prom.make_asgi_app(registry=registry if registry is not None else prom.REGISTRY)


def metrics_wsgi_app(registry: Any = None) -> Any:
    """A WSGI app that serves the metrics."""
    prom = _prometheus()
    return prom.make_wsgi_app(registry=registry if registry is not None else prom.REGISTRY)
