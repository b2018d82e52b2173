"""edgent-demo: the whole pipeline on this machine, its link following a trace.

Camera, device, planner and bandwidth monitor run as the "device", the edge
node and probe echo as the "edge", as separate processes talking over DDS.
As root the two sides live in two network namespaces joined by a tc-shaped
link, and the link follows a bandwidth trace (``--trace``; by default 10
Mbit/s, 300 kbit/s, 2 Mbit/s, down for 6 s, back up: about a minute), so the
plan changes, the device falls back when the edge cannot answer, and
recovers. The device's layers run ``--slowdown`` times slower than this CPU
(the device node's emulated_slowdown; or, with ``--cpu-quota``, the device
node runs under a cgroup CPU quota instead). Without root the link cannot be
shaped: the demo says so and runs on loopback, the device still slowed. The
planner uses latency profiles of this machine (made once with edgent-profile
and cached). It prints a line per plan change and per fallback, a status
line every 10 s and a summary per phase of the trace, and writes a PNG
timeline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from edgent_ros import dds_profile, testbed, timeline
from edgent_ros.card import ModelCard, ModelError, load_card, resolve_model_path
from edgent_ros.latency import Profile, ProfileError, load_profile
from edgent_ros.report import FrameRecord


def tool(name: str) -> str:
    here = Path(sys.argv[0]).resolve().parent
    for candidate in (here / name, shutil.which(name)):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise SystemExit(f'edgent-demo: {name} not found; run through `make demo`')


def cache_dir() -> Path:
    root = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    return root / 'edgent_ros' / 'profiles'


def machine_key() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line for line in Path('/proc/cpuinfo').read_text().splitlines()
                   if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return hashlib.sha1(f'{platform.node()} {cpu} {os.cpu_count()}'.encode()).hexdigest()[:10]


def stale_codecs(profile: Profile) -> bool:
    """Whether a profile's codec timings are missing, or were made before
    codecs were timed as a node runs them (each call after a pause:
    ``profiler.CODEC_PAUSE_MS``)."""
    return not profile.codecs or 'codec_pause_ms' not in profile.machine


def ensure_profile(role: str, quota: float | None, refresh: bool,
                   slowdown: float = 1.0, model: str = '') -> Path:
    """This machine's profile for a role, made with edgent-profile unless cached
    (``slowdown``: of a device emulated that many times slower than this CPU;
    ``model``: a model other than the default, whose stages it sweeps around)."""
    suffix = f'-q{quota:g}' if quota else ''
    suffix += f'-x{slowdown:g}' if slowdown > 1 else ''
    suffix += f'-{Path(model).stem}' if model else ''
    path = cache_dir() / f'{role}{suffix}-{machine_key()}.yaml'
    if path.is_file() and not refresh:
        try:
            cached = load_profile(path)
        except ProfileError:
            cached = None
        if cached is not None and not stale_codecs(cached):
            return path
        if cached is not None:  # its layers hold: only the codecs are timed again
            print(f'[edgent-demo] timing the link codecs of {path} again (made before '
                  'codecs were timed as a node runs them)', flush=True)
            subprocess.run([tool('edgent-profile'), '--role', role, '--codecs-only',
                            '--from', str(path), '--out', str(path)],
                           check=True, stdout=subprocess.DEVNULL)
            return path
    cmd = [tool('edgent-profile'), '--role', role, '--out', str(path)]
    if quota:
        cmd += ['--cpu-quota', str(quota)]
    if slowdown > 1:
        cmd += ['--slowdown', str(slowdown)]
    if model:
        cmd += ['--model', model]
    what = f'{role} under a {100 * quota:.0f}% CPU quota' if quota else role
    what += f' slowed {slowdown:g}x' if slowdown > 1 else ''
    print(f'[edgent-demo] profiling this machine as the {what} (once; cached in {path})',
          flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def emulated_device_overrides(slowdown: float, rate_hz: float, *,
                              deadline_ms: float | None = None,
                              initial_kbps: float | None = None, model: str = '') -> list[str]:
    """Parameter overrides for a pipeline whose device's layers run ``slowdown``
    times slower than this CPU, planned on this machine's profiles (made once
    and cached; for ``model`` when given): what the testbed benchmarks share."""
    device_profile = ensure_profile('device', None, False, slowdown=slowdown, model=model)
    edge_profile = ensure_profile('edge', None, False, model=model)
    overrides = [f'planner.device_profile:={device_profile}',
                 f'planner.edge_profile:={edge_profile}', f'camera.rate_hz:={rate_hz}',
                 f'device.emulated_slowdown:={slowdown}']
    if deadline_ms is not None:
        overrides.append(f'planner.latency_requirement_ms:={deadline_ms}')
    if initial_kbps is not None:
        overrides.append(f'planner.initial_bandwidth_kbps:={initial_kbps}')
    return overrides


def start_on_testbed(bed: testbed.Testbed, overrides: list[str], quota: float | None,
                     device_log: IO, edge_log: IO, edge_overrides: Sequence[str] = (),
                     model: str = '') -> dict[str, subprocess.Popen]:
    """Start the edge side and the device side (with parameter overrides) on a testbed.

    Only the inference node runs on the emulated Pi CPU: the quota's stalls
    would otherwise also distort the camera's timing and the bandwidth
    monitor's round trips, which a real Pi does not suffer. Returns the
    launchers by part: ``edge``, ``device_support``, ``device``.
    """
    bringup = tool('edgent-bringup')
    device_cmd = [bringup, '--role', 'device'] + [a for o in overrides for a in ('--set', o)]
    device_cmd += [f'model:={model}'] if model else []
    edge = bed.spawn('edge', edge_command(edge_overrides, model), stdout=edge_log,
                     stderr=subprocess.STDOUT)
    # The device side starts once the edge serves: the camera starts in a
    # second, the edge loads torch first, and frames taken before it serves
    # would all be answered on the device.
    wait_for_line(getattr(edge_log, 'name', None), 'serving model', timeout_s=60.0)
    return {
        'edge': edge,
        'device_support': bed.spawn('device', [*device_cmd, '--skip', 'device'],
                                    stdout=device_log, stderr=subprocess.STDOUT),
        'device': bed.spawn('device', [*device_cmd, '--only', 'device'], cpu_quota=quota,
                            stdout=device_log, stderr=subprocess.STDOUT),
    }


def wait_for_line(path: str | None, text: str, *, timeout_s: float) -> bool:
    """Wait until a log file holds ``text`` (False after ``timeout_s``, or at
    once when there is no file to read)."""
    if not path or not Path(path).is_file():
        return False
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if text in Path(path).read_text(errors='replace'):
            return True
        time.sleep(0.1)
    return False


def edge_command(edge_overrides: Sequence[str] = (), model: str = '') -> list[str]:
    """The command that starts the edge side (to start it again after a kill)."""
    return [tool('edgent-bringup'), '--role', 'edge'] + \
        [a for o in edge_overrides for a in ('--set', o)] + ([f'model:={model}'] if model else [])


def default_log_dir() -> Path:
    """A fresh directory for one run's node logs, the caller's own (mode 0700):
    a fixed one in /tmp, made by a first run as root, left later users a
    PermissionError on its log files."""
    return Path(tempfile.mkdtemp(prefix='edgent_demo-'))


def open_logs(log_dir: Path) -> dict[str, IO]:
    """The device's and the edge's log files in ``log_dir`` (made if need be)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logs: dict[str, IO] = {}
    try:
        for role in ('device', 'edge'):
            logs[role] = open(log_dir / f'{role}.log', 'w')  # closed by run_demo
    except OSError:
        for f in logs.values():
            f.close()
        raise
    return logs


