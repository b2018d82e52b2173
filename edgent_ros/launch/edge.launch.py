"""The edge side (the PC): the edge node and the probe echo.

    ros2 launch edgent_ros edge.launch.py
"""

from launch import LaunchDescription

from edgent_ros.launch_description import role_nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(role_nodes('edge'))
