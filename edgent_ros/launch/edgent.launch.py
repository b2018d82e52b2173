"""Everything on one host: the device side in /device, the edge side in /edge.

    ros2 launch edgent_ros edgent.launch.py
    ros2 launch edgent_ros edgent.launch.py image:=/camera/image_raw use_camera:=false \\
        latency_requirement_ms:=300

The nodes, names, namespaces and remappings come from edgent_ros.node_table.NODES,
the parameters from config/device.yaml and config/edge.yaml (the same files
edgent-bringup reads where ros2 launch is not installed).
"""

from launch import LaunchDescription

from edgent_ros.launch_description import role_nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(role_nodes('device') + role_nodes('edge'))
