#!/usr/bin/env bash
# Runs a command inside the edgent_ros environment (.venv + install/).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
. scripts/env.sh
# The source tree's edgent_ros lacks the generated messages: never let the
# current directory shadow the installed package (python -m, python -c).
export PYTHONSAFEPATH=1
exec "$@"
