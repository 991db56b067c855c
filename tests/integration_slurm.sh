#!/usr/bin/env bash
# Slurm batch submission: a real one-node Slurm (munged, slurmctld and slurmd
# started here, in a temporary directory, on free ports; see
# tests/support/slurm_local.sh) runs deploy/slurm/arcface.sbatch:
# 1. launched by srun --mpi=pmix --multi-prog (2 servers + 2 workers) and by
#    mpirun MPMD inside the allocation (1 server + 2 workers), each job
#    trains to the end: exit 0, the training log in its %x-%j.out, metrics,
#    a complete final checkpoint and backbone.bin in output_dir;
# 2. requeue, for both launchers: scancel --batch --signal=USR1 in the middle
#    of training (what --signal=B:USR1@T does before the time limit) makes
#    the job checkpoint, exit cleanly and requeue itself; the requeued run
#    resumes from that checkpoint (step K > 0) and finishes.
# Exits 77 when Slurm or munge is not installed. Stops every daemon and job
# process it started, also on failure; KEEP=1 keeps the directory.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/tests/support/slurm_local.sh"
if ! slurm_local_available; then
  echo "skipped: needs munged, slurmctld, slurmd and the Slurm clients as root" \
       "(apt-get install munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins)"
  exit 77
fi
work=$(mktemp -d /tmp/arcface-slurm.XXXXXX)
chmod 755 "$work" # munged wants every directory above its socket open to all
trap 'slurm_local_stop; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
trap 'exit 1' INT TERM # ctest's timeout, Ctrl-C: clean up as well
start=$SECONDS
slurm_local_start "$work/cluster"
echo "single-node Slurm up in $((SECONDS - start)) s ($(sinfo -h -o '%N %c CPUs %t'))"

# sbatch passes the environment to the job: where the programs are, and a
# TMPDIR inside $work so that nothing a job leaves behind outlives the test.
export ARCFACE_ROOT=$SOURCE_DIR ARCFACE_BUILD_DIR=$BUILD_DIR TMPDIR=$work/tmp
mkdir "$TMPDIR"
cd "$work" # sbatch writes %x-%j.out into the directory it is run from
script=$SOURCE_DIR/deploy/slurm/arcface.sbatch
# A stuck job ends at its time limit instead of hanging the test; the
# script's own --signal (300 s before the limit) would fire at once.
limits=(--overcommit --time=5 --signal=B:USR1@10)
tiny=(network=r18 width=8 embedding_size=64 synthetic_ids=50 synthetic_images=10 synthetic_holdout_ids=10
      verify_pairs=40 batch_size=8 warmup_steps=2 log_every=2 threads=1 step_timeout=60 seed=3)
