"""An emulated Pi-and-PC testbed on one machine: two network namespaces, a shaped link.

``Testbed`` creates a device and an edge namespace joined by a veth pair
(the project's own test hosts, 10.200.77.1 and .2, reachable from nowhere
else), shapes both directions with ``tc tbf`` (burst of one MTU, long queue,
as ``../shared/notes/ros2-from-pypi.md`` found DDS needs), changes the rate
on demand, starts processes inside either namespace (the device's under a
cgroup CPU quota if asked), and tears everything down on exit, on Ctrl-C and
at interpreter exit. Processes inside the namespaces run with subnet
discovery and edgent_ros's DDS profile (shared memory and UDPv4, see
dds_env): measured, shared memory does not carry traffic between the two
namespaces, so everything between device and edge crosses the shaped link.

Needs root (``ip netns``, ``tc``, cgroups); ``available()`` says whether it
can run here and, if not, why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgent_ros import dds_profile
from edgent_ros.cpu_quota import CpuGroup, QuotaError, run_under_quota

PREFIX = 'edgent'
DEVICE_ADDR = '10.200.77.1'
EDGE_ADDR = '10.200.77.2'


class TestbedError(RuntimeError):
    """The testbed cannot be set up here; the text says why."""


def available() -> str | None:
    """None if a testbed can be built here, else the reason it cannot."""
    if os.geteuid() != 0:
        return 'network namespaces and tc need root'
    for tool in ('ip', 'tc'):
        if shutil.which(tool) is None:
            return f'{tool} (iproute2) is not installed'
    return None


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise TestbedError(f"{' '.join(cmd)}: {result.stderr.strip() or result.returncode}")


def dds_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ROS 2 processes inside the namespaces.

    edgent_ros's DDS profile (dds_profile), for every process there, plain
    rclpy ones included. It has shared memory, yet device<->edge traffic
    still crosses the link: Fast DDS (2.14 and 3.2 measured) did not use
    shared memory between the two namespaces, and sent 640x480 frames
    between them at the link's rate (docs/design.md, "DDS profile"); the
    first test of test_testbed.py checks that an upload takes about its
    time on the link.
    Inside one namespace (camera to device node) shared memory carries the
    frames. FASTDDS_BUILTIN_TRANSPORTS=UDPv4 acts only where no profile
    defines transports (EDGENT_DDS_PROFILE=none): Fast DDS 2.14 and 3.2
    ignored it when one did.
    """
    env = dict(os.environ if base is None else base)
    env.update({'FASTDDS_BUILTIN_TRANSPORTS': 'UDPv4', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET',
                'PYTHONUNBUFFERED': '1', 'PYTHONSAFEPATH': '1'})
    dds_profile.apply(env)
    return env