def main(argv: list[str] | None = None) -> int:
    """edgent-demo; a failure it can name (a file it cannot write, a tool that
    failed) ends with that message and exit status 1, not a traceback."""
    # Ctrl-C (SIGINT) ends the demo even when it was started with SIGINT
    # ignored, as a shell starts a background job (`edgent-demo &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_demo(argv)
    except (OSError, subprocess.SubprocessError, ProfileError) as exc:
        print(f'edgent-demo: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while profiling or starting: no traceback
        print('edgent-demo: interrupted', file=sys.stderr)
        return 130


DEFAULT_MODEL = 'branchy_alexnet_digits'  # the parameter files' (config/*.yaml)
DEFAULT_TRACE = '10000:12,300:12,2000:12,0:6,10000:12'
START_TIMEOUT_S = 120.0  # for the first answered frame (the edge loads torch first)


def run_demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='edgent-demo', description=__doc__.splitlines()[0])
    parser.add_argument('--trace', default=None,
                        help='the link\'s rates: KBPS:SECONDS,... (0 kbit/s: the link down); '
                             f'default {DEFAULT_TRACE}')
    parser.add_argument('--bandwidth-kbps', type=float, default=None,
                        help='instead of --trace: a steady link at this rate, as long as the '
                             'default trace')
    parser.add_argument('--rate', type=float, default=5.0, help='camera frames per second')
    parser.add_argument('--deadline-ms', type=float, default=40.0,
                        help='latency requirement per frame (default 40: under what the '
                             'slowed device takes for the deepest exits, so the exit changes '
                             'too; at 100 only the partition does)')
    parser.add_argument('--slowdown', type=float, default=20.0,
                        help='device layers this many times slower than this CPU (default 20)')
    parser.add_argument('--cpu-quota', type=float, default=None,
                        help='instead of --slowdown: the device node under a CPU quota, as a '
                             'fraction of one core (e.g. 0.15; needs root)')
    parser.add_argument('--model', default='',
                        help='model name in the package\'s models/ or path to its YAML '
                             '(default: the parameter files\', branchy_alexnet_digits); a model '
                             'over 32x32 gets 640x480 camera frames')
    parser.add_argument('--no-testbed', action='store_true', help='unshaped, on loopback')
    parser.add_argument('--reprofile', action='store_true', help='profile this machine again')
    parser.add_argument('--log-dir', type=Path, default=None,
                        help='where the nodes\' logs, the frames (frames.json) and the timeline '
                             '(timeline.png) go (default: a fresh temporary directory)')
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.deadline_ms <= 0:
        parser.error('--rate and --deadline-ms must be positive')
    if not args.slowdown >= 1 or (args.cpu_quota is not None and not 0 < args.cpu_quota <= 1):
        parser.error('--slowdown must be >= 1 and --cpu-quota in (0, 1]')
    if args.trace is not None and args.bandwidth_kbps is not None:
        parser.error('give --trace or --bandwidth-kbps, not both')
    if args.bandwidth_kbps is not None:
        if not 0 < args.bandwidth_kbps < float('inf'):
            parser.error('--bandwidth-kbps must be positive')
        length = timeline.parse_trace(DEFAULT_TRACE)[-1][0]
        args.trace = f'{args.bandwidth_kbps:g}:{length:g}'
    try:
        args.trace = timeline.parse_trace(args.trace or DEFAULT_TRACE)
    except ValueError as exc:
        parser.error(f'--trace: {exc}')
    args.log_dir = args.log_dir or default_log_dir()
    try:  # before anything is started or profiled
        logs = open_logs(args.log_dir)
    except OSError as exc:
        parser.error(f'cannot write the node logs in {args.log_dir}: '
                     f'{exc.strerror or exc}')
    try:
        return demo(args, parser, logs)
    finally:
        for f in logs.values():
            f.close()


