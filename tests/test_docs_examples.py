"""The Python examples of the documentation run as written: every ```python block of README.md and docs/*.md.

Each block runs in a fresh interpreter, in an empty folder holding a link to the repository's scenarios/ (the
examples' relative paths point there, and their runs land in the folder, not in the checkout), so a block cannot
lean on another's state. A block that simulates a federation starts Ray and takes tens of seconds: it
is marked slow; the others run in the fast loop. A nonzero exit fails the test with the block's output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    """``(where, code)`` of every ```python block: README.md first, then docs/*.md by name."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for number, match in enumerate(FENCE.finditer(text), start=1):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{page.relative_to(ROOT)}:{line} (block {number})", match.group(1)))
    return blocks


def _param(where: str, code: str) -> object:
    marks = [pytest.mark.slow] if "simulate(" in code else []
    return pytest.param(code, id=where, marks=marks)


BLOCKS = python_blocks()


def test_the_docs_have_python_examples() -> None:
    """The README's example and the docs' examples exist (an empty list would make the test below pass vacuously)."""
    wheres = [where for where, _ in BLOCKS]
    assert any(where.startswith("docs/") for where in wheres), wheres


@pytest.mark.parametrize("code", [_param(where, code) for where, code in BLOCKS])
def test_python_example_runs_as_written(code: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
