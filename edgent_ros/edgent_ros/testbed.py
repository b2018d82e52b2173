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

``Fleet`` does the same for several robots: N device and M edge namespaces
on one bridged LAN (10.200.78.0/24), each device's link shaped on its own,
any device's or edge's link taken down and up, so that tests can put many
devices against one or two edges as a real deployment would.

Needs root (``ip netns``, ``tc``, cgroups); ``available()`` says whether it
can run here and, if not, why. ``leftovers()`` and ``remove_leftovers()``
find and delete what a killed run of either left behind.
"""

from __future__ import annotations

import atexit
import itertools
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


FLEET_SUBNET = '10.200.78'
_fleet_ids = itertools.count()

Host = tuple[str, int] | str
"""A fleet's host: ``('device', i)`` or ``('edge', j)``, or the short form ``'d<i>'`` /
``'e<j>'`` (the end of its namespace's name: ``'d0'``, ``'e1'``)."""


def _default_fleet_name() -> str:
    # The pid first (remove_leftovers reads it), then a counter: two fleets of
    # one process must differ.
    return f'{PREFIX}{os.getpid()}f{next(_fleet_ids)}'


def _batch(cmd: Sequence[str], lines: Sequence[str]) -> None:
    """Run one ``ip``/``tc`` with ``-batch -``: one process for many commands."""
    if not lines:
        return
    result = subprocess.run([*cmd, '-batch', '-'], input='\n'.join(lines) + '\n',
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise TestbedError(f"{' '.join(cmd)} -batch: "
                           f'{result.stderr.strip() or result.returncode}')


def _rates(value: float | Sequence[float] | None, count: int, what: str) -> list[float | None]:
    rates = list(value) if isinstance(value, Sequence) else [value] * count
    if len(rates) != count:
        raise TestbedError(f'{what}: {len(rates)} rates for {count} links')
    for rate in rates:
        if rate is not None and not rate > 0:
            raise TestbedError(f'rate must be > 0 kbit/s, got {rate}')
    return rates


@dataclass
class Fleet:
    """N device and M edge namespaces on one emulated LAN, each device's link shaped apart.

    A switch namespace (``<name>-sw``) holds a Linux bridge with multicast
    snooping off, so DDS discovery's multicast floods to every host as on a
    plain Wi-Fi LAN. Each host namespace (``<name>-d<i>``, ``<name>-e<j>``)
    joins it by a veth of its own, addressed in ``<subnet>.0/24``: device i
    at ``.10+i``, edge j at ``.200+j``. A device's link is shaped on both
    ends with ``tc tbf`` (its own egress: uploads; the bridge port towards
    it: downloads), burst one MTU and a long queue as in Testbed, so devices
    share no bottleneck; edge links are unshaped unless edge_rate_kbit is
    given. The veths are created inside the namespaces, never in the
    caller's, so their names (15 characters at most, from the name's end)
    cannot meet another fleet's or a Testbed's. Processes start inside a
    host with ``spawn`` (Testbed's rules: dds_env, a session of their own,
    an optional CPU quota); ``stop`` (also at exit and on SIGTERM) ends them
    and deletes the namespaces, which takes bridge and veths with them.
    """

    devices: int
    rate_kbit: float | Sequence[float]
    edges: int = 1
    edge_rate_kbit: float | Sequence[float] | None = None
    name: str = field(default_factory=_default_fleet_name)
    subnet: str = FLEET_SUBNET
    burst_bytes: int = 1600
    limit_bytes: int = 4 * 1024 * 1024
    device_rates: list[float] = field(init=False)
    edge_rates: list[float | None] = field(init=False)
    processes: list[subprocess.Popen] = field(default_factory=list)
    groups: list[CpuGroup] = field(default_factory=list)
    up: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= 190 or not 1 <= self.edges <= 55:
            raise TestbedError(f'a fleet has 1..190 devices and 1..55 edges (one /24), '
                               f'got {self.devices} and {self.edges}')
        rates = _rates(self.rate_kbit, self.devices, 'rate_kbit')
        self.device_rates = [rate for rate in rates if rate is not None]
        if len(self.device_rates) != self.devices:
            raise TestbedError('every device link needs a rate')
        self.edge_rates = _rates(self.edge_rate_kbit, self.edges, 'edge_rate_kbit')
        if '-' in self.name:
            raise TestbedError(f'a fleet name has no "-" (namespaces are <name>-d0...): '
                               f'{self.name!r}')

    # Names and addresses.

    def _host(self, host: Host) -> tuple[str, int]:
        if isinstance(host, str):
            kind = {'d': 'device', 'e': 'edge'}.get(host[:1])
            if kind is None or not host[1:].isdigit():
                raise TestbedError(f"a host is ('device', i), ('edge', j), 'd<i>' or "
                                   f"'e<j>', got {host!r}")
            host = (kind, int(host[1:]))
        kind, index = host
        count = {'device': self.devices, 'edge': self.edges}.get(kind)
        if count is None or not 0 <= index < count:
            raise TestbedError(f'no host {host!r} in a fleet of {self.devices} devices and '
                               f'{self.edges} edges')
        return kind, index

    def namespace(self, host: Host) -> str:
        kind, index = self._host(host)
        return f'{self.name}-{kind[0]}{index}'

    def address(self, host: Host) -> str:
        kind, index = self._host(host)
        return f'{self.subnet}.{(10 if kind == "device" else 200) + index}'

    def veth(self, host: Host) -> tuple[str, str]:
        """(the host's interface, in its namespace; its bridge port, in the switch's)."""
        kind, index = self._host(host)
        tag = f'{self.name[-10:]}{kind[0]}{index}'
        return tag, f'{self.name[-10:]}p{kind[0]}{index}'

    @property
    def switch_ns(self) -> str:
        return f'{self.name}-sw'

    @property
    def bridge(self) -> str:
        return f'{self.name[-10:]}br'

    @property
    def device_ns(self) -> list[str]:
        return [self.namespace(('device', i)) for i in range(self.devices)]

    @property
    def edge_ns(self) -> list[str]:
        return [self.namespace(('edge', j)) for j in range(self.edges)]

    @property
    def device_addrs(self) -> list[str]:
        return [self.address(('device', i)) for i in range(self.devices)]

    @property
    def edge_addrs(self) -> list[str]:
        return [self.address(('edge', j)) for j in range(self.edges)]

    @property
    def namespaces(self) -> list[str]:
        return [self.switch_ns, *self.device_ns, *self.edge_ns]

    def _hosts(self) -> list[tuple[str, int]]:
        return [('device', i) for i in range(self.devices)] + \
            [('edge', j) for j in range(self.edges)]

    # Life cycle.

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Build the LAN: about a dozen ``ip``/``tc`` processes whatever its size."""
        why = available()
        if why:
            raise TestbedError(f'cannot build the fleet: {why}')
        for host in self._hosts():
            if max(map(len, self.veth(host))) > 15:
                raise TestbedError(f'interface names over 15 characters: {self.veth(host)}')
        _clean_up_on_exit(self.stop)
        remove_leftovers()
        # Never adopt (and later delete) another live fleet's namespaces.
        taken = set(self.namespaces) & set(_netns_names())
        if taken:
            raise TestbedError(f'namespaces already exist (another fleet named '
                               f'{self.name!r}?): {sorted(taken)}')
        self.up = True  # from here stop() deletes whatever namespaces exist
        try:
            # Namespaces, then every veth straight into its two namespaces.
            _batch(['ip'], [f'netns add {ns}' for ns in self.namespaces] + [
                f'link add {inner} netns {self.namespace(host)} type veth '
                f'peer name {port} netns {self.switch_ns}'
                for host in self._hosts() for inner, port in [self.veth(host)]])
            ports = [self.veth(host)[1] for host in self._hosts()]
            _batch(['ip', '-n', self.switch_ns], [
                'link set lo up',
                # No snooping: multicast (DDS discovery) floods to every port.
                f'link add {self.bridge} type bridge mcast_snooping 0 stp_state 0',
                f'link set {self.bridge} up',
                *[f'link set {port} master {self.bridge}' for port in ports],
                *[f'link set {port} up' for port in ports]])
            for host in self._hosts():
                inner, _ = self.veth(host)
                _batch(['ip', '-n', self.namespace(host)], [
                    'link set lo up', f'addr add {self.address(host)}/24 dev {inner}',
                    f'link set {inner} up',
                    # DDS discovery multicasts: keep them on the LAN.
                    f'route add 224.0.0.0/4 dev {inner}'])
            shaped = [(('device', i), rate) for i, rate in enumerate(self.device_rates)] + \
                [(('edge', j), rate) for j, rate in enumerate(self.edge_rates) if rate]
            for host, rate in shaped:
                _batch(['tc', '-n', self.namespace(host)], [self._tbf(host, 0, rate, 'add')])
            _batch(['tc', '-n', self.switch_ns],
                   [self._tbf(host, 1, rate, 'add') for host, rate in shaped])
        except TestbedError:
            self.stop()
            raise

    def _tbf(self, host: Host, end: int, rate: float, verb: str) -> str:
        return (f'qdisc {verb} dev {self.veth(host)[end]} root tbf rate {rate:.3f}kbit '
                f'burst {self.burst_bytes} limit {self.limit_bytes}')

    def _shape(self, host: Host, rate: float | None) -> None:
        """Both ends of a host's link at rate; None removes the shaper."""
        if rate is not None and not rate > 0:
            raise TestbedError(f'rate must be > 0 kbit/s, got {rate}')
        for ns, end in ((self.namespace(host), 0), (self.switch_ns, 1)):
            if rate is None:
                subprocess.run(['tc', '-n', ns, 'qdisc', 'del', 'dev', self.veth(host)[end],
                                'root'], capture_output=True)
            else:
                _run('tc', '-n', ns, *self._tbf(host, end, rate, 'replace').split())

    def set_rate(self, device: int, rate_kbit: float) -> None:
        """Change one device's link rate, both directions, now; the others keep theirs."""
        self._host(('device', device))
        self._shape(('device', device), rate_kbit)
        self.device_rates[device] = rate_kbit

    def set_edge_rate(self, edge: int, rate_kbit: float | None) -> None:
        """Shape an edge's link (both directions) at rate_kbit, or unshape it (None)."""
        self._host(('edge', edge))
        self._shape(('edge', edge), rate_kbit)
        self.edge_rates[edge] = rate_kbit

    def _set_link(self, host: Host, up: bool) -> None:
        inner, port = self.veth(host)
        state = 'up' if up else 'down'
        _run('ip', '-n', self.namespace(host), 'link', 'set', inner, state)
        _run('ip', '-n', self.switch_ns, 'link', 'set', port, state)
        if up:  # the multicast route goes with the link; discovery needs it back
            subprocess.run(['ip', '-n', self.namespace(host), 'route', 'replace',
                            '224.0.0.0/4', 'dev', inner], capture_output=True)

    def set_link(self, device: int, up: bool) -> None:
        """Take one device's link down (its Wi-Fi drops) or up again."""
        self._set_link(('device', device), up)

    def set_edge_link(self, edge: int, up: bool) -> None:
        """Cut one edge off the LAN (it crashed, its cable is out) or bring it back."""
        self._set_link(('edge', edge), up)

    def spawn(self, host: Host, argv: Sequence[str], *, cpu_quota: float | None = None,
              env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
        """Start argv inside a host's namespace (optionally CPU-limited), as Testbed.spawn."""
        return _spawn_in(self.namespace(host), argv, cpu_quota, env, popen, self.processes,
                         self.groups)

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a spawned process and everything it started (a crash, a power cut)."""
        signal_group(proc, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        """Stop every process started here; delete the namespaces (bridge and veths go
        with them) and the CPU groups."""
        _end_processes(self.processes, self.groups)
        if self.up:
            # -force: go on past a namespace that was never made.
            subprocess.run(['ip', '-force', '-batch', '-'], capture_output=True, text=True,
                           input=''.join(f'netns del {ns}\n' for ns in self.namespaces))
            self.up = False


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


# A fleet's namespaces: <name>-sw, -d<i>, -e<j>, the name PREFIX<pid> and maybe more
# after a non-digit (a default name is PREFIX<pid>f<n>).
_FLEET_NS = re.compile(rf'{PREFIX}(\d+)(?:[^\d-][^-]*)?-(?:sw|d\d+|e\d+)')


def _owner_pid(ns: str) -> str | None:
    """The pid in a namespace name of ours (the process that made it), else None."""
    if not ns.startswith(PREFIX):
        return None
    if ns.endswith(('-dev', '-edge')):  # a Testbed's
        pid = ns[len(PREFIX):].split('-')[0]
        return pid if pid.isdigit() else None
    match = _FLEET_NS.fullmatch(ns)
    return match.group(1) if match else None


def _netns_names() -> list[str]:
    result = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True)
    return [line.split()[0] for line in result.stdout.splitlines() if line.split()]


def leftovers() -> list[str]:
    """Namespaces of ours (testbeds' and fleets') still present (e.g. from a killed run)."""
    return [ns for ns in _netns_names() if ns.startswith(PREFIX) and (
        ns.endswith(('-dev', '-edge')) or _FLEET_NS.fullmatch(ns))]


__all__ = ['Fleet', 'Host', 'QuotaError', 'Testbed', 'TestbedError', 'TraceReplay',
           'available', 'dds_env', 'leftovers', 'remove_leftovers', 'signal_group']


def remove_leftovers() -> list[str]:
    """Delete namespaces of ours whose creating process is gone (a killed run).

    A fleet's processes run in sessions of their own, so they outlive a killed
    run and would keep its namespaces (and their DDS traffic) alive unseen:
    those still inside a fleet's leftover namespace are SIGKILLed first.
    """
    removed = []
    for ns in leftovers():
        pid = _owner_pid(ns)
        if pid is not None and not Path(f'/proc/{pid}').exists():
            if _FLEET_NS.fullmatch(ns):
                inside = subprocess.run(['ip', 'netns', 'pids', ns], capture_output=True,
                                        text=True).stdout.split()
                for orphan in inside:
                    try:
                        os.kill(int(orphan), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
            removed.append(ns)
    return removed