fail() { # job-log message
  [ ! -f "$1" ] || cat "$1"
  tail -n 20 "$work"/cluster/log/*.log
  echo "FAIL: $2"
  exit 1
}

# Checks a job that ran to the end: NAME LOG STEPS.
check_finished() {
  local name=$1 log=$2 steps=$3
  grep -q "\[worker 0\] step $steps/$steps " "$log" || fail "$log" "$name: no 'step $steps/$steps' line"
  grep -q "Accuracy-Flip" "$log" || fail "$log" "$name: no verification line"
  [ -s "$work/$name/metrics.jsonl" ] || fail "$log" "$name: no metrics.jsonl"
  [ -f "$work/$name/checkpoint-$(printf %010d "$steps")/COMPLETE" ] || fail "$log" "$name: no complete checkpoint of step $steps"
  [ -s "$work/$name/backbone.bin" ] || fail "$log" "$name: no backbone.bin"
}

# 1. Both launchers, to the end.
train() { # name launcher servers tasks
  local name=$1 launcher=$2 servers=$3 tasks=$4 id rc=0 t0=$SECONDS
  id=$(sbatch --parsable --wait "${limits[@]}" --ntasks="$tasks" --job-name="$name" "$script" -p "$servers" \
         -l "$launcher" "${tiny[@]}" steps=8 checkpoint_every=4 output_dir="$work/$name") || rc=$?
  local log=$work/$name-${id:-?}.out
  [ "$rc" -eq 0 ] && [ -n "$id" ] || fail "$log" "$name: sbatch --wait exited with $rc"
  check_finished "$name" "$log" 8
  [ -f "$work/$name/checkpoint-0000000004/COMPLETE" ] || fail "$log" "$name: no checkpoint at step 4"
  echo "== $name: job $id, $launcher, $servers server(s) + $((tasks - servers)) worker(s): trained in $((SECONDS - t0)) s"
  grep -E "^\[slurm\]|step 8/8|Accuracy-Flip" "$log" | sed 's/^/   /'
}
train srun-2x2 srun 2 4
train mpirun-1x2 mpirun 1 3

# 2. Stop by signal, checkpoint, requeue, resume, finish.
requeue() { # name launcher servers tasks
  local name=$1 launcher=$2 servers=$3 tasks=$4 id='' rc=0 t0=$SECONDS steps=40
  # The workers sleep 30 ms per step so that the signal lands mid-run on any machine.
  ARCFACE_TEST_STEP_DELAY_MS=30 sbatch --parsable --wait "${limits[@]}" --ntasks="$tasks" --job-name="$name" "$script" -p "$servers" \
    -l "$launcher" "${tiny[@]}" steps=$steps checkpoint_every=1000 output_dir="$work/$name" > "$work/$name.id" &
  local waiter=$!
  for _ in $(seq 300); do id=$(cat "$work/$name.id" 2> /dev/null || true); [ -n "$id" ] && break; sleep 0.1; done
  local log=$work/$name-$id.out
  [ -n "$id" ] || fail "$log" "$name: no job id from sbatch"
  for _ in $(seq 600); do grep -q "\[worker 0\] step 6/$steps " "$log" 2> /dev/null && break; sleep 0.1; done
  grep -q "\[worker 0\] step 6/$steps " "$log" || fail "$log" "$name: training did not reach step 6 within a minute"
  scancel --batch --signal=USR1 "$id"
  # Slurm holds a requeued job back for two minutes (Reason=BeginTime): let it start at once, but
  # not within the second of the requeue: slurmd revokes the old job credential with a time in
  # whole seconds and refuses ("Job credential revoked") a relaunch stamped in that same second.
  # (A start time in the future would wait for the scheduler's next periodic pass, up to a minute.)
  local state=''
  for _ in $(seq 600); do
    state=$(scontrol -o show job "$id" 2> /dev/null | grep -o 'JobState=[A-Z]* Reason=[A-Za-z]*') || true
    if [ "$state" = "JobState=PENDING Reason=BeginTime" ]; then
      sleep 2
      scontrol update JobId="$id" StartTime=now
      break
    fi
    case $state in *COMPLETED*|*FAILED*|*CANCELLED*|*TIMEOUT*) break ;; esac
    grep -q "restart 1 on" "$log" && break
    sleep 0.1
  done
  wait "$waiter" || rc=$?
  [ "$rc" -eq 0 ] || fail "$log" "$name: sbatch --wait exited with $rc"
  grep -q "\[slurm\] got SIGUSR1" "$log" || fail "$log" "$name: the batch shell did not get SIGUSR1"
  grep -q "requeueing job $id" "$log" || fail "$log" "$name: the job did not requeue itself"
  local resumed
  resumed=$(sed -n 's/.*resuming from .*checkpoint-\([0-9]\{10\}\).*/\1/p' "$log" | head -n 1)
  [ -n "$resumed" ] && [ $((10#$resumed)) -gt 0 ] || fail "$log" "$name: the requeued run did not resume from a checkpoint"
  grep -q "stopped at checkpoint step $((10#$resumed)) before the end of training" "$log" ||
    fail "$log" "$name: resumed from step $((10#$resumed)), not from the checkpoint the stop wrote"
  grep -q "restart 1 on" "$log" || fail "$log" "$name: no second run (restart 1) in the log"
  check_finished "$name" "$log" "$steps"
  local restarts
  restarts=$(scontrol show job "$id" 2> /dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
  echo "== $name: job $id, $launcher: stopped at step $((10#$resumed)) by SIGUSR1, requeued" \
       "(Restarts=${restarts:-?}), resumed and finished in $((SECONDS - t0)) s"
  grep -E "^\[slurm\]|resuming from|checkpoint .* complete|step $steps/$steps" "$log" | sed 's/^/   /'
}
requeue requeue-srun srun 2 4
requeue requeue-mpirun mpirun 1 3

echo "integration_slurm: all Slurm jobs passed in $((SECONDS - start)) s"
