"""The code stays ruff-clean (ruff.toml), so CI fails on a lint error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (both packages, bench/)


def test_ruff_clean() -> None:
    ruff = shutil.which('ruff')
    assert ruff is not None, 'ruff is not installed: run the tests through `make test`'
    result = subprocess.run([ruff, 'check', '--no-cache', str(ROOT)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
