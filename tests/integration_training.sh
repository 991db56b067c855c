#!/usr/bin/env bash
# Training works end to end: 2 servers + 2 workers on the synthetic set, a
# short schedule; the loss must fall clearly and the verification accuracy on
# held-out identities must end well above chance (0.5). Twice: ArcFace on
# normalised embeddings, and the original SphereFace (A-Softmax m = 4 with
# lambda annealing, logits scaled by the embedding norm), and ArcFace with
# Partial FC keeping a tenth of the negative classes per step.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-training.XXXXXX)
trap 'rm -rf "$out"' EXIT
train() { # name extra-keys...
  local name=$1
  shift
  local args=(network=r18 width=8 embedding_size=64 synthetic_ids=200 synthetic_images=20 synthetic_holdout_ids=50
        verify_pairs=600 batch_size=32 lr=0.1 warmup_steps=20 steps=160 log_every=40 verify_every=80
        threads=1 step_timeout=120 output_dir="$out/$name" "$@")
  echo "== $name: $*"
  mpirun --bind-to none -np 2 "$BUILD_DIR/arcface-ps" "${args[@]}" : -np 2 "$BUILD_DIR/arcface-worker" "${args[@]}" \
    > "$out/$name.log" 2>&1 || { cat "$out/$name.log"; echo "training job $name failed"; exit 1; }
  grep -E "step [0-9]+/|Accuracy" "$out/$name.log"
  python3 - "$out/$name/metrics.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
losses = [r["loss"] for r in recs if "loss" in r]
acc = [r["accuracy"] for r in recs if "accuracy" in r]
first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
print(f"mean loss of the first 10 steps {first:.3f}, of the last 10 {last:.3f}; accuracy {acc}")
ok = last < 0.6 * first and acc and acc[-1] >= 0.80
sys.exit(0 if ok else 1)
PY
}
train arcface loss=arcface s=32
train sphereface loss=sphereface normalize_embeddings=0
train partial_fc loss=arcface s=32 sample_rate=0.1
