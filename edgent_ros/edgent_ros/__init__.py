"""edgent_ros: Edgent on-demand device-edge DNN co-inference for ROS 2.

The messages live in the package ``edgent_ros_interfaces``; the pure logic
(tensor packing, model, profiler, planner, bandwidth estimation) lives in
plain modules that never import rclpy; ``edgent_ros.nodes`` holds the ROS 2
nodes.
"""

__version__ = '0.2.0'
