#!/usr/bin/env bash
# Peers that die or lag:
# A rank killed with SIGKILL in the middle of a step (a crashed node, the OOM
# killer) ends the whole job with a non-zero status well within 30 s, with a
# message naming the dead rank and its host, and leaves no process behind;
# running the same command again resumes from the newest complete checkpoint
# and ends with the same weights as a run that was never killed. Once for a
# server, once for a worker. And a worker much slower than the others
# makes every step slower but changes no number of the run. The workers sleep
# in every step (ARCFACE_TEST_STEP_DELAY_MS) so the kill lands mid-run.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-peers.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
steps=32
common=(network=r18 width=8 embedding_size=64 synthetic_ids=37 synthetic_images=6 synthetic_holdout_ids=10
        verify_pairs=40 steps=$steps warmup_steps=3 threads=1 batch_size=8 log_every=8 step_timeout=60 seed=5
        lr=0.0003 checkpoint_every=4 keep_checkpoints=2)
export ARCFACE_TEST_STEP_DELAY_MS=100

start() { # name [slow_ms] -> runs the job in the background, its pid in $job; worker 1 sleeps slow_ms more
  mpirun --bind-to none -np 2 "$BUILD_DIR/arcface-ps" "${common[@]}" output_dir="$out/$1" \
    : -np 1 "$BUILD_DIR/arcface-worker" "${common[@]}" output_dir="$out/$1" \
    : -np 1 env ARCFACE_TEST_STEP_DELAY_MS=$((ARCFACE_TEST_STEP_DELAY_MS + ${2:-0})) \
      "$BUILD_DIR/arcface-worker" "${common[@]}" output_dir="$out/$1" >> "$out/$1.log" 2>&1 &
  job=$!
}

steps_done() { cat "$out/$1/metrics.jsonl" 2>/dev/null | grep -c '"loss"' || true; }

# pid of the given rank program (not mpirun's, whose command line names both)
rank_pid() { # program name index
  local pids
  for _ in $(seq 100); do
    pids=($(pgrep -f "^$BUILD_DIR/$1 .*output_dir=$out/$2( |\$)" || true))
    [ ${#pids[@]} -gt "$3" ] && { echo "${pids[$3]}"; return; }
    sleep 0.1
  done
  echo "no $1 process $3 for $2" >&2
  exit 1
}

echo "== whole: $steps steps, never killed"
t0=$(date +%s%N)
start whole
wait "$job" || { cat "$out/whole.log"; echo "run whole failed"; exit 1; }
whole_ms=$(( ($(date +%s%N) - t0) / 1000000 ))

kill_and_resume() { # name program index
  local name=$1 victim rank rc=0 t0 ms
  echo "== $name: SIGKILL to $2 #$3 after step 10, then resume"
  start "$name"
  victim=$(rank_pid "$2" "$name" "$3")
  rank=$(tr '\0' '\n' < "/proc/$victim/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
  for _ in $(seq 600); do
    [ "$(steps_done "$name")" -ge 10 ] && break
    sleep 0.05
  done
  t0=$(date +%s%N)
  kill -KILL "$victim"
  wait "$job" || rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$rc" -ne 0 ] || { cat "$out/$name.log"; echo "the job exited 0 after a rank was killed"; exit 1; }
  [ "$ms" -lt 30000 ] || { cat "$out/$name.log"; echo "the job took $ms ms to end"; exit 1; }
  grep -E "rank $rank .* on node [^ ]+ exited on signal 9" "$out/$name.log" ||
    { cat "$out/$name.log"; echo "no message names world rank $rank and its host"; exit 1; }
  sleep 0.5
  if pgrep -f "^$BUILD_DIR/arcface-(ps|worker) .*output_dir=$out/$name( |\$)" > /dev/null; then
    echo "processes of the killed job are left behind"; exit 1
  fi
  echo "$name: the job ended $ms ms after the kill, status $rc, after step $(steps_done "$name")"
  # metrics.jsonl now holds a few steps past the newest checkpoint; the
  # resumed run appends them again and compare_runs takes the last of each.
  start "$name"
  wait "$job" || { cat "$out/$name.log"; echo "the resumed run failed"; exit 1; }
  grep -E "resuming from .*checkpoint-" "$out/$name.log" || { cat "$out/$name.log"; echo "did not resume"; exit 1; }
  python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 0 --weight-rtol 0 "$out/whole" "$out/$name"
}

kill_and_resume server arcface-ps 1
kill_and_resume worker arcface-worker 0

echo "== slow: worker 1 sleeps 400 ms more in every step"
t0=$(date +%s%N)
start slow 400
wait "$job" || { cat "$out/slow.log"; echo "run slow failed"; exit 1; }
slow_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "slow: $slow_ms ms for the run, whole: $whole_ms ms"
# Every step waits for the slow worker (nothing is skipped or stale).
[ "$slow_ms" -gt $((steps * 500)) ] || { echo "the steps did not wait for the slow worker"; exit 1; }
python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 0 --weight-rtol 0 "$out/whole" "$out/slow"
