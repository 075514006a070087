"""Prometheus metrics, scraped over HTTP from the example app behind the real middleware, after a
login (private_key_jwt: the identity server fetches the app's /k_jwks), a refresh and a reload.
A plain configuration: every series has ``tenant=""`` (several tenants: test_metrics_tenants.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from adapter.metrics import enable, metrics_app
from adapter.web.session import SessionCodec
from examples import demo
from examples.starlette_app.app import create_app
from tests.app_server import free_port, serve
from tests.idp_server import IdentityServer
from tests.web_client import Browser, Stack


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics/").text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_counters_move_with_what_the_adapter_does(tmp_path: Path) -> None:
    app_port, idp_port = free_port(), free_port()
    config, idp_config, _ = demo.prepare(tmp_path, app_port, idp_port)
    setup = json.loads(idp_config.read_text())
    with IdentityServer(
        setup["clients"], tmp_dir=tmp_path, issuer=setup["issuer"], port=idp_port,
        accounts=setup["accounts"],
    ) as idp:  # fmt: skip
        middleware = create_app(config)
        registry = CollectorRegistry()
        enable(middleware, registry=registry)
        app = Starlette(routes=[Mount("/metrics", metrics_app(registry)), Mount("/", middleware)])
        with serve("asgi", app, app_port) as url:
            browser = Browser(Stack(idp, config, {"http": httpx.HTTPTransport()}), "http", url)
            assert browser.log_in().status_code == 200
            after_login = samples(url)
            assert (
                after_login[("oidc_adapter_logins_total", (("result", "ok"), ("tenant", "")))] == 1
            )
            assert (
                after_login[
                    ("oidc_adapter_jwks_answers_total", (("status", "200"), ("tenant", "")))
                ]
                >= 1
            ), "the identity server fetched /k_jwks to check the client assertion"
            calls = after_login[
                ("oidc_adapter_token_call_seconds_count", (("result", "ok"), ("tenant", "")))
            ]
            assert calls >= 1
            fetched = "oidc_adapter_jwks_fetched_after_change_timestamp_seconds"
            assert after_login[(fetched, (("tenant", ""),))] > time.time() - 60
            assert (
                after_login[
                    (
                        "oidc_adapter_key_state",
                        (("kid", _kid(middleware)), ("state", "active"), ("tenant", "")),
                    )
                ]
                == 1
            )

            codec = SessionCodec(
                [(tmp_path / "session.secret").read_text().strip().encode()],
                context=f"{demo.CLIENT_ID}\0{idp.issuer}",
            )
            document = codec.open(browser.session_cookies()["oidc_session"], "session")
            assert document is not None
            document["d"]["exp"] = time.time() - 1
            aged = {"oidc_session": codec.seal(document, "session")}
            browser.http.cookies.clear()
            assert browser.get("/profile", cookies=aged).status_code == 200
            after_refresh = samples(url)
            assert (
                after_refresh[("oidc_adapter_refreshes_total", (("result", "ok"), ("tenant", "")))]
                == 1
            )
            assert middleware.reload()
            reloaded = samples(url)
            assert reloaded[("oidc_adapter_reloads_total", (("result", "ok"), ("tenant", "")))] == 1


def _kid(middleware: object) -> str:
    _, core = middleware.shell.core()  # type: ignore[attr-defined]
    return str(core.ring.keys[0].kid)
