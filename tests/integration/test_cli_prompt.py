"""On a terminal, the CLI asks for passwords instead of failing, and never echoes them."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

PASSWORD = "Pr0mpted-Pa55"


class Terminal:
    """The CLI in a child process whose stdin/stdout is a pseudo-terminal."""

    def __init__(self, *args: str, cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # child
            os.chdir(cwd)
            os.execv(sys.executable, [sys.executable, "-m", "adapter.cli", *args])  # noqa: S606
        self.pid, self.fd, self.output = pid, fd, b""

    def expect(self, text: bytes, timeout: float = 30.0) -> None:
        """Read until ``text`` has appeared (a bounded wait on the terminal, not a sleep)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r} in {self.output!r}"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"terminal closed before {text!r}: {self.output!r}"
                self.output += chunk

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def finish(self) -> int:
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_generate_then_show_with_prompted_passwords(tmp_path: Path) -> None:
    generate = Terminal(
        "keys", "generate", "--alias", "typed", "--out", "typed.p12", "--alg", "ES256",
        cwd=tmp_path,
    )  # fmt: skip
    generate.expect(b"Keystore password: ")
    generate.type(PASSWORD)
    generate.expect(b"Keystore password (again): ")
    generate.type(PASSWORD)
    assert generate.finish() == 0, generate.output
    assert b"kid:" in generate.output
    assert PASSWORD.encode() not in generate.output, "the password was echoed"

    show = Terminal("keys", "show", "typed.p12", cwd=tmp_path)
    show.expect(b"Password for typed.p12: ")
    show.type(PASSWORD)
    assert show.finish() == 0, show.output
    assert b"alias:       typed" in show.output
    assert PASSWORD.encode() not in show.output


def test_mismatched_prompts_fail_cleanly(tmp_path: Path) -> None:
    generate = Terminal("keys", "generate", "--alias", "a", "--out", "a.p12", cwd=tmp_path)
    generate.expect(b"Keystore password: ")
    generate.type(PASSWORD)
    generate.expect(b"(again): ")
    generate.type(PASSWORD + "x")
    assert generate.finish() == 2
    assert b"do not match" in generate.output
    assert b"Traceback" not in generate.output
    assert not (tmp_path / "a.p12").exists()
