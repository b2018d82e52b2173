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
import re
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
        atexit.register(self.stop)
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            # A plain SIGTERM would end Python without cleanup: make it an exit.
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
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
        cmd = ['ip', 'netns', 'exec', ns, *argv]
        environment = dds_env(env)
        # Each in a session of its own, so stop() can end it with everything it
        # started, even if a launcher dies before its children.
        if cpu_quota:
            proc, group = run_under_quota(cpu_quota, cmd, fill=True, env=environment,
                                          start_new_session=True, **popen)
            self.groups.append(group)
        else:
            proc = subprocess.Popen(cmd, env=environment, start_new_session=True, **popen)
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        """Stop every process started here and remove namespaces, links and groups."""
        for proc in self.processes:
            signal_group(proc, signal.SIGINT)
        deadline = time.monotonic() + 15
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The launcher and whatever it started, whether it exited or not.
            signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.processes.clear()
        for group in self.groups:
            group.remove()
        self.groups.clear()
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


FLEET_SUBNET = '10.200.78'


@dataclass
class Fleet:
    """Several robots and edges on one emulated LAN: a network namespace per
    host (``<name>-d<i>``, ``<name>-e<j>``), each joined by a veth pair to a
    bridge in a switch namespace (``<name>-sw``; multicast snooping off, so
    DDS discovery floods). Each robot's link is shaped on its own, both ways
    (tbf on its end and on the bridge port towards it), as Testbed shapes
    its one link; the edges' links are not shaped. Hosts are addressed as
    ``('device', i)`` and ``('edge', j)``."""

    devices: int
    edges: int = 1
    rate_kbit: float | Sequence[float] = 2000.0
    name: str = field(default_factory=lambda: f'{PREFIX}{os.getpid()}f')
    burst_bytes: int = 1600
    limit_bytes: int = 4 * 1024 * 1024
    processes: list[subprocess.Popen] = field(default_factory=list)
    up: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= 50 or not 1 <= self.edges <= 50:
            raise TestbedError(f'need 1..50 devices and edges, got {self.devices}, {self.edges}')
        rates = [self.rate_kbit] * self.devices if isinstance(self.rate_kbit, (int, float)) \
            else list(self.rate_kbit)
        if len(rates) != self.devices or not all(r > 0 for r in rates):
            raise TestbedError(f'need {self.devices} rates > 0 kbit/s, got {self.rate_kbit}')
        self.rates = [float(r) for r in rates]

    def ns(self, host: tuple[str, int]) -> str:
        role, i = host
        return f'{self.name}-{"d" if role == "device" else "e"}{i}'

    def addr(self, host: tuple[str, int]) -> str:
        role, i = host
        return f'{FLEET_SUBNET}.{10 + i if role == "device" else 200 + i}'

    @property
    def switch_ns(self) -> str:
        return f'{self.name}-sw'

    @property
    def hosts(self) -> list[tuple[str, int]]:
        return [('device', i) for i in range(self.devices)] + \
            [('edge', j) for j in range(self.edges)]

    def _ifs(self, host: tuple[str, int]) -> tuple[str, str]:
        """(host end, bridge end) of a host's veth: at most 15 characters."""
        tag = f'{self.name[-7:]}{host[0][0]}{host[1]}'
        return f'{tag}h', f'{tag}b'

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        why = available()
        if why:
            raise TestbedError(f'cannot build the fleet testbed: {why}')
        atexit.register(self.stop)
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        remove_leftovers()
        sw = self.switch_ns
        try:
            _run('ip', 'netns', 'add', sw)
            self.up = True
            _run('ip', '-n', sw, 'link', 'add', 'br0', 'type', 'bridge')
            _run('ip', 'netns', 'exec', sw, 'sh', '-c',
                 'echo 0 > /sys/class/net/br0/bridge/multicast_snooping')
            _run('ip', '-n', sw, 'link', 'set', 'br0', 'up')
            for host in self.hosts:
                ns, (h_if, b_if) = self.ns(host), self._ifs(host)
                _run('ip', 'netns', 'add', ns)
                _run('ip', 'link', 'add', h_if, 'type', 'veth', 'peer', 'name', b_if)
                _run('ip', 'link', 'set', h_if, 'netns', ns)
                _run('ip', 'link', 'set', b_if, 'netns', sw)
                _run('ip', '-n', sw, 'link', 'set', b_if, 'master', 'br0')
                _run('ip', '-n', sw, 'link', 'set', b_if, 'up')
                _run('ip', '-n', ns, 'addr', 'add', f'{self.addr(host)}/24', 'dev', h_if)
                _run('ip', '-n', ns, 'link', 'set', h_if, 'up')
                _run('ip', '-n', ns, 'link', 'set', 'lo', 'up')
                _run('ip', '-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', h_if)
                if host[0] == 'device':
                    self._shape(host, 'add')
        except TestbedError:
            self.stop()
            raise

    def _shape(self, host: tuple[str, int], verb: str) -> None:
        rate = self.rates[host[1]]
        h_if, b_if = self._ifs(host)
        for ns, iface in ((self.ns(host), h_if), (self.switch_ns, b_if)):
            _run('ip', 'netns', 'exec', ns, 'tc', 'qdisc', verb, 'dev', iface, 'root', 'tbf',
                 'rate', f'{rate:.3f}kbit', 'burst', str(self.burst_bytes),
                 'limit', str(self.limit_bytes))

    def set_rate(self, device: int, rate_kbit: float) -> None:
        """Change one robot's link rate, both ways, now."""
        if not rate_kbit > 0:
            raise TestbedError(f'rate must be > 0 kbit/s, got {rate_kbit}')
        self.rates[device] = float(rate_kbit)
        self._shape(('device', device), 'change')

    def set_link(self, host: tuple[str, int], up: bool) -> None:
        """Cut a host off the LAN (its bridge port down), or connect it again."""
        _run('ip', '-n', self.switch_ns, 'link', 'set', self._ifs(host)[1],
             'up' if up else 'down')

    def spawn(self, host: tuple[str, int], argv: Sequence[str], *,
              env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
        """Start argv inside a host's namespace, in a session of its own."""
        proc = subprocess.Popen(['ip', 'netns', 'exec', self.ns(host), *argv],
                                env=dds_env(env), start_new_session=True, **popen)
        self.processes.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a spawned process and everything it started."""
        signal_group(proc, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        """Stop every process started here; remove the namespaces (and with
        them the veths and the bridge)."""
        for proc in self.processes:
            signal_group(proc, signal.SIGINT)
        deadline = time.monotonic() + 15
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.processes.clear()
        if self.up:
            for ns in [self.ns(h) for h in self.hosts] + [self.switch_ns]:
                subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
            self.up = False


def signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Signal the process group (session) a spawned process leads."""
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def leftovers() -> list[str]:
    """Namespaces of ours still present (e.g. from a killed run)."""
    result = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.startswith(PREFIX)]
    return [n for n in names if n.endswith(('-dev', '-edge', '-sw')) or
            re.fullmatch(rf'{PREFIX}\d+f-[de]\d+', n)]


__all__ = ['Fleet', 'QuotaError', 'Testbed', 'TestbedError', 'TraceReplay', 'available', 'dds_env',
           'leftovers', 'remove_leftovers', 'signal_group']


def remove_leftovers() -> list[str]:
    """Delete namespaces of ours whose creating process is gone (a killed run)."""
    removed = []
    for ns in leftovers():
        pid = ns[len(PREFIX):].split('-')[0].rstrip('f')
        if pid.isdigit() and not Path(f'/proc/{pid}').exists():
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
            removed.append(ns)
    return removed
