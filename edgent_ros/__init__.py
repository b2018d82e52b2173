"""edgent_ros: Edgent on-demand device-edge DNN co-inference for ROS 2.

The generated messages live in ``edgent_ros.msg``; the pure logic (tensor
packing, model, profiler, planner, bandwidth estimation) lives in plain
modules that never import rclpy; ``edgent_ros.nodes`` holds the ROS 2 nodes.
"""

__version__ = '0.1.0'
