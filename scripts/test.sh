#!/usr/bin/env bash
# Runs the test suite (pytest) inside the edgent_ros environment, from the
# package directory edgent_ros/ (where its pytest.ini is, as `colcon test`
# runs it): `scripts/test.sh test/test_planner.py -k hysteresis`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh
export PYTHONSAFEPATH=1
cd edgent_ros
# The venv's pytest: a `pytest` on PATH may be the system's (a venv that sees
# the system's packages does not get its own), which runs without torch.
exec python -m pytest "$@"
