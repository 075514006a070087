"""What ``import adapter.wsgi`` (a Flask or Django app's import) loads, and what it leaves for
later (docs/performance.md, "The login and the cold paths": the WSGI import at most 60 ms over
Flask's).

Optional features load when first used, not at import: keystores and certificates
(``cryptography.x509``) with the first keystore, truststore or forwarded client certificate;
joserfc with the server's first JWKS or encrypted token; asyncio with an event loop (a WSGI app
has none); UMA with the first permission asked; the tenants reader, the Redis URL parser, TOML
and SIGHUP handling with the configuration that needs them. Each check runs in a fresh
interpreter and looks only at what the import itself added to ``sys.modules``; no time is
asserted (the bench measures it).
"""

from __future__ import annotations

import sys

import pytest

import adapter
from tests.fresh_python import printed_json

# Loaded only when a feature needs them: never by the WSGI import.
LAZY = (
    "asyncio",
    "cryptography.x509",
    "joserfc",
    "adapter.asgi",
    "adapter.keys._entry",
    "adapter.keys.keystore",
    "adapter.keys._pkcs12",
    "adapter.keys._jks",
    "adapter.protocol._truststore",
    "adapter.config.tenants",
    "adapter.config._redis_url",
    "adapter.cli",
    "adapter.testing",
    "tomllib",
    "difflib",
    "shlex",
    "starlette",
)
# The policy enforcer (and UMA), once web/core.py imports it where a configuration has a block.
ENFORCER = ("adapter.web._enforcer", "adapter.config.policy_enforcer", "adapter.protocol.uma")


def loaded_by(statement: str) -> list[str]:
    """The modules ``statement`` added to ``sys.modules`` in a fresh interpreter."""
    program = (
        "import json, sys\nbefore = set(sys.modules)\n"
        f"{statement}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    modules: list[str] = printed_json(program)
    return modules


def under(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """The ``modules`` that are one of ``names`` or inside one of them."""
    return [m for m in modules if any(m == n or m.startswith(n + ".") for n in names)]


def test_the_wsgi_import_leaves_optional_features_for_later() -> None:
    modules = loaded_by("import adapter, adapter.wsgi")
    assert "adapter.wsgi" in modules
    assert under(modules, LAZY) == []


def test_the_wsgi_import_leaves_the_policy_enforcer_for_later() -> None:
    assert under(loaded_by("import adapter.wsgi"), ENFORCER) == []


def test_import_adapter_loads_the_public_names_when_asked_for() -> None:
    modules = loaded_by("import adapter")
    assert [m for m in modules if m.startswith("adapter.")] == [
        "adapter._version",
        "adapter.errors",
    ]


def test_every_public_name_is_the_one_its_module_defines() -> None:
    homes = adapter._LAZY
    errors = {"AdapterError", "ConfigError", "ConfigWarning", "KeystoreError", "ProviderError"}
    errors |= {"TokenError", "ValidationError"}  # imported with the package: adapter.errors
    assert set(homes) | errors == set(adapter.__all__)
    for name, home in homes.items():
        module = __import__(home, fromlist=[name])
        assert getattr(adapter, name) is getattr(module, name), name
    assert adapter.config is sys.modules["adapter.config"]  # subpackages as attributes, too
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = adapter.nothing_here  # type: ignore[attr-defined]


def test_the_policy_enforcer_block_class_stays_importable_from_the_model() -> None:
    from adapter.config import model
    from adapter.config.policy_enforcer import PolicyEnforcerConfig

    assert model.PolicyEnforcerConfig is PolicyEnforcerConfig  # type: ignore[attr-defined]
    loaded = model.load_config(
        {
            "issuer": "https://idp.example.com/realms/shop",
            "client-id": "shop",
            "session-secret": "test-session-secret-0123456789abcdef0123",
            "credentials": {"method": "client_secret_basic", "secret": "s3cret"},
            "policy-enforcer": {"enforcement-mode": "PERMISSIVE"},
        }
    )
    assert isinstance(loaded.policy_enforcer, PolicyEnforcerConfig)
    assert loaded.policy_enforcer.enforcement_mode == "PERMISSIVE"


THREADED_FIRST_ASKS = """
import importlib, json, threading
names = ["KeyState", "AdapterConfig", "load_key_ring", "Secret", "OIDCClient", "TokenSet",
         "KeyRing"]
modules = ["adapter.config", "adapter.wsgi", "adapter.keys.loader"]  # imported directly
barrier = threading.Barrier(len(names) + len(modules))
errors = []
def ask(name):
    import adapter
    barrier.wait()
    try:
        getattr(adapter, name)
    except Exception as exc:
        errors.append(f"{name}: {type(exc).__name__}: {exc}")
def load(module):
    barrier.wait()
    try:
        importlib.import_module(module)
    except Exception as exc:
        errors.append(f"{module}: {type(exc).__name__}: {exc}")
threads = [threading.Thread(target=ask, args=(name,)) for name in names]
threads += [threading.Thread(target=load, args=(module,)) for module in modules]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(errors))
"""


def test_public_names_asked_for_by_several_threads_at_once_all_load() -> None:
    """A threaded server importing views lazily, some asking ``adapter`` for names, some
    importing its modules: before the names were loaded one at a time, parents first, 6
    fresh interpreters in 10 got a deadlock or a half-initialised module here."""
    for _ in range(12):
        assert printed_json(THREADED_FIRST_ASKS) == []


LOADED_WITH_THE_STATE = """
import json, sys
from adapter import load_config
from adapter.state import AdapterState
settings = {"issuer": "https://sso.example.com/realms/r", "client-id": "app",
            "public-client": True, "session-secret": "s" * 32}
AdapterState.load(load_config(settings))
plain = "cryptography.x509" in sys.modules
forwarded = {"client-certificate-header": "X-Client-Cert",
             "client-certificate-proxies": ["127.0.0.1"]}
AdapterState.load(load_config({**settings, **forwarded}))
with_certificates = "cryptography.x509" in sys.modules
from adapter.protocol.provider import Provider
before = "joserfc.jwk" in sys.modules
Provider("https://sso.example.com/realms/r")
print(json.dumps([plain, with_certificates, before, "joserfc.jwk" in sys.modules]))
"""


def test_what_a_configuration_uses_loads_with_its_state_not_in_a_request() -> None:
    """A configuration that forwards client certificates has their reader loaded when its
    state is (start-up, a reload), not by the first request that carries one; the server's
    keys' reader loads with the provider (the app's start), not with the first JWKS."""
    assert printed_json(LOADED_WITH_THE_STATE) == [False, True, False, True]


def test_the_identitys_type_hints_resolve_at_run_time() -> None:
    """Lazy imports stay out of the public types' annotations: tools that read them at run
    time (``typing.get_type_hints``) see the identity's fields whole."""
    import typing

    from adapter.protocol.permissions import Granted

    hints = typing.get_type_hints(adapter.Identity)
    assert hints["permissions"] == tuple[Granted, ...]
