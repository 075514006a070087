"""Prometheus metrics for operators (the ``metrics`` extra: ``prometheus_client``).

    from adapter.metrics import enable, metrics_app
    enable(middleware)                       # start counting (once per process)
    app.mount("/metrics", metrics_app())     # ASGI; metrics_wsgi_app() for WSGI

What is counted: sign-ins (ok / refused), refreshes (ok / failed), calls to the token endpoint
and their latency, ``/k_jwks`` answers (200 / 304), reloads (ok / refused); and, read when
scraped: each key's state, the next switch time, and when ``/k_jwks`` was first fetched after
the key set last changed (so an operator sees the identity server has picked up a ``next``
key before it becomes active).

Every series carries a ``tenant`` label: the configured tenant name (a tenants file), ``""``
for a plain configuration. Only configured names are label values, never anything a request
says, so the number of series stays bounded.
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


def _label(tenant: str | None) -> str:
    """A tenant's label value: its configured name, "" for a plain configuration."""
    return tenant or ""


class _Counting(_observe.Observer):
    """Reports turned into Prometheus series (in ``registry``), each labelled by its tenant."""

    def __init__(self, registry: Any) -> None:
        prom = _prometheus()
        self.logins = prom.Counter(
            "oidc_adapter_logins", "Sign-ins by result", ["tenant", "result"], registry=registry
        )
        self.refreshes = prom.Counter(
            "oidc_adapter_refreshes",
            "Token refreshes by result",
            ["tenant", "result"],
            registry=registry,
        )
        self.token_calls = prom.Histogram(
            "oidc_adapter_token_call_seconds",
            "Calls to the identity server's token endpoint, by result",
            ["tenant", "result"],
            registry=registry,
        )
        self.jwks = prom.Counter(
            "oidc_adapter_jwks_answers",
            "/k_jwks answers by status",
            ["tenant", "status"],
            registry=registry,
        )
        self.reloads = prom.Counter(
            "oidc_adapter_reloads",
            "Configuration reloads by result",
            ["tenant", "result"],
            registry=registry,
        )
        # Per tenant (configured names only): the key set last answered at /k_jwks (its ETag)
        # and when it was first fetched.
        self.key_sets: dict[str, tuple[str, float]] = {}

    def login(self, tenant: str | None, ok: bool) -> None:
        self.logins.labels(_label(tenant), "ok" if ok else "refused").inc()

    def refresh(self, tenant: str | None, ok: bool) -> None:
        self.refreshes.labels(_label(tenant), "ok" if ok else "failed").inc()

    def token_call(self, tenant: str | None, seconds: float, ok: bool) -> None:
        self.token_calls.labels(_label(tenant), "ok" if ok else "failed").observe(seconds)

    def jwks_answer(self, tenant: str | None, status: int, etag: str) -> None:
        name = _label(tenant)
        self.jwks.labels(name, str(status)).inc()
        known = self.key_sets.get(name)
        if known is None or known[0] != etag:  # a new key set: its first fetch is what counts
            self.key_sets[name] = (etag, time.time())

    def first_fetch(self, tenant: str | None, etag: str) -> float:
        """When ``tenant``'s key set with ``etag`` was first fetched (0: not since it changed)."""
        known = self.key_sets.get(_label(tenant))
        return known[1] if known is not None and known[0] == etag else 0.0

    def reload(self, tenant: str | None, ok: bool) -> None:
        self.reloads.labels(_label(tenant), "ok" if ok else "refused").inc()


class _KeyStates:
    """A collector read at scrape time: the current key states of a middleware, for each of
    its tenants (one series set per configured tenant; ``tenant=""`` for a plain one)."""

    def __init__(self, middleware: Any, counting: _Counting) -> None:
        self._middleware = middleware
        self._counting = counting

    def _sites(self) -> list[tuple[str | None, Any]]:
        """(tenant name, shell support) of each site the middleware serves."""
        tenancy = getattr(self._middleware, "tenancy", None)
        if tenancy is None:  # a middleware-like object without tenants: its one shell
            shell = self._middleware.shell
            return [(shell.core()[0].config.tenant, shell)]
        return [(site.name, site.shell) for site in tenancy.sites]

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        states = GaugeMetricFamily(
            "oidc_adapter_key_state",
            "1 for each key in its state",
            labels=["tenant", "kid", "state"],
        )
        next_switch = GaugeMetricFamily(
            "oidc_adapter_next_key_switch_timestamp_seconds",
            "When the next key becomes active by its activate-at (0: none staged)",
            labels=["tenant"],
        )
        fetched = GaugeMetricFamily(
            "oidc_adapter_jwks_fetched_after_change_timestamp_seconds",
            "When /k_jwks was first fetched after the key set last changed (0: not yet)",
            labels=["tenant"],
        )
        now = time.time()
        for tenant, shell in self._sites():
            name = _label(tenant)
            status = shell.status
            for key in status.keys if status is not None else []:
                states.add_metric([name, key.get("kid", ""), key.get("state", "")], 1)
            _, core = shell.core()
            upcoming = 0.0
            for key in core.ring.keys:
                if key.activate_at is not None and key.activate_at.timestamp() > now:
                    when = key.activate_at.timestamp()
                    upcoming = when if not upcoming else min(upcoming, when)
            next_switch.add_metric([name], upcoming)
            fetched.add_metric([name], self._counting.first_fetch(tenant, core.ring.etag))
        yield states
        yield next_switch
        yield fetched


# By registry: the registry is held with its counting, so its id is never another's.
_enabled: dict[int, tuple[Any, _Counting]] = {}


def enable(middleware: Any = None, registry: Any = None) -> None:
    """Start counting in this process (into ``registry``, Prometheus's default one unless
    given); with ``middleware``, its key states are reported too."""
    prom = _prometheus()
    registry = registry if registry is not None else prom.REGISTRY
    entry = _enabled.get(id(registry))
    if entry is None:
        counting = _Counting(registry)
        _enabled[id(registry)] = (registry, counting)
        _observe.observer = counting
        _observe.listening = True
    else:
        counting = entry[1]
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
