#!/usr/bin/env bash
# Real faces end to end: train from scratch on the first 28 identities of the
# Extended Yale B crops (an image folder, grey JPEGs of 168x192) with 2 servers
# and 2 workers, and verify on 600 pairs of the 10 held-out identities, packed
# into an insightface .bin by arcface-mkbin. A short schedule; the accuracy
# must end well above chance. Skips (exit 77) when the photographs are absent.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
faces="$SOURCE_DIR/../shared/data/faces"
if [ ! -d "$faces/yaleb" ]; then
  echo "SKIP: $faces/yaleb is absent (real face photographs are not part of the project)"
  exit 77
fi
. "$SOURCE_DIR/deploy/mpi-env.sh"
out=$(mktemp -d /tmp/arcface-faces.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$BUILD_DIR/arcface-mkbin" "$faces/yaleb" "$out/yaleb_heldout.bin" first=28 ids=10 pairs=600 seed=1
args=(network=r18 width=16 embedding_size=128 dataset=folder data_path="$faces/yaleb" data_class_limit=28
      verify="yaleb=$out/yaleb_heldout.bin" batch_size=32 s=32 lr=0.1 warmup_steps=20 steps=200
      log_every=50 verify_every=100 threads=1 decode_threads=1 step_timeout=300 output_dir="$out/run")
mpirun --bind-to none -np 2 "$BUILD_DIR/arcface-ps" "${args[@]}" : -np 2 "$BUILD_DIR/arcface-worker" "${args[@]}" \
  > "$out/log" 2>&1 || { cat "$out/log"; echo "training job failed"; exit 1; }
grep -E "training set|step [0-9]+/|Accuracy" "$out/log"
# The standalone evaluator must reproduce the job's final accuracy from the saved backbone.
"$BUILD_DIR/arcface-eval" "$out/run/backbone.bin" verify="yaleb=$out/yaleb_heldout.bin" batch_size=32 \
  | tee "$out/eval.txt"
python3 - "$out/run/metrics.jsonl" "$out/eval.txt" <<'PY'
import json, re, sys
acc = [r["accuracy"] for r in map(json.loads, open(sys.argv[1])) if r.get("set") == "yaleb"]
line = open(sys.argv[2]).read()
standalone = float(re.search(r"Accuracy-Flip: ([0-9.]+)", line).group(1))
print(f"held-out accuracy during training {acc}, standalone {standalone:.5f}")
ok = acc and acc[-1] >= 0.75 and abs(standalone - acc[-1]) < 0.01
sys.exit(0 if ok else 1)
PY
