#!/usr/bin/env bash
# Builds with warnings as errors and runs the whole test suite (ctest).
# Extra arguments go to ctest, e.g. -L unit or -R equivalence.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$root/build}
"$root/deploy/build.sh" -DARCFACE_WERROR=ON
cd "$BUILD_DIR"
ctest --output-on-failure "$@"
