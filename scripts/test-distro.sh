#!/usr/bin/env bash
# Sets up edgent_ros for another ROS 2 distribution from PyPI wheels, in
# .distros/<distro>/ (a copy of this working tree, uncommitted edits
# included, with its own .venv, build/ and install/: the main ones are not
# touched), and runs the message, node and pipeline tests there:
#   scripts/test-distro.sh kilted [pytest args, instead of those tests]
set -euo pipefail
cd "$(dirname "$0")/.."
distro=${1:?usage: scripts/test-distro.sh DISTRO [pytest args]}
shift
if [ ! -f "requirements/$distro.lock" ]; then
  echo "[test-distro] error: no requirements/$distro.lock" >&2
  exit 1
fi
dest=.distros/$distro
mkdir -p "$dest"
# The working tree's files (tracked, and untracked but not ignored).
git ls-files -co --exclude-standard -z | \
  tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$dest"
echo "[test-distro] ROS 2 $distro (PyPI wheels) in $dest"
# A sourced distribution would be used instead of the wheels: not here.
unset AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH VIRTUAL_ENV
(cd "$dest" && env ROS_DISTRO="$distro" scripts/setup.sh)
# Messages (every field at its extremes, malformed ones), every node over
# real DDS, the end-to-end pipeline.
tests=(test/test_tensor_codec.py test/test_hostile_messages.py test/test_planner_node.py
       test/test_codec_nodes.py test/test_pipeline.py test/test_bringup.py)
if [ $# -gt 0 ]; then tests=("$@"); fi
cd "$dest"
echo "[test] ${tests[*]} on ROS 2 $(cat .venv/.edgent-mode)"
exec scripts/test.sh "${tests[@]}"
