#!/usr/bin/env bash
# Builds everything with AddressSanitizer and UBSan (gcc by default; any UB
# report aborts: -fno-sanitize-recover=undefined) in its own build directory
# and runs the test suite there: the unit tests (and the fuzz corpora, which
# are unit tests) with leak checking, then the MPI integration tests without
# it (Open MPI's own allocations are never freed). A sanitizer report makes
# the test that hit it fail; its output says where.
#
#   deploy/sanitize.sh                  unit, then integration tests
#   deploy/sanitize.sh -L unit          only the unit tests (ctest arguments are
#   deploy/sanitize.sh -R test_wire     passed on; with -L the leak setting
#                                       follows the label)
#   deploy/sanitize.sh --mpi-leaks ...  leak checking in the integration tests
#                                       too, Open MPI's leaks suppressed
#
# Environment: SANITIZE_BUILD_DIR (default build-sanitize), CC.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SANITIZE_BUILD_DIR:-$root/build-sanitize}

mkdir -p "$build"
start=$(date +%s)
{ cmake -S "$root" -B "$build" -DARCFACE_SANITIZE=ON -DARCFACE_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
  cmake --build "$build" -j "$(nproc)"; } >"$build/build.log" 2>&1 ||
  { tail -30 "$build/build.log" >&2; echo "sanitize.sh: build failed (log: $build/build.log)" >&2; exit 2; }
echo "sanitize.sh: built in $(( $(date +%s) - start )) s ($build)"

# Both passes: the first report ends the process with its stack (so the test
# fails and ctest shows where), plus the checks ASan leaves off by default.
common=halt_on_error=1:print_stacktrace=1:detect_stack_use_after_return=1
common=$common:check_initialization_order=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Integration tests: Open MPI allocates per process and never frees (its MCA
# plugins are unloaded before LeakSanitizer runs, so those leaks cannot even be
# attributed), hence no leak checking -- unless --mpi-leaks, which checks with
# deploy/lsan-openmpi.supp and full stack unwinding (about 3x slower).
mpi_leaks=detect_leaks=0
if [ "${1:-}" = --mpi-leaks ]; then
  mpi_leaks=detect_leaks=1:fast_unwind_on_malloc=0
  export LSAN_OPTIONS=suppressions=$root/deploy/lsan-openmpi.supp:print_suppressions=0
  shift
fi

args=("$@")
has_label=0
for a in "${args[@]}"; do [ "$a" = -L ] && has_label=1; done
status=0
run() { # label, ASAN_OPTIONS leak setting, extra ctest args
  local label=$1 leaks=$2
  shift 2
  local t0
  t0=$(date +%s)
  echo "sanitize.sh: ctest -L $label ($leaks)"
  ( cd "$build" && ASAN_OPTIONS=$common:$leaks ctest --output-on-failure -L "$label" "$@" ) ||
    status=1
  echo "sanitize.sh: $label tests took $(( $(date +%s) - t0 )) s"
}
if [ $has_label = 1 ]; then
  # A label given: leak checking for unit tests only.
  leaks=detect_leaks=1
  for a in "${args[@]}"; do [ "$a" = integration ] && leaks=$mpi_leaks; done
  t0=$(date +%s)
  ( cd "$build" && ASAN_OPTIONS=$common:$leaks ctest --output-on-failure "${args[@]}" ) || status=1
  echo "sanitize.sh: tests took $(( $(date +%s) - t0 )) s"
else
  run unit detect_leaks=1 "${args[@]}"
  run integration "$mpi_leaks" "${args[@]}"
fi
echo "sanitize.sh: total $(( $(date +%s) - start )) s, $([ $status = 0 ] && echo "all passed" || echo "FAILURES above")"
exit $status
