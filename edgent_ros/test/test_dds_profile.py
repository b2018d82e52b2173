"""edgent_ros's DDS profile: chosen as documented, and camera-sized images arrive with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgent_ros import dds_profile
from edgent_ros.dds_profile import CHOICE_VAR, FASTDDS_VAR, FASTRTPS_VAR

from .conftest import executable

FRAME_720P = 1280 * 720 * 3


def clean(**extra: str) -> dict[str, str]:
    """os.environ without any DDS profile choice, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in (FASTDDS_VAR, FASTRTPS_VAR, CHOICE_VAR)}
    env.update(extra)
    return env


def test_the_shipped_profile_is_applied_when_nothing_is_chosen() -> None:
    env = clean()
    path = dds_profile.apply(env)
    assert path is not None and path.name == 'fastdds.xml' and path.is_file()
    assert env[FASTDDS_VAR] == str(path)


@pytest.mark.parametrize('var', [FASTDDS_VAR, FASTRTPS_VAR])
def test_a_profile_of_the_users_own_wins(var: str) -> None:
    env = clean(**{var: '/home/me/my_profile.xml'})
    before = dict(env)
    assert dds_profile.apply(env) == Path('/home/me/my_profile.xml')
    assert env == before


@pytest.mark.parametrize('choice', ['none', 'NONE', 'off'])
def test_edgent_dds_profile_none_leaves_fast_dds_defaults(choice: str) -> None:
    env = clean(EDGENT_DDS_PROFILE=choice)
    assert dds_profile.apply(env) is None
    assert FASTDDS_VAR not in env and FASTRTPS_VAR not in env


def test_edgent_dds_profile_names_another_file(tmp_path: Path) -> None:
    mine = tmp_path / 'mine.xml'
    mine.write_text('<dds/>')
    env = clean(EDGENT_DDS_PROFILE=str(mine))
    assert dds_profile.apply(env) == mine
    assert env[FASTDDS_VAR] == str(mine)
    with pytest.raises(ValueError, match=r'EDGENT_DDS_PROFILE.*no such file'):
        dds_profile.apply(clean(EDGENT_DDS_PROFILE=str(tmp_path / 'missing.xml')))


def test_the_fast_dds_2_name_is_set_where_fast_dds_2_is_found(tmp_path: Path) -> None:
    (tmp_path / 'lib').mkdir()
    (tmp_path / 'lib' / 'libfastrtps.so.2.14').touch()
    prefixes = os.environ.get('AMENT_PREFIX_PATH', '')
    env = clean(AMENT_PREFIX_PATH=f'{tmp_path}{os.pathsep}{prefixes}')
    dds_profile.apply(env)
    assert env[FASTRTPS_VAR] == env[FASTDDS_VAR]
    # Where Fast DDS 3 alone is found (Kilted, this venv), only its name: Kilted's
    # rmw warns on every start that the old one is deprecated.
    if dds_profile.fastdds_majors(os.environ) == {3}:
        env = clean()
        dds_profile.apply(env)
        assert FASTRTPS_VAR not in env


def test_the_profile_keeps_the_settings_it_was_measured_with() -> None:
    path = dds_profile.shipped_profile()
    assert path is not None
    ns = {'e': 'http://www.eprosima.com'}
    root = ET.parse(path).getroot()
    descriptors = {d.findtext('e:transport_id', namespaces=ns): d
                   for d in root.iterfind('.//e:transport_descriptor', ns)}
    participant = root.find('.//e:participant', ns)
    assert participant.get('is_default_profile') == 'true'
    assert participant.findtext('.//e:useBuiltinTransports', namespaces=ns) == 'false'
    used = [t.text for t in participant.iterfind('.//e:userTransports/e:transport_id', ns)]
    assert sorted(descriptors[t].findtext('e:type', namespaces=ns) for t in used) == \
        ['SHM', 'UDPv4']
    shm, udp = sorted((descriptors[t] for t in used),
                      key=lambda d: d.findtext('e:type', namespaces=ns))
    assert int(shm.findtext('e:segment_size', namespaces=ns)) >= 5 * FRAME_720P
    for size in ('sendBufferSize', 'receiveBufferSize'):
        assert int(udp.findtext(f'e:{size}', namespaces=ns)) >= FRAME_720P


def test_a_node_refuses_an_edgent_dds_profile_that_names_no_file(tmp_path: Path) -> None:
    env = clean(EDGENT_DDS_PROFILE=str(tmp_path / 'missing.xml'))
    result = subprocess.run([executable('probe_echo')], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert 'EDGENT_DDS_PROFILE' in result.stdout + result.stderr


@pytest.mark.ros
def test_camera_sized_images_cross_between_processes_with_the_profile() -> None:
    # A plain rclpy publisher (a camera driver's stand-in, which does not apply
    # the profile itself) and a subscriber, two processes, given the profile
    # through the environment as the README says. With Fast DDS's defaults
    # (run with EDGENT_DDS_PROFILE=none) none of these frames arrived.
    env = clean(PYTHONSAFEPATH='1', PYTHONUNBUFFERED='1')
    if CHOICE_VAR in os.environ:
        env[CHOICE_VAR] = os.environ[CHOICE_VAR]
    profile = dds_profile.apply(env)
    frames, topic = 30, '/dds_profile_test/image'
    stream = [sys.executable, '-m', 'edgent_ros.demo.image_stream']
    counter = subprocess.Popen([*stream, 'count', '--topic', topic, '--expect', str(frames),
                                '--timeout', '30'], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert counter.stdout.readline().strip() == 'ready'
        publisher = subprocess.run(
            [*stream, 'publish', '--topic', topic, '--width', '640', '--height', '480',
             '--rate', '10', '--count', str(frames)],
            env=env, capture_output=True, text=True, timeout=60)
        assert publisher.returncode == 0, publisher.stdout + publisher.stderr
        try:
            output = counter.communicate(timeout=2)[0]
        except subprocess.TimeoutExpired:
            counter.send_signal(signal.SIGINT)
            output = counter.communicate(timeout=10)[0]
    finally:
        if counter.poll() is None:
            counter.kill()
            counter.wait()
    got = json.loads(output.strip().splitlines()[-1])
    assert got['distinct'] >= frames - 1, (f'profile: {profile}; {got}', output[-2000:])
