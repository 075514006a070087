"""The fenced code blocks of README.md, CONTRIBUTING.md and docs/, and the test that answers
for each.

Every block is preceded, on the line before its opening fence, by one claim:

    <!-- run: tests/integration/test_readme.py::test_the_library_program_runs_as_written -->
    <!-- fragment: covered by tests/unit/test_redis_url.py::test_the_usual_form -->

``run``: the named test reads the block with :func:`run_by` (its own node id, parameters
included) and runs or checks it as written. ``fragment``: the block cannot run on its own (part
of a file, placeholders, a program's output); the named tests (one or more, comma-separated)
cover what it shows. ``tests/unit/test_docs_code.py`` holds every block to a claim and every
claim to a test that exists.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_ID = r"tests/[\w/]+\.py::\w+(?:\[[\w.-]+\])?"
CLAIM = re.compile(rf"<!-- (run|fragment): (?:covered by )?({NODE_ID}(?:, {NODE_ID})*) -->")
FENCE = re.compile(r"^( *)(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    document: str  # the Markdown file, from the repository root
    line: int  # the line of the opening fence
    language: str
    text: str  # dedented to the fence, with a final newline
    claim: str  # "run", "fragment", or "" when the line before the fence claims nothing
    tests: tuple[str, ...]  # the node ids the claim names

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def documents() -> list[Path]:
    """The Markdown files whose blocks are held to a claim."""
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(document: Path) -> list[Block]:
    """Every fenced block of ``document``, with the claim on the line before it."""
    lines = document.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence, language = opening.groups()
        start, body = index, []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        text = textwrap.dedent("\n".join(body) + "\n") if indent else "\n".join(body) + "\n"
        claim = CLAIM.fullmatch(lines[start - 1].strip()) if start else None
        found.append(
            Block(
                document=str(
                    document.relative_to(ROOT) if document.is_relative_to(ROOT) else document
                ),
                line=start + 1,
                language=language,
                text=text,
                claim=claim.group(1) if claim else "",
                tests=tuple(claim.group(2).split(", ")) if claim else (),
            )
        )
        index += 1
    return found


@cache
def every_block() -> tuple[Block, ...]:
    return tuple(block for document in documents() for block in blocks(document))


def run_by(node_id: str) -> list[Block]:
    """The blocks that say ``<!-- run: NODE_ID -->``: what the test with that node id runs."""
    found = [b for b in every_block() if b.claim == "run" and node_id in b.tests]
    assert found, f"no block in README.md or docs/ says <!-- run: {node_id} -->"
    return found


def one_run_by(node_id: str) -> Block:
    """The one block that test runs."""
    found = run_by(node_id)
    assert len(found) == 1, f"{node_id} runs one block; these name it: {[b.where for b in found]}"
    return found[0]
