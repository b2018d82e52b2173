"""edgent-bringup: start edgent_ros's nodes from the same YAML files as the launch files.

``ros2 launch`` is not installable everywhere (it is not on PyPI); this entry
point starts the same nodes, with the same names, namespaces, remappings,
parameter files and launch arguments as ``launch/*.launch.py`` (both read
``edgent_ros.node_table``), as separate processes (default) or in one process.

    edgent-bringup --role all                 # everything on one host
    edgent-bringup --role device --params-file my_device.yaml image:=/cam use_camera:=false
    edgent-bringup --role edge --single-process
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgent_ros import dds_profile
from edgent_ros.node_table import (
    NODES,
    REFUSED,
    NodeSpec,
    Respawner,
    node_settings,
    parse_arguments,
)

ROLES = ('device', 'edge', 'all')


def share_dir() -> Path:
    """The package's installed share directory (config/, launch/, models/)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('edgent_ros'))
    except (ImportError, LookupError, ValueError):
        return Path(__file__).resolve().parent.parent


def roles_of(role: str) -> tuple[str, ...]:
    return ('device', 'edge') if role == 'all' else (role,)


def default_params(role: str) -> list[Path]:
    return [share_dir() / 'config' / f'{r}.yaml' for r in roles_of(role)]


def specs(role: str, skip: tuple[str, ...] = (), only: tuple[str, ...] = (),
          given: dict[str, str] | None = None) -> list[NodeSpec]:
    """The nodes to start: the role's, less those skipped or switched off by a
    launch argument (``given``: their values, as node_table.parse_arguments)."""
    given = given or {}
    return [s for r in roles_of(role) for s in NODES[r]
            if s.name not in skip and (not only or s.name in only)
            and node_settings(s, given).enabled]


def ros_args(spec: NodeSpec, params_files: list[Path], overrides: list[str],
             extra_remaps: list[str], given: dict[str, str] | None = None) -> list[str]:
    """The --ros-args that give a node its name, namespace, remaps and parameters:
    the table's, then the launch arguments' (``given``), then --remap and --set."""
    settings = node_settings(spec, given or {})
    args = ['--ros-args', '-r', f'__node:={spec.name}', '-r', f'__ns:={settings.namespace}']
    for src, dst in settings.remappings:
        args += ['-r', f'{src}:={dst}']
    for remap in extra_remaps:
        node, rule = split_remap(remap)
        if node in ('', spec.name):
            args += ['-r', rule]
    for path in params_files:
        args += ['--params-file', str(path)]
    for name, value in settings.parameters.items():
        args += ['-p', f'{name}:={value!r}']
    for override in overrides:
        node, _, assignment = override.partition('.')
        if node == spec.name:
            args += ['-p', assignment]
    return args


def split_remap(remap: str) -> tuple[str, str]:
    """'device:image:=/cam' -> ('device', 'image:=/cam'); 'image:=/cam' -> ('', ...)."""
    source = remap.split(':=', 1)[0]
    if ':' in source:
        node, rule = remap.split(':', 1)
        return node, rule
    return '', remap


def executable(spec: NodeSpec) -> list[str]:
    """The command that runs a node's executable (installed, or as a module)."""
    here = Path(sys.argv[0]).resolve().parent
    for candidate in (here / spec.executable, shutil.which(spec.executable)):
        if candidate and Path(candidate).is_file():
            return [str(candidate)]
    return [sys.executable, '-m', spec.module]


