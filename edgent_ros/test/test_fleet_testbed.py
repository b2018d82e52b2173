"""The fleet testbed for real: device and edge namespaces on one bridged LAN, each
device's link shaped on its own, DDS discovery across the bridge, an edge cut off,
and nothing of a fleet left behind (after stop(), or after its process was killed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgent_ros import testbed

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PORT = 47000

# Inside an edge: counts what each connection sends until EOF, answers the count.
SINK = """
import signal, socket, sys, threading
signal.signal(signal.SIGINT, signal.SIG_DFL)  # stop() ends it: quietly
server = socket.create_server(('0.0.0.0', int(sys.argv[1])))
def serve(conn):
    with conn:
        n = 0
        while chunk := conn.recv(65536):
            n += len(chunk)
        conn.sendall(str(n).encode())
print('listening', flush=True)
while True:
    threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()
"""

# Inside a device: sends argv[3] bytes to each address argv[4:] in turn, prints
# {address: [seconds until the sink's answer, bytes it counted] or an error}.
SEND = """
import json, socket, sys, time
port, timeout, size = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
out = {}
for addr in sys.argv[4:]:
    start = time.monotonic()
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            s.settimeout(60)
            s.sendall(b'x' * size)
            s.shutdown(socket.SHUT_WR)
            answer = s.recv(64)
        out[addr] = [time.monotonic() - start, int(answer)]
    except OSError as exc:
        out[addr] = repr(exc)
print(json.dumps(out))
"""

PUBLISH = """
import time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('fleet_talker')
pub = node.create_publisher(String, '/fleet_check', 10)
end = time.monotonic() + 40
while time.monotonic() < end:
    pub.publish(String(data='hello from device 1'))
    rclpy.spin_once(node, timeout_sec=0.2)
