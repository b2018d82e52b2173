# Source this file (bash) to use the built edgent_ros: `. scripts/env.sh`.
# It activates .venv and sources install/setup.bash when they exist.
_edgent_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -f "$_edgent_root/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  VIRTUAL_ENV_DISABLE_PROMPT=1 . "$_edgent_root/.venv/bin/activate"
  case "$(cat "$_edgent_root/.venv/.edgent-mode" 2>/dev/null)" in wheels*)
    # The ament index of the ROS 2 wheels lives in the venv's share/.
    case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
      export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
    case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
      export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
    ;;
  esac
fi
if [ -f "$_edgent_root/install/setup.bash" ]; then
  # colcon's scripts read unset variables: relax `set -u` while sourcing.
  case $- in *u*) set +u; _edgent_nounset=1 ;; esac
  # shellcheck disable=SC1091
  . "$_edgent_root/install/setup.bash"
  if [ -n "${_edgent_nounset:-}" ]; then set -u; unset _edgent_nounset; fi
fi
unset _edgent_root
# Where `ros2 run` is not installed, the package's executables are run by
# name: put them on PATH.
if [ -d "$(dirname "${BASH_SOURCE[0]}")/../install/edgent_ros/lib/edgent_ros" ]; then
  _edgent_bin=$(cd "$(dirname "${BASH_SOURCE[0]}")/../install/edgent_ros/lib/edgent_ros" && pwd)
  case ":$PATH:" in *":$_edgent_bin:"*) ;; *) export PATH="$_edgent_bin:$PATH" ;; esac
  unset _edgent_bin
fi
