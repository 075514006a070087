"""The dev server's view of the configured client never shows its secret."""

from __future__ import annotations

from adapter.testing._dev_clients import ClientSettings


def test_the_client_secret_is_not_in_the_repr() -> None:
    client = ClientSettings(
        "app", "client_secret_basic", "dev-s3cr3t-value", False, None, "http://127.0.0.1:8000"
    )

    assert "dev-s3cr3t-value" not in repr(client)
    assert client.secret == "dev-s3cr3t-value"  # still there for checking a request
