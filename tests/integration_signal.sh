#!/usr/bin/env bash
# A stop signal on any rank ends the whole job cleanly at one step boundary,
# with a checkpoint of that step, and the run resumed from it equals the run
# that was never interrupted, bit for bit. Three ways in: SIGTERM to a server,
# SIGINT to a worker, SIGUSR1 to mpirun (which forwards it to every rank, as
# Slurm's `--signal` makes it do). The workers sleep in every step
# (ARCFACE_TEST_STEP_DELAY_MS) so the signal lands mid-run.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-signal.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
steps=40
common=(network=r18 width=8 embedding_size=64 synthetic_ids=37 synthetic_images=6 synthetic_holdout_ids=10
        verify_pairs=40 steps=$steps warmup_steps=3 threads=1 batch_size=8 log_every=5 step_timeout=60 seed=11
        lr=0.0003 checkpoint_every=100 keep_checkpoints=1)
export ARCFACE_TEST_STEP_DELAY_MS=100

start() { # name -> runs the job in the background, its pid in $job
  local name=$1
  mpirun --bind-to none -np 2 "$BUILD_DIR/arcface-ps" "${common[@]}" output_dir="$out/$name" \
    : -np 2 "$BUILD_DIR/arcface-worker" "${common[@]}" output_dir="$out/$name" >> "$out/$name.log" 2>&1 &
  job=$!
}

finish() { # name: waits for the job; it must succeed
  if ! wait "$job"; then cat "$out/$1.log"; echo "run $1 failed"; exit 1; fi
}

steps_done() { cat "$out/$1/metrics.jsonl" 2>/dev/null | grep -c '"loss"' || true; }

# pid of one rank of the job whose output_dir is $out/$name (not mpirun's,
# whose command line names both programs)
rank_pid() { # program name
  local pid
  for _ in $(seq 100); do
    pid=$(pgrep -f "^$BUILD_DIR/$1 .*output_dir=$out/$2( |\$)" | head -n 1 || true)
    [ -n "$pid" ] && { echo "$pid"; return; }
    sleep 0.1
  done
  echo "no $1 process for $2" >&2
  exit 1
}

interrupt() { # name signal target(ps|worker|mpirun)
  local name=$1 sig=$2 target=$3 pid
  echo "== $name: $sig to $target at step >= 8, then resume"
  start "$name"
  case $target in
    ps) pid=$(rank_pid arcface-ps "$name") ;;
    worker) pid=$(rank_pid arcface-worker "$name") ;;
    mpirun) pid=$job ;;
  esac
  for _ in $(seq 600); do
    [ "$(steps_done "$name")" -ge 8 ] && break
    kill -0 "$job" 2>/dev/null || break
    sleep 0.05
  done
  local t0
  t0=$(date +%s%N)
  kill -s "$sig" "$pid"
  finish "$name"
  local ms=$(( ($(date +%s%N) - t0) / 1000000 )) stopped
  stopped=$(steps_done "$name")
  grep -q "received SIG$sig" "$out/$name.log" || { cat "$out/$name.log"; echo "no rank logged SIG$sig"; exit 1; }
  grep -q "stopped by a signal after step $stopped of $steps" "$out/$name.log" ||
    { cat "$out/$name.log"; echo "no stop after step $stopped logged"; exit 1; }
  [ "$stopped" -lt "$steps" ] || { echo "the run was not interrupted"; exit 1; }
  [ -f "$out/$name/checkpoint-$(printf %010d "$stopped")/COMPLETE" ] ||
    { ls -R "$out/$name"; echo "no complete checkpoint of step $stopped"; exit 1; }
  [ ! -e "$out/$name/backbone.bin" ] || { echo "an interrupted run wrote the final backbone"; exit 1; }
  echo "$name: stopped after step $stopped, the job ended $ms ms after the signal"
  start "$name"
  finish "$name"
  grep -q "resuming from .*checkpoint-$(printf %010d "$stopped")" "$out/$name.log" ||
    { cat "$out/$name.log"; echo "did not resume from step $stopped"; exit 1; }
  python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 0 --weight-rtol 0 "$out/whole" "$out/$name"
}

echo "== whole: $steps steps uninterrupted"
start whole
finish whole

interrupt ps_term TERM ps
interrupt worker_int INT worker
interrupt mpirun_usr1 USR1 mpirun
