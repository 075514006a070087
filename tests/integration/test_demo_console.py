"""``make demo`` explains itself (issue 13, item 5): the console lists the pages and the test
users, and the demo notices when one of its servers dies, names it and exits non-zero.

:func:`examples.demo.watch` runs in a child Python process (it blocks SIGINT/SIGTERM in the
process that calls it), watching real child processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from examples import demo

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
    for url in ("/profile", "/admin", "/downstream", "/docs", "/k_jwks"):
        assert f"http://127.0.0.1:8000{url}" in text
    assert "http://127.0.0.1:9000" in text
    assert "alice  roles: user, admin" in text
    assert "bob    roles: user" in text
    assert "/docs" not in demo.banner("starlette", 8000, 9000)
