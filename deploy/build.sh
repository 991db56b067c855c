#!/usr/bin/env bash
# Configures and builds into $BUILD_DIR (default: build/ at the project root).
# Extra arguments go to cmake's configure step, e.g. -DARCFACE_WERROR=ON.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
