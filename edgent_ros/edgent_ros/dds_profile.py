"""The Fast DDS profile every edgent_ros process runs with (config/fastdds.xml).

With Fast DDS's defaults, camera-sized images sent best effort between two
processes on one machine are lost (a 640x480 bgr8 frame is larger than the
default shared-memory segment; over UDP the default socket buffers drop its
fragments). The shipped profile gives shared memory a 16 MB segment and UDP
4 MB socket buffers; the XML says why each setting is there, docs/delivery.md
what it changes.

``apply(os.environ)`` must run before ``rclpy.init`` (Fast DDS reads the
variables when a process creates its first participant). It points
FASTDDS_DEFAULT_PROFILES_FILE (Fast DDS 3, ROS 2 Kilted and later) and, where
Fast DDS 2 may be in use (Jazzy), FASTRTPS_DEFAULT_PROFILES_FILE at the
profile, unless the user has set either: a profile of the user's own wins.
``EDGENT_DDS_PROFILE`` chooses: unset or empty for the shipped profile,
``none`` for Fast DDS's defaults, or the path of another XML file.

Pure: imports neither rclpy nor launch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

FASTDDS_VAR = 'FASTDDS_DEFAULT_PROFILES_FILE'  # read by Fast DDS 3.x
FASTRTPS_VAR = 'FASTRTPS_DEFAULT_PROFILES_FILE'  # read by Fast DDS 2.x
CHOICE_VAR = 'EDGENT_DDS_PROFILE'
OFF = ('none', 'off', 'default', 'defaults')
PROFILE_NAME = 'fastdds.xml'


def shipped_profile(name: str = PROFILE_NAME) -> Path | None:
    """The profile installed with the package (share/edgent_ros/config), else
    the source tree's config/; None if neither has it."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('edgent_ros')) / 'config' / name)
    except (ImportError, LookupError, ValueError, OSError):  # OSError: no AMENT_PREFIX_PATH
        pass
    candidates.append(Path(__file__).resolve().parent.parent / 'config' / name)
    return next((p for p in candidates if p.is_file()), None)


def fastdds_majors(environ: Mapping[str, str]) -> set[int]:
    """Major versions of the Fast DDS libraries found in the ROS prefixes
    (AMENT_PREFIX_PATH, LD_LIBRARY_PATH, this Python's prefix): 2 for
    libfastrtps.so.2.*, 3 for libfastdds.so.3.*. Empty if none is found."""
    dirs = [Path(p) / 'lib' for p in environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    dirs += [Path(p) for p in environ.get('LD_LIBRARY_PATH', '').split(os.pathsep) if p]
    dirs.append(Path(sys.prefix) / 'lib')
    found: set[int] = set()
    for d in dirs:
        if any(d.glob('libfastrtps.so.2*')):
            found.add(2)
        if any(d.glob('libfastdds.so.3*')):
            found.add(3)
    return found


def chosen_profile(environ: Mapping[str, str]) -> Path | None:
    """The profile EDGENT_DDS_PROFILE asks for: the shipped one (unset or
    empty), None (``none``), or a file of the user's (ValueError if missing)."""
    choice = environ.get(CHOICE_VAR, '').strip()
    if choice.lower() in OFF:
        return None
    if not choice:
        return shipped_profile()
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ValueError(f'{CHOICE_VAR}={choice!r}: no such file (give an XML profile, or '
                         f'"none" for Fast DDS\'s defaults)')
    return path.resolve()


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables ``apply`` would set; empty when the user has set
    FASTDDS_DEFAULT_PROFILES_FILE or FASTRTPS_DEFAULT_PROFILES_FILE, or opted
    out. The Fast DDS 2 name is left out only where Fast DDS 3 alone is found
    (Kilted's rmw warns that it is deprecated whenever it is set)."""
    if environ.get(FASTDDS_VAR) or environ.get(FASTRTPS_VAR):
        return {}
    path = chosen_profile(environ)
    if path is None:
        return {}
    out = {FASTDDS_VAR: str(path)}
    if fastdds_majors(environ) != {3}:
        out[FASTRTPS_VAR] = str(path)
    return out


def apply(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Point Fast DDS at the profile in ``environ`` (default: os.environ) as
    ``settings`` says; returns the profile now in effect (the user's own, if
    set), or None for Fast DDS's defaults. ValueError for an
    EDGENT_DDS_PROFILE that names no file."""
    env = os.environ if environ is None else environ
    env.update(settings(env))
    current = env.get(FASTDDS_VAR) or env.get(FASTRTPS_VAR)
    return Path(current) if current else None
