"""base64url decoding (adapter.jose.b64url_decode): strict and canonical, from text or from the
bytes a server gave, held to a plain reading of RFC 4648 §5 without padding."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.jose import b64url, b64url_decode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def reference(text: str) -> bytes | None:
    """The answer by definition: only the URL-safe alphabet, no padding, a length that some
    bytes encode to, and the one spelling encoding gives back."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if base64.urlsafe_b64encode(data).rstrip(b"=").decode() == text else None


def decoded(text: str | bytes) -> bytes | None:
    try:
        return b64url_decode(text)
    except ValueError:
        return None


TEXTS = st.one_of(
    st.text(alphabet=ALPHABET, max_size=40),
    st.text(alphabet=ALPHABET + "+/= .\t\n\u00e9\u0000", max_size=40),
    st.binary(max_size=30).map(b64url),  # every canonical spelling
    st.text(max_size=12),
)


@settings(max_examples=2000)
@given(TEXTS)
def test_text_and_bytes_decode_as_the_definition_says(text: str) -> None:
    expected = reference(text)
    assert decoded(text) == expected
    latin = text.encode("latin-1", errors="replace")
    if latin.decode("latin-1") == text:  # what a server could have given as bytes
        assert decoded(latin) == expected


@pytest.mark.parametrize("text", ["AB", "AAB", "A", "AA==", "+A", "/A", "A A", "\u00e9A"])
def test_what_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text.encode("latin-1"))
