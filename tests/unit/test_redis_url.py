"""``redis+sentinel://`` URLs: parsed once for the loader and the store, malformed ones refused
in one line naming ``redis-url`` and the fix, the password never shown."""

from __future__ import annotations

from typing import Any

import pytest

from adapter import ConfigError, load_config
from adapter.config._redis_url import SentinelURL, parse_sentinel_url
from adapter.stores.redis import _where, connect

PASSWORD = "s3ntinel-Passw0rd-5be1"
SENTINEL_PASSWORD = "only-for-sentinels-77aa"
BASE: dict[str, Any] = {
    "issuer": "https://sso.example.com/realms/demo",
    "client-id": "my-app",
    "credentials": {"secret": "cl1ent-S3cret-4f2a9e"},
    "session-store": "redis",
}


def test_the_usual_form() -> None:
    url = parse_sentinel_url(
        f"redis+sentinel://:{PASSWORD}@10.0.0.1:26379,10.0.0.2:26380/mymaster/3"
    )
    assert url == SentinelURL(
        tls=False,
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380)),
        service="mymaster",
        db=3,
        password=PASSWORD,
    )
    assert PASSWORD not in repr(url)
    assert url.where == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "redis+sentinel://sentinel/mymaster",
            SentinelURL(False, (("sentinel", 26379),), "mymaster"),
        ),
        (
            "rediss+sentinel://[::1]:26380,[fd00::2]/my%2Fmaster/0",
            SentinelURL(True, (("::1", 26380), ("fd00::2", 26379)), "my/master"),
        ),
        (
            f"REDIS+SENTINEL://app:{PASSWORD}@h:1/m/?sentinel_password={SENTINEL_PASSWORD}",
            SentinelURL(False, (("h", 1),), "m", 0, "app", PASSWORD, SENTINEL_PASSWORD),
        ),
        ("redis+sentinel://p%40ss@h/m", SentinelURL(False, (("h", 26379),), "m", password="p@ss")),
    ],
)
def test_forms(text: str, expected: SentinelURL) -> None:
    assert parse_sentinel_url(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"redis+sentinel://:{PASSWORD}@/mymaster/0", "no Sentinel host"),
        (f"redis+sentinel://:{PASSWORD}@h1:26379,h2:26380", "no service name"),
        (f"redis+sentinel://:{PASSWORD}@h1:26379/", "no service name"),
        (f"redis+sentinel://:{PASSWORD}@h1:26379,,h2/m", "malformed Sentinel host"),
        (f"redis+sentinel://:{PASSWORD}@h1:port/m", "port is not a number"),
        (f"redis+sentinel://:{PASSWORD}@h1:70000/m", "port is not a number"),
        (f"redis+sentinel://:{PASSWORD}@[::1/m", "IPv6"),
        (f"redis+sentinel://:{PASSWORD}@h1/m/zero", "database"),
        (f"redis+sentinel://:{PASSWORD}@h1/m?{PASSWORD}=1", "unknown query parameter"),
    ],
)
def test_malformed_urls_are_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, "redis-url": text})
    message = str(caught.value)
    assert message.startswith("redis-url: ")
    assert says in message
    assert "redis+sentinel://[:password@]host:26379,host:26380/mymaster/0" in message, "the fix"
    assert "\n" not in message
    assert PASSWORD not in message


@pytest.mark.parametrize("scheme", ["redis+sentinel", "rediss+sentinel"])
def test_the_loader_accepts_sentinel_urls(scheme: str) -> None:
    text = f"{scheme}://:{PASSWORD}@h1:26379,h2:26380/mymaster/0"
    config = load_config({**BASE, "redis-url": text})
    assert config.web.redis_url is not None
    assert config.web.redis_url.reveal() == text
    assert PASSWORD not in repr(config)


def test_other_schemes_still_name_the_sentinel_form() -> None:
    with pytest.raises(ConfigError, match=r"redis\+sentinel://"):
        load_config({**BASE, "redis-url": f"sentinel://:{PASSWORD}@h1/m"})


def test_messages_name_the_sentinels_never_the_password() -> None:
    where = _where(f"redis+sentinel://:{PASSWORD}@h1:26379,[::1]:26380/mymaster/0")
    assert where == "redis+sentinel://h1:26379,[::1]:26380/mymaster"
    assert PASSWORD not in _where(f"redis+sentinel://:{PASSWORD}@/nothing")


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_client_asks_the_sentinels_for_the_primary(asynchronous: bool) -> None:
    """redis-py's master_for with the URL's parts (no connection is made here)."""
    url = (
        f"rediss+sentinel://app:{PASSWORD}@h1:26379,h2:26380/mymaster/2"
        f"?sentinel_password={SENTINEL_PASSWORD}"
    )
    client = connect(url, {"socket_timeout": 2.0}, "CA PEM", asynchronous=asynchronous)
    pool = client.connection_pool
    assert pool.service_name == "mymaster"
    assert pool.is_master
    assert "SSL" in pool.connection_class.__name__, "TLS to the primary"
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("app", PASSWORD, 2)
    assert kwargs["ssl_ca_data"] == "CA PEM"
    sentinels = pool.sentinel_manager
    assert sentinels.sentinel_kwargs["password"] == SENTINEL_PASSWORD
    assert sentinels.sentinel_kwargs["ssl"] is True, "TLS to the Sentinels"
    assert sentinels.sentinel_kwargs["ssl_ca_data"] == "CA PEM"
    assert sentinels.sentinel_kwargs["socket_timeout"] == 2.0
    addresses = [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in sentinels.sentinels
    ]
    assert addresses == [("h1", 26379), ("h2", 26380)]