def run_processes(nodes: list[NodeSpec], params: list[Path], overrides: list[str],
                  remaps: list[str], duration: float, given: dict[str, str]) -> int:
    """Each node a process; a node that dies is started again (Respawner)
    while the others keep running, as under ros2 launch with respawn. A node
    that refuses its configuration stops everything with its status."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONSAFEPATH='1')
    respawner = Respawner()

    def where(spec: NodeSpec) -> str:
        return f'{node_settings(spec, given).namespace}/{spec.name}'

    def start(spec: NodeSpec) -> subprocess.Popen:
        cmd = executable(spec) + ros_args(spec, params, overrides, remaps, given)
        proc = subprocess.Popen(cmd, env=env)
        print(f'[edgent-bringup] started {where(spec)} (pid {proc.pid})', flush=True)
        return proc

    running = {spec.name: (spec, start(spec)) for spec in nodes}
    waiting: dict[str, tuple[NodeSpec, float]] = {}  # name -> (spec, when to restart)
    stop = {'now': False}

    def on_signal(signum: int, _frame: object) -> None:
        stop['now'] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    end = time.monotonic() + duration if duration > 0 else float('inf')
    code = 0
    while not stop['now'] and time.monotonic() < end and (running or waiting):
        now = time.monotonic()
        for name, (spec, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            again = respawner.on_exit(spec, proc.returncode, now)
            if again is not None:
                print(f'[edgent-bringup] {where(spec)} exited with {proc.returncode}; starting it '
                      f'again in {again - now:.0f} s', flush=True)
                waiting[name] = (spec, again)
            elif proc.returncode == REFUSED:
                print(f'[edgent-bringup] {where(spec)} refused its configuration; stopping',
                      flush=True)
                stop['now'], code = True, REFUSED
            elif not (spec.may_finish and proc.returncode == 0):
                print(f'[edgent-bringup] {where(spec)} exited with {proc.returncode}; gave up '
                      f'after {respawner.max_retries} restarts', flush=True)
                code = proc.returncode or 1
        for name, (spec, when) in list(waiting.items()):
            if now >= when and not stop['now']:
                del waiting[name]
                running[name] = (spec, start(spec))
        time.sleep(0.2)
    stop_processes([proc for _, proc in running.values()])
    return code


def stop_processes(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """SIGINT every process still running, then wait for each (SIGKILL after
    ``timeout_s``)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_single_process(nodes: list[NodeSpec], params: list[Path], overrides: list[str],
                       remaps: list[str], duration: float, given: dict[str, str]) -> int:
    import importlib

    import rclpy
    from rclpy.executors import ExternalShutdownException

    from edgent_ros.nodes.runner import make_executor

    rclpy.init()
    executor = make_executor()
    started = []
    try:
        for spec in nodes:
            cls = getattr(importlib.import_module(spec.module), spec.class_name)
            node = cls(cli_args=ros_args(spec, params, overrides, remaps, given),
                       use_global_arguments=False)
            executor.add_node(node)
            started.append(node)
        end = time.monotonic() + duration if duration > 0 else float('inf')
        while rclpy.ok() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in started:
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='edgent-bringup', description=__doc__.splitlines()[0])
    parser.add_argument('--role', choices=ROLES, default='all')
    parser.add_argument('--params-file', type=Path, action='append', default=None,
                        help='ROS 2 parameter YAML (repeatable; default: config/<role>.yaml '
                             'of the package)')
    parser.add_argument('--set', action='append', default=[], metavar='NODE.PARAM:=VALUE',
                        help='override one parameter, e.g. planner.latency_requirement_ms:=500')
    parser.add_argument('--remap', action='append', default=[], metavar='[NODE:]FROM:=TO',
                        help='extra remapping, e.g. device:image:=/camera/image_raw')
    parser.add_argument('--skip', action='append', default=[], metavar='NODE',
                        help='do not start this node (by name, e.g. camera)')
    parser.add_argument('--only', action='append', default=[], metavar='NODE',
                        help='start only this node (by name; repeatable)')
    parser.add_argument('--single-process', action='store_true',
                        help='all nodes in this process, on one executor (the form for a Pi)')
    parser.add_argument('--duration', type=float, default=0.0,
                        help='stop after this many seconds (0 = until Ctrl-C)')
    parser.add_argument('arguments', nargs='*', metavar='NAME:=VALUE',
                        help='launch arguments, as ros2 launch takes them (device role: '
                             'image, use_camera, latency_requirement_ms, model, camera_size, '
                             'device_profile, edge_profile; edge role: model)')
    args = parser.parse_args(argv)
    try:
        given = parse_arguments(args.arguments, roles_of(args.role))
        nodes = specs(args.role, tuple(args.skip), tuple(args.only), given)
    except ValueError as exc:
        parser.error(str(exc))
    params = args.params_file or default_params(args.role)
    for path in params:
        if not path.is_file():
            parser.error(f'parameter file {path} not found')
    for override in args.set:
        if '.' not in override or ':=' not in override:
            parser.error(f'--set {override!r}: expected NODE.PARAM:=VALUE')
    if not nodes:
        parser.error('no node left to start (check --skip and --only)')
    # Before the nodes' processes inherit the environment, and before
    # rclpy.init in --single-process: Fast DDS reads the profile then.
    try:
        profile = dds_profile.apply()
    except ValueError as exc:
        parser.error(str(exc))
    print(f'[edgent-bringup] DDS profile: {profile or "Fast DDS defaults"}', flush=True)
    run = run_single_process if args.single_process else run_processes
    return run(nodes, params, args.set, args.remap, args.duration, given)


if __name__ == '__main__':
    raise SystemExit(main())
