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

# What the device node subscribes to images with: the sensor-data profile kept
# one deep (best effort matches any camera's publisher). Its DDS reader holds
# one frame (a copy of each sample it keeps: five 12-megapixel frames at the
# default depth of 5 are 180 MB) and a newer frame replaces one the node has not
# taken yet: the newest frame only, as the device's own queue does.
NEWEST_IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=qos_profile_sensor_data.reliability,
    durability=qos_profile_sensor_data.durability,
)

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

# Bandwidth estimates of several links on one topic (a monitor per edge): the
# newest of each writer reaches a late reader; a burst from several is kept.
ESTIMATES_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=16,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