"""

SUBSCRIBE = """
import sys, time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('fleet_listener')
got = []
node.create_subscription(String, '/fleet_check', lambda m: got.append(m.data), 10)
end = time.monotonic() + 30
while not got and time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
print(got[0] if got else 'nothing', flush=True)
sys.exit(0 if got else 1)
"""


def ours_left(fleet: testbed.Fleet) -> list[str]:
    """Namespaces, links and bridges of this fleet still on the machine."""
    names = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    links = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True).stdout
    tag = fleet.bridge.removesuffix('br')  # every interface name of the fleet starts so
    return [ns for ns in fleet.namespaces if ns in names.split()] + \
        [line for line in links.splitlines() if tag in line]


@pytest.fixture
def make_fleet() -> Iterator[Callable[..., testbed.Fleet]]:
    """Builds started fleets; afterwards stops them and checks that nothing of them
    (namespaces, links, processes inside) outlived stop()."""
    why = testbed.available()
    if why:
        pytest.skip(f'the testbed cannot run here: {why}')
    fleets: list[testbed.Fleet] = []

    def make(*args: object, **kwargs: object) -> testbed.Fleet:
        fleet = testbed.Fleet(*args, **kwargs)
        fleets.append(fleet)
        fleet.start()
        return fleet

    yield make
    for fleet in fleets:
        inside = [int(pid) for ns in fleet.namespaces for pid in subprocess.run(
            ['ip', 'netns', 'pids', ns], capture_output=True, text=True).stdout.split()]
        fleet.stop()
        assert not ours_left(fleet)
        survivors = [pid for pid in inside if Path(f'/proc/{pid}').exists()]
        assert not survivors, f'processes outlived the fleet: {survivors}'


def start_sinks(fleet: testbed.Fleet) -> None:
    for j in range(fleet.edges):
        sink = fleet.spawn(('edge', j), [sys.executable, '-c', SINK, str(PORT)],
                           stdout=subprocess.PIPE, text=True)
        assert sink.stdout.readline().strip() == 'listening'


def send(fleet: testbed.Fleet, device: int, size: int, addrs: list[str],
         timeout: float = 5.0) -> subprocess.Popen:
    return fleet.spawn(f'd{device}', [sys.executable, '-c', SEND, str(PORT), str(timeout),
                                      str(size), *addrs], stdout=subprocess.PIPE, text=True)


def answers(proc: subprocess.Popen) -> dict[str, object]:
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    return json.loads(output)


def test_each_device_link_is_shaped_on_its_own_and_dds_discovers_across_the_bridge(
        make_fleet: Callable[..., testbed.Fleet]) -> None:
    rates = [500.0, 2000.0]
    fleet = make_fleet(2, rates, edges=1)
    start_sinks(fleet)
    edge = fleet.edge_addrs[0]
    size = 160_000
    # Both at once: the edge's link is unshaped, so neither waits for the other
    # and each upload takes its time on its own device's link.
    senders = [send(fleet, i, size, [edge]) for i in range(2)]
    took = [answers(proc)[edge] for proc in senders]
    for (seconds, counted), rate in zip(took, rates, strict=True):
        assert counted == size
        ideal = size * 8 / (rate * 1000)  # 2.56 s and 0.64 s
        assert 0.6 * ideal < seconds < 2.0 * ideal, (took, rates)
    assert 2.5 < took[0][0] / took[1][0] < 6.0, took  # 4x the rate, about 4x faster

    # DDS: discovery's multicast must flood through the bridge (snooping off)
    # and the routes 224.0.0.0/4 must be on each host's veth.
    listener = fleet.spawn(('edge', 0), [sys.executable, '-c', SUBSCRIBE],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fleet.spawn(('device', 1), [sys.executable, '-c', PUBLISH],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    output = listener.communicate(timeout=60)[0]
    assert listener.returncode == 0 and 'hello from device 1' in output, output


def test_a_device_reaches_two_edges_and_one_can_be_cut_off(
        make_fleet: Callable[..., testbed.Fleet]) -> None:
    fleet = make_fleet(1, 20000.0, edges=2)
    start_sinks(fleet)
    edges = fleet.edge_addrs
    seen = answers(send(fleet, 0, 1000, edges))
    assert all(seen[addr][1] == 1000 for addr in edges), seen
    fleet.set_edge_link(1, False)
    seen = answers(send(fleet, 0, 1000, edges, timeout=1.5))
    assert seen[edges[0]][1] == 1000, seen
    assert isinstance(seen[edges[1]], str) and 'timed out' in seen[edges[1]], seen
    fleet.set_edge_link(1, True)
    assert answers(send(fleet, 0, 1000, edges))[edges[1]][1] == 1000
    routes = subprocess.run(['ip', '-n', fleet.edge_ns[1], 'route'], capture_output=True,
                            text=True).stdout
    assert '224.0.0.0/4' in routes  # discovery's route is back with the link


def test_fleets_and_a_testbed_at_once_build_fast_and_leave_nothing_behind(
        make_fleet: Callable[..., testbed.Fleet]) -> None:
    start = time.monotonic()
    big = make_fleet(8, [1000.0 + 500 * i for i in range(8)], edges=2)
    took = time.monotonic() - start
    assert took < 3.0, f'8 devices and 2 edges took {took:.1f} s to set up'
    small = make_fleet(2, 1000.0)
    names = [name for fleet in (big, small) for host in [*(f'd{i}' for i in range(
        fleet.devices)), *(f'e{j}' for j in range(fleet.edges))] for name in fleet.veth(host)]
    assert len(set(names)) == len(names) and max(map(len, names)) <= 15, names
    with testbed.Testbed(1000.0) as bed:  # its veths start in this namespace
        shown = subprocess.run(['tc', '-n', big.switch_ns, 'qdisc', 'show', 'dev',
                                big.veth('d7')[1]], capture_output=True, text=True).stdout
        assert '4500Kbit' in shown  # the download side of device 7's link
        big.set_rate(7, 300.0)
        for ns, iface in ((big.switch_ns, big.veth('d7')[1]),
                          (big.device_ns[7], big.veth('d7')[0])):
            shown = subprocess.run(['tc', '-n', ns, 'qdisc', 'show', 'dev', iface],
                                   capture_output=True, text=True).stdout
            assert '300Kbit' in shown, shown
        # A CPU-limited process: stop() must end it and remove its cgroup.
        sleeper = big.spawn(('device', 3), ['sleep', '600'], cpu_quota=0.5)
        group = big.groups[-1].path
        assert group.exists()
        assert bed.device_ns in testbed.leftovers()
    with pytest.raises(testbed.TestbedError, match='already exist'):
        testbed.Fleet(1, 1000.0, name=big.name).start()  # must not adopt big's namespaces
    with pytest.raises(testbed.TestbedError, match='no host'):
        big.spawn('e2', ['true'])
    big.stop()
    assert sleeper.poll() is not None and not group.exists()
    assert not ours_left(big)
    assert small.device_ns[0] in testbed.leftovers()  # the other fleet is untouched


KILLED = """
import json, time
from edgent_ros import testbed
fleet = testbed.Fleet(2, 1000.0, edges=2)
fleet.start()
sleeper = fleet.spawn('e1', ['sleep', '600'])
print(json.dumps([fleet.namespaces, sleeper.pid]), flush=True)
time.sleep(120)
"""


def test_a_terminated_run_removes_its_fleet_itself() -> None:
    why = testbed.available()
    if why:
        pytest.skip(f'the testbed cannot run here: {why}')
    run = subprocess.Popen([sys.executable, '-c', KILLED], stdout=subprocess.PIPE, text=True)
    try:
        namespaces, sleeper = json.loads(run.stdout.readline())
        assert set(namespaces) <= set(testbed.leftovers())
        run.terminate()  # SIGTERM: the fleet's handler makes it an exit, atexit stops it
        assert run.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        run.kill()
        run.wait()
    assert not set(namespaces) & set(testbed.leftovers())
    assert not Path(f'/proc/{sleeper}').exists()


def test_a_killed_runs_fleet_is_removed_as_a_leftover() -> None:
    why = testbed.available()
    if why:
        pytest.skip(f'the testbed cannot run here: {why}')
    run = subprocess.Popen([sys.executable, '-c', KILLED], stdout=subprocess.PIPE, text=True)
    try:
        namespaces, sleeper = json.loads(run.stdout.readline())
        assert set(namespaces) <= set(testbed.leftovers())
        assert not set(namespaces) & set(testbed.remove_leftovers())  # its maker is alive
    finally:
        run.send_signal(signal.SIGKILL)  # no atexit, no cleanup: a killed run
        run.wait()
    try:
        assert set(namespaces) <= set(testbed.leftovers())
        assert set(namespaces) <= set(testbed.remove_leftovers())
        # The run's own process outlived it (a session of its own): removed too.
        deadline = time.monotonic() + 5
        while Path(f'/proc/{sleeper}').exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f'/proc/{sleeper}').exists()
        names = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
        assert not set(namespaces) & set(names.split())
        tag = namespaces[0].split('-')[0][-10:]
        links = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True).stdout
        assert tag not in links
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper, signal.SIGKILL)
        for ns in namespaces:
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
