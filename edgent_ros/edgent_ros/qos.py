"""The QoS profiles edgent_ros uses, in one place (no rclpy node logic here).

- Images: sensor data (best effort, shallow), as camera drivers publish.
- Tensors and edge replies: reliable and shallow: a frame either arrives
  whole or is superseded by the next, never queued for long.
- Plans and bandwidth estimates: reliable, transient local, depth 1, so a
  node that starts late still gets the current decision.
"""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

IMAGE_QOS = qos_profile_sensor_data

TENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=4,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
