#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ (clang, ASan + UBSan, leak
# checking on) in their own build directory and fuzzes each for a while,
# starting from its corpus in tests/fuzz/corpus/<target>/.
#
#   deploy/fuzz.sh [--time S | --runs N] [--timeout S] [TARGET...]
#       fuzzes each TARGET (wire recordio binset decode checkpoint config;
#       default all) for S seconds (default 30) or N inputs, one process each,
#       and prints per target: inputs run, inputs/s, coverage (cov = edges,
#       ft = features) and corpus growth. Exits 1 when any target has a
#       finding (crash, sanitizer report, leak, input slower than --timeout,
#       default 10 s, or over 2 GB), whose input is saved under
#       $FUZZ_BUILD_DIR/findings/<target>/.
#   deploy/fuzz.sh --repro TARGET FILE...
#       runs the target once on each FILE (a saved finding) with its verdict
#       and the code's messages (FUZZ_VERBOSE=1), doing every check on it,
#       also those fuzzing does on a fraction of the inputs (FUZZ_THOROUGH=1,
#       see tests/fuzz/fuzz_util.h). Without clang, a normal build's
#       build/tests/fuzz/fuzz_<target> FILE replays a file the same way.
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz), CC (default clang).
# New inputs found go to $FUZZ_BUILD_DIR/corpus/<target>/, not into the
# source tree; copy a regression input into tests/fuzz/corpus/<target>/
# (as regress-<what>) when fixing what it found.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
all_targets=(wire recordio binset decode checkpoint config)

time_s=30 runs="" per_input=10 repro=0 targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --time) time_s=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --timeout) per_input=$2; shift 2 ;;
    --repro) repro=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

cc=${CC:-clang}
command -v "$cc" >/dev/null || { echo "fuzz.sh: $cc not found (deploy/install-deps.sh installs clang)" >&2; exit 2; }
names=()
for t in "${all_targets[@]}"; do names+=("fuzz_$t"); done
mkdir -p "$build"
{ cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DARCFACE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
  cmake --build "$build" -j "$(nproc)" --target "${names[@]}"; } >"$build/build.log" 2>&1 ||
  { tail -20 "$build/build.log" >&2; echo "fuzz.sh: build failed (log: $build/build.log)" >&2; exit 2; }

# Leak checking (on by default in libFuzzer), every UBSan report fatal.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The targets' scratch files (fuzz_util.c) live here; removed at the end.
export TMPDIR=$(mktemp -d "${FUZZ_SCRATCH:-/dev/shm}/arcface-fuzz.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$TMPDIR"' EXIT

if [ $repro = 1 ]; then
  [ ${#targets[@]} -ge 2 ] || { echo "usage: fuzz.sh --repro TARGET FILE..." >&2; exit 2; }
  t=${targets[0]}
  FUZZ_VERBOSE=1 FUZZ_THOROUGH=1 "$build/tests/fuzz/fuzz_$t" -timeout="$per_input" "${targets[@]:1}"
  exit $?
fi

[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
limit=(-max_total_time="$time_s")
[ -n "$runs" ] && limit=(-runs="$runs")
failed=()
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz.sh: no target '$t' (have: ${all_targets[*]})" >&2; exit 2; }
  seeds=$root/tests/fuzz/corpus/$t
  work=$build/corpus/$t findings=$build/findings/$t log=$build/logs/$t.log
  mkdir -p "$work" "$findings" "$build/logs"
  dict=()
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  start=$(date +%s)
  set +e
  "$bin" "${limit[@]}" -timeout="$per_input" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/" "${dict[@]}" "$work" "$seeds" >"$log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1)
  printf '%-10s %10s inputs in %4d s, %6s/s, %s, %s, %s new' "$t" "$(stat number_of_executed_units)" \
    "$secs" "$(stat average_exec_per_sec)" "${cov:-cov: ?}" "${corp:-corp: ?}" "$(stat new_units_added)"
  if [ $rc -eq 0 ]; then
    echo ": no finding"
  else
    failed+=("$t")
    saved=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    kind=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-zA-Z-]+|runtime error: .*|FUZZ_ASSERT .*' "$log" || true)
    echo ": FINDING (exit $rc) ${kind:-see the log}"
    echo "    input: ${saved:-none saved}; log: $log"
    [ -n "$saved" ] && echo "    reproduce: deploy/fuzz.sh --repro $t $saved"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, no finding"
