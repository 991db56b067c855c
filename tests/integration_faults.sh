#!/usr/bin/env bash
# Failures end the whole job with a message, never a hang:
#  1. a wrong configuration value stops every rank and names the key;
#  2. a worker that goes silent (SIGSTOP) makes the servers end the job within
#     step_timeout, naming the worker's rank and host.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-faults.XXXXXX)
trap 'rm -rf "$out"' EXIT
base=(network=r18 width=8 embedding_size=32 synthetic_ids=50 synthetic_images=4 synthetic_holdout_ids=10
      verify_pairs=40 batch_size=4 threads=1)

echo "== a bad configuration value"
if timeout 60 mpirun --bind-to none -np 1 "$BUILD_DIR/arcface-ps" "${base[@]}" batch_size=12x \
     : -np 1 "$BUILD_DIR/arcface-worker" "${base[@]}" batch_size=12x > "$out/config.log" 2>&1; then
  cat "$out/config.log"; echo "a bad value did not fail the job"; exit 1
fi
grep -q "batch_size" "$out/config.log" || { cat "$out/config.log"; echo "the error does not name the key"; exit 1; }
grep -m1 "batch_size" "$out/config.log"

echo "== a silent worker"
start=$(date +%s)
timeout 120 mpirun --bind-to none -np 1 "$BUILD_DIR/arcface-ps" "${base[@]}" steps=100000 step_timeout=5 \
  : -np 2 "$BUILD_DIR/arcface-worker" "${base[@]}" steps=100000 step_timeout=5 > "$out/silent.log" 2>&1 &
job=$!
# Let training start, then freeze the last worker process of this job.
sleep 3
victim=""
for pid in $(pgrep -x arcface-worker); do
  grep -q "step_timeout=5" "/proc/$pid/cmdline" 2>/dev/null && victim=$pid
done
[ -n "$victim" ] || { cat "$out/silent.log"; echo "no worker process found"; exit 1; }
rank=$(tr '\0' '\n' < "/proc/$victim/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
kill -STOP "$victim"
rc=0
wait "$job" || rc=$?
elapsed=$(( $(date +%s) - start ))
kill -KILL "$victim" 2>/dev/null || true
[ "$rc" -ne 0 ] || { cat "$out/silent.log"; echo "the job exited 0 with a frozen worker"; exit 1; }
[ "$rc" -ne 124 ] || { cat "$out/silent.log"; echo "the job hung until the test's timeout"; exit 1; }
grep -E "no embeddings for step [0-9]+ within 5 s .*worker [0-9]+ \(world rank $rank on host [^)]+\)" "$out/silent.log" \
  || { cat "$out/silent.log"; echo "the message does not name the silent worker (world rank $rank)"; exit 1; }
sleep 1
if pgrep -x arcface-worker > /dev/null && pgrep -af arcface-worker | grep -q "step_timeout=5"; then
  echo "processes of the failed job are left behind"; exit 1
fi
echo "job ended with status $rc after ${elapsed}s (step_timeout 5 s)"
