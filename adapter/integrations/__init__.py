"""The framework integrations: the adapter as each framework's users expect it.

- :mod:`adapter.integrations.starlette`: ``@require(...)`` on Starlette endpoints
- :mod:`adapter.integrations.fastapi`: ``require(...)`` as a security dependency, ``OIDC(app)``
- :mod:`adapter.integrations.flask`: the ``OIDC`` extension, ``@oidc.require(...)``
- :mod:`adapter.integrations.django`: ``wrap()``, ``OIDCMiddleware``, ``OIDCBackend``,
  ``@require(...)``
- :mod:`adapter.integrations.authlib`: the client authentication as an authlib auth method

Each is thin over the framework-neutral shells, :mod:`adapter.asgi` and :mod:`adapter.wsgi`,
and the core's decisions (``adapter.web``): it translates the framework's request and answer,
and decides nothing. Each imports its framework when it is imported itself, and names the
extra to install when the framework is missing. This package imports none of them (nor any
framework): nothing outside it imports a framework's integration, and nothing below it in the
layers imports it (docs/architecture.md).
"""
