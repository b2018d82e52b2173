"""The ROS 2 nodes: thin shells around the pure modules of edgent_ros."""
