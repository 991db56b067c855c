#!/usr/bin/env bash
# Checkpoints resume exactly: 10 steps, checkpoint, resume, 10 more steps
# equals 20 steps uninterrupted -- with the same job (bit for bit), and on a
# different number of servers (3 instead of 2: rows re-sharded) and of workers
# (1 of batch 16 instead of 2 of batch 8: the data order re-split), to the
# equivalence test's tolerance. Also: keep_checkpoints prunes old ones, a
# corrupt checkpoint is refused with a message naming the file.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-resume.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
steps=20
common=(network=r18 width=8 embedding_size=128 bn_group=8 dropout=0.1 synthetic_ids=37 synthetic_images=6
        synthetic_holdout_ids=10 verify_pairs=40 steps=$steps warmup_steps=3 threads=1
        log_every=5 step_timeout=120 seed=7 lr=0.0003 checkpoint_every=4 keep_checkpoints=2)

run() { # name workers servers batch extra...
  local name=$1 W=$2 P=$3 B=$4
  shift 4
  echo "== $name: $W worker(s) x batch $B, $P server(s) $*"
  mpirun --bind-to none -np "$P" "$BUILD_DIR/arcface-ps" "${common[@]}" batch_size="$B" output_dir="$out/$name" "$@" \
    : -np "$W" "$BUILD_DIR/arcface-worker" "${common[@]}" batch_size="$B" output_dir="$out/$name" "$@" \
    >> "$out/$name.log" 2>&1 || { cat "$out/$name.log"; echo "run $name failed"; exit 1; }
}
run whole 2 2 8
run same 2 2 8 stop_at_step=10
grep -q "checkpoint .*checkpoint-0000000010 complete" "$out/same.log" || { cat "$out/same.log"; echo "no checkpoint at step 10"; exit 1; }
run same 2 2 8
grep -q "resuming from .*checkpoint-0000000010" "$out/same.log" || { cat "$out/same.log"; echo "did not resume"; exit 1; }
python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 0 --weight-rtol 0 "$out/whole" "$out/same"

# Re-sharded: stop with 2 workers and 2 servers, resume with 1 worker and 3 servers.
run reshard 2 2 8 stop_at_step=10
run reshard 1 3 16
python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 1e-4 --weight-rtol 1e-4 "$out/whole" "$out/reshard"

# keep_checkpoints = 2: only the two newest complete checkpoints remain.
kept=$(cd "$out/same" && ls -d checkpoint-* | tr '\n' ' ')
[ "$kept" = "checkpoint-0000000016 checkpoint-0000000020 " ] || { echo "kept: $kept"; exit 1; }
echo "kept checkpoints: $kept"

# A flipped byte in a checkpoint stops the resume with a message naming the file.
ckpt="$out/same/checkpoint-0000000016/classifier-1.ckpt"
python3 - "$ckpt" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[300] ^= 0x40  # inside the weight section
open(sys.argv[1], "wb").write(data)
PY
rm -rf "$out/same/checkpoint-0000000020"
if mpirun --bind-to none -np 2 "$BUILD_DIR/arcface-ps" "${common[@]}" batch_size=8 output_dir="$out/same" steps=24 \
     : -np 2 "$BUILD_DIR/arcface-worker" "${common[@]}" batch_size=8 output_dir="$out/same" steps=24 > "$out/corrupt.log" 2>&1; then
  echo "resuming from a corrupt checkpoint succeeded"; exit 1
fi
grep -E "resuming the classifier: .*classifier-1.ckpt" "$out/corrupt.log" || { cat "$out/corrupt.log"; echo "the error does not name the file"; exit 1; }
