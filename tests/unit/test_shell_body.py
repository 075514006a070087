"""The shells' reading of a body for the policy enforcer's claims, one function at a time: what
the claims get (the bytes, or ``None``) and that the app gets every byte, in order, after it
(ASGI: the messages replayed, then the server's ``receive``; WSGI: ``wsgi.input`` rejoined)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from adapter.asgi import MAX_BODY_BYTES, _buffered
from adapter.wsgi import _Rejoined, _take_body


def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers)}


def server(*messages: dict[str, Any]) -> tuple[Any, list[int]]:
    """A ``receive`` giving ``messages`` then ``http.disconnect``, and its call count."""
    pending = list(messages)
    calls = [0]

    async def receive() -> dict[str, Any]:
        calls[0] += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    return receive, calls


def piece(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def drain(receive: Any, count: int) -> list[dict[str, Any]]:
    return [await receive() for _ in range(count)]


# -- ASGI ----------------------------------------------------------------------------------------


def test_asgi_pieces_are_joined_for_the_claims_and_replayed_for_the_app() -> None:
    sent = [piece(b'{"a"', True), piece(b"", True), piece(b": 1}", False)]
    receive, calls = server(*sent)
    body, replay = asyncio.run(_buffered(scope(), receive))
    assert body == b'{"a": 1}'
    assert calls[0] == 3, "read to the last piece, no further"
    got = asyncio.run(drain(replay, 4))
    assert got[:3] == sent, "the same messages, in order"
    assert got[3] == {"type": "http.disconnect"}, "then the server's receive"


def test_asgi_a_client_that_leaves_mid_body_gives_no_body() -> None:
    receive, _ = server(piece(b'{"a": ', True))
    body, replay = asyncio.run(_buffered(scope(), receive))
    assert body is None
    got = asyncio.run(drain(replay, 2))
    assert [m["type"] for m in got] == ["http.request", "http.disconnect"]


def test_asgi_past_the_bound_stops_reading_and_hands_on_the_rest() -> None:
    half = b"x" * (MAX_BODY_BYTES // 2 + 1)
    receive, calls = server(piece(half, True), piece(half, True), piece(b"tail", False))
    body, replay = asyncio.run(_buffered(scope(), receive))
    assert body is None
    assert calls[0] == 2, "stopped at the piece that crossed the bound"
    got = asyncio.run(drain(replay, 3))
    assert b"".join(m["body"] for m in got) == half + half + b"tail"


@pytest.mark.parametrize("length", [str(MAX_BODY_BYTES + 1).encode(), b"-1", b"ten"])
def test_asgi_a_length_too_large_or_unreadable_is_not_read(length: bytes) -> None:
    receive, calls = server(piece(b"{}", False))
    body, replay = asyncio.run(_buffered(scope((b"content-length", length)), receive))
    assert body is None
    assert calls[0] == 0
    assert replay is receive


def test_asgi_an_empty_body() -> None:
    receive, _ = server(piece(b"", False))
    body, _ = asyncio.run(_buffered(scope((b"content-length", b"0")), receive))
    assert body == b""


# -- WSGI ----------------------------------------------------------------------------------------


def environ(data: bytes, **extra: Any) -> dict[str, Any]:
    return {"wsgi.input": io.BytesIO(data), **extra}


def test_wsgi_a_length_is_read_exactly_and_handed_on() -> None:
    env = environ(b'{"a": 1}', CONTENT_LENGTH="8")
    assert _take_body(env) == b'{"a": 1}'
    assert env["wsgi.input"].read(8) == b'{"a": 1}'
    assert env["CONTENT_LENGTH"] == "8"


@pytest.mark.parametrize("length", [str(MAX_BODY_BYTES + 1), "-1", "ten"])
def test_wsgi_a_length_too_large_or_unreadable_is_not_read(length: str) -> None:
    stream = io.BytesIO(b"{}")
    env = {"wsgi.input": stream, "CONTENT_LENGTH": length}
    assert _take_body(env) is None
    assert env["wsgi.input"] is stream
    assert stream.tell() == 0


def test_wsgi_a_body_cut_short_gives_no_body_and_the_app_what_came() -> None:
    env = environ(b'{"a":', CONTENT_LENGTH="8")
    assert _take_body(env) is None
    assert env["wsgi.input"].read() == b'{"a":'


def test_wsgi_no_length_and_no_terminated_input_is_no_body() -> None:
    stream = io.BytesIO(b'{"a": 1}')
    env = {"wsgi.input": stream}
    assert _take_body(env) == b""
    assert env["wsgi.input"] is stream
    assert stream.tell() == 0


def test_wsgi_a_terminated_input_within_the_bound_gets_its_length() -> None:
    env = environ(b'{"a": 1}', **{"wsgi.input_terminated": True})
    assert _take_body(env) == b'{"a": 1}'
    assert env["CONTENT_LENGTH"] == "8"
    assert env["wsgi.input"].read() == b'{"a": 1}'


def test_wsgi_a_terminated_input_past_the_bound_is_rejoined() -> None:
    data = b"line one\n" + b"x" * MAX_BODY_BYTES + b"\nlast line\n"
    env = environ(data, **{"wsgi.input_terminated": True})
    assert _take_body(env) is None
    assert "CONTENT_LENGTH" not in env
    assert isinstance(env["wsgi.input"], _Rejoined)
    assert b"".join(env["wsgi.input"]) == data, "iterated line by line across the seam"
    env = environ(data, **{"wsgi.input_terminated": True})
    _take_body(env)
    assert env["wsgi.input"].read() == data


def test_rejoined_reads_across_the_seam() -> None:
    joined = _Rejoined(b"ab\ncd", io.BytesIO(b"ef\ngh"))
    assert joined.read(1) == b"a"
    assert joined.readline() == b"b\n"
    assert joined.readline() == b"cdef\n", "a line that spans both"
    assert joined.read(0) == b""
    assert joined.readlines() == [b"gh"]
    assert joined.read() == b""
    joined = _Rejoined(b"abc", io.BytesIO(b"def"))
    assert joined.read(5) == b"abcde"
    assert joined.read(5) == b"f"
    joined = _Rejoined(b"abc", io.BytesIO(b"def\n"))
    assert joined.readline(2) == b"ab"
    assert joined.readline(3) == b"cde"
    assert joined.readlines(1) == [b"f\n"]
