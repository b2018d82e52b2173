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

The shipped profile also bounds the device node's image reader (at most two
samples held: Fast DDS otherwise keeps up to thousands of buffers, each as
large as the largest image it held). rmw_fastrtps finds that block by the
topic's full name, ``/device/image`` in the file; ``image_topics`` names
others (the device's image topic remapped), and the profile applied is then
a copy of the shipped one with the block repeated for them, written to a
per-user directory.

Pure: imports neither rclpy nor launch.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

FASTDDS_VAR = 'FASTDDS_DEFAULT_PROFILES_FILE'  # read by Fast DDS 3.x
FASTRTPS_VAR = 'FASTRTPS_DEFAULT_PROFILES_FILE'  # read by Fast DDS 2.x
CHOICE_VAR = 'EDGENT_DDS_PROFILE'
OFF = ('none', 'off', 'default', 'defaults')
PROFILE_NAME = 'fastdds.xml'
IMAGE_TOPIC = '/device/image'  # the image reader block of the shipped profile is for it
_IMAGE_BLOCK = re.compile(r'[ \t]*<data_reader profile_name="' + re.escape(IMAGE_TOPIC) +
                          r'">.*?</data_reader>\n', re.S)
# A fully qualified ROS 2 topic name (what rmw_fastrtps looks profiles up by).
_TOPIC = re.compile(r'^(/[A-Za-z_][A-Za-z0-9_]*)+$')


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


def with_image_topics(text: str, topics: Iterable[str]) -> str:
    """The shipped profile's text with its image reader block repeated for
    each of ``topics`` (fully qualified names) beside its own.
    ValueError for a name that is not one."""
    block = _IMAGE_BLOCK.search(text)
    if block is None:
        raise ValueError(f'the profile has no image reader block for {IMAGE_TOPIC}')
    copies = []
    for topic in dict.fromkeys(topics):
        if not _TOPIC.match(topic):
            raise ValueError(f'{topic!r} is not a fully qualified topic name')
        if topic != IMAGE_TOPIC:
            copies.append(block.group(0).replace(f'profile_name="{IMAGE_TOPIC}"',
                                                 f'profile_name={quoteattr(topic)}'))
    return text[:block.end()] + ''.join(copies) + text[block.end():]


def profile_dir() -> Path:
    """Where derived profiles are written: a directory of this user's
    (``$XDG_RUNTIME_DIR/edgent_ros``, else ``<tmp>/edgent_ros-<uid>``)."""
    runtime = os.environ.get('XDG_RUNTIME_DIR')
    base = Path(runtime) / 'edgent_ros' if runtime else \
        Path(tempfile.gettempdir()) / f'edgent_ros-{os.getuid()}'
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base


def derived_profile(path: Path, topics: Iterable[str]) -> Path:
    """``path`` (the shipped profile) with the image reader block for
    ``topics`` too (``with_image_topics``); ``path`` itself when they add
    nothing. Written once per content, atomically."""
    base = path.read_text()
    text = with_image_topics(base, topics)
    if text == base:
        return path
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    out = profile_dir() / f'fastdds-{digest}.xml'
    if not out.is_file() or out.read_text() != text:
        tmp = out.with_suffix(f'.{os.getpid()}.tmp')
        tmp.write_text(text)
        tmp.replace(out)
    return out


def image_reader_bounded(environ: Mapping[str, str], topic: str) -> bool | None:
    """Whether the profile in effect (``environ``) has an image reader block
    for ``topic``; None when no edgent_ros profile is in effect (Fast DDS's
    defaults, or a file that is not edgent_ros's: the user's concern)."""
    current = environ.get(FASTDDS_VAR) or environ.get(FASTRTPS_VAR)
    if not current:
        return None
    try:
        text = Path(current).read_text()
    except OSError:
        return None
    if _IMAGE_BLOCK.search(text) is None:
        return None
    return f'<data_reader profile_name={quoteattr(topic)}>' in text


def settings(environ: Mapping[str, str], image_topics: Iterable[str] = ()) -> dict[str, str]:
    """The variables ``apply`` would set; empty when the user has set
    FASTDDS_DEFAULT_PROFILES_FILE or FASTRTPS_DEFAULT_PROFILES_FILE, or opted
    out. The Fast DDS 2 name is left out only where Fast DDS 3 alone is found
    (Kilted's rmw warns that it is deprecated whenever it is set).
    ``image_topics``: the device's image topics, by full name, for the
    shipped profile's image reader block (a derived profile if they are not
    /device/image)."""
    if environ.get(FASTDDS_VAR) or environ.get(FASTRTPS_VAR):
        return {}
    path = chosen_profile(environ)
    if path is None:
        return {}
    topics = list(image_topics)
    if topics and path == shipped_profile():
        path = derived_profile(path, topics)
    out = {FASTDDS_VAR: str(path)}
    if fastdds_majors(environ) != {3}:
        out[FASTRTPS_VAR] = str(path)
    return out


def apply(environ: MutableMapping[str, str] | None = None,
          image_topics: Iterable[str] = ()) -> Path | None:
    """Point Fast DDS at the profile in ``environ`` (default: os.environ) as
    ``settings`` says; returns the profile now in effect (the user's own, if
    set), or None for Fast DDS's defaults. ValueError for an
    EDGENT_DDS_PROFILE that names no file, or an image topic that is no
    fully qualified name."""
    env = os.environ if environ is None else environ
    env.update(settings(env, image_topics))
    current = env.get(FASTDDS_VAR) or env.get(FASTRTPS_VAR)
    return Path(current) if current else None
