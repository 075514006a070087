"""docs/keycloak.md says what ``oidc-adapter init`` prints (issue 21, newcomer's path): every
console setting init lists, with its value, for the page's example client."""

from __future__ import annotations

from adapter.cli.init import client_metadata, keycloak_steps
from tests.docs_blocks import ROOT

PAGE = ROOT / "docs" / "keycloak.md"
CLIENT, URL, ALG = "my-app", "https://app.example.com", "RS256"


def test_the_page_holds_every_step_init_prints() -> None:
    text = PAGE.read_text()
    assert f"--client-id {CLIENT}" in text
    assert f"--url {URL}" in text
    for step in keycloak_steps(CLIENT, URL, ALG, bearer_api=True):
        assert f"**{step.setting}**" in text, f"{step.setting} is missing from docs/keycloak.md"
        assert step.value in text, f"{step.setting} = {step.value} is missing"
        where = step.where.split(" > ")[-1].removesuffix(" (or open it)")  # the tab or section
        assert where in text, f"{step.setting}: {where} is not named"
    metadata = client_metadata(CLIENT, URL, ALG)
    for url in (
        metadata["jwks_uri"],
        metadata["backchannel_logout_uri"],
        *metadata["redirect_uris"],
    ):
        assert f"`{url}`" in text
