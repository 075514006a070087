"""The tenants of an app as the shells hold them: one :class:`Site` per tenant, and the
per-request choice (:mod:`adapter.web._tenants`, which decides).

A site is everything a plain configuration has (its state and reloads, its client and steps),
once per tenant; with one configuration there is one site, and the choice is that one, decided
without a look. The shells ask :meth:`Tenancy.choose` first and then serve the site's state as
they always did; reloads, watchers and closing go through :class:`Tenancy` too, so that no shell
counts tenants (DESIGN.md: "the shells and the stores never know how many tenants there are").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from adapter._shell import RedisRegistries, ShellSupport, StateHolder
from adapter.config import AdapterConfig
from adapter.errors import ConfigError
from adapter.keys.keyring import KeyRing
from adapter.reload import Reloader, ReloadStatus
from adapter.web._guard import TENANT_KEY, ConfiguredClient, RequestTenant
from adapter.web._steps import Outcome
from adapter.web._tenants import TenantChoice
from adapter.web.entry import UNREAD, Credentials, Unread, Wire

# adapter.config.tenants is imported where a configuration is told apart, not at import: an
# app's ``import adapter.wsgi`` does not pay for the tenants file's reader.
if TYPE_CHECKING:
    from adapter.config.tenants import TenantConfig, TenantsConfig

R = TypeVar("R", bound=MutableMapping[str, Any])  # an ASGI scope or a WSGI environ


class Steps(Protocol):
    """A shell's steps (:class:`~adapter._shell.SyncSteps` or ``AsyncSteps``): their client."""

    @property
    def client(self) -> ConfiguredClient: ...


S = TypeVar("S", bound=Steps)


@dataclass(frozen=True, eq=False)
class Site(Generic[S]):
    """A tenant as a shell serves it (or the one configuration of a plain app)."""

    name: str | None
    shell: ShellSupport
    steps: S
    path_prefix: str = ""  # "/acme": the tenant's pages are under it ("": the host's root)
    host: str | None = None
    # What the shells put in a request for the idioms (web._guard.TENANT_KEY): the tenant
    # chosen by its prefix, or otherwise (host, issuer, resolver); made once, not per request.
    prefixed: RequestTenant | None = field(default=None, init=False)
    unprefixed: RequestTenant | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.name is not None:
            client = self.steps.client
            object.__setattr__(self, "prefixed", RequestTenant(self.name, self.path_prefix, client))
            object.__setattr__(self, "unprefixed", RequestTenant(self.name, "", client))

    def seen(self, prefixed: bool) -> RequestTenant | None:
        """The tenant as a request chosen by its prefix (or not) sees it."""
        return self.prefixed if prefixed else self.unprefixed


# How a shell builds a site's support and steps: from a configuration (a plain app's as given,
# a tenant's loaded) and, for a tenant, the loader its reloads use.
Make = Callable[
    [AdapterConfig | str | Path, Callable[[], AdapterConfig] | None], tuple[ShellSupport, S]
]


C = TypeVar("C", bound=StateHolder)  # a shell's client (sync or async)


