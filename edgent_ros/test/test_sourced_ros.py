"""`make setup` on a machine where a ROS 2 distribution is sourced (a robot).

There is no apt ROS 2 here, so the test makes one from the Jazzy wheels that
requirements/jazzy.lock pins: `pip install --prefix <tmp>/opt/ros/jazzy` of the
ros-* packages alone, their Python dependencies and colcon in a second prefix
(what apt puts in the system's dist-packages on a robot), and a
`setup.bash` that exports what a real /opt/ros/jazzy/setup.bash does. With
only that sourced, `python3 -c 'import rclpy'` works, so scripts/setup.sh in a
copy of this repository must take its sourced-ROS branch: a venv that sees
the system's packages plus requirements/common.in, colcon build against the
sourced ROS, and nodes that run (the repository's own exchange and pipeline
tests, run there on that ROS).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]  # the repository
LOCK = ROOT / 'requirements' / 'jazzy.lock'
# The system's Python: the interpreter this test's venv was made from.
SYSTEM_PYTHON = Path(getattr(sys, '_base_executable', sys.executable)).resolve()
PYVER = f'python{sys.version_info.major}.{sys.version_info.minor}'
# pip's words when it cannot get a package (no network, not in its cache).
UNREACHABLE = re.compile(r'No matching distribution|Could not find a version|'
                         r'Failed to establish|Temporary failure|Max retries|Network is unreachable'
                         r'|ConnectionError|Could not fetch URL', re.IGNORECASE)

SETUP_BASH = '''\
# Emulated /opt/ros/jazzy/setup.bash (edgent_ros test_sourced_ros.py): the
# variables a real one sets. No CMAKE_PREFIX_PATH, as there: CMake finds the
# packages through PATH (<prefix>/bin -> <prefix>).
_p={prefix}
export ROS_DISTRO=jazzy ROS_VERSION=2 ROS_PYTHON_VERSION=3
export AMENT_PREFIX_PATH=$_p${{AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}}
export PYTHONPATH=$_p/lib/{pyver}/site-packages${{PYTHONPATH:+:$PYTHONPATH}}
# A real install has its libraries in lib/; the wheels keep the ones they
# vendor in site-packages/ros_*.libs (which their own .pth adds in a venv).
_l=$_p/lib
for _d in "$_p"/lib/{pyver}/site-packages/ros_*.libs; do _l=$_l:$_d; done
export LD_LIBRARY_PATH=$_l${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}
export PATH=$_p/bin:$PATH
unset _p _l _d
'''


def run(cmd: list[str] | str, env: dict[str, str], cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, shell=isinstance(cmd, str),
                          executable='/bin/bash' if isinstance(cmd, str) else None)


def pip_install(args: list[str], env: dict[str, str]) -> None:
    """pip install with the system's Python; skip when pip cannot get the packages."""
    result = run([str(SYSTEM_PYTHON), '-m', 'pip', 'install', '--quiet',
                  '--disable-pip-version-check', '--no-warn-script-location',
                  '--no-warn-conflicts', *args], env)
    if result.returncode != 0:
        out = result.stdout + result.stderr
        lines = [line for line in out.splitlines()
                 if line.strip() and 'is ignored: it is neither a file' not in line]
        if UNREACHABLE.search(out):
            pytest.skip('pip cannot get the ROS 2 Jazzy wheels (no registry, not cached): '
                        + (lines[-1] if lines else ''))
        pytest.fail('pip install failed:\n' + '\n'.join(lines[-30:]))


def machine_env(root: Path) -> dict[str, str]:
    """This process's environment without the test's own ROS 2 and venv: a
    shell of this machine before anything is sourced."""
    inside = (str(root), sys.prefix)
    env = {k: v for k, v in os.environ.items() if k not in {
        'VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME', 'AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH',
        'COLCON_PREFIX_PATH', 'LD_LIBRARY_PATH', 'ROS_DISTRO', 'ROS_VERSION',
        'ROS_PYTHON_VERSION', '_ROS_WHEELS_BOOTSTRAP_COMPLETE', 'PYTEST_CURRENT_TEST'}}
    env['PATH'] = os.pathsep.join(p for p in os.environ.get('PATH', '').split(os.pathsep)
                                  if p and not p.startswith(inside))
    env.pop('PYTHONSAFEPATH', None)
    return env


def copy_repository(dest: Path) -> None:
    """This working tree's files (tracked, and untracked but not ignored), as
    scripts/test-distro.sh copies them."""
    listed = run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], dict(os.environ),
                 cwd=ROOT)
    top = run(['git', 'rev-parse', '--show-toplevel'], dict(os.environ), cwd=ROOT)
    if listed.returncode == 0 and top.returncode == 0 and Path(top.stdout.strip()) == ROOT:
        for name in filter(None, listed.stdout.split('\0')):
            src = ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:  # not a git checkout (a copy such as .distros/<distro>)
        skip = shutil.ignore_patterns('.venv', 'build', 'install', 'log', 'build.log', '.distros',
                                      '.git', '__pycache__', '.pytest_cache', '.ruff_cache',
                                      '.hypothesis')
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, symlinks=True, ignore=skip)


