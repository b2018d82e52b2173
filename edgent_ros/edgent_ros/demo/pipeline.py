"""edgent-demo: the whole pipeline on this machine, then a summary.

Camera, device, planner and bandwidth monitor run as the "device", the edge
node and probe echo as the "edge", as separate processes talking over DDS.
As root the two sides live in two network namespaces joined by a tc-shaped
link at ``--bandwidth-kbps``, and the device's layers run ``--slowdown``
times slower than this CPU (the device node's emulated_slowdown; or, with
``--cpu-quota``, the device node runs under a cgroup CPU quota instead);
otherwise everything runs unshaped on loopback, and the demo says so. The
planner uses latency profiles of this machine (made once with
edgent-profile and cached). Prints a line per frame and a summary,
and exits after ``--frames`` frames.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from edgent_ros import dds_profile, testbed
from edgent_ros.card import ModelError, load_card, resolve_model_path
from edgent_ros.latency import Profile, ProfileError, load_profile


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
    try:
        return run_demo(argv)
    except (OSError, subprocess.SubprocessError, ProfileError) as exc:
        print(f'edgent-demo: error: {exc}', file=sys.stderr)
        return 1


def run_demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='edgent-demo', description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=60, help='frames to answer (default 60)')
    parser.add_argument('--rate', type=float, default=5.0, help='camera frames per second')
    parser.add_argument('--bandwidth-kbps', type=float, default=10000.0,
                        help='rate of the shaped link (default 10000)')
    parser.add_argument('--deadline-ms', type=float, default=100.0,
                        help='latency requirement per frame (default 100)')
    parser.add_argument('--slowdown', type=float, default=20.0,
                        help='device layers this many times slower than this CPU (default 20)')
    parser.add_argument('--cpu-quota', type=float, default=None,
                        help='instead of --slowdown: the device node under a CPU quota, as a '
                             'fraction of one core (e.g. 0.15)')
    parser.add_argument('--model', default='',
                        help='model name in the package\'s models/ or path to its YAML '
                             '(default: the parameter files\', branchy_alexnet_digits); a model '
                             'over 32x32 gets 640x480 camera frames')
    parser.add_argument('--no-testbed', action='store_true', help='unshaped, on loopback')
    parser.add_argument('--reprofile', action='store_true', help='profile this machine again')
    parser.add_argument('--log-dir', type=Path, default=None,
                        help='where the nodes\' logs go (default: a fresh temporary directory)')
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rate <= 0 or args.bandwidth_kbps <= 0 or args.deadline_ms <= 0:
        parser.error('--frames, --rate, --bandwidth-kbps and --deadline-ms must be positive')
    if not args.slowdown >= 1 or (args.cpu_quota is not None and not 0 < args.cpu_quota <= 1):
        parser.error('--slowdown must be >= 1 and --cpu-quota in (0, 1]')
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


def demo(args: argparse.Namespace, parser: argparse.ArgumentParser, logs: dict[str, IO]) -> int:
    """The demo proper, its logs open."""
    try:
        dds_profile.apply()  # every process the demo starts inherits it
    except ValueError as exc:
        parser.error(str(exc))

    why = 'asked for with --no-testbed' if args.no_testbed else testbed.available()
    shaped = why is None
    quota = args.cpu_quota if shaped else None
    slowdown = args.slowdown if shaped and quota is None else 1.0
    if not shaped:
        print(f'[edgent-demo] NOT shaped: {why}; running on loopback without a link limit '
              'or a slowed device', flush=True)
    if args.model:
        try:
            card = load_card(resolve_model_path(args.model))
        except ModelError as exc:
            parser.error(str(exc))
        print(f'[edgent-demo] model {card.name}: {card.architecture}, input '
              f'{"x".join(map(str, card.input_shape))}, {len(card.exits)} exits', flush=True)
    device_profile = ensure_profile('device', quota, args.reprofile, slowdown=slowdown,
                                    model=args.model)
    edge_profile = ensure_profile('edge', None, args.reprofile, model=args.model)
    overrides = [f'planner.device_profile:={device_profile}',
                 f'planner.edge_profile:={edge_profile}',
                 f'planner.latency_requirement_ms:={args.deadline_ms}',
                 f'planner.initial_bandwidth_kbps:={args.bandwidth_kbps}',
                 f'camera.rate_hz:={args.rate}', f'device.emulated_slowdown:={slowdown}']
    bringup = tool('edgent-bringup')
    device_cmd = [bringup, '--role', 'device'] + [a for o in overrides for a in ('--set', o)]
    device_cmd += [f'model:={args.model}'] if args.model else []
    monitor_cmd = [tool('edgent-monitor'), '--frames', str(args.frames),
                   *(['--model', args.model] if args.model else []),
                   '--timeout', str(120 + 3 * args.frames / args.rate),
                   '--ros-args', '-r', '__ns:=/device']
    device = f'device node CPU limited to {100 * quota:.0f}% of one core' if quota else \
        f'device layers slowed {slowdown:g}x'
    where = (f'device and edge in two network namespaces, link shaped to '
             f'{args.bandwidth_kbps:g} kbit/s (tc tbf), {device}') if shaped \
        else 'one host, loopback'
    print(f'[edgent-demo] {where}; deadline {args.deadline_ms:g} ms; {args.frames} frames at '
          f'{args.rate:g} Hz', flush=True)
    start = time.monotonic()
    try:
        if shaped:
            with testbed.Testbed(args.bandwidth_kbps) as bed:
                start_on_testbed(bed, overrides, quota, logs['device'], logs['edge'],
                                 model=args.model)
                code = bed.spawn('device', monitor_cmd).wait()
        else:
            env = dict(os.environ, PYTHONUNBUFFERED='1')
            env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
            procs = [subprocess.Popen(edge_command(model=args.model), env=env,
                                      stdout=logs['edge'],
                                      stderr=subprocess.STDOUT),
                     subprocess.Popen(device_cmd, env=env, stdout=logs['device'],
                                      stderr=subprocess.STDOUT)]
            try:
                code = subprocess.run(monitor_cmd, env=env).returncode
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(timeout=20)
    except KeyboardInterrupt:
        code = 130
    print(f'[edgent-demo] done in {time.monotonic() - start:.0f} s; node logs in {args.log_dir}',
          flush=True)
    return code


if __name__ == '__main__':
    raise SystemExit(main())
