"""Python distribution metadata of edgent_ros.

colcon builds edgent_ros as an ament_cmake package (see CMakeLists.txt),
because the same package generates its messages (msg/) with rosidl. That
build installs the modules under edgent_ros/ next to the generated
edgent_ros.msg, and turns each line of CONSOLE_SCRIPTS below into an
executable in lib/edgent_ros (for `ros2 run` and launch files) and in bin.
Keep one entry per line, in the form 'name = module:function', so that
CMakeLists.txt can read them.

`pip install .` on its own gives the pure-Python modules without the
messages; it is not the supported way to install edgent_ros.
"""

from setuptools import find_packages, setup

PACKAGE_NAME = 'edgent_ros'

CONSOLE_SCRIPTS = [
    'tensor_talker = edgent_ros.demo.tensor_talker:main',
    'tensor_listener = edgent_ros.demo.tensor_listener:main',
    'edgent-exchange-demo = edgent_ros.demo.exchange:main',
    'edgent-demo = edgent_ros.demo.pipeline:main',
    'edgent-train = edgent_ros.training:main',
    'edgent-profile = edgent_ros.profiler:main',
    'planner_node = edgent_ros.nodes.planner_node:main',
    'bandwidth_monitor = edgent_ros.nodes.bandwidth_monitor:main',
    'probe_echo = edgent_ros.nodes.probe_echo:main',
    'camera_node = edgent_ros.nodes.camera_node:main',
    'device_node = edgent_ros.nodes.device_node:main',
    'edge_node = edgent_ros.nodes.edge_node:main',
    'edgent-bringup = edgent_ros.bringup:main',
    'edgent-monitor = edgent_ros.nodes.monitor:main',
]

setup(
    name=PACKAGE_NAME,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE_NAME, f'{PACKAGE_NAME}.*']),
    python_requires='>=3.10',
    install_requires=['numpy', 'pyyaml'],
    zip_safe=False,
    maintainer='edgent_ros developers',
    description='Edgent on-demand device-edge DNN co-inference for ROS 2',
    license='Apache-2.0',
    entry_points={'console_scripts': CONSOLE_SCRIPTS},
)