@pytest.fixture(scope='module')
def robot() -> Iterator[dict[str, object]]:
    """An emulated robot: ROS 2 Jazzy in <tmp>/opt/ros/jazzy, colcon and the
    Python packages apt would bring in <tmp>/usr, and this repository in
    <tmp>/ws/edgent_ros, set up there by scripts/setup.sh with that ROS sourced."""
    if not LOCK.is_file():
        pytest.skip(f'no {LOCK.relative_to(ROOT)}')
    if shutil.which('git') is None:
        pytest.skip('git is not installed (the repository copy uses git ls-files)')
    tmp = Path(tempfile.mkdtemp(prefix='edgent-sourced-ros-'))
    try:
        yield make_robot(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_robot(tmp: Path) -> dict[str, object]:
    env = machine_env(ROOT)
    bare = run([str(SYSTEM_PYTHON), '-c', 'import rclpy'], env)
    if bare.returncode == 0:
        pytest.skip(f"this machine's {SYSTEM_PYTHON} imports rclpy without any ROS sourced: "
                    'the emulation would prove nothing')
    prefix = tmp / 'opt' / 'ros' / 'jazzy'
    system = tmp / 'usr'
    # 1. ROS 2 Jazzy: exactly the ros-* wheels the lock pins, nothing else.
    pins = [line.strip() for line in LOCK.read_text().splitlines()
            if line.startswith('ros-')]
    assert any(p.startswith('ros-jazzy-rclpy==') for p in pins), pins
    pip_install(['--prefix', str(prefix), '--ignore-installed', '--no-deps', *pins], env)
    site = prefix / 'lib' / PYVER / 'site-packages'
    # 2. What apt brings with it: the wheels' own Python requirements, and colcon.
    needs = set()
    for dist in metadata.distributions(path=[str(site)]):
        for req in dist.requires or []:
            name = re.split(r'[\s;<>=!~\[(]', req, maxsplit=1)[0]
            if 'extra ==' not in req and not name.lower().startswith('ros-'):
                needs.add(name)
    pip_install(['--prefix', str(system), '-c', str(LOCK), *sorted(needs),
                 'colcon-common-extensions'], env)
    # 3. The CMake path fixes the wheels need (scripts/setup.sh applies them to its venv).
    fixed = run([str(ROOT / 'scripts' / 'fix-ros-wheels.sh'), str(prefix), str(SYSTEM_PYTHON)],
                env)
    assert fixed.returncode == 0, fixed.stderr
    (prefix / 'local_setup.bash').write_text(SETUP_BASH.format(prefix=prefix, pyver=PYVER))
    (prefix / 'setup.bash').write_text(
        f'# Emulated /opt/ros/jazzy/setup.bash\n. {prefix}/local_setup.bash\n')
    # The machine as a robot has it: the system Python and its packages
    # (here: <tmp>/usr on PYTHONPATH and PATH, as /usr/lib/python3/dist-packages
    # and /usr/bin would be), nothing sourced yet.
    env['PATH'] = os.pathsep.join([str(SYSTEM_PYTHON.parent), str(system / 'bin'), env['PATH']])
    env['PYTHONPATH'] = str(system / 'lib' / PYVER / 'site-packages')
    ws = tmp / 'ws' / 'edgent_ros'
    ws.mkdir(parents=True)
    copy_repository(ws)
    return {'tmp': tmp, 'prefix': prefix, 'env': env, 'ws': ws,
            'sourced': f'. {prefix}/setup.bash && ',
            'sourced_argv': ['bash', '-c', f'. {prefix}/setup.bash && exec "$@"', 'bash']}


def test_rclpy_imports_with_only_the_ros_setup_sourced(robot: dict[str, object]) -> None:
    env, sourced = robot['env'], robot['sourced']
    assert run(['python3', '-c', 'import rclpy'], env).returncode != 0  # nothing sourced
    result = run(sourced + 'echo "$ROS_DISTRO" && python3 -c '
                 '"import rclpy; print(rclpy.__file__)"', env)
    assert result.returncode == 0, result.stderr
    distro, where = result.stdout.split()[:2]
    assert distro == 'jazzy'
    assert where.startswith(str(robot['prefix'])), where
    # The wheels' CMake files no longer name the include directories of the
    # machine that built them (scripts/fix-ros-wheels.sh).
    stale = [p.name for p in (robot['prefix'] / 'share').glob('*/cmake/*Export.cmake')
             if re.search(r'/opt/python/cp3\d+-cp3\d+/(include|lib)', p.read_text())]
    assert not stale, stale


@pytest.fixture(scope='module')
def set_up(robot: dict[str, object]) -> dict[str, object]:
    """scripts/setup.sh run in the copy with the emulated ROS 2 sourced."""
    result = run(robot['sourced'] + 'scripts/setup.sh', robot['env'], cwd=robot['ws'],
                 timeout=900)
    return {**robot, 'setup': result}


def test_setup_takes_the_sourced_branch(set_up: dict[str, object]) -> None:
    ws, result = set_up['ws'], set_up['setup']
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert f'creating {ws}/.venv (ros-jazzy)' in out, out
    assert (ws / '.venv' / '.edgent-mode').read_text().strip() == 'ros-jazzy'
    cfg = (ws / '.venv' / 'pyvenv.cfg').read_text()
    assert re.search(r'^include-system-site-packages = true$', cfg, re.MULTILINE), cfg
    # The ROS 2 wheels are not in the venv: they come from the sourced prefix.
    venv_site = ws / '.venv' / 'lib' / PYVER / 'site-packages'
    assert not (venv_site / 'rclpy').exists()
    assert (ws / 'install' / '.edgent-build').is_file()  # colcon build succeeded
    # The package's executables run on the venv's Python (which sees torch),
    # not on the Python colcon was installed for.
    shebang = (ws / 'install' / 'edgent_ros' / 'lib' / 'edgent_ros' / 'edge_node'
               ).read_text().splitlines()[0]
    assert shebang == f'#!{ws}/.venv/bin/python', shebang
    # A second run has nothing to do.
    again = run(set_up['sourced'] + 'scripts/setup.sh', set_up['env'], cwd=ws, timeout=300)
    assert again.returncode == 0, again.stderr
    assert 'python environment up to date (ros-jazzy)' in again.stdout
    assert 'build up to date' in again.stdout


def test_the_build_imports_from_where_it_should(set_up: dict[str, object]) -> None:
    ws = set_up['ws']
    assert set_up['setup'].returncode == 0, 'scripts/setup.sh failed (see the test above)'
    code = ('import sys, rclpy, torch, edgent_ros, edgent_ros_interfaces.msg as m; '
            'print(sys.prefix); print(rclpy.__file__); print(torch.__file__); '
            'print(m.__file__); print(m.Tensor(shape=[2, 3]).shape.tolist())')
    result = run(set_up['sourced'] + f'scripts/run.sh python -c "{code}"', set_up['env'],
                 cwd=ws)
    assert result.returncode == 0, result.stderr
    prefix, rclpy_file, torch_file, msg_file, shape = result.stdout.split('\n')[:5]
    assert prefix == f'{ws}/.venv'
    assert rclpy_file.startswith(str(set_up['prefix'])), rclpy_file
    assert torch_file.startswith(f'{ws}/.venv/'), torch_file
    assert msg_file.startswith(f'{ws}/install/edgent_ros_interfaces/'), msg_file
    assert shape == '[2, 3]'


def test_nodes_run_on_the_sourced_ros(set_up: dict[str, object]) -> None:
    """The repository's own tests, run in the copy on the sourced ROS 2: the
    message exchange between two processes, and edgent-bringup starting every
    node (camera, device, bandwidth monitor, planner, edge, probe echo) as a
    process of its installed executable until results and plans arrive."""
    assert set_up['setup'].returncode == 0, 'scripts/setup.sh failed (see the test above)'
    tests = ['test/test_exchange.py',
             'test/test_bringup.py::test_bringup_runs_the_pipeline[processes]']
    result = run([*set_up['sourced_argv'], 'scripts/test.sh', '-p', 'no:cacheprovider', '-q',
                  *tests], set_up['env'], cwd=set_up['ws'], timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    assert re.search(r'\b3 passed\b', out), out[-3000:]

def test_setup_refuses_a_distribution_it_has_no_lock_for(tmp_path: Path) -> None:
    """With no ROS sourced, ROS_DISTRO picks requirements/<distro>.lock; one
    without a lock is refused in one line naming those there are."""
    shutil.copytree(ROOT / 'scripts', tmp_path / 'scripts')
    shutil.copytree(ROOT / 'requirements', tmp_path / 'requirements')
    env = dict(machine_env(ROOT), ROS_DISTRO='rolling')
    result = run([str(tmp_path / 'scripts' / 'setup.sh')], env, cwd=tmp_path)
    assert result.returncode == 1
    have = sorted(p.stem for p in (ROOT / 'requirements').glob('*.lock'))
    assert {'jazzy', 'kilted'} <= set(have)
    assert result.stderr == ('[setup] error: ROS_DISTRO=rolling: no requirements/rolling.lock;'
                             f' from PyPI wheels this repository sets up: {" ".join(have)}\n')
    assert not (tmp_path / '.venv').exists()
