#!/usr/bin/env bash
# Sets up edgent_ros on this machine; idempotent, and quick when nothing changed.
#
# 1. Python environment (.venv):
#    - a ROS 2 distribution is sourced and rclpy imports: a venv that sees the
#      system's packages (--system-site-packages), plus requirements/common.in;
#    - otherwise: a plain venv with ROS 2 core from PyPI wheels and the rest,
#      pinned by requirements/$ROS_DISTRO.lock (Jazzy by default; `ROS_DISTRO=kilted
#      make setup` for Kilted), and the fixes those wheels need to build messages.
# 2. colcon build of both packages into build/ and install/.
# Each step is skipped when a hash of its inputs matches the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
say() { printf '[setup] %s\n' "$*"; }

if [ -n "${ROS_DISTRO:-}" ] && python3 -c 'import rclpy' >/dev/null 2>&1; then
  MODE=ros-$ROS_DISTRO
  BASE_PYTHON=$(command -v python3)
  REQS=(requirements/common.in)
else
  DISTRO=${ROS_DISTRO:-jazzy}
  if [ ! -f "requirements/$DISTRO.lock" ]; then
    have=$(cd requirements && ls ./*.lock | sed 's#^\./##; s#\.lock$##' | tr '\n' ' ')
    echo "[setup] error: ROS_DISTRO=$DISTRO: no requirements/$DISTRO.lock; from PyPI wheels" \
      "this repository sets up: ${have% }" >&2
    exit 1
  fi
  MODE=wheels-$DISTRO
  BASE_PYTHON=${PYTHON:-python3}
  REQS=("requirements/$DISTRO.lock")
fi

# --- 1. Python environment --------------------------------------------------
# Bump RECIPE when the steps below change in a way that needs a new venv.
RECIPE=1
deps_hash=$( { echo "$MODE $RECIPE"; "$BASE_PYTHON" -c 'import sys; print(sys.version)'; cat "${REQS[@]}"; } | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.edgent-deps" ] && [ "$(cat "$VENV/.edgent-deps")" = "$deps_hash" ]; then
  say "python environment up to date ($MODE)"
else
  say "creating $VENV ($MODE)"
  # Another environment's build (another distribution) is not reused.
  rm -rf "$VENV" build install
  if [ "${MODE#wheels}" != "$MODE" ]; then
    "$BASE_PYTHON" -m venv "$VENV"
  else
    "$BASE_PYTHON" -m venv --system-site-packages "$VENV"
  fi
  touch "$VENV/COLCON_IGNORE"  # the wheels ship package.xml files colcon must not crawl
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "${REQS[@]}" 2>&1 \
    | grep -v 'is ignored: it is neither a file nor a directory' || true
  "$VENV/bin/python" -c 'import torch, numpy, sklearn, cv2, yaml, tqdm, rclpy' \
    || { echo "[setup] error: the Python environment is incomplete" >&2; exit 1; }
  if [ "${MODE#wheels}" != "$MODE" ]; then
    # The wheels' CMake files name paths of the machine that built them.
    scripts/fix-ros-wheels.sh "$VENV" "$VENV/bin/python"
  fi
  echo "$deps_hash" > "$VENV/.edgent-deps"
  echo "$MODE" > "$VENV/.edgent-mode"
fi

# --- 2. colcon build -----------------------------------------------------------
# Two packages: edgent_ros_interfaces (ament_cmake, the messages) and
# edgent_ros (ament_python). --symlink-install makes edgent_ros a develop
# install: Python sources are used in place, so only the interfaces, the
# package manifests, setup.py and the installed data trigger a rebuild.
# colcon runs on the venv's Python (`python -m colcon`): it writes its own
# interpreter into the installed executables, and a robot's colcon (apt) runs
# on the system Python, which does not see the venv's torch.
# Bump BUILD_RECIPE when the build itself changes (it rebuilds).
BUILD_RECIPE=2
# shellcheck source=scripts/env.sh
. scripts/env.sh
src_hash=$( { echo "$deps_hash $BUILD_RECIPE"; find edgent_ros_interfaces edgent_ros/package.xml edgent_ros/setup.py \
  edgent_ros/setup.cfg edgent_ros/resource edgent_ros/launch edgent_ros/config edgent_ros/models \
  -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
if [ -f install/.edgent-build ] && [ "$(cat install/.edgent-build)" = "$src_hash" ]; then
  say "build up to date"
else
  say "colcon build"
  python -m colcon --log-base build/log build --base-paths edgent_ros_interfaces edgent_ros \
    --build-base build --install-base install --symlink-install \
    --event-handlers console_cohesion- summary+ \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >build.log 2>&1 \
    || { tail -n 60 build.log >&2; echo "[setup] error: colcon build failed (build.log)" >&2; exit 1; }
  . scripts/env.sh
  PYTHONSAFEPATH=1 python -c 'import edgent_ros_interfaces.msg, edgent_ros.tensor_codec' \
    || { echo "[setup] error: the built packages do not import" >&2; exit 1; }
  echo "$src_hash" > install/.edgent-build
fi
say "ready"
