"""The device side (the robot): camera, device node, planner, bandwidth monitor.

    ros2 launch edgent_ros device.launch.py image:=/camera/image_raw use_camera:=false

Run edge.launch.py on the edge PC, on the same ROS_DOMAIN_ID.
"""

from launch import LaunchDescription

from edgent_ros.launch_description import role_nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(role_nodes('device'))
