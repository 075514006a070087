"""Every page ``make demo*`` lists on the console exists (issue 21, item 7): each flavour's
example runs as the demo runs it (examples/demo.py's ``prepare`` and ``start``, real servers on
free ports), alice signs in through the identity server's pages (an httpx browser), and each
page the banner lists answers her, none with a 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from examples import demo
from tests.app_server import free_port
from tests.idp_server import IdentityServer, ensure_installed
from tests.web_client import Browser, Stack

# Pages that refuse alice's browser session: the API wants a token with api:read (Swagger UI's).
OK_OR_REFUSED = {("/api/reports", 403)}


@pytest.fixture(params=sorted(demo.PAGES))
def signed_in(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Browser]]:
    ensure_installed()
    flavor = str(request.param)
    app_port, idp_port = free_port(), free_port()
    config, idp_config, _ = demo.prepare(tmp_path, app_port, idp_port)
    processes = demo.start(flavor, config, idp_config, app_port, log=tmp_path / "idp.log")
    app = f"http://127.0.0.1:{app_port}"
    idp = IdentityServer([], tmp_dir=tmp_path)  # not started: the walk only reads its issuer
    idp.issuer = f"http://127.0.0.1:{idp_port}"
    browser = Browser(Stack(idp, config, {"http": httpx.HTTPTransport()}), "http", base=app)
    try:
        yield flavor, browser
    finally:
        browser.http.close()
        demo.stop(processes)


def test_every_page_the_console_lists_answers_alice(signed_in: tuple[str, Browser]) -> None:
    flavor, browser = signed_in
    signed = browser.log_in(demo.PAGES[flavor][1], "alice")  # the first signed-in page
    assert signed.status_code == 200, signed.text
    banner = demo.banner(flavor, 8000, 9000)
    for path in demo.PAGES[flavor]:
        assert f"http://127.0.0.1:8000{path}\n" in banner
        answer = browser.walk(browser.get(path), "alice")
        # 200, or the FastAPI example's /api/reports refusing a session without api:read (403)
        assert answer.status_code in (200, 403), f"{flavor} {path}: {answer.status_code}"
        assert (path, answer.status_code) in OK_OR_REFUSED or answer.status_code == 200
