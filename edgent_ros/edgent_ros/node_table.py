"""The one table of edgent_ros's nodes, read by the launch files and edgent-bringup.

Each node of a role (``device``: the robot; ``edge``: the PC) is a
``NodeSpec``: its executable, the Node class it runs (for a single-process
bringup), name, namespace and fixed remappings, and which launch arguments
act on it. The launch arguments of a role (``ARGUMENTS``) work alike in
``ros2 launch edgent_ros device.launch.py image:=/cam`` and in
``edgent-bringup --role device image:=/cam``: ``node_settings`` turns the
arguments given into a node's remappings, parameter overrides and whether
it starts. An argument left empty changes nothing, so a value in the
parameter file stands unless the argument is given.

Pure: imports neither rclpy nor launch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ROLES = ('device', 'edge')


@dataclass(frozen=True)
class LaunchArgument:
    """A launch argument of a role; ``default`` '' means 'not given'."""

    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """One node of the system.

    ``remap_arguments``: (topic, argument): the topic is remapped to the
    argument's value when it is given. ``parameter_arguments``: (parameter,
    argument, type): the parameter is set to the argument's value, as a
    'double' or 'string' ('width'/'height': from camera_size's WIDTHxHEIGHT),
    when it is given. ``enabled_by``: an argument ('true'/'false') that
    switches the node on or off. ``may_finish``: the node may end by itself (a camera
    replaying a fixed count of frames) without the others stopping.
    """

    executable: str
    node_class: str  # 'module:Class'
    name: str
    namespace: str
    remappings: tuple[tuple[str, str], ...] = ()
    remap_arguments: tuple[tuple[str, str], ...] = ()
    parameter_arguments: tuple[tuple[str, str, str], ...] = ()
    enabled_by: str = ''
    may_finish: bool = False

    @property
    def module(self) -> str:
        return self.node_class.partition(':')[0]

    @property
    def class_name(self) -> str:
        return self.node_class.partition(':')[2]


# Device-side nodes live in /device, edge-side in /edge; the link topics are the edge's.
NODES: dict[str, tuple[NodeSpec, ...]] = {
    'device': (
        NodeSpec('camera_node', 'edgent_ros.nodes.camera_node:CameraNode', 'camera', '/device',
                 parameter_arguments=(('image_width', 'camera_size', 'width'),
                                      ('image_height', 'camera_size', 'height')),
                 enabled_by='use_camera', may_finish=True),
        NodeSpec('device_node', 'edgent_ros.nodes.device_node:DeviceNode', 'device', '/device',
                 (('tensor', '/edge/tensor'), ('reply', '/edge/reply')),
                 remap_arguments=(('image', 'image'),),
                 parameter_arguments=(('model', 'model', 'string'),)),
        NodeSpec('bandwidth_monitor', 'edgent_ros.nodes.bandwidth_monitor:BandwidthMonitor',
                 'bandwidth_monitor', '/device',
                 (('probe', '/edge/probe'), ('probe/reply', '/edge/probe/reply')),
                 parameter_arguments=(('edges', 'edges', 'string'),)),
        NodeSpec('planner_node', 'edgent_ros.nodes.planner_node:PlannerNode', 'planner',
                 '/device', (('edge_load', '/edge/edge_load'),), parameter_arguments=(
                     ('latency_requirement_ms', 'latency_requirement_ms', 'double'),
                     ('model', 'model', 'string'),
                     ('device_profile', 'device_profile', 'string'),
                     ('edge_profile', 'edge_profile', 'string'),
                     ('edges', 'edges', 'string'))),
    ),
    'edge': (
        # The device's plans, to refuse a tensor coded otherwise than its plan says.
        NodeSpec('edge_node', 'edgent_ros.nodes.edge_node:EdgeNode', 'edge', '/edge',
                 (('plan', '/device/plan'),),
                 parameter_arguments=(('model', 'model', 'string'),)),
        NodeSpec('probe_echo', 'edgent_ros.nodes.probe_echo:ProbeEcho', 'probe_echo', '/edge'),
    ),
}

ARGUMENTS: dict[str, tuple[LaunchArgument, ...]] = {
    'device': (
        LaunchArgument('namespace', '', 'ROS namespace of this robot\'s nodes (default '
                       '/device); give each robot its own when several share an edge'),
        LaunchArgument('edge_namespace', '', 'namespace of the edge node this robot uses '
                       '(default /edge)'),
        LaunchArgument('edges', '', 'several edges: auto (every edge on the domain, found by '
                       'its edge_load topic) or their namespaces, comma-separated; the robot '
                       'measures the link to each and plans against the best (edge_namespace '
                       'is then not used)'),
        LaunchArgument('image', '', 'image topic the device node reads (default: the camera '
                       'node\'s, <namespace>/image)'),
        LaunchArgument('use_camera', 'true', 'start the data-set camera node (false when a '
                       'real camera driver publishes the images)'),
        LaunchArgument('latency_requirement_ms', '', 'the planner\'s deadline, ms (default: '
                       'the parameter file\'s)'),
        LaunchArgument('model', '', 'model name in the package\'s models/ or path to its '
                       'YAML, for the device node and the planner (default: the parameter '
                       'file\'s); the edge must be given the same'),
        LaunchArgument('device_profile', '', 'the planner\'s latency profile of the device '
                       '(name in config/profiles/ or path; default: the parameter file\'s, auto: '
                       'the paper\'s Pi 3 if it covers the model, else the CI host\'s)'),
        LaunchArgument('edge_profile', '', 'the planner\'s latency profile of the edge '
                       '(default: the parameter file\'s, auto)'),
        LaunchArgument('camera_size', 'auto', 'WIDTHxHEIGHT of the data-set camera\'s frames; '
                       'auto: 640x480 when the model given takes more than 32x32 pixels, '
                       'else the parameter file\'s (0x0: the source\'s own size)'),
    ),
    'edge': (
        LaunchArgument('namespace', '', 'ROS namespace of the edge\'s nodes (default /edge); '
                       'devices name it as their edge_namespace'),
        LaunchArgument('device_namespace', '', 'namespace of the one device whose plans the '
                       'edge reads on `plan` (default /device); the plans of every device it '
                       'serves are read from <source_id>/plan anyway'),
        LaunchArgument('model', '', 'model name or YAML path for the edge node (default: the '
                       'parameter file\'s); the device must be given the same'),
    ),
}

# The camera's frame size when camera_size is auto and the model given takes
# more than 32x32 pixels: a common camera resolution.
AUTO_CAMERA_SIZE = (640, 480)


@dataclass
class NodeSettings:
    """What the launch arguments given make of one node."""

    enabled: bool = True
    namespace: str = ''
    remappings: list[tuple[str, str]] = field(default_factory=list)
    parameters: dict[str, float | int | str] = field(default_factory=dict)


TRUE = ('true', '1', 'yes', 'on')
FALSE = ('false', '0', 'no', 'off')


def arguments_of(roles: tuple[str, ...]) -> dict[str, LaunchArgument]:
    return {a.name: a for r in roles for a in ARGUMENTS[r]}


def parse_arguments(pairs: list[str], roles: tuple[str, ...]) -> dict[str, str]:
    """'name:=value' strings -> every argument of the roles with its value
    (the default where not given). ValueError names an unknown argument."""
    known = arguments_of(roles)
    values = {name: a.default for name, a in known.items()}
    for pair in pairs:
        name, sep, value = pair.partition(':=')
        if not sep:
            raise ValueError(f'{pair!r}: expected NAME:=VALUE')
        if name not in known:
            raise ValueError(f'unknown launch argument {name!r} (known: '
                             f'{", ".join(sorted(known)) or "none"})')
        values[name] = value
    return values


def node_settings(spec: NodeSpec, given: Mapping[str, str]) -> NodeSettings:
    """The node's remappings, parameter overrides and whether it starts, from
    the launch arguments' values (an empty value changes nothing). ValueError
    for a value that does not parse, naming the argument."""
    own, other = ('/edge', '/device') if spec.namespace == '/edge' else ('/device', '/edge')
    spaces = {own: namespace_argument(given, 'namespace', own),
              other: namespace_argument(
                  given, 'device_namespace' if own == '/edge' else 'edge_namespace', other)}
    settings = NodeSettings(namespace=spaces[spec.namespace], remappings=[
        (topic, moved(target, spaces)) for topic, target in spec.remappings])
    if spec.enabled_by:
        flag = given.get(spec.enabled_by, '').strip().lower()
        if flag not in TRUE + FALSE + ('',):
            raise ValueError(f'{spec.enabled_by} must be true or false, got {flag!r}')
        settings.enabled = flag not in FALSE
    for topic, argument in spec.remap_arguments:
        if given.get(argument, ''):
            settings.remappings.append((topic, given[argument]))
    for parameter, argument, kind in spec.parameter_arguments:
        text = given.get(argument, '').strip()
        if argument == 'camera_size':
            size = camera_size(text, given.get('model', '').strip())
            if size is not None:
                settings.parameters[parameter] = size[0 if kind == 'width' else 1]
        elif text and kind == 'string':
            settings.parameters[parameter] = text
        elif text:
            try:
                settings.parameters[parameter] = float(text)
            except ValueError:
                raise ValueError(f'{argument} must be a number, got {text!r}') from None
    return settings


def namespace_argument(given: Mapping[str, str], name: str, default: str) -> str:
    """A namespace argument's value ('' : ``default``), absolute; ValueError
    naming the argument if it is not a ROS namespace."""
    text = given.get(name, '').strip()
    if not text:
        return default
    text = '/' + text.strip('/')
    parts = text[1:].split('/')
    if not all(p and (p[0].isalpha() or p[0] == '_') and
               all(c.isalnum() or c == '_' for c in p) for p in parts):
        raise ValueError(f'{name} must be a ROS namespace (letters, digits and _, parts '
                         f'not starting with a digit, e.g. /robot1), got {text!r}')
    return text


def moved(target: str, spaces: Mapping[str, str]) -> str:
    """A fixed remapping's target in the namespaces given (/edge/tensor ->
    /edge2/tensor when the edge's namespace is /edge2)."""
    for default, namespace in spaces.items():
        if target.startswith(default + '/'):
            return namespace + target[len(default):]
    return target


def camera_size(text: str, model: str) -> tuple[int, int] | None:
    """The camera_size argument as (width, height), or None to leave the
    parameter file's. 'auto': AUTO_CAMERA_SIZE when ``model`` (the model
    argument) is given and its card takes more than 32x32 pixels."""
    if text in ('', 'auto'):
        if text == '' or not model:
            return None
        from edgent_ros.card import ModelError, load_card, resolve_model_path
        try:
            shape = load_card(resolve_model_path(model)).input_shape
        except ModelError:
            return None  # the nodes refuse the model themselves, saying why
        return AUTO_CAMERA_SIZE if max(shape[1:]) > 32 else None
    width, sep, height = text.lower().partition('x')
    if not (sep and width.isdigit() and height.isdigit()):
        raise ValueError(f'camera_size must be WIDTHxHEIGHT (e.g. 640x480), auto or 0x0, '
                         f'got {text!r}')
    return int(width), int(height)


# A node that dies is started again after RESPAWN_DELAY_S, at most
# RESPAWN_MAX_RETRIES times (launch_ros's respawn, respawn_delay and
# respawn_max_retries in the launch files; edgent-bringup's Respawner).
RESPAWN_DELAY_S = 2.0
RESPAWN_MAX_RETRIES = 5
REFUSED = 2  # a node's exit status when it refused its configuration at start


class Respawner:
    """edgent-bringup's supervision, decided here (pure, times passed in): a
    node that dies is started again after ``delay_s``, at most
    ``max_retries`` times; the other nodes keep running meanwhile. A node that
    may finish and exits cleanly (a camera that replayed its frames) is done;
    a node that refused its configuration (status 2) would only refuse it
    again, so it is not restarted."""

    def __init__(self, delay_s: float = RESPAWN_DELAY_S,
                 max_retries: int = RESPAWN_MAX_RETRIES) -> None:
        self.delay_s = delay_s
        self.max_retries = max_retries
        self.retries: dict[str, int] = {}

    def on_exit(self, spec: NodeSpec, returncode: int, now_s: float) -> float | None:
        """When to start the node again, or None: it finished, was refused,
        or has been restarted ``max_retries`` times already."""
        if returncode == REFUSED or (spec.may_finish and returncode == 0):
            return None
        done = self.retries.get(spec.name, 0)
        if done >= self.max_retries:
            return None
        self.retries[spec.name] = done + 1
        return now_s + self.delay_s
