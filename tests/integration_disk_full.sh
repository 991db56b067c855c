#!/usr/bin/env bash
# A disk that fills up while a checkpoint is written ends the job with an
# error naming the file and the system's reason, leaves the previous
# checkpoint intact, and a run resumed from it (once there is room again) ends
# with the same weights as a run that never failed. output_dir is a 5 MiB
# tmpfs in a private mount namespace (unshare -m), so the first checkpoint
# (about 3 MiB) fits and the second does not.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-disk-full.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
if ! unshare -m sh -c "mount -t tmpfs -o size=1m tmpfs '$out'" 2> /dev/null; then
  echo "skipped: cannot mount a tmpfs in a private mount namespace (needs root / CAP_SYS_ADMIN)"
  exit 77
fi
steps=12
common=(network=r18 width=8 embedding_size=64 synthetic_ids=37 synthetic_images=6 synthetic_holdout_ids=10
        verify_pairs=40 steps=$steps warmup_steps=3 threads=1 batch_size=8 log_every=4 step_timeout=60 seed=9
        lr=0.0003 checkpoint_every=4 keep_checkpoints=1)
job() { # output_dir
  echo "mpirun --bind-to none -np 2 '$BUILD_DIR/arcface-ps' ${common[*]} output_dir='$1' \
        : -np 2 '$BUILD_DIR/arcface-worker' ${common[*]} output_dir='$1'"
}

echo "== whole: $steps steps with room to spare"
eval "$(job "$out/whole")" > "$out/whole.log" 2>&1 || { cat "$out/whole.log"; echo "run whole failed"; exit 1; }

echo "== full: the same on a 5 MiB file system"
mkdir -p "$out/full"
rc=0
timeout 300 unshare -m sh -c "mount -t tmpfs -o size=5m tmpfs '$out/full' && $(job "$out/full/run") > '$out/full.log' 2>&1;
  status=\$?; cp -a '$out/full/run' '$out/saved'; exit \$status" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat "$out/full.log"; echo "status $rc: the job did not fail cleanly"; exit 1; }
grep -E "checkpoint of step 8: .*checkpoint-0000000008/.*(No space left on device|File too large)" "$out/full.log" ||
  { cat "$out/full.log"; echo "no error naming the checkpoint file and ENOSPC"; exit 1; }
[ -f "$out/saved/checkpoint-0000000004/COMPLETE" ] || { ls -R "$out/saved"; echo "checkpoint 4 is gone"; exit 1; }
[ ! -f "$out/saved/checkpoint-0000000008/COMPLETE" ] || { echo "the failed checkpoint is marked complete"; exit 1; }
if ls "$out/saved"/checkpoint-0000000008/*.tmp* > /dev/null 2>&1; then
  ls -la "$out/saved/checkpoint-0000000008"; echo "a temporary file was left behind"; exit 1
fi

echo "== resumed: from checkpoint 4, with room again"
eval "$(job "$out/saved")" > "$out/resumed.log" 2>&1 || { cat "$out/resumed.log"; echo "the resumed run failed"; exit 1; }
grep -q "resuming from .*checkpoint-0000000004" "$out/resumed.log" || { cat "$out/resumed.log"; echo "did not resume from 4"; exit 1; }
python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 0 --weight-rtol 0 "$out/whole" "$out/saved"
