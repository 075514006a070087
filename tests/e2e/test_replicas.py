"""Two processes of one example app sharing Redis, in Chromium, against the real servers.

A user signs in through process A and is recognised on process B; she logs out at the identity
server, whose back-channel call reaches process A only; her next request on either process is
not signed in. With the Redis session store and with cookie sessions (Redis then carries the
logout records and events).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from examples import demo
from tests.e2e.test_browser import browser, free_port, local_context, sign_in  # noqa: F401
from tests.idp_server import ensure_installed
from tests.redis_server import RedisServer


@pytest.mark.parametrize("store", ["redis", "cookie"])
@pytest.mark.parametrize("flavor", ["starlette", "flask"])
def test_signed_in_on_both_replicas_and_out_of_both(
    browser: object,  # noqa: F811 - the fixture
    flavor: str,
    store: str,
    tmp_path: Path,
) -> None:
    ensure_installed()
    port_a, port_b, idp_port = free_port(), free_port(), free_port()
    with RedisServer(tmp_path / "redis") as redis:
        adapter_config, idp_config, _ = demo.prepare(tmp_path, port_a, idp_port)
        adapter_config.write_text(
            adapter_config.read_text().replace(
                "[credentials]",
                f'session-store = "{store}"\nredis-url = "{redis.url}"\n\n[credentials]',
                1,
            )
        )
        processes = demo.start(flavor, adapter_config, idp_config, port_a, log=tmp_path / "idp.log")
        processes.append(demo.start_app(flavor, adapter_config, port_b))
        a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        issuer = f"http://127.0.0.1:{idp_port}"
        try:
            demo.wait_until_up(f"{b}/", processes)
            context = local_context(browser)
            page = context.new_page()
            page.goto(f"{a}/profile")
            sign_in(page)
            page.wait_for_url(f"{a}/profile")
            assert page.inner_text("#name") == "alice"
            page.goto(f"{b}/profile")  # the same host: the browser sends the same cookie
            assert page.url == f"{b}/profile", "recognised on process B"
            assert page.inner_text("#name") == "alice"

            # She logs out at the identity server itself; it tells process A only.
            page.goto(f"{issuer}/session/end?client_id={demo.CLIENT_ID}")
            page.click("button[name=logout]")
            backchannel = f'"url":"{a}/oidc/backchannel-logout","status":200'
            assert logged(tmp_path / "idp.log", backchannel), "the server told process A"
            for origin in (b, a):
                page.goto(f"{origin}/profile")
                assert page.url.startswith(issuer), f"{origin}: not signed in any more"
            context.close()
        finally:
            demo.stop(processes)


def logged(log: Path, text: str, timeout: float = 10) -> bool:
    """Whether ``text`` appears in the server's log within ``timeout`` (its back-channel call
    runs beside the browser's navigation, so the log line is the event to wait for)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while text not in log.read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)  # back-off between reads; the log line is the synchronisation point
        delay = min(delay * 2, 0.2)
    return True
