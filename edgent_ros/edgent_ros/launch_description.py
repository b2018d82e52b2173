"""Launch actions for launch/*.launch.py: the nodes of a role, from node_table.

Imports ``launch`` and ``launch_ros``, so only launch files import it (they
are not installable from PyPI; on a robot they come with ROS 2). The nodes
are made when the launch runs (an OpaqueFunction), from the values the
launch arguments have then: an argument not given changes nothing, so the
parameter file's values stand (node_table.node_settings, shared with
edgent-bringup). Each role also points Fast DDS at edgent_ros's DDS profile
for the processes the launch starts, unless the user has set one
(dds_profile).
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.launch_context import LaunchContext
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from edgent_ros import dds_profile
from edgent_ros.node_table import (
    ARGUMENTS,
    NODES,
    RESPAWN_DELAY_S,
    RESPAWN_MAX_RETRIES,
    node_settings,
)

SHARE = get_package_share_directory('edgent_ros')


def role_nodes(role: str) -> list:
    """Launch arguments and the nodes of one role ('device' or 'edge')."""
    actions: list = dds_profile_actions()
    actions += [DeclareLaunchArgument(
        f'{role}_params', default_value=os.path.join(SHARE, 'config', f'{role}.yaml'),
        description=f'parameter file of the {role} side')]
    actions += [DeclareLaunchArgument(a.name, default_value=a.default,
                                      description=a.description) for a in ARGUMENTS[role]]
    actions.append(OpaqueFunction(function=_nodes, args=[role]))
    return actions


def dds_profile_actions() -> list:
    """SetEnvironmentVariable for the DDS profile, only for variables the user
    has not set (none at all when FASTDDS_DEFAULT_PROFILES_FILE or
    FASTRTPS_DEFAULT_PROFILES_FILE is set, or EDGENT_DDS_PROFILE=none).
    edgent_ros's nodes apply it themselves too; these reach any process the
    launch starts after them, a camera driver's included."""
    return [SetEnvironmentVariable(name, value)
            for name, value in dds_profile.settings(os.environ).items()]


def _nodes(context: LaunchContext, role: str) -> list:
    given = {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS[role]}
    params = LaunchConfiguration(f'{role}_params').perform(context)
    nodes = []
    for spec in NODES[role]:
        settings = node_settings(spec, given)
        if not settings.enabled:
            continue
        overrides = [settings.parameters] if settings.parameters else []
        nodes.append(Node(
            package='edgent_ros', executable=spec.executable, name=spec.name,
            namespace=settings.namespace, remappings=settings.remappings,
            parameters=[params, *overrides], output='screen',
            # A node that dies is started again (not one that may finish: a camera
            # replaying a fixed count of frames would replay them again).
            respawn=not spec.may_finish, respawn_delay=RESPAWN_DELAY_S,
            respawn_max_retries=RESPAWN_MAX_RETRIES))
    return nodes
