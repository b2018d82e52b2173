"""edgent_ros: an ament_python package (its messages are edgent_ros_interfaces).

colcon builds it with setuptools: the modules under edgent_ros/, one
executable per console script in lib/edgent_ros (where ``ros2 run`` and
launch files look), and launch/, config/ and models/ in share/edgent_ros.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = 'edgent_ros'

setup(
    name=PACKAGE_NAME,
    version='0.2.0',
    packages=find_packages(include=[PACKAGE_NAME, f'{PACKAGE_NAME}.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE_NAME}']),
        (f'share/{PACKAGE_NAME}', ['package.xml']),
        (f'share/{PACKAGE_NAME}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE_NAME}/config', glob('config/*.yaml') + glob('config/*.xml') +
         glob('config/*.perspective')),
        (f'share/{PACKAGE_NAME}/config/profiles', glob('config/profiles/*.yaml')),
        (f'share/{PACKAGE_NAME}/models', glob('models/*.yaml') + glob('models/*.pt') +
         glob('models/*.md')),
    ],
    python_requires='>=3.10',
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='edgent_ros developers',
    maintainer_email='edgent-ros@example.org',
    description='Edgent on-demand device-edge DNN co-inference for ROS 2',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={'console_scripts': [
        'camera_node = edgent_ros.nodes.camera_node:main',
        'device_node = edgent_ros.nodes.device_node:main',
        'edge_node = edgent_ros.nodes.edge_node:main',
        'planner_node = edgent_ros.nodes.planner_node:main',
        'bandwidth_monitor = edgent_ros.nodes.bandwidth_monitor:main',
        'probe_echo = edgent_ros.nodes.probe_echo:main',
        'edgent-bringup = edgent_ros.bringup:main',
        'edgent-monitor = edgent_ros.nodes.monitor:main',
        'edgent-demo = edgent_ros.demo.pipeline:main',
        'edgent-exchange-demo = edgent_ros.demo.exchange:main',
        'tensor_talker = edgent_ros.demo.tensor_talker:main',
        'tensor_listener = edgent_ros.demo.tensor_listener:main',
        'edgent-train = edgent_ros.training:main',
        'edgent-profile = edgent_ros.profiler:main',
        'edgent-codec-card = edgent_ros.codec_card:main',
    ]},
)
