"""A Pi-class "device" CPU on a fast machine: a cgroup CPU quota.

``cpu_quota(0.15)`` creates a cgroup limited to 15% of one core, moves the
calling process (all its threads) into it, and on exit moves it back and
removes the group. ``run_under_quota`` starts a child process inside such a
group. Both need root (or a delegated cgroup); without one they raise
QuotaError saying why, and never run unthrottled in silence.

The quota is enforced per period; the period is kept as short as the
kernel allows (it wants at least 1 ms of quota per period: 6.7 ms at 15%),
so a frame's compute is slowed as evenly as CFS can rather than run at full
speed and then stalled for most of a long period. Works with cgroup v1 (``cpu`` controller)
and v2 (``cpu.max``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CGROUP_ROOT = Path('/sys/fs/cgroup')
MIN_QUOTA_US = 1000


class QuotaError(RuntimeError):
    """The CPU quota cannot be applied here; the text says why."""


def _hierarchy() -> tuple[Path, str]:
    """The cgroup directory that controls CPU bandwidth, and its version."""
    v1 = CGROUP_ROOT / 'cpu'
    if (v1 / 'cpu.cfs_quota_us').exists():
        return v1, 'v1'
    if (CGROUP_ROOT / 'cgroup.controllers').exists():
        if 'cpu' in (CGROUP_ROOT / 'cgroup.controllers').read_text().split():
            return CGROUP_ROOT, 'v2'
    raise QuotaError('no cgroup CPU controller found under /sys/fs/cgroup '
                     '(need cgroup v1 "cpu" or cgroup v2 with the cpu controller)')


def period_for(fraction: float, period_us: int | None = None) -> tuple[int, int]:
    """(quota_us, period_us) for a fraction of one core.

    By default the shortest period the kernel allows for the fraction (1 ms
    of quota per period: 6.7 ms at 15%): CFS throttles only once a period's
    quota is spent, so a frame's short burst of work runs at full speed
    unless the period is short compared with it.
    """
    if not 0.0 < fraction <= 64.0:
        raise QuotaError(f'CPU quota must be a positive fraction of a core, got {fraction}')
    period = period_us or 1000
    period = max(period, round(MIN_QUOTA_US / fraction))
    period = min(period, 1_000_000)
    quota = max(MIN_QUOTA_US, round(fraction * period))
    return quota, period


class CpuGroup:
    """A cgroup with a CPU quota; create(), add(pid), remove()."""

    def __init__(self, fraction: float, name: str | None = None,
                 period_us: int | None = None) -> None:
        self.fraction = fraction
        self.quota_us, self.period_us = period_for(fraction, period_us)
        self.root, self.version = _hierarchy()
        self.path = self.root / (name or f'edgent_ros_{os.getpid()}_{uuid.uuid4().hex[:6]}')

    def create(self) -> CpuGroup:
        if os.geteuid() != 0 and not os.access(self.root, os.W_OK):
            raise QuotaError(f'a CPU quota needs root or a writable {self.root} '
                             f'(running as uid {os.geteuid()}); refusing to run unthrottled')
        try:
            self.path.mkdir(exist_ok=True)
            if self.version == 'v1':
                (self.path / 'cpu.cfs_period_us').write_text(str(self.period_us))
                (self.path / 'cpu.cfs_quota_us').write_text(str(self.quota_us))
            else:
                (self.path / 'cpu.max').write_text(f'{self.quota_us} {self.period_us}')
        except OSError as exc:
            self.remove()
            raise QuotaError(f'cannot set a CPU quota in {self.path}: {exc}') from None
        return self

    def add(self, pid: int) -> None:
        try:
            (self.path / 'cgroup.procs').write_text(str(pid))
        except OSError as exc:
            raise QuotaError(f'cannot move process {pid} into {self.path}: {exc}') from None

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / 'cgroup.procs').read_text().split()]
        except OSError:
            return []

    def throttled_us(self) -> int:
        """Total time the group has been throttled, microseconds."""
        try:
            if self.version == 'v1':
                for line in (self.path / 'cpu.stat').read_text().splitlines():
                    if line.startswith('throttled_time'):
                        return int(line.split()[1]) // 1000
            else:
                for line in (self.path / 'cpu.stat').read_text().splitlines():
                    if line.startswith('throttled_usec'):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def fill(self) -> None:
        """Keep the group's quota in use between bursts of real work.

        CFS throttles only once a period's quota is spent, so a short burst
        (one frame) in an otherwise idle group runs at full speed. A spinner
        at SCHED_IDLE in the same group spends the quota whenever nothing
        else wants it; real work (normal priority, ~300x the weight) takes
        the quota from it at once, and so always runs at the group's rate,
        like on a slow CPU. Removed with the group.
        """
        code = ('import os\n'
                'os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n'
                'while True:\n    pass\n')
        self.filler = subprocess.Popen(
            [sys.executable, '-c', code], preexec_fn=self._enter,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _enter(self) -> None:
        (self.path / 'cgroup.procs').write_text(str(os.getpid()))

    def remove(self) -> None:
        """Move any processes left to the parent group and delete the group."""
        filler = getattr(self, 'filler', None)
        if filler is not None and filler.poll() is None:
            filler.kill()
            filler.wait()
        if not self.path.exists():
            return
        for pid in self.pids():
            try:
                (self.root / 'cgroup.procs').write_text(str(pid))
            except OSError:
                pass
        try:
            self.path.rmdir()
        except OSError:
            pass

    def describe(self) -> str:
        return (f'{100 * self.fraction:.0f}% of one core (cgroup {self.version} '
                f'{self.path.name}: {self.quota_us} us per {self.period_us} us)')


@contextmanager
def cpu_quota(fraction: float) -> Iterator[CpuGroup]:
    """Run the calling process under a CPU quota for the duration of the block."""
    group = CpuGroup(fraction).create()
    try:
        group.add(os.getpid())
        yield group
    finally:
        group.remove()


def run_under_quota(fraction: float, argv: Sequence[str], *, fill: bool = False,
                    **popen: object) -> tuple[subprocess.Popen, CpuGroup]:
    """Start argv in a new process already inside a CPU-quota group.

    The child enters the group before it execs, so none of its work runs
    unthrottled. With ``fill`` the group's idle quota is spent by a
    SCHED_IDLE spinner (``CpuGroup.fill``), so bursts run at the quota's rate
    too. The caller must call ``group.remove()`` when done.
    """
    group = CpuGroup(fraction).create()
    if fill:
        group.fill()
    procs = group.path / 'cgroup.procs'

    def enter() -> None:  # runs in the child between fork and exec
        procs.write_text(str(os.getpid()))

    try:
        process = subprocess.Popen(list(argv), preexec_fn=enter, **popen)
    except (OSError, subprocess.SubprocessError) as exc:
        group.remove()
        raise QuotaError(f'cannot start {argv[0]} under a CPU quota: {exc}') from None
    return process, group
