"""Issue 26's WSGI peer rows run (one short round each): the names, finite numbers, targets,
and the identity server their tokens come from (the node test server where node is installed).

Speed is not tested (see test_bench_smoke.py). The rows themselves assert, before their clock
runs, that each side answers as signed in (and mozilla-django-oidc's SessionRefresh redirects a
session past its renewal time, each peer refuses what it should).
"""

from __future__ import annotations

import math
import shutil

import requests

from bench.measure import Row
from bench.peers_wsgi import (
    DJANGO_SESSION,
    DRF_BEARER,
    FLASK_SESSION,
    InProcessAdapter,
    Login,
    answered_in_process,
    in_process_login,
    peer_wsgi_rows,
)


def test_the_peer_rows_run_and_leave_django_unconfigured_here() -> None:
    from django.conf import settings

    configured = settings.configured  # another test of this worker may have set Django up
    rows = peer_wsgi_rows(20, 2)
    assert settings.configured == configured, "Django is configured in the child process only"
    assert {row.name: row.target for row in rows} == {
        DJANGO_SESSION: 1.0,
        DRF_BEARER: 1.0,
        FLASK_SESSION: 1.0,
    }
    assert all(isinstance(row, Row) for row in rows)
    assert all(math.isfinite(row.value) and row.value > 0 for row in rows)
    assert all(math.isfinite(row.baseline) and row.baseline > 0 for row in rows)
    assert all(row.name.startswith(("Django ", "DRF ", "Flask ")) for row in rows)
    assert all("oidc-adapter vs" in row.name for row in rows)
    assert "mozilla-django-oidc 5." in rows[0].note
    assert "flask-oidc 2." in rows[2].note
    has_node = shutil.which("node") is not None and shutil.which("npm") is not None
    source = "node oidc-provider" if has_node else "in-process MockTransport"
    assert all(source in row.note for row in rows), "each row names its tokens' source"


def test_a_login_crosses_to_the_child_as_json_unless_it_is_in_process() -> None:
    made = in_process_login()
    assert made.token_subject == "u0"
    assert made.email == "alice@example.test"
    node = Login(**{**made.__dict__, "node": True, "transport": made.transport})
    back = Login.from_json(node.to_json())
    assert back.access_token == made.access_token
    assert back.claims == made.claims
    assert back.node


def test_the_in_process_server_answers_only_under_its_prefix_and_is_removed() -> None:
    server = InProcessAdapter(lambda request: (200, {"url": request.url}))
    original = requests.Session.get_adapter
    with answered_in_process("https://idp.example/", server):
        answer = requests.get("https://idp.example/userinfo", timeout=1)
        assert answer.json() == {"url": "https://idp.example/userinfo"}
        other = requests.Session().get_adapter("https://other.example/")
        assert isinstance(other, requests.adapters.HTTPAdapter)
    assert server.calls == 1
    assert requests.Session.get_adapter is original
