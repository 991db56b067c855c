#!/usr/bin/env bash
# deploy/plot-metrics.sh turns a metrics.jsonl into loss, lr and accuracy PNGs,
# and refuses a file that is not JSON lines.
set -euo pipefail
: "${SOURCE_DIR:?}"
out=$(mktemp -d /tmp/arcface-plot.XXXXXX)
trap 'rm -rf "$out"' EXIT
python3 - "$out/metrics.jsonl" <<'PY'
import json, math, sys
with open(sys.argv[1], "w") as f:
    for step in range(1, 201):
        f.write(json.dumps({"step": step, "loss": 20 * math.exp(-step / 60) + 1, "lr": 0.1 * (1 - step / 200) ** 2}) + "\n")
        if step % 50 == 0:
            for name, base in (("lfw", 0.9), ("yaleb", 0.8)):
                f.write(json.dumps({"step": step, "set": name, "accuracy": base + step / 4000, "accuracy_std": 0.01}) + "\n")
PY
"$SOURCE_DIR/deploy/plot-metrics.sh" "$out/metrics.jsonl" "$out/plots"
for png in loss lr accuracy; do
  f="$out/plots/$png.png"
  [ -s "$f" ] || { echo "$png.png was not written"; exit 1; }
  [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || { echo "$png.png is not a PNG"; exit 1; }
done
echo "not json" > "$out/bad.jsonl"
if "$SOURCE_DIR/deploy/plot-metrics.sh" "$out/bad.jsonl" "$out/bad" 2> "$out/err"; then
  echo "a malformed metrics file was accepted"; exit 1
fi
grep -q "bad.jsonl:1: not JSON" "$out/err" || { cat "$out/err"; echo "the error does not name the file and line"; exit 1; }
echo "plots written and checked"
