#!/usr/bin/env bash
# The core correctness test: the same global batch, seed and data give the same
# loss at every one of 20 steps and the same backbone and classifier weights
# for (workers, servers) = (1,1), (2,1), (2,3) and (1,4).
#
# BatchNorm statistics are per worker (as DDP), so the one-worker runs use
# bn_group = 8 over a batch of 16: ghost batch norm reproduces two workers of
# batch 8 exactly. Dropout masks and flips are keyed by global sample index.
#
# lr is 3e-4: early training from scratch amplifies float rounding
# exponentially (BN over a few samples, classifier rows of norm ~0.1 that an
# SGD step turns by about lr/|w|^2). At lr 1e-2 two single-process runs that
# differ only in OpenBLAS' thread count (summation order) drift from 1e-7 to
# 1e-2 within ten steps, at 1e-3 to about 1e-4; at 3e-4 re-associated sums stay
# below 1e-5 over 20 steps while the loss still falls from 45 to 35, so this
# test can demand 1e-4 of every split of the work and still catch a wrong term.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-equivalence.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
steps=20
common=(network=r18 width=8 embedding_size=128 bn_group=8 dropout=0.1 synthetic_ids=37 synthetic_images=6
        synthetic_holdout_ids=10 verify_pairs=40 steps=$steps warmup_steps=3 threads=1
        log_every=10 step_timeout=120 seed=7 lr=0.0003)

run() { # name workers servers batch
  local name=$1 W=$2 P=$3 B=$4
  echo "== $name: $W worker(s) x batch $B, $P server(s)"
  mpirun --bind-to none -np "$P" "$BUILD_DIR/arcface-ps" "${common[@]}" batch_size="$B" output_dir="$out/$name" \
    : -np "$W" "$BUILD_DIR/arcface-worker" "${common[@]}" batch_size="$B" output_dir="$out/$name" \
    > "$out/$name.log" 2>&1 || { cat "$out/$name.log"; echo "run $name failed"; exit 1; }
  grep -E "Accuracy|step $steps/" "$out/$name.log" || true
}
run w1p1 1 1 16
run w2p1 2 1 8
run w2p3 2 3 8
run w1p4 1 4 16
python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 1e-4 --weight-rtol 1e-4 \
  "$out/w1p1" "$out/w2p1" "$out/w2p3" "$out/w1p4"

# Partial FC (sample_rate 0.3): classes are kept by a hash of (seed, step,
# class), so the split over servers and workers still does not matter.
pfc=("${common[@]}")
common+=(sample_rate=0.3)
run pfc_w1p1 1 1 16
run pfc_w2p3 2 3 8
python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 1e-4 --weight-rtol 1e-4 \
  "$out/pfc_w1p1" "$out/pfc_w2p3"
common=("${pfc[@]}")

# Negative control: one worker whose BatchNorm sees all 16 samples at once is a
# different computation; the comparison must notice.
common+=(bn_group=16)
run w1p1_bn16 1 1 16
if python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 1e-4 --weight-rtol 1e-4 \
     "$out/w1p1" "$out/w1p1_bn16" > "$out/control.txt"; then
  cat "$out/control.txt"; echo "the comparison did not detect a different BatchNorm grouping"; exit 1
fi
echo "negative control detected as different: $(head -1 "$out/control.txt")"