class Tenancy(Generic[S, R]):
    """The sites of an app, the choice of one per request, and what acts on all of them."""

    @classmethod
    def build(
        cls,
        config: AdapterConfig | str | Path,
        client: Callable[[AdapterConfig | str | Path, KeyRing | None], C],
        steps: Callable[[ShellSupport, C], S],
        *,
        key_ring: KeyRing | None,
        watch: float | None,
        sighup: bool,
        resolver: Callable[[R], str | None] | None,
    ) -> Tenancy[S, R]:
        """A shell's tenancy: ``config`` read as a tenants file when it is one; each site with
        a ``client`` of the shell's kind and its ``steps``."""
        from adapter.config.tenants import TenantsConfig, tenants_or_plain

        chosen = tenants_or_plain(config, resolver=resolver is not None)
        if key_ring is not None and isinstance(chosen, TenantsConfig):
            raise ConfigError("key_ring: one key ring cannot serve several tenants; omit it")

        registries = RedisRegistries()  # the tenants on one Redis share its pool and subscriber

        def make(
            config: AdapterConfig | str | Path, load: Callable[[], AdapterConfig] | None
        ) -> tuple[ShellSupport, S]:
            made = client(config, key_ring)
            shell = ShellSupport(config, made, watch, load=load, registries=registries)
            return shell, steps(shell, made)

        tenancy: Tenancy[S, R] = cls(chosen, make, resolver)
        if sighup:
            for reloader, _ in tenancy.reloaders():
                reloader.install_sighup()
        return tenancy

    def __init__(
        self,
        config: AdapterConfig | str | Path | TenantsConfig,
        make: Make[S],
        resolver: Callable[[R], str | None] | None = None,
    ) -> None:
        from adapter.config.tenants import TenantsConfig

        self.sites = _sites(config, make)
        # A plain configuration: its one site, and nothing to choose (no core built early).
        self.single = self.sites[0] if not isinstance(config, TenantsConfig) else None
        self._choice: TenantChoice[Site[S], R] | None = None
        if isinstance(config, TenantsConfig):
            states = {site: site.shell.front() for site in self.sites}
            self._choice = TenantChoice(
                self.sites,
                {site: state.config.issuer for site, (state, _) in states.items()},
                frozenset().union(*(front.core.own_paths for _, front in states.values())),
                config.shared,
                resolver,
            )

    def choose(
        self, wire: Wire[R], request: R, path: str, root_path: str
    ) -> tuple[Site[S] | None, str, str, Credentials | Unread]:
        """The request's site, and its path and root path as that site sees them; the tenant
        is put in the request for the framework idioms (``web._guard.tenant_in``); and the
        credentials, when they were read to choose (:meth:`TenantChoice.choose`)."""
        if self._choice is None:
            return self.sites[0], path, root_path, UNREAD
        site, path_seen, root_seen, read = self._choice.choose(wire, request, path, root_path)
        prefixed = len(root_seen) > len(root_path)
        request[TENANT_KEY] = site.seen(prefixed) if site is not None else None
        return site, path_seen, root_seen, read

    def unclaimed(self, wire: Wire[R], request: R, path: str, method: str) -> Outcome:
        """The answer for a request no tenant claims (:mod:`adapter.web._tenants`)."""
        assert self._choice is not None, "a plain configuration claims every request"
        return self._choice.unclaimed(wire, request, path, method)

    def reload(self) -> bool:
        """Reload every site; ``False`` when one is broken (it keeps its old state; the others
        take their new one)."""
        return all([site.shell.reload() for site in self.sites])

    def reloaders(self) -> list[tuple[Reloader, float | None]]:
        """Each site's reloader (for a file configuration) and its polling interval."""
        return [(s.shell.reloader, s.shell.watch) for s in self.sites if s.shell.reloader]

    @property
    def statuses(self) -> dict[str | None, ReloadStatus | None]:
        """Each site's reload status, by tenant name (``None``: a plain app)."""
        return {site.name: site.shell.status for site in self.sites}

    def site(self, name: str | None) -> Site[S]:
        """The site of tenant ``name`` (``None``: the first, a plain app's only one)."""
        if name is None:
            return self.sites[0]
        for site in self.sites:
            if site.name == name:
                return site
        known = ", ".join(str(site.name) for site in self.sites)
        raise ConfigError(f"tenant {name!r}: not a tenant of this app (its tenants: {known})")

    def __iter__(self) -> Iterator[Site[S]]:
        return iter(self.sites)


def _sites(config: AdapterConfig | str | Path | TenantsConfig, make: Make[S]) -> list[Site[S]]:
    from adapter.config.tenants import TenantsConfig

    if not isinstance(config, TenantsConfig):
        shell, steps = make(config, None)
        return [Site(None, shell, steps)]
    sites = []
    for tenant in config.tenants:
        shell, steps = make(tenant.config, _loader(config, tenant))
        sites.append(Site(tenant.name, shell, steps, tenant.path_prefix or "", tenant.host))
    if not sites:
        raise ConfigError("tenants: at least one is needed")
    return sites


def _loader(config: TenantsConfig, tenant: TenantConfig) -> Callable[[], AdapterConfig]:
    """How ``tenant`` reloads: its file over the tenants file, in the place it is served."""
    from adapter.config.tenants import load_tenant_config

    source = config.source
    assert source is not None, "a tenants configuration always comes from its file"
    resolver = config.resolver
    return lambda: load_tenant_config(source, tenant.name, resolver=resolver, serving=tenant)
