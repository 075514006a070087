"""A program run in a fresh interpreter, for what only a new process can show (what an import
loads, an app without Starlette): the JSON its last line printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def printed_json(program: str) -> Any:
    """What ``program`` printed as JSON on its last line, run by this interpreter from the
    project's root; its traceback in the assertion when it fails."""
    ran = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout.splitlines()[-1])
