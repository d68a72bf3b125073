"""House rules that tools check: ruff lint and format, and plain requirement files (ComfyUI-Manager)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff(command):
    if RUFF is None:
        pytest.fail("ruff is not installed; run bash scripts/setup.sh --dev")
    done = subprocess.run([RUFF, *command], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


# A requirement specifier alone on its line: name[extras] (op version)*, no inline comment or option.
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?(\s*(==|>=|<=|~=|!=|<|>)\s*[\w.*+!-]+(\s*,\s*(==|>=|<=|~=|!=|<|>)\s*[\w.*+!-]+)*)?"
)


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_requirement_lines_are_plain_specifiers(name):
    """ComfyUI-Manager hands each line to the installer verbatim: comments only on their own lines."""
    for number, line in enumerate((REPO / name).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert _REQUIREMENT.fullmatch(line), f"{name}:{number}: {line!r} is not a plain requirement specifier"
