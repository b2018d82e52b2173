"""edgent-demo as a new user meets it: where its logs go, and failures
that end in a message, not a traceback (issue 18)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgent_ros.demo import pipeline


def test_each_run_logs_to_a_fresh_directory_of_its_own() -> None:
    """A fixed /tmp/edgent_demo made by a first (root) run left a later user
    with PermissionError on device.log: each run gets its own directory,
    owned by whoever runs it."""
    first, second = pipeline.default_log_dir(), pipeline.default_log_dir()
    try:
        assert first != second
        for d in (first, second):
            assert d.is_dir() and d.stat().st_uid == os.getuid()
            assert (d.stat().st_mode & 0o077) == 0  # not readable by others
    finally:
        shutil.rmtree(first)
        shutil.rmtree(second)


def test_a_log_directory_it_cannot_use_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    """The failure a non-root user met (a log file it cannot open), made so
    that root meets it too: the log directory is a file. Refused before
    anything is started or profiled."""
    blocked = tmp_path / 'not_a_dir'
    blocked.write_text('')
    tool = shutil.which('edgent-demo')
    if tool is None:
        pytest.skip('edgent-demo is not installed in this environment')
    run = subprocess.run([tool, '--no-testbed', '--frames', '1', '--log-dir', str(blocked)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert 'Traceback' not in run.stderr + run.stdout
    assert str(blocked) in run.stderr and 'log' in run.stderr