@dataclass
class Testbed:
    """Device and edge namespaces joined by a tbf-shaped veth link."""

    rate_kbit: float
    name: str = field(default_factory=lambda: f'{PREFIX}{os.getpid()}')
    burst_bytes: int = 1600
    limit_bytes: int = 4 * 1024 * 1024
    processes: list[subprocess.Popen] = field(default_factory=list)
    groups: list[CpuGroup] = field(default_factory=list)
    up: bool = False

    @property
    def device_ns(self) -> str:
        return f'{self.name}-dev'

    @property
    def edge_ns(self) -> str:
        return f'{self.name}-edge'

    @property
    def veth(self) -> tuple[str, str]:
        # The name's end (the pid in a default name): two testbeds at once must
        # not share an interface name (15 characters at most).
        return f'{self.name[-12:]}d', f'{self.name[-12:]}e'

    def __enter__(self) -> Testbed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        why = available()
        if why:
            raise TestbedError(f'cannot build the testbed: {why}')
        _clean_up_on_exit(self.stop)
        remove_leftovers()
        dev_if, edge_if = self.veth
        try:
            _run('ip', 'netns', 'add', self.device_ns)
            _run('ip', 'netns', 'add', self.edge_ns)
            self.up = True
            _run('ip', 'link', 'add', dev_if, 'type', 'veth', 'peer', 'name', edge_if)
            for ns, iface, addr in ((self.device_ns, dev_if, DEVICE_ADDR),
                                    (self.edge_ns, edge_if, EDGE_ADDR)):
                _run('ip', 'link', 'set', iface, 'netns', ns)
                _run('ip', '-n', ns, 'addr', 'add', f'{addr}/24', 'dev', iface)
                _run('ip', '-n', ns, 'link', 'set', iface, 'up')
                _run('ip', '-n', ns, 'link', 'set', 'lo', 'up')
                # DDS discovery multicasts: keep it on the link.
                _run('ip', '-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', iface)
                self._shape(ns, iface, 'add')
        except TestbedError:
            self.stop()
            raise

    def _shape(self, ns: str, iface: str, verb: str) -> None:
        _run('ip', 'netns', 'exec', ns, 'tc', 'qdisc', verb, 'dev', iface, 'root', 'tbf',
             'rate', f'{self.rate_kbit:.3f}kbit', 'burst', str(self.burst_bytes),
             'limit', str(self.limit_bytes))

    def set_rate(self, rate_kbit: float) -> None:
        """Change the link's rate, both directions, now."""
        if not rate_kbit > 0:
            raise TestbedError(f'rate must be > 0 kbit/s, got {rate_kbit}')
        self.rate_kbit = rate_kbit
        dev_if, edge_if = self.veth
        self._shape(self.device_ns, dev_if, 'change')
        self._shape(self.edge_ns, edge_if, 'change')

    def set_link(self, up: bool) -> None:
        """Take the link down (no packet crosses, as when Wi-Fi drops) or up again."""
        state = 'up' if up else 'down'
        for ns, iface in zip((self.device_ns, self.edge_ns), self.veth, strict=True):
            _run('ip', '-n', ns, 'link', 'set', iface, state)
        if up:  # the multicast route goes with the link; discovery needs it back
            for ns, iface in zip((self.device_ns, self.edge_ns), self.veth, strict=True):
                subprocess.run(['ip', '-n', ns, 'route', 'replace', '224.0.0.0/4', 'dev',
                                iface], capture_output=True)

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a spawned process and everything it started (a crash, a power cut)."""
        signal_group(proc, signal.SIGKILL)
        proc.wait()

    def replay(self, trace: Sequence[tuple[float, float]],
               on_step: Callable[[float, float], None] | None = None) -> TraceReplay:
        """Apply a bandwidth trace: (seconds from now, kbit/s) steps, in a thread;
        0 kbit/s takes the link down until the next step. ``on_step(t, kbps)``
        is called after each step is applied."""
        replay = TraceReplay(self, list(trace), on_step)
        replay.start()
        return replay

    def spawn(self, role: str, argv: Sequence[str], *, cpu_quota: float | None = None,
              env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
        """Start argv inside the device or edge namespace (optionally CPU-limited)."""
        ns = {'device': self.device_ns, 'edge': self.edge_ns}[role]
        return _spawn_in(ns, argv, cpu_quota, env, popen, self.processes, self.groups)

    def stop(self) -> None:
        """Stop every process started here and remove namespaces, links and groups."""
        _end_processes(self.processes, self.groups)
        if self.up:
            for ns in (self.device_ns, self.edge_ns):
                subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
            self.up = False


class TraceReplay(threading.Thread):
    """Changes a testbed's rate at the trace's times; ``stop()`` ends it early.

    A step of 0 kbit/s takes the link down (``set_link(False)``); the next
    step with a rate brings it up again at that rate. ``applied`` records
    (monotonic time, kbit/s) of each change actually made, so a bench can
    measure how long the system took to react to each step.
    """

    def __init__(self, bed: Testbed, trace: list[tuple[float, float]],
                 on_step: Callable[[float, float], None] | None = None) -> None:
        super().__init__(daemon=True)
        for t, rate in trace:
            if not (t >= 0 and rate >= 0) or t == float('inf') or rate == float('inf'):
                raise TestbedError(f'bad trace step ({t}, {rate}): need finite t >= 0, '
                                   'rate >= 0 (0: link down)')
        self.bed = bed
        self.trace = sorted(trace)
        self.on_step = on_step
        self.applied: list[tuple[float, float]] = []
        self._cancel = threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        down = False
        for t, rate in self.trace:
            if self._cancel.wait(max(0.0, self.start_time + t - time.monotonic())):
                return
            if rate == 0:
                if not down:
                    self.bed.set_link(False)
                down = True
            else:
                if down:
                    self.bed.set_link(True)
                    down = False
                if rate != self.bed.rate_kbit:
                    self.bed.set_rate(rate)
            self.applied.append((time.monotonic(), rate))
            if self.on_step is not None:
                self.on_step(time.monotonic() - self.start_time, rate)

    def stop(self) -> None:
        self._cancel.set()
        self.join(timeout=5)


def signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Signal the process group (session) a spawned process leads."""
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _clean_up_on_exit(stop: Callable[[], None]) -> None:
    """Run stop at interpreter exit, and make a plain SIGTERM an exit so it runs then too."""
    atexit.register(stop)
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        # A plain SIGTERM would end Python without cleanup: make it an exit.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _spawn_in(ns: str, argv: Sequence[str], cpu_quota: float | None,
              env: dict[str, str] | None, popen: dict[str, object],
              processes: list[subprocess.Popen], groups: list[CpuGroup]) -> subprocess.Popen:
    """Start argv inside namespace ns with dds_env; record it (and its group) for stop."""
    cmd = ['ip', 'netns', 'exec', ns, *argv]
    environment = dds_env(env)
    # Each in a session of its own, so stop() can end it with everything it
    # started, even if a launcher dies before its children.
    if cpu_quota:
        proc, group = run_under_quota(cpu_quota, cmd, fill=True, env=environment,
                                      start_new_session=True, **popen)
        groups.append(group)
    else:
        proc = subprocess.Popen(cmd, env=environment, start_new_session=True, **popen)
    processes.append(proc)
    return proc


def _end_processes(processes: list[subprocess.Popen], groups: list[CpuGroup]) -> None:
    """SIGINT every process's group, wait up to 15 s in all, SIGKILL the groups; remove
    the CPU groups. Empties both lists."""
    for proc in processes:
        signal_group(proc, signal.SIGINT)
    deadline = time.monotonic() + 15
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        # The launcher and whatever it started, whether it exited or not.
        signal_group(proc, signal.SIGKILL)
        proc.wait()
    processes.clear()
    for group in groups:
        group.remove()
    groups.clear()


def leftovers() -> list[str]:
    """Namespaces of ours still present (e.g. from a killed run)."""
    result = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True)
    return [line.split()[0] for line in result.stdout.splitlines()
            if line.startswith(PREFIX) and line.split()[0].endswith(('-dev', '-edge'))]


__all__ = ['QuotaError', 'Testbed', 'TestbedError', 'TraceReplay', 'available', 'dds_env',
           'leftovers', 'remove_leftovers', 'signal_group']


def remove_leftovers() -> list[str]:
    """Delete namespaces of ours whose creating process is gone (a killed run)."""
    removed = []
    for ns in leftovers():
        pid = ns[len(PREFIX):].split('-')[0]
        if pid.isdigit() and not Path(f'/proc/{pid}').exists():
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
            removed.append(ns)
    return removed
