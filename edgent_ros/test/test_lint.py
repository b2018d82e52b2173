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


def test_no_logger_warn() -> None:
    # rclpy's deprecated Logger.warn goes through a typing_extensions wrapper,
    # which rclpy takes for the caller: every .warn(...) in a process then
    # shares one call site, and two with different throttles raise
    # "Requested logging filters cannot be changed between calls" (it stopped
    # the device node skipping late frames once it warned of something else).
    found = [f'{path.relative_to(ROOT)}:{n}'
             for path in (ROOT / 'edgent_ros' / 'edgent_ros').rglob('*.py')
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if '.warn(' in line]
    assert not found, f'use .warning(...), not .warn(...): {found}'
