"""``make demo`` explains itself (issue 13, item 5): the console lists the pages and the test
users, and the demo notices when one of its servers dies, names it and exits non-zero.

:func:`examples.demo.watch` runs in a child Python process (it blocks SIGINT/SIGTERM in the
process that calls it), watching real child processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from examples import demo
from tests.app_server import free_port

ROOT = Path(__file__).resolve().parents[2]

# Watches two real processes: a "server" that exits with status 3 once its stdin closes, and
# one that lives until killed. Prints READY once both run, then exits with watch()'s status.
WATCHER = """
import signal, subprocess, sys
from examples.demo import watch
# Blocked (as watch() does) before READY: a Ctrl-C sent after READY waits for watch().
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
dies = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(3)"],
                        stdin=subprocess.PIPE)
lives = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("READY", flush=True)
if sys.stdin.readline().strip() == "kill":
    dies.stdin.close()
status = watch({"identity server": dies, "starlette app": lives}, interval=0.05)
lives.kill()
sys.exit(status)
"""


def run_watcher() -> subprocess.Popen[str]:
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    assert watcher.stdout.readline().strip() == "READY"
    return watcher


def test_a_dying_server_is_named_and_the_demo_exits_non_zero() -> None:
    watcher = run_watcher()
    _, stderr = watcher.communicate("kill\n", timeout=30)
    assert watcher.returncode == 1
    assert stderr.strip() == (
        "demo: the identity server stopped (exit status 3); stopping the demo"
    )


def test_ctrl_c_ends_the_demo_cleanly() -> None:
    watcher = run_watcher()
    assert watcher.stdin is not None
    watcher.stdin.write("wait\n")
    watcher.stdin.flush()
    watcher.send_signal(signal.SIGINT)
    _, stderr = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, stderr
    assert stderr == ""


def test_the_console_lists_the_pages_and_the_test_users() -> None:
    text = demo.banner("fastapi", 8000, 9000)
    for url in ("/profile", "/admin", "/api/reports", "/docs", "/k_jwks"):
        assert f"http://127.0.0.1:8000{url}" in text
    assert "/downstream" not in text, "the FastAPI example has no downstream page"
    assert "http://127.0.0.1:9000" in text
    assert "alice  roles: user, admin" in text
    assert "bob    roles: user" in text
    assert "/docs" not in demo.banner("starlette", 8000, 9000)


def test_the_django_console_lists_the_django_examples_pages() -> None:
    text = demo.banner("django", 8000, 9000)
    for url in ("/private", "/staff", "/api/whoami", "/admin/"):
        assert f"http://127.0.0.1:8000{url}\n" in text
    for missing in ("/profile", "/downstream"):
        assert missing not in text


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.demo", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("taken", ["app", "idp"])
def test_a_port_in_use_is_named_with_the_fix_and_nothing_starts(taken: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        app_port, idp_port = (port, free_port()) if taken == "app" else (free_port(), port)
        result = run_demo("flask", "--port", str(app_port), "--idp-port", str(idp_port))
    assert result.returncode == 2
    assert result.stderr == (
        f"demo: port {port} is in use (another demo still running?); choose others: "
        f"make demo-flask PORT={app_port + 1} IDP_PORT={idp_port + 1}\n"
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_make_passes_port_and_idp_port_to_the_demo() -> None:
    for target, flavor in (("demo", "starlette"), ("demo-django", "django")):
        planned = subprocess.run(
            ["make", "-n", target, "PORT=8123", "IDP_PORT=9123"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        command = [line for line in planned.splitlines() if "-m examples.demo" in line]
        assert command == [
            f".venv/bin/python -m examples.demo --port 8123 --idp-port 9123 {flavor}"
        ]
    args = demo.arguments(["--port", "8123", "--idp-port", "9123", "django"])
    assert (args.flavor, args.port, args.idp_port) == ("django", 8123, 9123)
    assert demo.arguments([]).port == 8000
    assert demo.arguments([]).idp_port == 9000
    assert "http://127.0.0.1:8123/private" in demo.banner("django", 8123, 9123)
