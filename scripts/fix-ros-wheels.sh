#!/usr/bin/env bash
# Makes the CMake files of ROS 2 wheels installed under PREFIX (a venv, or a
# `pip install --prefix` tree) usable by `colcon build` with PYTHON:
#   scripts/fix-ros-wheels.sh PREFIX PYTHON
# The wheels' exported CMake targets (share/*/cmake/*rosidl_generator_pyExport.cmake)
# name include directories of the machine that built them (a manylinux Python
# prefix, /opt/python/cp3XX-cp3XX). Point the Python one at PYTHON's, and drop
# the numpy one: rosidl_generator_py finds numpy's headers itself, and a numpy
# path inside .venv (inside the source tree) would make CMake refuse to export
# our own targets. Idempotent. (setup.sh runs it on the wheels' venv.)
set -euo pipefail
prefix=${1:?usage: scripts/fix-ros-wheels.sh PREFIX PYTHON}
python=${2:?usage: scripts/fix-ros-wheels.sh PREFIX PYTHON}
py_inc=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
{ grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+/(include|lib/python)' "$prefix/share" || true; } |
  while read -r f; do
    sed -i -E \
      -e 's#;/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include##g' \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$py_inc#g" "$f"
  done