def say(text: str) -> None:
    print(f'[edgent-demo] {text}', flush=True)


class Relay(threading.Thread):
    """Prints the monitor's lines as they come, and notes its first frame."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.first = threading.Event()
        self.device_alone = False  # frames came, but only from the device's fallback
        self.t0 = 0.0  # wall clock of the first frame the plan answered (the monitor's)

    def run(self) -> None:
        for line in self.stream:
            if line.startswith('[edgent-monitor]'):
                continue  # its summary: the demo prints its own
            print(line, end='', flush=True)
            if 'first frame answered' in line:
                found = re.search(r'\(t0 (\d+(?:\.\d*)?)\)', line)
                self.t0 = float(found.group(1)) if found else time.time()
                self.first.set()
            elif 'first frames answered by the device alone' in line:
                self.device_alone = True


def demo(args: argparse.Namespace, parser: argparse.ArgumentParser, logs: dict[str, IO]) -> int:
    """The demo proper, its logs open."""
    try:
        dds_profile.apply()  # every process the demo starts inherits it
    except ValueError as exc:
        parser.error(str(exc))

    why = 'asked for with --no-testbed' if args.no_testbed else testbed.available()
    shaped = why is None
    quota = args.cpu_quota if shaped else None
    slowdown = args.slowdown if quota is None else 1.0
    if not shaped:
        say(f'NOT shaped: {why}. Without the testbed (network namespaces and tc, which '
            'need root) the link cannot follow the trace: everything runs on loopback at '
            f'full speed. The device\'s layers still run {slowdown:g}x slower (that needs no '
            'root), so the plan still differs from running it all on the device.')
        if args.cpu_quota is not None:
            say('--cpu-quota needs the testbed\'s cgroups: using --slowdown instead')
    try:
        card = load_card(resolve_model_path(args.model or DEFAULT_MODEL))
    except ModelError as exc:
        parser.error(str(exc))
    if args.model:
        say(f'model {card.name}: {card.architecture}, input '
            f'{"x".join(map(str, card.input_shape))}, {len(card.exits)} exits')
    device_profile = ensure_profile('device', quota, args.reprofile, slowdown=slowdown,
                                    model=args.model)
    edge_profile = ensure_profile('edge', None, args.reprofile, model=args.model)
    trace = args.trace
    overrides = [f'planner.device_profile:={device_profile}',
                 f'planner.edge_profile:={edge_profile}',
                 f'planner.latency_requirement_ms:={args.deadline_ms}',
                 f'planner.initial_bandwidth_kbps:={trace[0][1]}',
                 f'camera.rate_hz:={args.rate}', f'device.emulated_slowdown:={slowdown}']
    frames_json = args.log_dir / 'frames.json'
    monitor_cmd = [tool('edgent-monitor'), '--view', 'events', '--json', str(frames_json),
                   '--status-period', '10', '--model', args.model or DEFAULT_MODEL,
                   '--ros-args', '-r', '__ns:=/device']
    device = f'device node CPU limited to {100 * quota:.0f}% of one core' if quota else \
        f'device layers slowed {slowdown:g}x'
    where = ('device and edge in two network namespaces joined by a tc-shaped link, '
             f'{device}') if shaped else f'one host, loopback, {device}'
    say(f'{where}; deadline {args.deadline_ms:g} ms; camera at {args.rate:g} Hz')
    say('For each frame the planner picks how deep the network runs (the exit) and how many '
        'of its stages run on the device before the rest go to the edge (the partition): the '
        'most accurate choice that meets the deadline at the bandwidth it measures.')
    say(('The link will follow: ' if shaped else 'The trace the link would follow: ')
        + timeline.trace_text(trace) + '. Lines below: plan changes, fallbacks, and every 10 s '
        'how the last 10 s went.')
    start = time.monotonic()
    code, t0, steps = 1, None, []
    try:
        if shaped:
            with testbed.Testbed(trace[0][1]) as bed:
                start_on_testbed(bed, overrides, quota, logs['device'], logs['edge'],
                                 model=args.model)
                monitor = bed.spawn('device', monitor_cmd, stdout=subprocess.PIPE, text=True)
                code, t0, steps = follow(monitor, trace, bed)
        else:
            env = dict(os.environ, PYTHONUNBUFFERED='1')
            env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
            bringup = tool('edgent-bringup')
            device_cmd = [bringup, '--role', 'device'] + \
                [a for o in overrides for a in ('--set', o)] + \
                ([f'model:={args.model}'] if args.model else [])
            procs = [subprocess.Popen(edge_command(model=args.model), env=env,
                                      stdout=logs['edge'], stderr=subprocess.STDOUT,
                                      start_new_session=True),
                     subprocess.Popen(device_cmd, env=env, stdout=logs['device'],
                                      stderr=subprocess.STDOUT, start_new_session=True)]
            try:
                monitor = subprocess.Popen(monitor_cmd, env=env, stdout=subprocess.PIPE,
                                           text=True, start_new_session=True)
                procs.append(monitor)
                code, t0, steps = follow(monitor, trace, None)
            finally:
                for p in procs:
                    testbed.signal_group(p, signal.SIGINT)
                for p in procs:
                    try:
                        p.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        testbed.signal_group(p, signal.SIGKILL)
                        p.wait()
    except KeyboardInterrupt:
        code = 130
    if t0 is not None and frames_json.is_file():
        tell(frames_json, trace if shaped else None, steps, t0, args, card)
    elif code != 130:
        say(f'no frame was answered as planned within {START_TIMEOUT_S:g} s of starting: see '
            f'the node logs in {args.log_dir}')
    say(f'done in {time.monotonic() - start:.0f} s; node logs in {args.log_dir}')
    return code


def follow(monitor: subprocess.Popen, trace: list[tuple[float, float]],
           bed: testbed.Testbed | None) -> tuple[int, float | None, list[tuple[float, float]]]:
    """Relay the monitor's lines; from its first answered frame, play the
    trace on the link (when there is a testbed) for the trace's length, then
    stop the monitor. Returns its exit status, the trace's start (wall clock)
    and the steps applied (s since that start, kbit/s)."""
    relay = Relay(monitor.stdout)
    relay.start()
    steps: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not relay.first.wait(0.5):
            if monitor.poll() is not None or time.monotonic() > deadline:
                if relay.device_alone:
                    say(f'the edge answered no frame within {START_TIMEOUT_S:g} s (the '
                        'device answered them alone): is the edge node up? see edge.log')
                testbed.signal_group(monitor, signal.SIGINT)
                monitor.wait(timeout=30)
                return 1, None, steps
        t0 = relay.t0
        replay = None
        if bed is not None:
            def step(t: float, kbps: float) -> None:
                steps.append((t, kbps))
                what = 'DOWN: no packet crosses' if kbps == 0 else \
                    f'{timeline.kbps_text(kbps)} (tc tbf)'
                print(f'{t:7.1f} s  LINK {what}', flush=True)

            replay = bed.replay(trace[:-1], on_step=step)
        try:
            time.sleep(max(0.0, t0 + trace[-1][0] - time.time()))
        finally:
            if replay is not None:
                replay.stop()
    finally:
        testbed.signal_group(monitor, signal.SIGINT)
        try:
            code = monitor.wait(timeout=30)
        except subprocess.TimeoutExpired:
            testbed.signal_group(monitor, signal.SIGKILL)
            code = monitor.wait()
        relay.join(timeout=5)
    return code, t0, steps


def tell(frames_json: Path, trace: list[tuple[float, float]] | None,
         steps: list[tuple[float, float]], t0: float, args: argparse.Namespace,
         card: ModelCard | None) -> None:
    """The summary per phase of the trace, and the PNG timeline (the link's
    steps at the times they were applied, when they were)."""
    title = ('edgent-demo: ' + timeline.trace_text(trace)) if trace else \
        'edgent-demo, unshaped (loopback)'
    if trace and steps:
        trace = [*steps, (max(trace[-1][0], steps[-1][0]), steps[-1][1])]

    data = json.loads(frames_json.read_text())
    # From the first frame the plan answered: those before came while the
    # device was still finding the edge.
    frames = [FrameRecord(**r) for r in data.get('frames', []) if r['received_s'] >= t0]
    plans = [timeline.PlanRecord(**p) for p in data.get('plans', [])]
    estimates = [tuple(e) for e in data.get('estimates', [])]
    log = timeline.EventLog(card, t0)
    for plan in plans:
        log.on_plan(plan)
    for r in frames:
        log.on_frame(r)
    overall = timeline.figures_of(frames)
    say(f"summary: {overall['frames']} frames, deadline met in "
        f"{100 * overall['hit_rate']:.1f}%, accuracy {100 * overall['accuracy']:.1f}%, "
        f"latency median {overall['latency_ms_median']:.0f} ms, p95 "
        f"{overall['latency_ms_p95']:.0f} ms")
    say(f'{log.plan_changes} plan changes; {len(log.episodes)} fallback episodes '
        f'({sum(n for *_, n in log.episodes)} frames answered by the device alone); answered by '
        f"the edge {overall['edge']}, by the device as planned {overall['device']}, "
        f"skipped {overall['skipped']}")
    if trace:
        say('by phase of the trace:')
        for line in timeline.phase_lines(timeline.phases(trace, frames, plans, t0, card)):
            print('    ' + line, flush=True)
    png = timeline.render(
        args.log_dir / 'timeline.png', trace=trace, estimates=estimates, plans=plans,
        frames=frames, t0=t0, deadline_ms=args.deadline_ms, title=title)
    say(f'timeline (link, plan, latency, who answered): {png}')


if __name__ == '__main__':
    raise SystemExit(main())
