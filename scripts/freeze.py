"""Print `name==version` for each distribution pip installed in this environment.

`pip freeze` also lists the egg-info folders that ROS 2 wheels carry inside
them (action_msgs, rclpy, ...), which are not installable on their own; this
keeps only what pip itself installed (those with an INSTALLER file).
"""

from importlib import metadata

lines = set()
for dist in metadata.distributions():
    if (dist.read_text('INSTALLER') or '').strip() != 'pip':
        continue
    name = dist.metadata['Name']
    if name in ('pip', 'setuptools', 'wheel'):
        continue
    lines.add(f'{name}=={dist.version.split("+")[0]}')
print('\n'.join(sorted(lines, key=str.lower)))
