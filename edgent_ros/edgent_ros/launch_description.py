"""Launch actions for launch/*.launch.py: the nodes of a role, from bringup.NODES.

Imports ``launch`` and ``launch_ros``, so only launch files import it (they
are not installable from PyPI; on a robot they come with ROS 2).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from edgent_ros.bringup import NODES

SHARE = get_package_share_directory('edgent_ros')


def role_nodes(role: str) -> list:
    """Launch arguments and Node actions of one role ('device' or 'edge')."""
    actions = []
    params = LaunchConfiguration(f'{role}_params')
    actions.append(DeclareLaunchArgument(
        f'{role}_params', default_value=os.path.join(SHARE, 'config', f'{role}.yaml'),
        description=f'parameter file of the {role} side'))
    if role == 'device':
        actions += [
            DeclareLaunchArgument('image', default_value='/device/image',
                                  description='image topic the device node reads'),
            DeclareLaunchArgument('use_camera', default_value='true',
                                  description='start the data-set camera node'),
            DeclareLaunchArgument('latency_requirement_ms', default_value='1000.0',
                                  description='the planner\'s deadline, ms'),
        ]
    for spec in NODES[role]:
        remaps = list(spec.remappings)
        overrides = []
        condition = None
        if spec.name == 'device':
            remaps.append(('image', LaunchConfiguration('image')))
        if spec.name == 'camera':
            condition = IfCondition(LaunchConfiguration('use_camera'))
        if spec.name == 'planner':
            # value_type=float: 'latency_requirement_ms:=300' would otherwise reach
            # the node as an INTEGER and fail its DOUBLE declaration.
            overrides.append({'latency_requirement_ms': ParameterValue(
                LaunchConfiguration('latency_requirement_ms'), value_type=float)})
        actions.append(Node(
            package='edgent_ros', executable=spec.executable, name=spec.name,
            namespace=spec.namespace, remappings=remaps, parameters=[params, *overrides],
            condition=condition, output='screen'))
    return actions
